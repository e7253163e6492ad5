package extproc_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// BenchmarkHeadersAnswerDuringRefresh measures how long the service takes
// to answer an upload's request headers (a PutObject: signed at once, its
// body switched to NONE), the time Envoy buffers the body meanwhile, over
// a real loopback gRPC stream: for requests made while the profile's
// credentials are being refreshed (the refresh held at the auth service,
// so it is in flight for the whole chunk) and for the same requests with no
// refresh, in alternating chunks, so both see the same machine. Each
// request is a stream of its own, as Envoy opens one per request, and is
// timed from opening the stream to the headers answer.
//
//	go test ./extproc -run '^$' -bench HeadersAnswerDuringRefresh -benchtime 2000x
//
// b.N is the number of requests of each kind. p50-ms and p99-ms are the
// headers-answer latency while a refresh is in flight; idle-p50-ms and
// idle-p99-ms the same with none; x-p50 and x-p99 their ratios (1.0:
// refreshing costs a request nothing). first-after-ms is the mean of the
// first request after each refresh, the first signature with the new
// credentials (an instance renewal brings a new session key, whose first
// signature costs one signature more); those requests are in neither
// distribution. refreshes is how many refreshes ran. An instance renewal
// generates its session key before it reaches the auth service, so its
// CPU is spent before the chunk starts; on two cores it would slow one
// request stream little anyway.
func BenchmarkHeadersAnswerDuringRefresh(b *testing.B) {
	for _, principal := range []string{"session", "instance"} {
		b.Run(principal, func(b *testing.B) { benchHeadersAnswer(b, principal) })
	}
}

// refreshBench is one profile behind the service and the means to start
// its refresh and hold it at the auth service.
type refreshBench struct {
	clock     *credentialstest.Clock
	rec       *credentialstest.Refreshes
	gate      *authGate
	md        *signertest.MetadataService
	src       signer.Source
	profile   string
	path      string // where its refresh goes at the auth service
	refreshes int
	client    extprocv3.ExternalProcessorClient
	msg       *extprocv3.ProcessingRequest
}

func newRefreshBench(b *testing.B, principal string) *refreshBench {
	f := &refreshBench{clock: credentialstest.NewClock(time.Now()), rec: credentialstest.NewRefreshes()}
	issuer := signertest.NewIssuer(b)
	auth := signertest.NewAuthService(b, issuer)
	auth.SetClock(f.clock.Now)
	f.md = signertest.NewMetadataService(b)
	f.md.SetClock(f.clock.Now)
	auth.TrustRoot(f.md.Root())
	f.gate = newAuthGate(b, auth.URL, false)
	folder := signertest.NewFolder(b)
	switch principal {
	case "session":
		f.profile, f.path = "SESSION", signertest.AuthRefreshPath
		key := signertest.Key(b, 2)
		// A session that never ends: the benchmark refreshes as often as
		// it needs to.
		now := f.clock.Now()
		folder.SessionProfile(f.profile, key, issuer.Mint(b, &key.PublicKey, signertest.TokenOptions{IssuedAt: now, SessionEnd: now.AddDate(100, 0, 0)}))
	case "instance":
		f.profile, f.path = instanceProfile, signertest.AuthX509Path
		folder.AppendConfig(f.profile, "authentication_type", "instance_principal")
		// Short tokens move the clock little per renewal, so the leaf
		// certificate outlives many of them.
		auth.SetInstanceLifetime(6 * time.Minute)
	}
	cfg, err := credentials.Open(credentials.Settings{ConfigPath: folder.ConfigPath(), DefaultProfile: f.profile}, credentials.WithClock(f.clock), credentials.WithObserver(f.rec.Observe),
		credentials.WithAuthBaseURL(f.gate.URL), credentials.WithMetadataBaseURL(f.md.BaseURL()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cfg.Close() })
	b.Cleanup(f.gate.Release) // before cfg.Close, which waits for refreshes to end
	f.src = cfg.Source(f.profile)
	if _, err := f.src.Credentials(context.Background()); err != nil {
		b.Fatal(err)
	}

	// The service as `serve` builds it, logging at info (into io.Discard,
	// formatting included).
	srv, err := extproc.New(extproc.Config{Credentials: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer(srv.ServerOptions()...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	b.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	f.client = extprocv3.NewExternalProcessorClient(conn)

	hv := func(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, RawValue: []byte(v)} }
	f.msg = &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				hv(":authority", osHost), hv(":path", uploadPath+"big.bin"), hv(":method", "PUT"), hv(":scheme", "http"),
				hv("user-agent", "oci-cli/3.50.0"), hv("content-type", "application/octet-stream"),
				hv("content-length", strconv.Itoa(1<<30)), hv("x-request-id", "4f7e2a0c-1b7d-4a4e-9d8e-2f9c1b0a7e55"),
				hv(extproc.DefaultProfileHeader, f.profile),
			}},
		}},
		MetadataContext: &corev3.Metadata{},
		ProtocolConfig:  &extprocv3.ProtocolConfiguration{RequestBodyMode: extprocfilterv3.ProcessingMode_BUFFERED},
	}
	return f
}

