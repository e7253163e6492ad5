package extproc_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/internal/envoyconfig"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// identities is a shared gateway's world for a test: the workload CA that
// issues client certificates (the gateway's own included), and the
// cluster's service-account token signer with its JWKS, written where the
// shared-gateway envoy.yaml reads them (Endpoints.Files).
type identities struct {
	t      *testing.T
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	jwtKey *rsa.PrivateKey
	files  map[string]string
}

// kubeIssuer is the service-account token issuer of the shared-gateway
// envoy.yaml's jwt_authn provider.
const kubeIssuer = "https://kubernetes.default.svc.cluster.local"

func newIdentities(t *testing.T) *identities {
	t.Helper()
	id := &identities{t: t, jwtKey: signertest.Key(t, 7), files: map[string]string{}}
	var err error
	if id.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "workload CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &id.caKey.PublicKey, id.caKey)
	if err != nil {
		t.Fatal(err)
	}
	id.caCert, _ = x509.ParseCertificate(der)
	id.pool = x509.NewCertPool()
	id.pool.AddCert(id.caCert)
	dir := t.TempDir()
	write := func(envoyPath, name string, data []byte) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		id.files[envoyPath] = p
	}
	write("/etc/envoy/tls/ca.crt", "ca.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	serverCert, serverKey := id.issue(pkix.Name{CommonName: "gateway"}, nil, []net.IP{net.IPv4(127, 0, 0, 1)}, x509.ExtKeyUsageServerAuth)
	write("/etc/envoy/tls/tls.crt", "tls.crt", serverCert)
	write("/etc/envoy/tls/tls.key", "tls.key", serverKey)
	pub := &id.jwtKey.PublicKey
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "sa-1", "alg": "RS256", "use": "sig",
		"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()), "e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())}}})
	write("/etc/envoy/jwks/jwks.json", "jwks.json", jwks)
	return id
}

// issue makes a certificate of the workload CA, as PEM chain and key.
func (id *identities) issue(subject pkix.Name, uris []string, ips []net.IP, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	id.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		id.t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subject, IPAddresses: ips,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			id.t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, id.caCert, &key.PublicKey, id.caKey)
	if err != nil {
		id.t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

// client is an HTTP client presenting a certificate with this SPIFFE ID
// (none for ""), trusting the gateway's certificate.
func (id *identities) client(spiffeID string) *http.Client {
	id.t.Helper()
	var uris []string
	if spiffeID != "" {
		uris = []string{spiffeID}
	}
	c, k := id.issue(pkix.Name{CommonName: "workload", Organization: []string{"Example"}}, uris, nil, x509.ExtKeyUsageClientAuth)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		id.t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: id.pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	id.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// saToken is a service-account token of the cluster for namespace:name,
// for the audience the gateway accepts, signed with the JWKS's key.
func (id *identities) saToken(namespace, name string) string {
	id.t.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": kubeIssuer, "sub": "system:serviceaccount:" + namespace + ":" + name, "aud": []string{"ocisigner"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"kubernetes.io": map[string]any{"namespace": namespace, "serviceaccount": map[string]any{"name": name, "uid": "0b3c"}},
	})
	tok.Header["kid"] = "sa-1"
	s, err := tok.SignedString(id.jwtKey)
	if err != nil {
		id.t.Fatal(err)
	}
	secret(s)
	return s
}

// sharedGatewayFile is deploy/shared-gateway/envoy.yaml, loaded once.
var sharedGatewayFile = sync.OnceValues(func() ([]byte, error) {
	_, file, _, _ := runtime.Caller(0)
	return os.ReadFile(filepath.Join(filepath.Dir(file), "..", "deploy", "shared-gateway", "envoy.yaml"))
})

// sharedConfig is the Envoy stand-in configured by the shared-gateway
// envoy.yaml, rendered for this test as the shipped one is (shippedConfig),
// with this test's certificates and JWKS.
func (id *identities) sharedConfig(signer, upstream string) extproctest.Config {
	id.t.Helper()
	data, err := sharedGatewayFile()
	if err != nil {
		id.t.Fatal(err)
	}
	c, err := id.configFrom(data, signer, upstream)
	if err != nil {
		id.t.Fatal(err)
	}
	return c
}

// configFrom renders an Envoy bootstrap for this test and reads it into the
// stand-in's configuration.
func (id *identities) configFrom(data []byte, signer, upstream string) (extproctest.Config, error) {
	bs, err := envoyconfig.Load(data)
	if err != nil {
		return extproctest.Config{}, err
	}
	r, err := envoyconfig.ForTest(bs, envoyconfig.Endpoints{Listen: "127.0.0.1:1", Admin: "127.0.0.1:2", Signer: signer, Upstream: upstream, Files: id.files})
	if err != nil {
		return extproctest.Config{}, err
	}
	return extproctest.FromBootstrap(r, map[string]string{envoyconfig.SignerCluster: signer, envoyconfig.OCICluster: upstream})
}
