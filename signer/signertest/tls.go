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
	ca, cert := serverCertificate(t, "signertest OCI CA", x509.Certificate{
		Subject: pkix.Name{CommonName: "signertest OCI endpoint"}, DNSNames: hosts})
	s := newServer(t, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}})
	s.pool = x509.NewCertPool()
	s.pool.AddCert(ca)
	return s
}

// serverCertificate makes a CA of its own named caName and a server
// certificate it issues, valid for a year, with the subject and names of
// leaf (an ECDSA P-256 key).
func serverCertificate(t testing.TB, caName string, leaf x509.Certificate) (*x509.Certificate, tls.Certificate) {
	t.Helper()
	ca, err := newCA(caName, nil)
	if err != nil {
		t.Fatalf("signertest: %v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("signertest: server key: %v", err)
	}
	now := time.Now()
	leaf.NotBefore, leaf.NotAfter = now.Add(-time.Hour), now.AddDate(1, 0, 0)
	leaf.KeyUsage, leaf.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	cert, err := ca.issue(&leaf, &key.PublicKey)
	if err != nil {
		t.Fatalf("signertest: server certificate: %v", err)
	}
	return ca.cert, tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// CertPool holds the CA of a NewTLSServer's certificate (nil for NewServer).
func (s *Server) CertPool() *x509.CertPool { return s.pool }
