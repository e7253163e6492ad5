package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// These tests attack `ocisigner serve` the way a client that can reach its
// gRPC port could, without Envoy in front: every family of hostile input
// found by such an attack, through the real gRPC service.

// hostile is a running service and gRPC connections to it.
type hostile struct {
	t     *testing.T
	svc   *service
	logs  *signertest.LogBuffer
	conns []*grpc.ClientConn
	next  atomic.Int64
}

func newHostile(t *testing.T, o serveOptions, conns int) *hostile {
	t.Helper()
	if conns == 0 {
		conns = 1
	}
	t.Helper()
	fx := newFixture(t)
	h := &hostile{t: t, logs: &signertest.LogBuffer{}}
	h.svc = startService(t, map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API"}, o, h.logs)
	for range conns {
		conn, err := grpc.NewClient(h.svc.lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		h.conns = append(h.conns, conn)
	}
	return h
}

func (h *hostile) client() extprocv3.ExternalProcessorClient {
	return extprocv3.NewExternalProcessorClient(h.conns[int(h.next.Add(1))%len(h.conns)])
}

// header is one header as Envoy sends it.
type header struct{ k, v string }

func headersMsg(hs []header, endOfStream bool) *extprocv3.ProcessingRequest {
	m := &corev3.HeaderMap{}
	for _, hv := range hs {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: hv.k, RawValue: []byte(hv.v)})
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: m, EndOfStream: endOfStream}}}
}

func request(method, authority, path string, extra ...header) []header {
	return append([]header{{":method", method}, {":path", path}, {":authority", authority}, {":scheme", "http"}}, extra...)
}

// exchange sends msgs one by one, reading an answer after each, and returns
// the answers and how the stream ended.
func (h *hostile) exchange(msgs ...*extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := h.client().Process(ctx)
	if err != nil {
		return nil, err
	}
	var out []*extprocv3.ProcessingResponse
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			break // the server ended the stream: Recv says how
		}
		resp, err := st.Recv()
		if err != nil {
			return out, err
		}
		out = append(out, resp)
	}
	_ = st.CloseSend()
	for {
		resp, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		out = append(out, resp)
	}
}

// refusal is what an ImmediateResponse said.
type refusal struct {
	status       int
	code, reason string
}

func immediate(t *testing.T, resps []*extprocv3.ProcessingResponse) (refusal, bool) {
	t.Helper()
	for _, r := range resps {
		if ir := r.GetImmediateResponse(); ir != nil {
			var body struct{ Code, Message string }
			if err := json.Unmarshal(ir.GetBody(), &body); err != nil {
				t.Fatalf("refusal body is not OCI's error shape: %q", ir.GetBody())
			}
			return refusal{int(ir.GetStatus().GetCode()), body.Code, body.Message}, true
		}
	}
	return refusal{}, false
}

// signedAnything reports whether any answer carries a signature.
func signedAnything(resps []*extprocv3.ProcessingResponse) bool {
	for _, r := range resps {
		for _, m := range []*extprocv3.CommonResponse{r.GetRequestHeaders().GetResponse(), r.GetRequestBody().GetResponse()} {
			for _, h := range m.GetHeaderMutation().GetSetHeaders() {
				if h.GetHeader().GetKey() == "authorization" {
					return true
				}
			}
		}
	}
	return false
}

const realmHost = "objectstorage.us-ashburn-1.oraclecloud.com"

