package extproctest_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// endedByEnvoy reports an end of Recv that Envoy's close produces: io.EOF from the
// half-close, or CANCELED when the reset that immediately follows it wins.
func endedByEnvoy(err error) bool {
	return errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled
}

// Envoy closes the stream once it needs nothing more: right after the headers answer for a
// request without body, but only when the upstream response headers arrive for a buffered
// body. A server that returns only after Recv fails works either way.
func TestStreamIsClosedAfterTheLastAnswer(t *testing.T) {
	tests := []struct {
		name     string
		req      func(h *harness) *http.Request
		graceful bool
		// whether the stream is still open while the upstream handles the request
		openDuringUpstream bool
	}{
		{name: "no body", req: func(h *harness) *http.Request { return h.newRequest(t, http.MethodGet, "/", nil) }},
		{name: "no body, graceful close", graceful: true, req: func(h *harness) *http.Request { return h.newRequest(t, http.MethodGet, "/", nil) }},
		{
			name: "buffered body",
			req: func(h *harness) *http.Request {
				return h.newRequest(t, http.MethodPost, "/", strings.NewReader("body"))
			},
			openDuringUpstream: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, signer(), func(c *extproctest.Config) {
				c.GracefulClose = tt.graceful
				c.RemoteCloseTimeout = guard // the server, not the clock, ends the stream
			})
			openSeen := make(chan bool, 1)
			h.up.setReply(func(w http.ResponseWriter, r *http.Request) {
				s := h.proc.allStreams()[0]
				if !tt.openDuringUpstream {
					// Closed concurrently with forwarding: wait for it rather than race it.
					waitUntil(func() bool { return s.endErr() != nil })
				}
				openSeen <- s.endErr() == nil
				w.WriteHeader(http.StatusOK)
			})
			if code, _, _ := h.do(t, tt.req(h)); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if open := <-openSeen; open != tt.openDuringUpstream {
				t.Errorf("stream open while the upstream ran: %v, want %v", open, tt.openDuringUpstream)
			}
			s := h.proc.only(t)
			err := s.waitEnded(t)
			if !endedByEnvoy(err) {
				t.Errorf("stream ended with %v, want io.EOF or CANCELED", err)
			}
			if tt.graceful && !errors.Is(err, io.EOF) {
				t.Errorf("graceful close ended the stream with %v, want io.EOF", err)
			}
			<-s.done
			if st := h.envoy.Stats(); st.ClosedOKEarly != 0 {
				t.Errorf("ClosedOKEarly %d for a server that waited for Envoy", st.ClosedOKEarly)
			}
		})
	}
}

// A client that goes away mid-request makes Envoy close the stream; nothing goes upstream.
func TestClientDisconnectClosesTheStream(t *testing.T) {
	h := newHarness(t, signer(), nil)
	c, err := net.Dial("tcp", h.envoy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "POST /o HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\npartial")
	eventually(t, "the stream to start", func() bool { return len(h.proc.allStreams()) == 1 })
	eventually(t, "the headers message", func() bool { return len(h.proc.allStreams()[0].messages()) == 1 })
	c.Close()
	if err := h.proc.only(t).waitEnded(t); !endedByEnvoy(err) {
		t.Errorf("stream ended with %v", err)
	}
	if n := len(h.up.requests()); n != 0 {
		t.Errorf("upstream got %d requests", n)
	}
	if e := h.logs.last(t); e.Status != 0 || e.UpstreamCalled {
		t.Errorf("access log %+v", e)
	}
}

// ExtProcPerRoute.overrides.grpc_initial_metadata arrives as metadata on the stream.
func TestPerRequestMetadataIsDelivered(t *testing.T) {
	h := newHarness(t, signer(), func(c *extproctest.Config) {
		c.Metadata = func(r *http.Request) map[string]string {
			if r.Header.Get("X-Oci-Route") == "example" {
				return map[string]string{"x-oci-profile": "EXAMPLE"}
			}
			return nil
		}
	})
	req := h.newRequest(t, http.MethodGet, "/", nil)
	req.Header.Set("X-Oci-Route", "example")
	if code, _, _ := h.do(t, req); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if got := h.proc.only(t).md.Get("x-oci-profile"); len(got) != 1 || got[0] != "EXAMPLE" {
		t.Errorf("x-oci-profile metadata %q", got)
	}
}

// ExtProcPerRoute.disabled: no stream, the request goes upstream as it came.
func TestDisabledRouteOpensNoStream(t *testing.T) {
	h := newHarness(t, signer(), func(c *extproctest.Config) {
		c.Disabled = func(r *http.Request) bool { return true }
	})
	if code, _, _ := h.do(t, h.newRequest(t, http.MethodPost, "/", strings.NewReader("b"))); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if st := h.envoy.Stats(); st.StreamsStarted != 0 || len(h.proc.allStreams()) != 0 {
		t.Errorf("streams started: %d", st.StreamsStarted)
	}
	if up := h.up.only(t); string(up.Body) != "b" || up.Header.Get("X-Signed") != "" {
		t.Errorf("upstream got %q %v", up.Body, up.Header)
	}
}

