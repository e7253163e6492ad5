package extproctest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// This file is what Envoy's HTTP/1 codec and HTTP connection manager do to a request before
// any filter sees it (source/common/http/http1/codec_impl.cc,
// source/common/http/conn_manager_impl.cc, source/common/http/conn_manager_utility.cc), and
// to a response before it leaves.

// internalHeaders are the x-envoy-* headers cleanInternalHeaders strips from a request that
// is not internal. With use_remote_address false (Envoy's default) and no X-Forwarded-For, a
// request is never internal, and not "edge" either, so the decorator/downstream-service
// headers stay.
var internalHeaders = []string{
	"x-envoy-retriable-status-codes", "x-envoy-retriable-header-names", "x-envoy-retry-on",
	"x-envoy-retry-grpc-on", "x-envoy-max-retries", "x-envoy-upstream-alt-stat-name",
	"x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
	"x-envoy-upstream-rq-timeout-alt-response", "x-envoy-expected-rq-timeout-ms",
	"x-envoy-force-trace", "x-envoy-ip-tags", "x-envoy-original-url",
	"x-envoy-hedge-on-per-try-timeout",
}

// headerXFCC is removed from every request before any filter runs:
// ConnectionManagerUtility::mutateXfccRequestHeader with forward_client_cert_details
// SANITIZE, Envoy's default and the only one FromBootstrap accepts. A client's
// x-forwarded-client-cert never reaches a filter.
const headerXFCC = "x-forwarded-client-cert"

// errTooManyHeaders makes the codec answer 431, as Envoy does past max_headers_count.
var errTooManyHeaders = fmt.Errorf("too many request headers")

// requestHeaders builds the header map the ext_proc filter sees.
//
// The order of ordinary headers is not the wire order (net/http does not keep it): they are
// sorted by name, after the pseudo-headers, and the headers the connection manager adds come
// last. Envoy keeps wire order; no ext_proc server should depend on order.
func requestHeaders(r *http.Request, stripPort, proxy100Continue bool) (*headerList, error) {
	count := 1 // Host
	for _, vs := range r.Header {
		count += len(vs)
	}
	if count > maxHeadersCount {
		return nil, errTooManyHeaders
	}

	h := &headerList{}
	authority, path, scheme := r.Host, r.RequestURI, ""
	// Absolute-form request targets: the codec takes :authority and :path (raw) from the URL.
	if i := strings.Index(path, "://"); i > 0 && !strings.HasPrefix(path, "/") {
		scheme = strings.ToLower(path[:i])
		rest := path[i+3:]
		j := strings.IndexAny(rest, "/?")
		if j < 0 {
			authority, path = rest, "/"
		} else {
			authority, path = rest[:j], rest[j:]
			if strings.HasPrefix(path, "?") {
				path = "/" + path
			}
		}
	}
	if stripPort {
		authority = stripHostPort(authority)
	}
	h.insert(":authority", authority)
	h.insert(":path", path)
	h.insert(":method", r.Method)

	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		key := strings.ToLower(k)
		if key == "host" {
			continue // net/http moved it to r.Host; Envoy holds it as :authority
		}
		for _, v := range r.Header[k] {
			h.add(key, v)
		}
	}

	// ConnectionManagerUtility::mutateRequestHeaders.
	h.remove("connection")
	h.remove("upgrade")
	sanitizeTE(h)
	h.remove("x-envoy-internal")
	h.remove("keep-alive")
	h.remove("proxy-connection")
	h.remove("transfer-encoding")
	if !h.has("x-forwarded-proto") {
		// ConnectionManagerUtility::mutateRequestHeaders sets a missing one from the
		// connection: https on a TLS connection (the internal listener), http otherwise.
		xfp := "http"
		if ci := connInfoFrom(r.Context()); ci != nil && ci.tls {
			xfp = "https"
		}
		h.add("x-forwarded-proto", xfp)
	}
	if scheme == "" {
		scheme = "http"
		if xfp, _ := h.get("x-forwarded-proto"); xfp == "http" || xfp == "https" {
			scheme = xfp
		}
	}
	h.insert(":scheme", scheme)
	for _, k := range internalHeaders {
		h.remove(k)
	}
	h.remove(headerXFCC)
	if !h.has("x-request-id") {
		h.add("x-request-id", uuid4())
	}
	// ActiveStream::decodeHeaders (conn_manager_impl.cc): with proxy_100_continue off Envoy
	// answers 100-continue itself, before any filter runs, and drops the header; with it on
	// the header stays and the only 100 the client gets is the upstream's, relayed by the
	// router (Filter::onUpstream1xxHeaders) once the request has been forwarded.
	if v, ok := h.get("expect"); ok && strings.EqualFold(v, "100-continue") && !proxy100Continue {
		h.remove("expect")
	}
	return h, nil
}

// expectsContinue reports a request whose client waits for 100 Continue before its body.
func expectsContinue(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Expect"), "100-continue")
}

// continueLine is the 100 Continue net/http writes on the first read of such a body.
var continueLine = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// downConn is a downstream connection. With proxy_100_continue Envoy never answers 100
// Continue itself, but net/http does so on the first read of the body, which the stand-in
// does whenever Envoy would read: so those bytes are dropped here, and the upstream's 100
// is written by writeInformational instead. net/http writes its 100 as one flush of exactly
// continueLine, on a connection with nothing else pending.
type downConn struct {
	net.Conn
	dropContinue bool
	mu           sync.Mutex
}