// Only an authority that parses as a host name (or an IP literal the
// operator named) with an optional port is signed; everything else is
// refused with 400 before any signature exists.
func TestHostileAuthoritiesAreRefusedBeforeSigning(t *testing.T) {
	h := newHostile(t, serveOptions{allowHosts: stringList{"a.corp.example", "*.b.example", "127.0.0.1:8443", "[::1]"}}, 1)
	refused := []string{
		// The attack's own finds, realm domain and --allow-host alike.
		"evil.com#.oraclecloud.com", "evil.com?.oraclecloud.com", "x.oraclecloud.com:443@evil.com",
		"user@objectstorage.us-ashburn-1.oraclecloud.com", "evil.com..oraclecloud.com", "*.oraclecloud.com",
		"[::1].oraclecloud.com", "evil.com\t.oraclecloud.com", "evil.com,x.oraclecloud.com",
		realmHost + ":65536", realmHost + ":abc", realmHost + ":",
		"a.corp.example:80@evil.com", "evil.com#.corp.example",
		// More of the same families.
		"evil.com/.oraclecloud.com", "evil.com\\.oraclecloud.com", "evil.com%2e.oraclecloud.com", "evil.com .oraclecloud.com",
		"evil.com\x00.oraclecloud.com", "evil.com\n.oraclecloud.com", "évil.oraclecloud.com", "evil_com.oraclecloud.com",
		realmHost + ".", "." + realmHost, "-evil.oraclecloud.com", "evil-.oraclecloud.com",
		realmHost + ":0", realmHost + ":-1", realmHost + ":+443", realmHost + ":443:443", realmHost + ": 443", realmHost + ":4430000",
		"[::1]:443@x.oraclecloud.com", "[::1%eth0]", "[127.0.0.1]", "[::1", "::1", "[::1]x",
		"x.oraclecloud.com;evil.com", "x.oraclecloud.com&evil.com", "x.oraclecloud.com'", "(x).oraclecloud.com",
		strings.Repeat("a", 64) + ".oraclecloud.com", strings.Repeat("a.", 130) + "oraclecloud.com",
		"a.corp.example:80#", "a.corp.example.", "x.a.corp.example@b.example",
	}
	for _, a := range refused {
		t.Run(fmt.Sprintf("%q", a), func(t *testing.T) {
			resps, err := h.exchange(headersMsg(request("GET", a, "/n/"), true))
			if err != nil {
				t.Fatalf("stream failed instead of a refusal: %v", err)
			}
			r, ok := immediate(t, resps)
			if !ok || r.status != 400 || r.code != extproc.CodeInvalidHost {
				t.Fatalf("answer %+v (immediate %v), want 400 %s", r, ok, extproc.CodeInvalidHost)
			}
			if signedAnything(resps) {
				t.Fatal("signed")
			}
		})
	}
	// Well-formed but not OCI and not allowed: 403, as before.
	for _, a := range []string{"evil.com", "oraclecloud.com", "10.0.0.1", "127.0.0.1:8080", "[::2]", "b.example", "corp.example"} {
		t.Run(fmt.Sprintf("not allowed %q", a), func(t *testing.T) {
			resps, err := h.exchange(headersMsg(request("GET", a, "/n/"), true))
			if r, ok := immediate(t, resps); err != nil || !ok || r.status != 403 || r.code != extproc.CodeHostNotAllowed {
				t.Fatalf("answer %+v %v, want 403 %s", r, err, extproc.CodeHostNotAllowed)
			}
		})
	}
	// What today's tests sign is still signed.
	for _, a := range []string{realmHost, "IAAS.US-PHOENIX-1.ORACLECLOUD.COM", realmHost + ":443", "x.uk-gov-london-1.oraclegovcloud.uk",
		"inference.generativeai.us-chicago-1.oci.oraclecloud.com", "a.corp.example", "a.corp.example:9000", "x.y.b.example",
		"127.0.0.1:8443", "[::1]", "[0:0:0:0:0:0:0:1]:443"} {
		t.Run(fmt.Sprintf("signed %q", a), func(t *testing.T) {
			resps, err := h.exchange(headersMsg(request("GET", a, "/n/"), true))
			if err != nil || !signedAnything(resps) {
				r, _ := immediate(t, resps)
				t.Fatalf("not signed: %+v %v", r, err)
			}
		})
	}
	if strings.Contains(h.logs.String(), "evil.com\n") {
		t.Error("a line break from a client reached the log unquoted")
	}
}

