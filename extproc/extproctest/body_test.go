package extproctest_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// In BUFFERED mode the whole body reaches the processor as one message with end_of_stream,
// and the body answer's header mutation is applied before anything goes upstream.
func TestBufferedBodyIsOneMessageAndItsMutationsGoUpstream(t *testing.T) {
	h := newHarness(t, signer(), nil)
	body := bytes.Repeat([]byte("0123456789abcdef"), 40<<10) // 640 KiB: many reads, one message
	if code, _, _ := h.do(t, h.newRequest(t, http.MethodPost, "/upload", bytes.NewReader(body))); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	msgs := h.proc.only(t).messages()
	if len(msgs) != 2 {
		t.Fatalf("got %d messages, want headers then one body", len(msgs))
	}
	if msgs[0].GetRequestHeaders().GetEndOfStream() {
		t.Error("headers carry end_of_stream although a body follows")
	}
	b := msgs[1].GetRequestBody()
	if !b.GetEndOfStream() || !bytes.Equal(b.GetBody(), body) {
		t.Errorf("body message: end_of_stream %v, %d bytes, want all %d", b.GetEndOfStream(), len(b.GetBody()), len(body))
	}
	up := h.up.only(t)
	if up.Header.Get("X-Body-Len") != "655360" || up.Header.Get("X-Signed") != "headers" {
		t.Errorf("upstream headers %v lack the processor's mutations", up.Header)
	}
	if !bytes.Equal(up.Body, body) || up.ContentLength != int64(len(body)) {
		t.Errorf("upstream body %d bytes, Content-Length %d", len(up.Body), up.ContentLength)
	}
}

// Over the buffer limit Envoy answers 413 and never sends the body to the processor or the
// upstream; the stream is closed under the processor.
func TestBufferedBodyOverTheLimitGets413(t *testing.T) {
	h := newHarness(t, signer(), func(c *extproctest.Config) { c.BodyBufferLimit = 1024 })
	wantTooLarge(t, h, h.newRequest(t, http.MethodPost, "/big", strings.NewReader(strings.Repeat("x", 4096))))
}

// wantTooLarge sends r and checks Envoy's answer to a BUFFERED body past the limit: its own
// 413, with nothing sent on, neither to the upstream nor, as a body, to the processor (the
// 413 may even beat the stream to the processor; a stream that got there was ended without
// a body).
func wantTooLarge(t *testing.T, h *harness, r *http.Request) {
	t.Helper()
	code, _, body := h.do(t, r)
	if code != http.StatusRequestEntityTooLarge || body != "Payload Too Large" {
		t.Fatalf("got %d %q, want 413 Payload Too Large", code, body)
	}
	if n := len(h.up.requests()); n != 0 {
		t.Errorf("upstream got %d requests", n)
	}
	for _, s := range h.proc.allStreams() {
		s.waitEnded(t)
		for _, m := range s.messages() {
			if m.GetRequestBody() != nil {
				t.Error("an over-limit body was sent to the processor")
			}
		}
	}
	if st := h.envoy.Stats(); st.LocalRepliesTooLarge != 1 {
		t.Errorf("LocalRepliesTooLarge %d", st.LocalRepliesTooLarge)
	}
	if d := h.logs.last(t).ResponseCodeDetails; d != "request_payload_too_large" {
		t.Errorf("details %q", d)
	}
}

// A body of exactly the limit passes (Envoy's watermark trips above it, not at it).
func TestBufferedBodyAtTheLimitPasses(t *testing.T) {
	h := newHarness(t, signer(), func(c *extproctest.Config) { c.BodyBufferLimit = 1024 })
	if code, _, _ := h.do(t, h.newRequest(t, http.MethodPost, "/", strings.NewReader(strings.Repeat("x", 1024)))); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
}

