package extproctest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// overrideTo answers the request headers with a mode_override to the given mode (sent with
// every field explicit unless the test says otherwise) and the body, if it still comes.
func overrideTo(m *extprocfilterv3.ProcessingMode) func(*procStream) error {
	return respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		switch {
		case req.GetRequestHeaders() != nil:
			resp := headersResp(setHeaders("x-signed", "headers"))
			resp.ModeOverride = m
			return resp
		case req.GetRequestBody() != nil:
			return bodyResp(nil)
		}
		return nil
	})
}

// mode_override is honoured only with allow_mode_override and, when allowed_override_modes
// is set, only if the effective mode equals an entry field by field (request_header_mode
// excepted). Honoured NONE means no body message and the body streams upstream.
func TestModeOverrideToNone(t *testing.T) {
	none := mode(extprocfilterv3.ProcessingMode_NONE)
	buffered := mode(extprocfilterv3.ProcessingMode_BUFFERED)
	noneLoose := mode(extprocfilterv3.ProcessingMode_NONE)
	noneLoose.ResponseHeaderMode = extprocfilterv3.ProcessingMode_DEFAULT // as if left out of the YAML
	tests := []struct {
		name      string
		allow     bool
		allowed   []*extprocfilterv3.ProcessingMode
		override  *extprocfilterv3.ProcessingMode
		honoured  bool
		wantStats func(extproctest.Stats) bool
	}{
		{name: "not allowed by the filter", allow: false, override: none},
		{name: "allowed, no allow-list", allow: true, override: none, honoured: true},
		{name: "allowed, in the allow-list", allow: true, allowed: []*extprocfilterv3.ProcessingMode{buffered, none}, override: none, honoured: true},
		{name: "allowed, not in the allow-list", allow: true, allowed: []*extprocfilterv3.ProcessingMode{buffered}, override: none},
		{
			// The allow-list entry leaves response_header_mode DEFAULT while the effective
			// override (DEFAULT in the override keeps the configured SKIP) has SKIP.
			name: "allow-list entry not written in full", allow: true,
			allowed: []*extprocfilterv3.ProcessingMode{noneLoose}, override: none,
		},
		{
			// A DEFAULT header mode in the override keeps the configured one, so this still
			// matches the full entry.
			name: "override leaves header modes DEFAULT", allow: true,
			allowed:  []*extprocfilterv3.ProcessingMode{none},
			override: &extprocfilterv3.ProcessingMode{RequestBodyMode: extprocfilterv3.ProcessingMode_NONE},
			honoured: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, overrideTo(tt.override), func(c *extproctest.Config) {
				c.AllowModeOverride = tt.allow
				c.AllowedOverrideModes = tt.allowed
			})
			if code, _, _ := h.do(t, h.newRequest(t, http.MethodPut, "/o", strings.NewReader("object bytes"))); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			gotBodyMsg := false
			for _, m := range h.proc.only(t).messages() {
				gotBodyMsg = gotBodyMsg || m.GetRequestBody() != nil
			}
			if gotBodyMsg == tt.honoured {
				t.Errorf("body message sent: %v; override honoured should be %v", gotBodyMsg, tt.honoured)
			}
			st := h.envoy.Stats()
			if (st.ModeOverridesHonoured == 1) != tt.honoured || st.ModeOverridesHonoured+st.ModeOverridesIgnored != 1 {
				t.Errorf("honoured %d ignored %d", st.ModeOverridesHonoured, st.ModeOverridesIgnored)
			}
			up := h.up.only(t)
			if string(up.Body) != "object bytes" || up.Header.Get("X-Signed") != "headers" {
				t.Errorf("upstream got %q with headers %v", up.Body, up.Header)
			}
		})
	}
}