// The metric labels a client feeds come from closed sets: thousands of
// distinct methods and profile names leave the series count and the size
// of /metrics where they were. A thousand of each go through the gRPC
// service; ten thousand more straight to the metrics, which is where the
// labels are chosen, so the suite stays fast.
func TestHostileLabelsCannotGrowMetrics(t *testing.T) {
	h := newHostile(t, serveOptions{}, 4)
	metricsURL := "http://" + h.svc.adminL.Addr().String() + "/metrics"
	series := func() (int, int) {
		_, body := get(t, metricsURL)
		return strings.Count(body, "\nocisigner_requests_total{"), len(body)
	}
	// One of each outcome first, so the baseline has every series a
	// client could legitimately produce.
	for _, m := range []*extprocv3.ProcessingRequest{
		headersMsg(request("GET", "evil.com", "/"), true),
		headersMsg(request("FROBNICATE", "evil.com", "/"), true),
		headersMsg(request("GET", realmHost, "/", header{"x-oci-profile", "NOPE"}), true),
	} {
		if _, err := h.exchange(m); err != nil {
			t.Fatal(err)
		}
	}
	method := func(i int) string { return fmt.Sprintf("M%06d%s", i, strings.Repeat("X", i%64)) }
	profile := func(i int) string { return fmt.Sprintf("P%06d", i) }
	observe := func(i int) {
		h.svc.metrics.Observe(extproc.Event{Profile: "API", Method: method(i), Outcome: extproc.CodeHostNotAllowed})
		h.svc.metrics.Observe(extproc.Event{Profile: profile(i), Method: "GET", Outcome: extproc.CodeUnknownProfile})
		h.svc.metrics.Observe(extproc.Event{Profile: "API", Method: "GET", Outcome: method(i)})
		// Caller labels and rule names: with no policy in force, not labels at
		// all (TestHostileCallersCannotGrowMetrics has a policy).
		h.svc.metrics.Observe(extproc.Event{Profile: "API", Method: "GET", Outcome: extproc.OutcomeSigned, Caller: "key:" + method(i), Rule: method(i)})
	}
	observe(1 << 20)
	baseSeries, baseSize := series()

	const direct = 10000
	viaGRPC := metricNamesViaGRPC
	var wg sync.WaitGroup
	var failures atomic.Int64
	work := make(chan *extprocv3.ProcessingRequest)
	for range 16 {
		wg.Go(func() {
			for m := range work {
				if resps, err := h.exchange(m); err != nil || len(resps) != 1 || resps[0].GetImmediateResponse() == nil {
					failures.Add(1)
				}
			}
		})
	}
	for i := range viaGRPC {
		work <- headersMsg(request(method(i), "evil.com", "/"), true)
		work <- headersMsg(request("GET", realmHost, "/", header{"x-oci-profile", profile(i)}), true)
	}
	close(work)
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d requests were not refused", f)
	}
	for i := viaGRPC; i < viaGRPC+direct; i++ {
		observe(i)
	}
	gotSeries, gotSize := series()
	if gotSeries != baseSeries {
		t.Errorf("ocisigner_requests_total has %d series after %d distinct methods and profile names, %d before", gotSeries, viaGRPC+direct, baseSeries)
	}
	// The counters' values grow by a few digits; nothing else may.
	if gotSize > baseSize+1024 {
		t.Errorf("/metrics grew from %d to %d bytes", baseSize, gotSize)
	}
}

