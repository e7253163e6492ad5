package extproctest_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// An HTTP/1.0 CONNECT (Python's http.client before 3.12 sends one) gets 426
// unless accept_http_10 is on, as any HTTP/1.0 request does; with it on, the
// tunnel works as with HTTP/1.1.
func TestHTTP10ConnectNeedsAcceptHTTP10(t *testing.T) {
	for _, accept := range []bool{false, true} {
		t.Run(fmt.Sprintf("accept_http_10=%v", accept), func(t *testing.T) {
			h := newIntercept(t, mintAll, func(c *extproctest.Config) { c.AcceptHTTP10 = accept })
			c, err := net.DialTimeout("tcp", h.envoy.Addr(), guard)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(guard))
			fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.0\r\n\r\n", ociHost)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil {
				t.Fatal(err)
			}
			if !accept {
				if resp.StatusCode != http.StatusUpgradeRequired || h.envoy.Stats().ConnectTerminated != 0 {
					t.Fatalf("got %d, want 426 and no tunnel", resp.StatusCode)
				}
				return
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("got %d, want 200", resp.StatusCode)
			}
			tc := tls.Client(c, h.clientTLS(ociHost, "http/1.1"))
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", ociHost)
			if r, err := http.ReadResponse(bufio.NewReader(tc), nil); err != nil || r.StatusCode != http.StatusOK {
				t.Fatalf("request in the tunnel: %v %v", r, err)
			}
		})
	}
}