// headersAnswer runs one request's stream as Envoy does for an upload and
// returns how long the headers answer took; the answer must be signed
// with keyID and switch the body to NONE.
func (f *refreshBench) headersAnswer(b *testing.B, keyID string) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t0 := time.Now()
	st, err := f.client.Process(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Send(f.msg); err != nil {
		b.Fatal(err)
	}
	resp, err := st.Recv()
	d := time.Since(t0)
	if err != nil {
		b.Fatal(err)
	}
	var auth string
	for _, h := range resp.GetRequestHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
		if h.GetHeader().GetKey() == signer.HeaderAuthorization {
			auth = string(h.GetHeader().GetRawValue())
		}
	}
	if !strings.Contains(auth, `keyId="`+keyID+`"`) || resp.GetModeOverride().GetRequestBodyMode() != extprocfilterv3.ProcessingMode_NONE {
		b.Fatalf("not signed with the current credentials and streamed: %v", resp)
	}
	// Envoy closes its side once it takes the override; the service ends
	// the stream.
	_ = st.CloseSend()
	if _, err := st.Recv(); err != io.EOF {
		b.Fatalf("stream end: %v", err)
	}
	return d
}

// current is the keyId the profile signs with now.
func (f *refreshBench) current(b *testing.B) string {
	c, err := f.src.Credentials(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return c.KeyID
}

// holdRefresh makes the profile's refresh due and waits until it waits at
// the auth service.
func (f *refreshBench) holdRefresh(b *testing.B) {
	c, err := f.src.Credentials(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if f.profile == instanceProfile {
		if leaf, _ := f.md.Leaf(); !c.Token.Expiry.Add(time.Hour).Before(leaf.NotAfter) {
			f.md.RotateLeaf() // dated by the moved clock
		}
	}
	f.gate.Hold()
	// A minute before expiry any refresh margin has passed; the current
	// credentials stay valid.
	f.clock.Set(c.Token.Expiry.Add(-time.Minute))
	f.gate.WaitHeld(b, f.path, 1)
}

// finishRefresh checks the refresh was still in flight, lets it through
// and waits for it.
func (f *refreshBench) finishRefresh(b *testing.B) {
	if n := f.gate.Held(f.path); n != 1 {
		b.Fatalf("%d refreshes held at the end of the chunk, want 1: it gave up while the requests ran", n)
	}
	f.gate.Release()
	f.refreshes++
	if ev := f.rec.WaitRefresh(b, f.profile, f.refreshes); ev.Err != nil {
		b.Fatalf("refresh %d: %v", f.refreshes, ev.Err)
	}
}

func benchHeadersAnswer(b *testing.B, principal string) {
	f := newRefreshBench(b, principal)
	for range 10 { // the connection, the key's first signature, the runtime
		f.headersAnswer(b, f.current(b))
	}
	const chunk = 50
	var idle, refreshing, firstAfter []time.Duration
	run := func(n int, into *[]time.Duration) {
		keyID := f.current(b)
		for range n {
			*into = append(*into, f.headersAnswer(b, keyID))
		}
	}
	b.ResetTimer()
	for k, done := 0, 0; done < b.N; k, done = k+1, done+chunk {
		n := min(chunk, b.N-done)
		// Which goes first alternates: what one chunk leaves behind (a GC
		// it started) lands on both kinds alike.
		for _, withRefresh := range []bool{k%2 == 0, k%2 != 0} {
			if !withRefresh {
				run(n, &idle)
				continue
			}
			b.StopTimer()
			f.holdRefresh(b)
			b.StartTimer()
			run(n, &refreshing)
			b.StopTimer()
			f.finishRefresh(b)
			firstAfter = append(firstAfter, f.headersAnswer(b, f.current(b)))
			b.StartTimer()
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	p50, p99 := percentile(refreshing, 50), percentile(refreshing, 99)
	ip50, ip99 := percentile(idle, 50), percentile(idle, 99)
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(ms(ip50), "idle-p50-ms")
	b.ReportMetric(ms(ip99), "idle-p99-ms")
	b.ReportMetric(float64(p50)/float64(ip50), "x-p50")
	b.ReportMetric(float64(p99)/float64(ip99), "x-p99")
	var sum time.Duration
	for _, d := range firstAfter {
		sum += d
	}
	b.ReportMetric(ms(sum/time.Duration(len(firstAfter))), "first-after-ms")
	b.ReportMetric(float64(f.refreshes), "refreshes")
	if len(refreshing) != b.N || len(idle) != b.N {
		b.Fatalf("measured %d requests during a refresh and %d without, want %d each", len(refreshing), len(idle), b.N)
	}
}

// percentile is the p-th percentile of ds (nearest rank).
func percentile(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}
