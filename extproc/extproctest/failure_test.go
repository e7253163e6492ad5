package extproctest_test

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// readThen reads n messages, then does what end says (return its error, or block).
func readThen(n int, end func(s *procStream) error) func(*procStream) error {
	return func(s *procStream) error {
		for i := 0; i < n; i++ {
			if _, err := s.recv(); err != nil {
				return nil
			}
		}
		return end(s)
	}
}

// untilEnded blocks until Envoy ends the stream: a processor that never answers.
func untilEnded(s *procStream) error {
	for {
		if _, err := s.recv(); err != nil {
			return nil
		}
	}
}

// Failing closed: with failure_mode_allow false every processor failure is a local reply
// and nothing goes upstream; a timeout is 504, everything else status_on_error.
func TestProcessorFailuresFailClosed(t *testing.T) {
	wrongType := func(s *procStream) error {
		// An answer to response headers that were never sent.
		return s.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
			ResponseHeaders: &extprocv3.HeadersResponse{}}})
	}
	tests := []struct {
		name        string
		handle      func(*procStream) error
		edit        func(*extproctest.Config)
		wantCode    int
		wantDetails string // prefix of the response code details
		stat        func(extproctest.Stats) int64
	}{
		{
			name:        "gRPC error",
			handle:      readThen(1, func(*procStream) error { return status.Error(codes.Internal, "signing failed") }),
			wantCode:    http.StatusInternalServerError,
			wantDetails: "ext_proc_error_gRPC_error_13{signing_failed}",
			stat:        func(s extproctest.Stats) int64 { return s.LocalRepliesGRPCError },
		},
		{
			name:     "gRPC error with status_on_error",
			handle:   readThen(1, func(*procStream) error { return status.Error(codes.Unavailable, "down") }),
			edit:     func(c *extproctest.Config) { c.StatusOnError = http.StatusServiceUnavailable },
			wantCode: http.StatusServiceUnavailable,
			stat:     func(s extproctest.Stats) int64 { return s.LocalRepliesGRPCError },
		},
		{
			name:        "message timeout",
			handle:      untilEnded,
			edit:        func(c *extproctest.Config) { c.MessageTimeout = 50 * time.Millisecond },
			wantCode:    http.StatusGatewayTimeout,
			wantDetails: "ext_proc_error_per-message_timeout_exceeded",
			stat:        func(s extproctest.Stats) int64 { return s.LocalRepliesTimeout },
		},
		{
			name:        "answer of the wrong type",
			handle:      readThen(1, wrongType),
			wantCode:    http.StatusInternalServerError,
			wantDetails: "spurious_message",
			stat:        func(s extproctest.Stats) int64 { return s.LocalRepliesSpurious },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.handle, tt.edit)
			code, _, _ := h.do(t, h.newRequest(t, http.MethodPost, "/", strings.NewReader("body")))
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d", code, tt.wantCode)
			}
			if n := len(h.up.requests()); n != 0 {
				t.Errorf("upstream got %d requests: the request leaked unprocessed", n)
			}
			if got := tt.stat(h.envoy.Stats()); got != 1 {
				t.Errorf("local reply counter %d, want 1", got)
			}
			if tt.wantDetails != "" {
				if d := h.logs.last(t).ResponseCodeDetails; !strings.HasPrefix(d, tt.wantDetails) {
					t.Errorf("details %q, want %q", d, tt.wantDetails)
				}
			}
		})
	}
}

// A processor nobody listens on gives the client status_on_error, not an unsigned request.
func TestUnreachableProcessorFailsClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	h := newHarness(t, untilEnded, func(c *extproctest.Config) { c.Processor = dead })
	code, _, _ := h.do(t, h.newRequest(t, http.MethodGet, "/", nil))
	if code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", code)
	}
	if n := len(h.up.requests()); n != 0 {
		t.Errorf("upstream got %d requests", n)
	}
	if st := h.envoy.Stats(); st.LocalRepliesGRPCError != 1 {
		t.Errorf("LocalRepliesGRPCError %d", st.LocalRepliesGRPCError)
	}
}

