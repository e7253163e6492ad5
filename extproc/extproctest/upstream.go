package extproctest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The router's side: an HTTP/1.1 client that writes the request exactly as Envoy's HTTP/1
// codec would (source/common/http/http1/codec_impl.cc, RequestEncoderImpl and
// StreamEncoderImpl::encodeHeadersBase), which net/http's client does not: it would add
// User-Agent and Accept-Encoding, canonicalise names and choose its own framing.

const maxIdleUpstreamConns = 1024

type upstreamPool struct {
	addr   string
	tls    *tls.Config // nil: plain HTTP/1.1
	mu     sync.Mutex
	idle   []*upConn
	closed bool
}

type upConn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
}

func newUpstreamPool(addr string) *upstreamPool { return &upstreamPool{addr: addr} }

// get returns an idle connection that is still open, or dials.
func (p *upstreamPool) get(ctx context.Context) (*upConn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, net.ErrClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		uc := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if uc.alive() {
			return uc, nil
		}
		uc.c.Close()
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	if p.tls != nil {
		tc := tls.Client(c, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	return &upConn{c: c, br: bufio.NewReaderSize(c, 64<<10), bw: bufio.NewWriterSize(c, 64<<10)}, nil
}

// alive reports that an idle connection was not closed by the upstream meanwhile (it
// neither reads EOF nor holds unexpected bytes).
func (uc *upConn) alive() bool {
	_ = uc.c.SetReadDeadline(time.Now().Add(-time.Second))
	_, err := uc.br.Peek(1)
	_ = uc.c.SetReadDeadline(time.Time{})
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (p *upstreamPool) put(uc *upConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle) >= maxIdleUpstreamConns {
		uc.c.Close()
		return
	}
	p.idle = append(p.idle, uc)
}

func (p *upstreamPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, uc := range p.idle {
		uc.c.Close()
	}
	p.idle = nil
}

// upstreamRequest is a request as the codec will write it.
type upstreamRequest struct {
	method, path string
	headers      []headerKV // in order, host first, framing headers included
	body         io.Reader  // nil: no body
	chunked      bool
	length       int64 // the content-length header's value when not chunked, -1 if none
}

// encodeUpstream turns the filter chain's request header map into the codec's request.
// :authority becomes host; other pseudo-headers are not sent. Framing follows
// encodeHeadersBase: a content-length header is used as is; without one, a request that
// ends with its headers gets "content-length: 0" (except GET, HEAD, DELETE, TRACE and
// CONNECT, HeaderUtility::requestShouldHaveNoBody) and any other is sent chunked.
func encodeUpstream(h *headerList, body io.Reader) *upstreamRequest {
	req := &upstreamRequest{length: -1, body: body}
	req.method, _ = h.get(":method")
	req.path, _ = h.get(":path")
	if a, ok := h.get(":authority"); ok {
		req.headers = append(req.headers, headerKV{"host", a})
	}
	for _, kv := range h.kv {
		if strings.HasPrefix(kv.key, ":") {
			continue
		}
		req.headers = append(req.headers, kv)
	}
	if cl, ok := h.get("content-length"); ok {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil {
			req.length = n
		}
		return req
	}
	if body == nil {
		switch req.method {
		case http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodTrace, http.MethodConnect:
		default:
			req.headers = append(req.headers, headerKV{"content-length", "0"})
			req.length = 0
		}
		return req
	}
	req.headers = append(req.headers, headerKV{"transfer-encoding", "chunked"})
	req.chunked = true
	return req
}

// exchange is one request/response on an upstream connection.
type exchange struct {
	pool      *upstreamPool
	uc        *upConn
	stop      func() bool   // detaches the cancellation hook
	written   chan struct{} // closed when the writer is done
	writeErr  error         // valid once written is closed
	mismatch  bool          // body length differed from content-length: connection unusable
	resp      *http.Response
	respEOF   bool
	finishOne sync.Once
}

// upstreamError says where an upstream exchange failed, for Envoy's 503 details.
type upstreamError struct {
	reason string // connection_failure, connection_termination
	err    error
}

func (e *upstreamError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

// start sends the request and returns once the response headers are read. The writer runs
// on its own goroutine (spawned with spawn) so a large body streams while the response may
// already be coming back. Whenever a connection was obtained the exchange is returned, even
// with an error, and the caller must finish it.
func (p *upstreamPool) start(ctx context.Context, req *upstreamRequest, spawn func(func()), informational func(*http.Response)) (*exchange, error) {
	uc, err := p.get(ctx)
	if err != nil {
		return nil, &upstreamError{reason: "connection_failure", err: err}
	}
	x := &exchange{pool: p, uc: uc, written: make(chan struct{})}
	x.stop = context.AfterFunc(ctx, func() { uc.c.Close() })
	spawn(func() {
		defer close(x.written)
		if x.writeErr = x.write(req); x.writeErr != nil {
			uc.c.Close() // the request is broken: so is the exchange
		}
	})
	var resp *http.Response
	for {
		resp, err = http.ReadResponse(uc.br, &http.Request{Method: req.method})
		if err != nil {
			uc.c.Close()
			return x, &upstreamError{reason: "connection_termination", err: err}
		}
		// 101 is not expected since upgrades are refused. Other 1xx go to informational,
		// which relays or drops them.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if informational != nil {
			informational(resp)
		}
	}
	x.resp = resp
	return x, nil
}

func (x *exchange) write(req *upstreamRequest) error {
	bw := x.uc.bw
	fmt.Fprintf(bw, "%s %s HTTP/1.1\r\n", req.method, req.path)
	for _, kv := range req.headers {
		bw.WriteString(kv.key)
		bw.WriteString(": ")
		bw.WriteString(kv.value)
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	if req.body != nil {
		// The headers go out before the body, as Envoy's codec sends them: an upstream that
		// answers "Expect: 100-continue" must see them while the body is still held back.
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	buf := make([]byte, 32<<10)
	switch {
	case req.body == nil:
		if req.length > 0 {
			x.mismatch = true
		}
	case req.chunked:
		cw := httputil.NewChunkedWriter(bw)
		if _, err := io.CopyBuffer(writerOnly{cw}, req.body, buf); err != nil {
			return err
		}
		if err := cw.Close(); err != nil {
			return err
		}
		bw.WriteString("\r\n")
	default:
		// Envoy writes the data it has, whatever content-length says; the upstream then
		// sees a short or overlong request, and the connection is not reused.
		n, err := io.CopyBuffer(writerOnly{bw}, req.body, buf)
		if err != nil {
			return err
		}
		if n != req.length {
			x.mismatch = true
		}
	}
	return bw.Flush()
}

// writerOnly hides ReadFrom so copies go through our buffer in large writes.
type writerOnly struct{ io.Writer }

// body is the response body; it notes when it was read to the end.
func (x *exchange) body() io.Reader { return respReader{x} }

type respReader struct{ x *exchange }

func (r respReader) Read(p []byte) (int, error) {
	n, err := r.x.resp.Body.Read(p)
	if errors.Is(err, io.EOF) {
		r.x.respEOF = true
	}
	return n, err
}

// abandon breaks the connection, unblocking a writer stuck on the upstream.
func (x *exchange) abandon() { x.uc.c.Close() }

// finish releases the connection once the writer is done: back to the pool if the
// exchange completed cleanly, closed otherwise. The caller makes sure the writer is not
// blocked on the downstream body.
func (x *exchange) finish() {
	x.finishOne.Do(func() {
		if x.resp == nil || !x.respEOF {
			x.uc.c.Close()
		}
		<-x.written
		detached := x.stop()
		if x.resp == nil {
			return
		}
		_ = x.resp.Body.Close()
		if detached && x.respEOF && x.writeErr == nil && !x.mismatch && !x.resp.Close {
			x.pool.put(x.uc)
			return
		}
		x.uc.c.Close()
	})
}