func (c *downConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropContinue && bytes.Equal(p, continueLine) {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// writeInformational writes a 1xx response straight to the client. Only call it before the
// handler has written anything: net/http's buffered writer is empty then.
func (c *downConn) writeInformational(p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.Conn.Write(p)
	return err
}

// downListener wraps accepted connections in downConn.
type downListener struct {
	net.Listener
	dropContinue bool
}

func (l downListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &downConn{Conn: c, dropContinue: l.dropContinue}, nil
}

type downConnKey struct{}

// encodeInformational is the HTTP/1 codec's encode1xxHeaders after the connection manager
// stripped hop-by-hop headers (ActiveStream::encode1xxHeaders): no date or server header.
func encodeInformational(resp *http.Response) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode))
	names := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		key := strings.ToLower(k)
		switch key {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			continue
		}
		for _, v := range resp.Header[k] {
			fmt.Fprintf(&b, "%s: %s\r\n", key, v)
		}
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// sanitizeTE keeps "te: trailers" and drops any other TE value.
func sanitizeTE(h *headerList) {
	v, ok := h.get("te")
	if !ok {
		return
	}
	for _, part := range strings.Split(v, ",") {
		if tok, _, _ := strings.Cut(part, ";"); strings.TrimSpace(tok) == "trailers" {
			h.set("te", "trailers")
			return
		}
	}
	h.remove("te")
}

// stripHostPort is strip_any_host_port.
func stripHostPort(authority string) string {
	if host, _, err := net.SplitHostPort(authority); err == nil {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return authority
}

// isUpgrade is Utility::isUpgrade. Without upgrade_configs Envoy refuses upgrades with 403.
func isUpgrade(r *http.Request) bool {
	if r.Header.Get("Upgrade") == "" {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// hasBody is how the codec decides end_stream on the headers. HTTP/1: a chunked request
// always has a body (even an empty one, delivered as an empty data frame with end_stream),
// Content-Length: 0 or no length means headers only. HTTP/2 (the internal listener): the
// HEADERS frame's END_STREAM, which net/http reports as a ContentLength of 0; a body of
// unknown length is -1.
func hasBody(r *http.Request) bool {
	if r.ProtoMajor == 2 {
		return r.ContentLength != 0
	}
	for _, te := range r.TransferEncoding {
		if strings.EqualFold(te, "chunked") {
			return true
		}
	}
	return r.ContentLength > 0
}

// uuid4 is the x-request-id Envoy generates.
func uuid4() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// finishResponseHeaders is ActiveStream::encodeHeaders plus mutateResponseHeaders: a date if
// there is none, server: envoy, no hop-by-hop headers, and connection: close when the
// connection is to be closed after this response (filter.closesConnection).
func finishResponseHeaders(h *headerList, closing bool) {
	if !h.has("date") {
		h.add("date", time.Now().UTC().Format(http.TimeFormat))
	}
	h.set("server", "envoy")
	h.remove("connection")
	h.remove("transfer-encoding")
	h.remove("keep-alive")
	h.remove("proxy-connection")
	if closing {
		// net/http closes the connection after a response that says so.
		h.set("connection", "close")
	}
}

// closesConnection is ActiveStream::encodeHeaders (conn_manager_impl.cc) for a response
// encoded before the request is complete (!filter_manager_.remoteDecodeComplete()): on a
// connection without multiplexing (protocol < Http2) it sets drain_state_ Closing, so the
// response carries connection: close (unless it opens a tunnel, isConnectResponse) and the
// connection is closed after it; Envoy does not wait for the rest of the request, and the
// client's next request goes on a new connection rather than after an unread body. A CONNECT
// is never complete: the HTTP/1 codec hands the rest of the connection to the stream.
func (f *filter) closesConnection(resp *headerList) bool {
	if f.r.ProtoMajor >= 2 {
		return false
	}
	if f.r.Method == http.MethodConnect {
		status, _ := resp.get(":status")
		return status != "200" // HeaderUtility::isConnectResponse
	}
	if !f.hasBody {
		return false
	}
	select {
	case <-f.dsBody.eof:
		return false
	default:
		return true
	}
}

// writeResponseHeaders copies a response header map to net/http. Names are written in Go's
// canonical case (Envoy writes lowercase; HTTP/1 names are case-insensitive) because
// net/http only recognises Content-Length and friends in that form.
func writeResponseHeaders(w http.ResponseWriter, h *headerList) int {
	status := http.StatusOK
	dst := w.Header()
	for _, kv := range h.kv {
		if kv.key == ":status" {
			fmt.Sscanf(kv.value, "%d", &status)
			continue
		}
		if strings.HasPrefix(kv.key, ":") {
			continue
		}
		k := http.CanonicalHeaderKey(kv.key)
		dst[k] = append(dst[k], kv.value)
	}
	if _, ok := dst["Content-Type"]; !ok {
		dst["Content-Type"] = nil // no content sniffing: Envoy sends no type it was not given
	}
	if status < 100 || status > 999 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	return status
}