// An override in any answer but the one to the headers is ignored.
func TestModeOverrideInBodyAnswerIsIgnored(t *testing.T) {
	answer := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		switch {
		case req.GetRequestHeaders() != nil:
			return headersResp(nil)
		case req.GetRequestBody() != nil:
			resp := bodyResp(nil)
			resp.ModeOverride = mode(extprocfilterv3.ProcessingMode_NONE)
			return resp
		}
		return nil
	})
	h := newHarness(t, answer, func(c *extproctest.Config) { c.AllowModeOverride = true })
	if code, _, _ := h.do(t, h.newRequest(t, http.MethodPost, "/", strings.NewReader("b"))); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if st := h.envoy.Stats(); st.ModeOverridesIgnored != 1 || st.ModeOverridesHonoured != 0 {
		t.Errorf("honoured %d ignored %d", st.ModeOverridesHonoured, st.ModeOverridesIgnored)
	}
}

// genReader produces n bytes without allocating. It waits for ready before the first byte,
// so the client sends the body only after the override is in force, as a real client
// happens to when the signer answers the headers quickly (see TestBodyArrivingBeforeTheOverride).
type genReader struct {
	left  int64
	ready func()
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.ready != nil {
		g.ready()
		g.ready = nil
	}
	if g.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n := copy(p, filler)
	g.left -= int64(n)
	return n, nil
}

var filler = []byte(strings.Repeat("a", 64<<10))

// A large upload switched to NONE streams through the stand-in with flat memory: it is
// copied from client to upstream, never buffered.
func TestLargeUploadStreamsWithFlatMemory(t *testing.T) {
	size := int64(uploadSize)
	// An upstream that counts instead of keeping the upload.
	var received atomic.Int64
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		received.Store(n)
		w.WriteHeader(http.StatusOK)
	}))
	defer counting.Close()
	h := newHarness(t, overrideTo(mode(extprocfilterv3.ProcessingMode_NONE)), func(c *extproctest.Config) {
		c.Upstream = counting.Listener.Addr().String()
		c.AllowModeOverride = true
		c.AllowedOverrideModes = []*extprocfilterv3.ProcessingMode{mode(extprocfilterv3.ProcessingMode_NONE)}
	})

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// Read by the client's transport goroutine: no t.Fatal in there; a missing override
	// shows as a failed assertion below.
	body := &genReader{left: size, ready: func() {
		waitUntil(func() bool { return h.envoy.Stats().ModeOverridesHonoured == 1 })
	}}
	req := h.newRequest(t, http.MethodPut, "/n/ns/b/bucket/o/big", body)
	req.ContentLength = size
	if code, _, _ := h.do(t, req); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	runtime.ReadMemStats(&after)
	if got := received.Load(); got != size {
		t.Fatalf("upstream received %d bytes, want %d", got, size)
	}
	// Everything in this process (client, stand-in, upstream) allocated far less than the
	// upload: nothing held the body.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > min(64<<20, uint64(size)/2) {
		t.Errorf("allocated %d MiB while streaming %d MiB", alloc>>20, size>>20)
	}
	for _, m := range h.proc.only(t).messages() {
		if m.GetRequestBody() != nil {
			t.Error("body sent to the processor")
		}
	}
}

// A BUFFERED body that passes the limit while the headers answer is still pending gets
// 413 at once (ext_proc.cc Filter::onData returns StopIterationAndBuffer, and the filter
// manager's requestDataTooLarge answers): the answer, which would have switched the upload
// to NONE, never gets the chance. The processor here never answers, so only the 413 can end
// the request before the message timeout.
func TestBodyPastTheLimitBeforeTheHeadersAnswerGets413(t *testing.T) {
	h := newHarness(t, untilEnded, func(c *extproctest.Config) {
		c.AllowModeOverride = true
		c.BodyBufferLimit = 1024
	})
	wantTooLarge(t, h, h.newRequest(t, http.MethodPut, "/o", strings.NewReader(strings.Repeat("x", 64<<10))))
	if n := h.envoy.Stats().MessageTimeouts; n != 0 {
		t.Errorf("MessageTimeouts %d: the 413 should have ended the request", n)
	}
}