// override_message_timeout restarts the timer only within [1ms, max_message_timeout]; the
// message is otherwise ignored (its answer, if any, is not looked at).
func TestOverrideMessageTimeout(t *testing.T) {
	tests := []struct {
		name         string
		max          time.Duration
		override     time.Duration
		wantReceived bool
	}{
		{"within max_message_timeout", time.Minute, 30 * time.Second, true},
		{"above max_message_timeout", 10 * time.Second, 30 * time.Second, false},
		{"max_message_timeout unset", 0, 30 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handle := func(s *procStream) error {
				if _, err := s.recv(); err != nil {
					return nil
				}
				_ = s.send(&extprocv3.ProcessingResponse{OverrideMessageTimeout: durationpb.New(tt.override)})
				_ = s.send(headersResp(setHeaders("x-signed", "headers")))
				return untilEnded(s)
			}
			h := newHarness(t, handle, func(c *extproctest.Config) { c.MaxMessageTimeout = tt.max })
			if code, _, _ := h.do(t, h.newRequest(t, http.MethodGet, "/", nil)); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			st := h.envoy.Stats()
			if (st.OverrideMessageTimeoutReceived == 1) != tt.wantReceived || st.OverrideMessageTimeoutReceived+st.OverrideMessageTimeoutIgnored != 1 {
				t.Errorf("received %d ignored %d", st.OverrideMessageTimeoutReceived, st.OverrideMessageTimeoutIgnored)
			}
		})
	}
}

// Envoy opens the stream without a timeout (ext_proc.cc Filter::openStream sets none, and
// grpc_service.timeout is never read), so no grpc-timeout reaches the server and its stream
// has no deadline.
func TestStreamHasNoDeadline(t *testing.T) {
	deadlines := make(chan bool, 1)
	handle := func(s *procStream) error {
		_, ok := s.grpc.Context().Deadline()
		deadlines <- ok
		return signer()(s)
	}
	h := newHarness(t, handle, nil)
	if code, _, _ := h.do(t, h.newRequest(t, http.MethodGet, "/", nil)); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if <-deadlines {
		t.Error("the processor's stream has a deadline")
	}
	if got := h.proc.only(t).md.Get("grpc-timeout"); len(got) != 0 {
		t.Errorf("grpc-timeout metadata %q", got)
	}
}

// A server may end the stream with OK right after its last answer instead of waiting for
// Envoy's half-close. Envoy has what it needs by then: the signed request goes upstream and
// nothing counts as unprocessed. For a BUFFERED body Envoy still holds the stream open while
// the request is upstream, so it sees the close (and ignores the processor from then on);
// for a bodiless request it closed the stream itself after the headers answer.
func TestOKCloseAfterTheLastAnswerIsHarmless(t *testing.T) {
	tests := []struct {
		name          string
		body          string
		wantAfterLast int64
	}{
		{name: "no body"},
		{name: "buffered body", body: "payload", wantAfterLast: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handle := func(s *procStream) error {
				if _, err := s.recv(); err != nil {
					return nil
				}
				if err := s.send(headersResp(setHeaders("x-signed", "headers"))); err != nil || tt.body == "" {
					return nil
				}
				if _, err := s.recv(); err != nil {
					return nil
				}
				_ = s.send(bodyResp(setHeaders("x-body-len", strconv.Itoa(len(tt.body)))))
				return nil // OK, without waiting for Envoy
			}
			h := newHarness(t, handle, nil)
			if tt.wantAfterLast > 0 {
				// The upstream answers only once Envoy has seen the close, so it is counted.
				h.up.setReply(func(w http.ResponseWriter, r *http.Request) {
					waitUntil(func() bool { return h.envoy.Stats().ClosedOKAfterLastAnswer == tt.wantAfterLast })
					w.WriteHeader(http.StatusOK)
				})
			}
			method, body := http.MethodGet, io.Reader(nil)
			if tt.body != "" {
				method, body = http.MethodPost, strings.NewReader(tt.body)
			}
			if code, _, _ := h.do(t, h.newRequest(t, method, "/", body)); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			up := h.up.only(t)
			if up.Header.Get("X-Signed") != "headers" || string(up.Body) != tt.body ||
				(tt.body != "" && up.Header.Get("X-Body-Len") != strconv.Itoa(len(tt.body))) {
				t.Errorf("upstream got %q with headers %v", up.Body, up.Header)
			}
			st := h.envoy.Stats()
			if st.ClosedOKEarly != 0 || st.ContinuedUnprocessed != 0 || st.ClosedOKAfterLastAnswer != tt.wantAfterLast {
				t.Errorf("ClosedOKEarly %d ContinuedUnprocessed %d ClosedOKAfterLastAnswer %d, want 0, 0, %d",
					st.ClosedOKEarly, st.ContinuedUnprocessed, st.ClosedOKAfterLastAnswer, tt.wantAfterLast)
			}
		})
	}
}
