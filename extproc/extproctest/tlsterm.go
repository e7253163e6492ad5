package extproctest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// This file is the internal listener a terminated CONNECT connects to
// (envoy.bootstrap.internal_listener): its tls_inspector, its filter chain's TLS transport
// socket with the on-demand certificate selector and the sni mapper, the
// transport_socket_connect_timeout, and the connection manager's codec choice. Behind it
// run the same connection manager, ext_proc, dynamic forward proxy and router as on the
// listener (Envoy.ServeHTTP), on HTTP/1.1 or HTTP/2 served by net/http.

// validate refuses what Envoy refuses when it loads such a listener.
func (ic *Intercept) validate() error {
	if ic == nil {
		return nil
	}
	switch {
	case ic.SDS == "":
		return fmt.Errorf("%w: Intercept.SDS is empty", ErrConfig)
	case ic.DefaultSNI == "":
		// sni mapper config: default_value has min_len 1.
		return fmt.Errorf("%w: Intercept.DefaultSNI is empty (the sni mapper's default_value is required)", ErrConfig)
	case !ic.DisableStatelessSessionResumption || !ic.DisableStatefulSessionResumption:
		// OnDemandTlsCertificateSelectorConfigFactory::createTlsCertificateSelectorFactory.
		return fmt.Errorf("%w: On demand certificates are not integrated with session resumption support "+
			"(set both Intercept.DisableStatelessSessionResumption and DisableStatefulSessionResumption)", ErrConfig)
	case ic.TransportSocketConnectTimeout < 0:
		return fmt.Errorf("%w: negative Intercept.TransportSocketConnectTimeout", ErrConfig)
	}
	for _, p := range ic.ALPN {
		if p == "" || len(p) > 255 {
			// ContextImpl::parseAlpnProtocols.
			return fmt.Errorf("%w: invalid ALPN protocol string %q", ErrConfig, p)
		}
	}
	return nil
}

// internalListener serves the connections of terminated CONNECTs.
type internalListener struct {
	e       *Envoy
	cfg     *Intercept
	secrets *secretManager
	// One server per codec: HTTP/1.1, HTTP/2, and AUTO for a connection without ALPN,
	// where net/http looks for the HTTP/2 preface as Envoy does.
	h1, h2, auto       *http.Server
	h1ln, h2ln, autoln *connListener
	serving            sync.WaitGroup
	// tlsConfig is the filter chain's one server context, shared by its connections as
	// Envoy shares an SSL_CTX; what differs per connection travels on handshakeConn.
	tlsConfig *tls.Config
}

func newInternalListener(e *Envoy) (*internalListener, error) {
	cfg := e.cfg.Intercept
	conn, err := grpc.NewClient(cfg.SDS,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: e.cfg.ConnectTimeout,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("extproctest: dial SDS %q: %w", cfg.SDS, err)
	}
	l := &internalListener{e: e, cfg: cfg, secrets: newSecretManager(e, conn)}
	l.tlsConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			return l.selectContext(hello, hello.Conn.(*handshakeConn))
		},
	}
	var p1, p2, pAuto http.Protocols
	p1.SetHTTP1(true)
	p2.SetUnencryptedHTTP2(true)
	pAuto.SetHTTP1(true)
	pAuto.SetUnencryptedHTTP2(true)
	l.h1, l.h1ln = l.newServer(&p1), newConnListener()
	l.h2, l.h2ln = l.newServer(&p2), newConnListener()
	l.auto, l.autoln = l.newServer(&pAuto), newConnListener()
	for _, s := range []struct {
		srv *http.Server
		ln  *connListener
	}{{l.h1, l.h1ln}, {l.h2, l.h2ln}, {l.auto, l.autoln}} {
		l.serving.Add(1)
		go func() {
			defer l.serving.Done()
			_ = s.srv.Serve(s.ln)
		}()
	}
	return l, nil
}

// newServer serves decrypted connections: each is a plain net.Conn to net/http, which
// is what the connection manager sees behind the TLS transport socket.
func (l *internalListener) newServer(p *http.Protocols) *http.Server {
	return &http.Server{
		Handler:           l.e,
		Protocols:         p,
		MaxHeaderBytes:    maxHeadersBytes,
		ReadHeaderTimeout: time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			ic, ok := c.(*innerConn)
			if !ok {
				return ctx
			}
			ctx = context.WithValue(ctx, connInfoKey{}, ic.info)
			return context.WithValue(ctx, downConnKey{}, ic.down)
		},
	}
}

// close stops the servers, closing the connections they serve.
func (l *internalListener) close() {
	for _, s := range []*http.Server{l.h1, l.h2, l.auto} {
		_ = s.Close()
	}
	l.serving.Wait()
}