// The trap: a stream the server ends with status OK while Envoy still waits makes Envoy
// carry on without the processor. The request goes upstream unprocessed, and the stand-in
// counts it.
func TestOKCloseBeforeAnsweringForwardsUnprocessed(t *testing.T) {
	tests := []struct {
		name     string
		handle   func(*procStream) error
		wantSign string // what the processor's headers answer left upstream
	}{
		{
			name:   "before the headers answer",
			handle: readThen(1, func(*procStream) error { return nil }),
		},
		{
			name: "after the headers answer, before the body answer",
			handle: readThen(1, func(s *procStream) error {
				_ = s.send(headersResp(setHeaders("x-signed", "headers")))
				return nil
			}),
			wantSign: "headers",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.handle, nil)
			code, _, _ := h.do(t, h.newRequest(t, http.MethodPost, "/", strings.NewReader("payload")))
			if code != http.StatusOK {
				t.Fatalf("status %d: Envoy forwards in this case", code)
			}
			up := h.up.only(t)
			if string(up.Body) != "payload" || up.Header.Get("X-Signed") != tt.wantSign {
				t.Errorf("upstream got %q, x-signed %q", up.Body, up.Header.Get("X-Signed"))
			}
			st := h.envoy.Stats()
			if st.ClosedOKEarly != 1 || st.ContinuedUnprocessed != 1 {
				t.Errorf("ClosedOKEarly %d ContinuedUnprocessed %d, want 1 and 1", st.ClosedOKEarly, st.ContinuedUnprocessed)
			}
		})
	}
}

// With failure_mode_allow the same failures let the request through unprocessed.
func TestFailureModeAllowContinuesUnprocessed(t *testing.T) {
	tests := []struct {
		name   string
		handle func(*procStream) error
		edit   func(*extproctest.Config)
	}{
		{"gRPC error", readThen(1, func(*procStream) error { return status.Error(codes.Internal, "x") }), nil},
		{"message timeout", untilEnded, func(c *extproctest.Config) { c.MessageTimeout = 50 * time.Millisecond }},
		{"answer of the wrong type", readThen(1, func(s *procStream) error {
			_ = s.send(bodyResp(nil))
			return untilEnded(s)
		}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.handle, func(c *extproctest.Config) {
				c.FailureModeAllow = true
				if tt.edit != nil {
					tt.edit(c)
				}
			})
			if code, _, _ := h.do(t, h.newRequest(t, http.MethodPost, "/", strings.NewReader("payload"))); code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			if got := string(h.up.only(t).Body); got != "payload" {
				t.Errorf("upstream body %q", got)
			}
			st := h.envoy.Stats()
			if st.FailureModeAllowed != 1 || st.ContinuedUnprocessed != 1 {
				t.Errorf("FailureModeAllowed %d ContinuedUnprocessed %d", st.FailureModeAllowed, st.ContinuedUnprocessed)
			}
		})
	}
}

// The stream of a buffered body stays open until the upstream answers, so a server that
// ends it with an error after its last answer still fails the request, even though the
// request is already upstream.
func TestErrorAfterTheLastAnswerStillFails(t *testing.T) {
	handle := func(s *procStream) error {
		if _, err := s.recv(); err != nil {
			return nil
		}
		_ = s.send(headersResp(nil))
		if _, err := s.recv(); err != nil {
			return nil
		}
		_ = s.send(bodyResp(setHeaders("x-signed", "body")))
		return status.Error(codes.Internal, "cleanup failed")
	}
	h := newHarness(t, handle, nil)
	// The upstream answers only once Envoy has seen the error.
	h.up.setReply(func(w http.ResponseWriter, r *http.Request) {
		waitUntil(func() bool { return h.envoy.Stats().StreamsFailed == 1 })
		w.WriteHeader(http.StatusOK)
	})
	code, _, _ := h.do(t, h.newRequest(t, http.MethodPost, "/", strings.NewReader("payload")))
	if code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", code)
	}
}