// Client-chosen values come back capped, oversized fields are refused
// before work is done on them, and a refusal does not tell one client
// about the gateway's layout.
func TestHostileSizesAndDisclosure(t *testing.T) {
	h := newHostile(t, serveOptions{}, 1)
	huge := strings.Repeat("P", 100<<10)
	resps, err := h.exchange(headersMsg(request("GET", realmHost, "/", header{"x-oci-profile", huge}), true))
	r, ok := immediate(t, resps)
	if err != nil || !ok || r.status != 400 || r.code != extproc.CodeUnknownProfile {
		t.Fatalf("100 KB profile name: %+v %v", r, err)
	}
	if raw := resps[0].GetImmediateResponse().GetBody(); len(raw) > 1024 {
		t.Errorf("a 100 KB profile name came back in a %d-byte refusal", len(raw))
	}
	if strings.Contains(h.logs.String(), strings.Repeat("P", 1024)) {
		t.Error("the 100 KB profile name was logged whole")
	}

	for _, tc := range []struct {
		name   string
		msg    *extprocv3.ProcessingRequest
		status int
		code   string
	}{
		{"32 MiB path", headersMsg(request("GET", realmHost, "/"+strings.Repeat("a", 32<<20)), true), 431, extproc.CodeHeadersTooLarge},
		{"2 MiB header", headersMsg(request("GET", realmHost, "/", header{"x-junk", strings.Repeat("j", 2<<20)}), true), 431, extproc.CodeHeadersTooLarge},
		{"20 KiB path", headersMsg(request("GET", realmHost, "/"+strings.Repeat("a", 20<<10)), true), 414, extproc.CodePathTooLong},
		{"300-byte authority", headersMsg(request("GET", strings.Repeat("a", 300)+".oraclecloud.com", "/"), true), 400, extproc.CodeInvalidHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.logs.Len()
			resps, err := h.exchange(tc.msg)
			if r, ok := immediate(t, resps); err != nil || !ok || r.status != tc.status || r.code != tc.code {
				t.Fatalf("%+v %v, want %d %s", r, err, tc.status, tc.code)
			}
			if raw := resps[0].GetImmediateResponse().GetBody(); len(raw) > 1024 {
				t.Errorf("%d-byte refusal", len(raw))
			}
			if grown := h.logs.Len() - before; grown > 4096 {
				t.Errorf("the log grew %d bytes for one refusal", grown)
			}
		})
	}

	// The config's path and its profile names are the operator's business.
	resps, _ = h.exchange(headersMsg(request("GET", realmHost, "/", header{"x-oci-profile", "NOPE"}), true))
	r, _ = immediate(t, resps)
	cfg := h.svc.opts.creds.configPath(mapEnv(nil))
	for _, leak := range []string{"config", "SESSION", "UNREGISTERED", "/"} {
		if strings.Contains(r.reason, leak) {
			t.Errorf("refusal discloses %q: %s", leak, r.reason)
		}
	}
	if !strings.Contains(h.logs.String(), "UNREGISTERED") {
		t.Errorf("the log should name the profiles the config has (%s)", cfg)
	}
	disclosing := newHostile(t, serveOptions{discloseErrors: true}, 1)
	resps, _ = disclosing.exchange(headersMsg(request("GET", realmHost, "/", header{"x-oci-profile", "NOPE"}), true))
	if r, _ := immediate(t, resps); !strings.Contains(r.reason, "UNREGISTERED") {
		t.Errorf("--disclose-errors: refusal should list the profiles: %s", r.reason)
	}
}

// A second copy of a header the signature covers would be forwarded beside
// the signed one; such a request is refused, naming the header.
func TestHostileDuplicateSignedHeaders(t *testing.T) {
	h := newHostile(t, serveOptions{}, 1)
	for _, name := range []string{"content-type", "opc-obo-token", "x-subscription", "x-cross-tenancy-request"} {
		t.Run(name, func(t *testing.T) {
			resps, err := h.exchange(headersMsg(request("POST", "iaas.us-phoenix-1.oraclecloud.com", "/x", header{name, "a"}, header{name, "b"}), true))
			r, ok := immediate(t, resps)
			if err != nil || !ok || r.status != 400 || r.code != extproc.CodeDuplicateHeader || !strings.Contains(r.reason, name) {
				t.Fatalf("%+v %v", r, err)
			}
			if signedAnything(resps) {
				t.Fatal("signed")
			}
		})
	}
	// Headers outside the signature may repeat.
	resps, err := h.exchange(headersMsg(request("GET", realmHost, "/n/", header{"accept", "a"}, header{"accept", "b"}), true))
	if err != nil || !signedAnything(resps) {
		t.Fatalf("repeated accept: %v", err)
	}
}

