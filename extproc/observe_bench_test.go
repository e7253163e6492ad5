package extproc_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// BenchmarkObservedResponseLatency measures what envoy.yaml's observing
// filter does to a response's latency: requests through the Envoy stand-in
// configured by envoy.yaml (the observing filter sends each response's
// headers to ocisigner in observability mode) and through the same
// configuration without that filter, in alternating chunks so both see the
// same machine, each timed from sending the request to the end of the
// response, against the same ocisigner and OCI stand-in.
//
//	go test ./extproc -run '^$' -bench ObservedResponseLatency -benchtime 2000x
//
// b.N is the number of requests of each kind. p50-ms and p99-ms are with
// the observing filter, plain-p50-ms and plain-p99-ms without; x-p50 and
// x-p99 their ratios (1.0: observing costs a response nothing). In
// signer-20ms-late the signer takes 20 ms more before it reads each
// observing stream: a filter that waited would add those 20 ms to every
// response (x-p50 near 20), and the ratio does not move. The stand-in does
// not wait because Envoy does not (ext_proc.cc sendHeadersInObservabilityMode
// returns Continue); what is left of the ratio is the CPU the observing
// streams take on this machine, where the client, the stand-in, the signer
// and OCI's stand-in share two cores (BenchmarkService's GET-observed counts
// the signer's share).
func BenchmarkObservedResponseLatency(b *testing.B) {
	for _, late := range []time.Duration{0, 20 * time.Millisecond} {
		name := "signer-as-is"
		if late > 0 {
			name = "signer-20ms-late"
		}
		b.Run(name, func(b *testing.B) { benchObserved(b, late) })
	}
}

func benchObserved(b *testing.B, late time.Duration) {
	oci := signertest.NewServer(b)
	folder := signertest.NewFolder(b)
	key := signertest.Key(b, 1)
	folder.APIKeyProfile("API", key, "keys/api.pem", signertest.PKCS8, "")
	oci.RegisterAPIKey(signertest.APIKeyID("API", &key.PublicKey), &key.PublicKey)
	creds, err := credentials.Open(credentials.Settings{ConfigPath: folder.ConfigPath(), DefaultProfile: "API"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { creds.Close() })
	srv, err := extproc.New(extproc.Config{Credentials: creds, DefaultProfile: "API", Observer: &refusals{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer(append(srv.ServerOptions(), grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if v := metadata.ValueFromIncomingContext(ss.Context(), extproc.StageKey); len(v) == 1 && v[0] == extproc.StageObserve {
			time.Sleep(late)
		}
		return h(srv, ss)
	}))...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	b.Cleanup(g.Stop)
	observed := shippedConfig(b, lis.Addr().String(), oci.Addr)
	if len(observed.After) != 1 {
		b.Fatalf("envoy.yaml has %d observing filters, want 1", len(observed.After))
	}
	plain := observed
	plain.After = nil
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.Cleanup(client.CloseIdleConnections)
	var envoys [2]*extproctest.Envoy
	for i, c := range []extproctest.Config{observed, plain} {
		if envoys[i], err = extproctest.New(c); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = envoys[i].Close() })
	}
	one := func(e *extproctest.Envoy) time.Duration {
		req, _ := http.NewRequest(http.MethodGet, e.URL()+"/n/", nil)
		req.Host = osHost
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return d
	}
	for range 20 {
		one(envoys[0])
		one(envoys[1])
	}
	const chunk = 25
	var with, without []time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		for range min(chunk, b.N-done) {
			with = append(with, one(envoys[0]))
		}
		for range min(chunk, b.N-done) {
			without = append(without, one(envoys[1]))
		}
	}
	b.StopTimer()
	if envoys[0].Stats().ObserverStreams < int64(b.N) || envoys[1].Stats().ObserverStreams != 0 {
		b.Fatalf("observing streams %d and %d: the comparison is not with and without", envoys[0].Stats().ObserverStreams, envoys[1].Stats().ObserverStreams)
	}
	pct := func(ds []time.Duration, p float64) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(with, .5), "p50-ms")
	b.ReportMetric(pct(with, .99), "p99-ms")
	b.ReportMetric(pct(without, .5), "plain-p50-ms")
	b.ReportMetric(pct(without, .99), "plain-p99-ms")
	b.ReportMetric(pct(with, .5)/pct(without, .5), "x-p50")
	b.ReportMetric(pct(with, .99)/pct(without, .99), "x-p99")
}
