package extproctest

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// This file is CONNECT on the listener: the HTTP/1 codec and connection manager turn it
// into a request with only :authority (no :path); FilterManager::createFilterChain
// (filter_manager.cc) treats it as an upgrade of type CONNECT, refused with 403
// upgrade_failed unless upgrade_configs has CONNECT; the route is matched as for any
// request (only connect_matcher routes match in Envoy); and a route whose upgrade config
// has connect_config makes the router terminate the CONNECT: it connects to the route's
// cluster, here an internal listener, answers 200 and relays the bytes as TCP.

// serveConnect handles a CONNECT request after the codec and the connection manager
// (requestHeaders) prepared its headers.
func (f *filter) serveConnect() {
	// The HTTP/1 codec takes the authority-form target as :authority and sets no :path.
	// strip_any_host_port applies to CONNECT too: ActiveStream::decodeHeaders
	// (conn_manager_impl.cc) strips it through maybeNormalizeHost and keeps the port as
	// OriginalConnectPort filter state (HeaderUtility::stripPortFromHost has no CONNECT
	// exception any more; older Envoys kept the port of a CONNECT).
	f.reqHeaders.remove(":path")
	// The internal listener's connection manager has no upgrade_configs (FromBootstrap
	// requires it): a CONNECT inside a tunnel is refused as on a listener without them.
	if f.cfg.Intercept == nil || connInfoFrom(f.r.Context()) != nil {
		f.reply = &localReply{status: http.StatusForbidden, details: "upgrade_failed"}
		f.sendLocalReply()
		return
	}
	f.route = f.matchRoute()
	if !f.chainDisabled() {
		// ext_proc would see the CONNECT headers and then the tunnel as the body; the
		// stand-in does not reproduce that (ocisigner disables ext_proc on these routes).
		f.unsupported("ext_proc on a CONNECT request")
		f.sendLocalReply()
		return
	}
	switch {
	case f.route.Direct != nil:
		f.forward() // the router answers with the direct_response
	case f.route.TerminateConnect:
		f.tunnel()
	default:
		f.unsupported("CONNECT forwarded upstream without connect_config")
		f.sendLocalReply()
	}
}

// chainDisabled reports whether every ext_proc filter of the chain is disabled on the
// current route (each filter's own disabled, as decode reads it).
func (f *filter) chainDisabled() bool {
	main := f.cfg
	defer func() { f.cfg = main }()
	for _, b := range main.before {
		if f.cfg = b; !f.disabled() {
			return false
		}
	}
	f.cfg = main
	return f.disabled()
}

// tunnel is the router's CONNECT termination (upgrade_configs connect_config) into the
// internal listener: the upstream connection is an in-process one, ready at once, so the
// 200 goes out straight away and the rest of the client's bytes are that connection.
func (f *filter) tunnel() {
	conn, brw, err := f.rc.Hijack()
	if err != nil {
		f.unsupported("CONNECT on a connection that cannot be taken over: " + err.Error())
		f.sendLocalReply()
		return
	}
	f.e.stats.connectTerminated.Add(1)
	f.upstreamCalled = true
	f.upstreamAddr = "envoy_internal"
	f.status, f.details, f.wrote = http.StatusOK, "via_upstream", true
	// The HTTP/1 codec's 200 to a CONNECT has no framing headers; the connection manager
	// adds date and server (mutateResponseHeaders).
	resp := "HTTP/1.1 200 OK\r\ndate: " + time.Now().UTC().Format(http.TimeFormat) + "\r\nserver: envoy\r\n\r\n"
	if err = brw.Writer.Flush(); err == nil {
		_, err = conn.Write([]byte(resp))
	}
	if err != nil {
		conn.Close()
		return
	}
	f.logRespHeaders = &headerList{}
	f.logRespHeaders.insert(":status", "200")
	var fs map[string]string
	if key := f.cfg.Intercept.AuthorityFilterState; key != "" && f.cfg.Intercept.InternalUpstream {
		// set_filter_state stored %REQ(:AUTHORITY)% on the request, shared with the
		// upstream; internal_upstream hands it to the internal connection
		// (PassthroughStateImpl::mergeInto, LifeSpan::Connection).
		authority, _ := f.reqHeaders.get(":authority")
		fs = map[string]string{key: authority}
	}
	f.e.internal.serve(&prefixedConn{Conn: conn, r: brw.Reader}, fs)
}

// prefixedConn is a taken-over connection whose first bytes may already sit in the server's
// read buffer.
type prefixedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *prefixedConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

// closeNotifyConn reports when whoever serves it closes it.
type closeNotifyConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func newCloseNotifyConn(c net.Conn) *closeNotifyConn {
	return &closeNotifyConn{Conn: c, closed: make(chan struct{})}
}

func (c *closeNotifyConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}
