package extproctest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
)

// This file is the listener's TLS: the filter chain's transport socket
// envoy.transport_sockets.tls with a DownstreamTlsContext (ssl_socket.cc,
// server_context_impl.cc), for mutual TLS at the listener. Behind it the connection
// manager serves HTTP/1.1 as on a plain listener; what the handshake learnt about the
// client certificate is the connection's, for the request attributes
// (attributes.go, context.cc SslExtractorsValues).

// DownstreamTLS is a DownstreamTlsContext.
type DownstreamTLS struct {
	// Certificate is common_tls_context.tls_certificates: the server's chain and key.
	Certificate tls.Certificate
	// ClientCAs is validation_context.trusted_ca. With it a client certificate, when one
	// is sent, must chain to one of these or the handshake fails; nil is no validation
	// context, and no client certificate is asked for.
	ClientCAs *x509.CertPool
	// RequireClientCertificate is require_client_certificate: a client without a
	// certificate fails the handshake. New refuses it without ClientCAs.
	RequireClientCertificate bool
	// MinVersion is tls_params.tls_minimum_protocol_version; 0 is Envoy's default for
	// servers, TLS 1.2.
	MinVersion uint16
}

func (d *DownstreamTLS) validate() error {
	if d == nil {
		return nil
	}
	if len(d.Certificate.Certificate) == 0 {
		return fmt.Errorf("%w: DownstreamTLS has no certificate", ErrConfig)
	}
	if d.RequireClientCertificate && d.ClientCAs == nil {
		return fmt.Errorf("%w: require_client_certificate without a validation context (no client certificate could verify)", ErrUnsupported)
	}
	return nil
}

func (d *DownstreamTLS) config() *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{d.Certificate}, MinVersion: d.MinVersion, NextProtos: nil}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	switch {
	case d.RequireClientCertificate:
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, d.ClientCAs
	case d.ClientCAs != nil:
		c.ClientAuth, c.ClientCAs = tls.VerifyClientCertIfGiven, d.ClientCAs
	}
	return c
}

// tlsListener hands the connection manager connections whose handshake is done, each
// with what it learnt (connInfo). Handshakes run on their own goroutines, as Envoy's
// event loop does not wait for one connection's handshake to accept the next.
type tlsListener struct {
	raw    net.Listener
	e      *Envoy
	cfg    *tls.Config
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func newTLSListener(e *Envoy, raw net.Listener, d *DownstreamTLS) *tlsListener {
	l := &tlsListener{raw: raw, e: e, cfg: d.config(), conns: make(chan net.Conn), closed: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			c, err := raw.Accept()
			if err != nil {
				return
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				l.handshake(c)
			}()
		}
	}()
	return l
}

func (l *tlsListener) handshake(raw net.Conn) {
	tc := tls.Server(raw, l.cfg)
	if err := tc.HandshakeContext(l.e.baseCtx); err != nil {
		l.e.stats.tlsHandshakeErrors.Add(1)
		l.e.logf("extproctest: listener handshake: %v", err)
		raw.Close()
		return
	}
	l.e.stats.tlsHandshakes.Add(1)
	st := tc.ConnectionState()
	info := &connInfo{tls: true, tlsVersion: tlsVersionName(st.Version)}
	if len(st.PeerCertificates) > 0 {
		leaf := st.PeerCertificates[0]
		info.peer = &peerCert{dns: leaf.DNSNames, subject: leaf.Subject.String()}
		for _, u := range leaf.URIs {
			info.peer.uris = append(info.peer.uris, u.String())
		}
	}
	dc := &downConn{Conn: tc, dropContinue: l.e.cfg.Proxy100Continue}
	select {
	case l.conns <- &innerConn{Conn: dc, info: info, down: dc}:
	case <-l.closed:
		tc.Close()
	}
}

func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *tlsListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		err = l.raw.Close()
	})
	return err
}

func (l *tlsListener) Addr() net.Addr { return l.raw.Addr() }

// wait returns once the accept loop and every handshake have ended; call it after Close
// and after the handshakes' context (the Envoy's base context) ended.
func (l *tlsListener) wait() { l.wg.Wait() }
