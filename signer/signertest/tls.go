package signertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"
)

// NewTLSServer starts a Server that speaks TLS, as OCI's endpoints do, with
// a certificate naming hosts (DNS names; "*.domain" wildcards allowed) from
// a CA of its own: a client trusts it through CertPool. URL is
// https://127.0.0.1:port. Received.TLSServerName records the SNI of each
// request's connection. t.Cleanup closes it.
func NewTLSServer(t testing.TB, hosts ...string) *Server {
	t.Helper()
	ca, err := newCA("signertest OCI CA", nil)
	if err != nil {
		t.Fatalf("signertest: %v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("signertest: server key: %v", err)
	}
	now := time.Now()
	cert, err := ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "signertest OCI endpoint"},
		DNSNames:    hosts,
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.AddDate(1, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, &key.PublicKey)
	if err != nil {
		t.Fatalf("signertest: server certificate: %v", err)
	}
	s := newServer(t, &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}},
	})
	s.pool = x509.NewCertPool()
	s.pool.AddCert(ca.cert)
	return s
}

// CertPool holds the CA of a NewTLSServer's certificate (nil for NewServer).
func (s *Server) CertPool() *x509.CertPool { return s.pool }