// serve is one connection to the internal listener, for as long as it lasts. Only call it
// from a handler (Close waits for it).
func (l *internalListener) serve(raw net.Conn, filterState map[string]string) {
	ctx := l.e.baseCtx
	if d := l.cfg.TransportSocketConnectTimeout; d > 0 {
		// ServerConnectionImpl::setTransportSocketConnectTimeout: armed when the filter
		// chain is chosen, disarmed by the Connected event (the end of the handshake).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	info := &connInfo{tls: true, filterState: filterState}
	tc := tls.Server(&handshakeConn{Conn: raw, info: info}, l.tlsConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		l.e.stats.tlsHandshakeErrors.Add(1)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// onTransportSocketConnectTimeout: closeConnectionImmediately, no alert.
			l.e.stats.connectTimeouts.Add(1)
		}
		l.e.logf("extproctest: internal listener handshake: %v", err)
		raw.Close()
		return
	}
	l.e.stats.tlsHandshakes.Add(1)
	st := tc.ConnectionState()
	info.tlsVersion = tlsVersionName(st.Version)

	conn := newCloseNotifyConn(tc)
	dc := &downConn{Conn: conn, dropContinue: l.e.cfg.Proxy100Continue}
	ic := &innerConn{Conn: dc, info: info, down: dc}
	// ConnectionManagerUtility::determineNextProtocol: the ALPN result decides; without
	// one, the HTTP/2 preface at the start of the data means HTTP/2, anything else HTTP/1.
	ln := l.h1ln
	switch st.NegotiatedProtocol {
	case "h2":
		ln = l.h2ln
	case "":
		ln = l.autoln
	}
	if !ln.push(ic) {
		conn.Close()
		return
	}
	select {
	case <-conn.closed:
	case <-l.e.baseCtx.Done():
		conn.Close()
	}
}

// selectContext runs when the ClientHello has been read, before any answer: the
// tls_inspector's result, then the on-demand selector (AsyncSelector::selectTlsContext),
// which pauses the handshake until the name's secret is there, and the server's ALPN choice.
func (l *internalListener) selectContext(hello *tls.ClientHelloInfo, guard *handshakeConn) (*tls.Config, error) {
	info := guard.info
	if l.cfg.TLSInspector {
		// tls_inspector.cc: setRequestedServerName when the ClientHello carries SNI.
		info.requestedServerName = hello.ServerName
	}
	// sni mapper deriveFromClientHello: the SNI as sent, or default_value without one.
	name := hello.ServerName
	if name == "" {
		name = l.cfg.DefaultSNI
	}
	cert, err := l.secrets.fetch(hello.Context(), name)
	if err != nil {
		if errors.Is(err, errSecretRemoved) {
			// A failed selection makes the select-certificate callback return
			// ssl_select_cert_error (server_context_impl.cc), and BoringSSL answers with
			// a handshake_failure alert.
			guard.alert(alertHandshakeFailure)
		} else {
			// The connect timeout (or shutdown) closes the connection without an alert.
			guard.mute()
		}
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*cert},
		NextProtos:   selectALPN(l.cfg.ALPN, hello.SupportedProtos),
		// The selector only exists with both kinds of resumption off; Go servers have no
		// session ID cache, so no tickets means no resumption at all.
		SessionTicketsDisabled: true,
	}, nil
}

// selectALPN is ServerContextImpl::alpnSelectCallback: SSL_select_next_proto with the
// server's list first, so the server's preference wins; no overlap is SSL_TLSEXT_ERR_NOACK
// (no ALPN, the handshake goes on).
func selectALPN(server, client []string) []string {
	for _, p := range server {
		if slices.Contains(client, p) {
			return []string{p}
		}
	}
	return nil
}

func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	}
	return "unknown"
}

// alertHandshakeFailure is SSL_AD_HANDSHAKE_FAILURE.
const alertHandshakeFailure = 40

// handshakeConn lets the stand-in end a handshake the way BoringSSL does where crypto/tls
// would differ: Go answers a failed GetConfigForClient with an internal_error alert, Envoy
// with handshake_failure (refusal) or with nothing at all (timeout).
type handshakeConn struct {
	net.Conn
	info  *connInfo
	mu    sync.Mutex
	muted bool
}

var errMuted = errors.New("extproctest: handshake ended")

func (c *handshakeConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.muted {
		return 0, errMuted
	}
	return c.Conn.Write(p)
}

// alert sends a fatal alert in a plaintext record (nothing was negotiated yet) and mutes
// the connection.
func (c *handshakeConn) alert(desc byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.muted {
		_, _ = c.Conn.Write([]byte{21, 3, 1, 0, 2, 2, desc})
	}
	c.muted = true
}

func (c *handshakeConn) mute() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.muted = true
}

// innerConn is a decrypted connection handed to net/http, with what Envoy knows about it.
type innerConn struct {
	net.Conn
	info *connInfo
	down *downConn
}

// connListener hands connections to an http.Server.
type connListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return internalAddr{} }

func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

// internalAddr is an envoy_internal_address.
type internalAddr struct{}

func (internalAddr) Network() string { return "envoy_internal" }
func (internalAddr) String() string  { return "envoy_internal" }