// What goes upstream for a chunked request: Envoy drops Transfer-Encoding before filters
// and its codec frames the upstream request from the final header map, so a processor that
// sets content-length turns it into a Content-Length request, and one that does not leaves
// it chunked. A Content-Length request keeps its length in BUFFERED mode.
func TestChunkedRequestFraming(t *testing.T) {
	chunked := "POST /o HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
	tests := []struct {
		name     string
		request  string
		mode     *extprocfilterv3.ProcessingMode
		setCL    bool
		want     []string
		wantNot  []string
		wantSeen string // the transfer-encoding the processor saw, if any
	}{
		{
			name:    "processor sets content-length",
			request: chunked,
			setCL:   true,
			want:    []string{"content-length: 11\r\n", "\r\n\r\nhello world"},
			wantNot: []string{"transfer-encoding"},
		},
		{
			name:    "processor sets nothing",
			request: chunked,
			want:    []string{"transfer-encoding: chunked\r\n"},
			wantNot: []string{"content-length"},
		},
		{
			name:    "body mode NONE streams chunked",
			request: chunked,
			mode:    mode(extprocfilterv3.ProcessingMode_NONE),
			want:    []string{"transfer-encoding: chunked\r\n"},
			wantNot: []string{"content-length"},
		},
		{
			name:    "content-length request keeps its length",
			request: "POST /o HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
			want:    []string{"content-length: 5\r\n", "\r\n\r\nhello"},
			wantNot: []string{"transfer-encoding"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ru := startRawUpstream(t)
			answer := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				switch {
				case req.GetRequestHeaders() != nil:
					return headersResp(nil)
				case req.GetRequestBody() != nil && tt.setCL:
					return bodyResp(setHeaders("content-length", "11"))
				case req.GetRequestBody() != nil:
					return bodyResp(nil)
				}
				return nil
			})
			h := newHarness(t, answer, func(c *extproctest.Config) {
				c.Upstream = ru.ln.Addr().String()
				c.ProcessingMode = tt.mode
			})
			if resp, _ := raw(t, h.envoy.Addr(), tt.request); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			checkUpstream(t, ru.next(t), tt.want, tt.wantNot)
			if _, ok := headerValue(h.proc.only(t).messages()[0].GetRequestHeaders(), "transfer-encoding"); ok {
				t.Error("the processor saw transfer-encoding")
			}
		})
	}
}

// Envoy 1.40 keeps Content-Length in BUFFERED mode, so a body mutation whose length differs
// from it is refused with a local reply; setting the matching length in the same answer works.
func TestBodyMutationMustMatchContentLength(t *testing.T) {
	tests := []struct {
		name     string
		setCL    string
		wantCode int
	}{
		{"length left stale", "", http.StatusInternalServerError},
		{"length updated", "7", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				switch {
				case req.GetRequestHeaders() != nil:
					return headersResp(nil)
				case req.GetRequestBody() != nil:
					var m *extprocv3.HeaderMutation
					if tt.setCL != "" {
						m = setHeaders("content-length", tt.setCL)
					}
					return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
						RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
							HeaderMutation: m,
							BodyMutation:   &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte("changed")}},
						}}}}
				}
				return nil
			})
			h := newHarness(t, answer, nil)
			code, _, _ := h.do(t, h.newRequest(t, http.MethodPost, "/", strings.NewReader("original")))
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d", code, tt.wantCode)
			}
			if tt.wantCode == http.StatusOK {
				if got := string(h.up.only(t).Body); got != "changed" {
					t.Errorf("upstream body %q", got)
				}
			} else if d := h.logs.last(t).ResponseCodeDetails; d != "mismatch_between_content_length_and_the_length_of_the_mutated_body" {
				t.Errorf("details %q", d)
			}
		})
	}
}

// CONTINUE_AND_REPLACE on the request headers with a body mutation replaces the body,
// removes Content-Length (the upstream request goes chunked) and ends processing.
func TestContinueAndReplaceReplacesTheBody(t *testing.T) {
	answer := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if req.GetRequestHeaders() == nil {
			return nil
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
			RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
				Status:       extprocv3.CommonResponse_CONTINUE_AND_REPLACE,
				BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte("replacement")}},
			}}}}
	})
	h := newHarness(t, answer, nil)
	if code, _, _ := h.do(t, h.newRequest(t, http.MethodPost, "/", strings.NewReader("original body"))); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	up := h.up.only(t)
	if string(up.Body) != "replacement" || len(up.TransferEncoding) != 1 || up.TransferEncoding[0] != "chunked" {
		t.Errorf("upstream body %q, transfer-encoding %v", up.Body, up.TransferEncoding)
	}
	for _, m := range h.proc.only(t).messages() {
		if m.GetRequestBody() != nil {
			t.Error("body sent to the processor after CONTINUE_AND_REPLACE")
		}
	}
}
