package extproctest_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// A reply sent before the client's body has arrived closes the HTTP/1 connection
// (connection: close, then the end of the connection), as Envoy's ActiveStream::encodeHeaders
// does: what follows on the wire is the rest of a refused request and must never be read as
// the client's next one. Here that rest is itself a request, which must not reach the
// upstream. A reply after the whole body keeps the connection for the next request.
func TestReplyBeforeTheBodyEndsClosesTheConnection(t *testing.T) {
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name      string
		refuseAt  string // "headers" or "body"
		early     bool   // the body is sent with the headers, before the reply
		wantClose bool
	}{
		{"refused at the headers, the body not yet sent", "headers", false, true},
		{"refused at the body", "body", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				h := req.GetRequestHeaders()
				if h != nil {
					if m, _ := headerValue(h, ":method"); m != http.MethodPost {
						return headersResp(nil)
					}
				}
				if (tt.refuseAt == "headers" && h != nil) || (tt.refuseAt == "body" && req.GetRequestBody() != nil) {
					return immediate(typev3.StatusCode_Forbidden, "refused", "refused", nil)
				}
				if h != nil {
					return headersResp(nil)
				}
				return nil
			})
			h := newHarness(t, answer, func(c *extproctest.Config) {
				c.ProcessingMode = mode(extprocfilterv3.ProcessingMode_BUFFERED)
			})
			c, err := net.DialTimeout("tcp", strings.TrimPrefix(h.envoy.URL(), "http://"), guard)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(guard))
			post := fmt.Sprintf("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(smuggled))
			if tt.early {
				post += smuggled
			}
			if _, err := io.WriteString(c, post); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the reply: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusForbidden || resp.Close != tt.wantClose {
				t.Fatalf("reply %d with connection: close %v, want 403 and %v", resp.StatusCode, resp.Close, tt.wantClose)
			}
			if !tt.wantClose {
				if _, err := io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				next, err := http.ReadResponse(br, nil)
				if err != nil || next.StatusCode != http.StatusOK {
					t.Fatalf("the next request on the kept connection: %v %v", next, err)
				}
				return
			}
			// The client goes on sending the body it had started.
			_, _ = io.WriteString(c, smuggled)
			if b, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the reply the connection gave %q, %v; want its end", b, err)
			}
			for _, r := range h.up.requests() {
				t.Errorf("the upstream got %s %s", r.Method, r.RequestURI)
			}
		})
	}
}
