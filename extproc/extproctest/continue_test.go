package extproctest_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// continueUpstream answers "Expect: 100-continue" with a 100 that carries a header of its own,
// so the client can tell the upstream's 100 from one Envoy made up, then reads the body and
// answers 200 with the body and the expect header it got.
func continueUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				expect := req.Header.Get("Expect")
				if strings.EqualFold(expect, "100-continue") {
					_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\nx-continue-from: upstream\r\n\r\n")
				}
				b, _ := io.ReadAll(req.Body)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nx-upstream-expect: "+expect+"\r\ncontent-length: "+
					strconv.Itoa(len(b))+"\r\nconnection: close\r\n\r\n"+string(b))
			}()
		}
	}()
	return ln.Addr().String()
}

// With proxy_100_continue an upload's client gets its 100 only from the upstream, so only
// after the processor answered the headers and the request was forwarded (the processor
// switches this one to NONE, as ocisigner does for PutObject): nothing reaches Envoy's
// buffer before the answer, so nothing can overflow it. The client here is raw: it sends
// the body only after reading a 100, and checks whose 100 it was.
func TestProxy100ContinueHoldsTheUploadUntilTheUpstreamsContinue(t *testing.T) {
	h := newHarness(t, overrideTo(mode(extprocfilterv3.ProcessingMode_NONE)), func(c *extproctest.Config) {
		c.Upstream = continueUpstream(t)
		c.Proxy100Continue = true
		c.AllowModeOverride = true
		c.BodyBufferLimit = 16 // far less than the body: any early buffering would be a 413
	})
	body := strings.Repeat("o", 4096)
	c, err := net.DialTimeout("tcp", h.envoy.Addr(), guard)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(guard))
	_, _ = io.WriteString(c, "PUT /n/ns/b/bucket/o/obj HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n")
	br := bufio.NewReader(c)
	cont, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the 100: %v", err)
	}
	if cont.StatusCode != http.StatusContinue || cont.Header.Get("X-Continue-From") != "upstream" {
		t.Fatalf("first response %d %v, want the upstream's 100", cont.StatusCode, cont.Header)
	}
	_, _ = io.WriteString(c, body)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(got) != body || resp.Header.Get("X-Upstream-Expect") != "100-continue" {
		t.Fatalf("got %d (%d bytes) with %v", resp.StatusCode, len(got), resp.Header)
	}
	if v, ok := headerValue(h.proc.only(t).messages()[0].GetRequestHeaders(), "expect"); !ok || v != "100-continue" {
		t.Errorf("the processor saw expect %q, %v; it stays with proxy_100_continue", v, ok)
	}
}

// The cost of proxy_100_continue: a BUFFERED body is needed before anything is forwarded, so
// no 100 can come, and a client that expects one sends its body only when it stops waiting
// (curl after 1 s; this client after ExpectContinueTimeout). The request still completes,
// signed over the whole body.
func TestProxy100ContinueBufferedBodyWaitsForTheClient(t *testing.T) {
	h := newHarness(t, signer(), func(c *extproctest.Config) {
		c.Upstream = continueUpstream(t)
		c.Proxy100Continue = true
	})
	h.client.Transport.(*http.Transport).ExpectContinueTimeout = 50 * time.Millisecond
	req := h.newRequest(t, http.MethodPost, "/20160918/x", strings.NewReader(`{"a":1}`))
	req.Header.Set("Expect", "100-continue")
	code, hdr, body := h.do(t, req)
	if code != http.StatusOK || body != `{"a":1}` {
		t.Fatalf("got %d %q", code, body)
	}
	if hdr.Get("X-Upstream-Expect") != "100-continue" {
		t.Errorf("upstream expect %q", hdr.Get("X-Upstream-Expect"))
	}
	msgs := h.proc.only(t).messages()
	if len(msgs) != 2 || string(msgs[1].GetRequestBody().GetBody()) != `{"a":1}` {
		t.Errorf("the processor did not get the whole body: %v", msgs)
	}
}