// While ocisigner waits for the buffered body, any other message would let
// the request go on unsigned: it is refused.
func TestHostileMessagesInsteadOfTheBody(t *testing.T) {
	h := newHostile(t, serveOptions{}, 1)
	post := headersMsg(request("POST", "iaas.us-phoenix-1.oraclecloud.com", "/x", header{"content-type", "application/json"}), false)
	for _, tc := range []struct {
		name string
		msg  *extprocv3.ProcessingRequest
	}{
		{"request trailers", &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}}},
		{"response headers", &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{}}}},
		{"request headers again", post},
		{"nothing at all", &extprocv3.ProcessingRequest{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resps, err := h.exchange(post, tc.msg)
			if err != nil || len(resps) != 2 {
				t.Fatalf("%d answers, %v", len(resps), err)
			}
			if resps[0].GetRequestHeaders() == nil || signedAnything(resps[:1]) {
				t.Fatalf("headers answer %v", resps[0])
			}
			r, ok := immediate(t, resps[1:])
			if !ok || r.status != 500 || r.code != extproc.CodeMisconfigured {
				t.Fatalf("answer %v, want a 500 %s refusal", resps[1], extproc.CodeMisconfigured)
			}
		})
	}
}

// A stream that sent body-signed headers and then nothing holds a slot
// only until the idle limit: it ends non-OK, and with every slot taken
// (--max-streams 1) the next request is served once it has.
func TestHostileStreamGoesQuietAfterItsHeaders(t *testing.T) {
	h := newHostile(t, serveOptions{idleTimeout: 300 * time.Millisecond, maxStreams: 1}, 1)
	post := headersMsg(request("POST", "iaas.us-phoenix-1.oraclecloud.com", "/x", header{"content-type", "application/json"}), false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := h.client().Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(post); err != nil {
		t.Fatal(err)
	}
	if resp, err := st.Recv(); err != nil || resp.GetRequestHeaders() == nil {
		t.Fatalf("headers answer %v, %v", resp, err)
	}
	// The body never comes.
	start := time.Now()
	_, err = st.Recv()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("the quiet stream ended with %v; want DeadlineExceeded from the idle limit", err)
	}
	t.Logf("ended after %s", time.Since(start).Round(time.Millisecond))
	// Its slot is free again (the handler returns just after it answers).
	var resps []*extprocv3.ProcessingResponse
	for range 50 {
		if resps, err = h.exchange(headersMsg(request("GET", realmHost, "/n/"), true)); status.Code(err) != codes.ResourceExhausted {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || !signedAnything(resps) {
		t.Fatalf("after the quiet stream ended: %v", err)
	}
}

// Streams that never send anything are not Envoy: they are bounded per
// connection and ended, never OK, and the service signs as before once
// the flood is over (TestHostileEnvoyShapedConcurrency shows 2,000
// concurrent streams). Envoy-shaped traffic is not mixed into the flood
// here: with the short first-message timeout this test needs to finish
// quickly, a race-instrumented process on two busy cores can take longer
// than that to read a message that was sent at once.
// The attacking client runs in a child process, so that what this process
// measures is the server alone.
func TestHostileIdleStreams(t *testing.T) {
	h := newHostile(t, serveOptions{firstMessage: 250 * time.Millisecond}, 0)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	baseG := runtime.NumGoroutine()

	var peakG, peakHeap atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if g := uint64(runtime.NumGoroutine()); g > peakG.Load() {
				peakG.Store(g)
			}
			if ms.HeapInuse > peakHeap.Load() {
				peakHeap.Store(ms.HeapInuse)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()
	res := runChild(t, childIdleClient, h.svc.lis.Addr().String())
	close(stopSampling)
	<-sampled

	var out idleReport
	if err := json.Unmarshal(res, &out); err != nil {
		t.Fatalf("child: %v: %s", err, res)
	}
	if out.Idle != idleStreams {
		t.Fatalf("child opened %d idle streams, want %d", out.Idle, idleStreams)
	}
	if out.EndedOK != 0 {
		t.Errorf("%d idle streams ended OK: Envoy would forward such a request unsigned", out.EndedOK)
	}
	if out.EndedOther != 0 {
		t.Errorf("%d idle streams ended otherwise than DeadlineExceeded: %s", out.EndedOther, out.FirstOther)
	}
	// Once the flood is over, requests are signed as before.
	resps, err := h.exchange(headersMsg(request("GET", realmHost, "/n/"), true))
	if err != nil || !signedAnything(resps) {
		t.Errorf("after the flood: %v", err)
	}
	// The stated bound: the server holds at most DefaultMaxStreamsPerConn
	// streams on each of the client's connections, a few goroutines and
	// KiB each. 96 MiB of heap and 4 goroutines a stream are far below what
	// the unbounded server reached (278 MiB RSS, 20,027 goroutines for
	// 20,000 streams), and hold whatever number of streams a client opens.
	held := idleConns * extproc.DefaultMaxStreamsPerConn
	if grown := int64(peakHeap.Load()) - int64(base.HeapInuse); grown > 96<<20 {
		t.Errorf("heap in use grew by %d MiB while %d idle streams were opened; bound 96 MiB", grown>>20, idleStreams)
	}
	if g := int(peakG.Load()) - baseG; g > 4*held {
		t.Errorf("%d goroutines at peak, bound %d", g, 4*held)
	}
	t.Logf("peak: %d goroutines over baseline, heap +%d MiB", int(peakG.Load())-baseG, (int64(peakHeap.Load())-int64(base.HeapInuse))>>20)
}

const idleConns = 4

type idleReport struct {
	Idle, EndedOK, EndedOther int64
	FirstOther                string
}

// idleClient is the child's part of TestHostileIdleStreams: 20,000 streams
// that never speak over 4 connections.
func idleClient(addr string) any {
	dial := func() *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			panic(err)
		}
		return conn
	}
	var rep idleReport
	var mu sync.Mutex
	note := func(dst *string, msg string) {
		mu.Lock()
		if *dst == "" {
			*dst = msg
		}
		mu.Unlock()
	}
	var idle []extprocv3.ExternalProcessorClient
	for range idleConns {
		idle = append(idle, extprocv3.NewExternalProcessorClient(dial()))
	}
	var idleCount, ok, other atomic.Int64
	var wg sync.WaitGroup
	// The client's own goroutines are bounded too; grpc-go makes a stream
	// wait for the server's per-connection quota.
	sem := make(chan struct{}, 2*idleConns*extproc.DefaultMaxStreamsPerConn)
	go func() {
		for i := range idleStreams {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				st, err := idle[i%idleConns].Process(ctx)
				idleCount.Add(1)
				if err != nil {
					other.Add(1)
					note(&rep.FirstOther, err.Error())
					return
				}
				_, err = st.Recv() // never sends: waits for the server to end it
				switch {
				case errors.Is(err, io.EOF):
					ok.Add(1)
				case status.Code(err) != codes.DeadlineExceeded:
					other.Add(1)
					note(&rep.FirstOther, err.Error())
				}
			})
		}
	}()
	for idleCount.Load() < idleStreams {
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	rep.Idle, rep.EndedOK, rep.EndedOther = idleCount.Load(), ok.Load(), other.Load()
	return rep
}

// Envoy-shaped traffic at 2,000 concurrent streams, on as many connections
// as Envoy would open under the per-connection bound, is all signed.
func TestHostileEnvoyShapedConcurrency(t *testing.T) {
	streams := envoyShapedStreams
	conns := (streams + extproc.DefaultMaxStreamsPerConn - 1) / extproc.DefaultMaxStreamsPerConn
	h := newHostile(t, serveOptions{}, conns)
	start := make(chan struct{})
	var wg sync.WaitGroup
	var failures atomic.Int64
	var first atomic.Value
	for i := range streams {
		wg.Go(func() {
			<-start
			resps, err := h.exchange(headersMsg(request("GET", realmHost, fmt.Sprintf("/n/%d", i)), true))
			if err == nil && !signedAnything(resps) {
				err = fmt.Errorf("not signed: %v", resps)
			}
			if err != nil {
				failures.Add(1)
				first.CompareAndSwap(nil, err.Error())
			}
		})
	}
	close(start)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d failed; first: %v", n, streams, first.Load())
	}
}
