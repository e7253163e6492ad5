package extproctest_test

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
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// workloadCA issues the certificates of the mTLS tests.
type workloadCA struct {
	t    *testing.T
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newWorkloadCA(t *testing.T) *workloadCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &workloadCA{t: t, cert: cert, key: key, pool: pool}
}

func (ca *workloadCA) issue(subject pkix.Name, uris, dns []string, ips []net.IP, usage x509.ExtKeyUsage) tls.Certificate {
	ca.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subject, DNSNames: dns, IPAddresses: ips,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	for _, u := range uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// mtlsHarness is a harness whose listener requires client certificates of ca.
func mtlsHarness(t *testing.T, ca *workloadCA, edit func(*extproctest.Config)) *harness {
	t.Helper()
	server := ca.issue(pkix.Name{CommonName: "gateway"}, nil, nil, []net.IP{net.IPv4(127, 0, 0, 1)}, x509.ExtKeyUsageServerAuth)
	return newHarness(t, signer(), func(c *extproctest.Config) {
		c.DownstreamTLS = &extproctest.DownstreamTLS{Certificate: server, ClientCAs: ca.pool, RequireClientCertificate: true}
		if edit != nil {
			edit(c)
		}
	})
}

func tlsClient(ca *workloadCA, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: guard, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool, Certificates: certs}}}
}

var peerAttrs = []string{"connection.mtls", "connection.uri_san_peer_certificate", "connection.dns_san_peer_certificate",
	"connection.subject_peer_certificate", "connection.tls_version"}

// The client certificate Envoy validated reaches the processor as the
// request attributes context.cc gives: the FIRST URI SAN and the FIRST DNS
// SAN only, the subject in RFC 2253 order, connection.mtls true. A client's
// x-forwarded-client-cert is dropped by the connection manager (SANITIZE).
func TestDownstreamMTLSPeerAttributes(t *testing.T) {
	ca := newWorkloadCA(t)
	h := mtlsHarness(t, ca, func(c *extproctest.Config) { c.RequestAttributes = peerAttrs })
	client := tlsClient(ca, ca.issue(pkix.Name{CommonName: "builder", Organization: []string{"Example"}},
		[]string{"spiffe://cluster.local/ns/a/sa/builder", "https://second.example/"}, []string{"b.example", "c.example"}, nil, x509.ExtKeyUsageClientAuth))
	req := h.newRequest(t, http.MethodGet, "/n/", nil)
	req.Header.Set("X-Forwarded-Client-Cert", "By=x;URI=spiffe://forged")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	msg := h.proc.only(t).messages()[0]
	want, _ := structpb.NewStruct(map[string]any{"connection.mtls": true, "connection.uri_san_peer_certificate": "spiffe://cluster.local/ns/a/sa/builder",
		"connection.dns_san_peer_certificate": "b.example", "connection.subject_peer_certificate": "CN=builder,O=Example", "connection.tls_version": "TLSv1.3"})
	if got := attributes(msg); !proto.Equal(got, want) {
		t.Errorf("attributes %v, want %v", got, want)
	}
	if _, ok := headerValue(msg.GetRequestHeaders(), "x-forwarded-client-cert"); ok {
		t.Error("the client's x-forwarded-client-cert reached the processor")
	}
	if !strings.HasPrefix(h.envoy.URL(), "https://") {
		t.Errorf("URL %s", h.envoy.URL())
	}
}

// Without a certificate, or with one of another CA, the handshake fails and
// no request reaches the processor; a certificate without SANs gives no
// SAN attributes (absent, not empty) and the subject.
func TestDownstreamMTLSRequiresACertificateOfTheCA(t *testing.T) {
	ca := newWorkloadCA(t)
	h := mtlsHarness(t, ca, func(c *extproctest.Config) { c.RequestAttributes = peerAttrs })
	other := newWorkloadCA(t)
	for name, client := range map[string]*http.Client{
		"no certificate": tlsClient(ca),
		"another CA's":   tlsClient(ca, other.issue(pkix.Name{CommonName: "x"}, []string{"spiffe://cluster.local/ns/a/sa/builder"}, nil, nil, x509.ExtKeyUsageClientAuth)),
	} {
		if resp, err := client.Do(h.newRequest(t, http.MethodGet, "/n/", nil)); err == nil {
			resp.Body.Close()
			t.Errorf("%s: accepted", name)
		}
	}
	if n := len(h.proc.allStreams()); n != 0 {
		t.Fatalf("%d streams opened", n)
	}
	client := tlsClient(ca, ca.issue(pkix.Name{CommonName: "plain"}, nil, nil, nil, x509.ExtKeyUsageClientAuth))
	resp, err := client.Do(h.newRequest(t, http.MethodGet, "/n/", nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want, _ := structpb.NewStruct(map[string]any{"connection.mtls": true, "connection.subject_peer_certificate": "CN=plain", "connection.tls_version": "TLSv1.3"})
	if got := attributes(h.proc.only(t).messages()[0]); !proto.Equal(got, want) {
		t.Errorf("attributes %v, want %v", got, want)
	}
}

// jwtFixture is a provider's key and JWKS.
type jwtFixture struct {
	key  *rsa.PrivateKey
	jwks []byte
}

func newJWTFixture(t *testing.T) jwtFixture {
	key := signertest.Key(t, 8)
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "RSA", "kid": "k1", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()), "e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes())}}})
	return jwtFixture{key: key, jwks: jwks}
}

func (j jwtFixture) token(t *testing.T, claims jwt.MapClaims) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(j.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jwtConfig(j jwtFixture, requires extproctest.JWTRequirement) func(*extproctest.Config) {
	return func(c *extproctest.Config) {
		c.JWTAuthn = &extproctest.JWTAuthn{
			Providers: map[string]extproctest.JWTProvider{"k8s": {Issuer: "https://issuer.test", Audiences: []string{"ocisigner"}, JWKS: j.jwks,
				PayloadInMetadata: "k8s", FromHeaders: []extproctest.JWTHeader{{Name: "authorization", ValuePrefix: "Bearer "}}}},
			Rules: []extproctest.JWTRule{{Prefix: "/", Requires: requires}},
		}
		c.ForwardingNamespaces = []string{extproctest.JWTAuthnNamespace}
	}
}

// jwt_authn with requires_any [provider, allow_missing_or_failed]: a valid
// token's payload reaches the processor as forwarded metadata and the token
// is removed (forward: false); a Bearer that is no JWT, or a token that does
// not verify, goes on as it came, without metadata.
func TestJWTAuthnPayloadInMetadata(t *testing.T) {
	j := newJWTFixture(t)
	h := newHarness(t, signer(), jwtConfig(j, extproctest.JWTRequirement{RequiresAny: []extproctest.JWTRequirement{
		{ProviderName: "k8s"}, {AllowMissingOrFailed: true}}}))
	exp := time.Now().Add(time.Hour).Unix()
	good := j.token(t, jwt.MapClaims{"iss": "https://issuer.test", "sub": "system:serviceaccount:a:b", "aud": "ocisigner", "exp": exp})
	forged := j.token(t, jwt.MapClaims{"iss": "https://issuer.test", "sub": "x", "aud": "ocisigner", "exp": exp})
	forged = forged[:len(forged)-4] + "AAAA"
	for i, tc := range []struct {
		auth     string
		metadata bool
	}{
		{"Bearer " + good, true},
		{"Bearer ocisk_notajwt", false},
		{"Bearer " + forged, false},
		{"", false},
	} {
		req := h.newRequest(t, http.MethodGet, "/n/", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		if status, _, body := h.do(t, req); status != http.StatusOK {
			t.Fatalf("%d: %d %s", i, status, body)
		}
		msg := h.proc.allStreams()[i].messages()[0]
		md := msg.GetMetadataContext().GetFilterMetadata()[extproctest.JWTAuthnNamespace]
		auth, hasAuth := headerValue(msg.GetRequestHeaders(), "authorization")
		switch {
		case tc.metadata && (md.GetFields()["k8s"].GetStructValue().GetFields()["sub"].GetStringValue() != "system:serviceaccount:a:b" || hasAuth):
			t.Errorf("%d: metadata %v, authorization kept %v", i, md, hasAuth)
		case !tc.metadata && (md != nil || auth != tc.auth):
			t.Errorf("%d: metadata %v, authorization %q", i, md, auth)
		}
	}
}

// A provider requirement refuses as filter.cc onComplete does: 401 with
// jwt_verify_lib's status and WWW-Authenticate for a missing, expired or
// forged token, 403 for another audience; no stream is opened.
func TestJWTAuthnRefusals(t *testing.T) {
	j := newJWTFixture(t)
	h := newHarness(t, signer(), jwtConfig(j, extproctest.JWTRequirement{ProviderName: "k8s"}))
	now := time.Now()
	claims := func(aud string, exp time.Time) jwt.MapClaims {
		return jwt.MapClaims{"iss": "https://issuer.test", "sub": "s", "aud": aud, "exp": exp.Unix()}
	}
	other := newJWTFixture(t)
	other.key = signertest.Key(t, 9)
	for _, tc := range []struct {
		name, auth string
		status     int
		body       string
	}{
		{"missing", "", 401, "Jwt is missing"},
		{"expired", "Bearer " + j.token(t, claims("ocisigner", now.Add(-time.Hour))), 401, "Jwt is expired"},
		{"another audience", "Bearer " + j.token(t, claims("other", now.Add(time.Hour))), 403, "Audiences in Jwt are not allowed"},
		{"another key", "Bearer " + other.token(t, claims("ocisigner", now.Add(time.Hour))), 401, "Jwt verification fails"},
		{"not a JWT", "Bearer ocisk_x", 401, "Jwt is not in the form of Header.Payload.Signature"},
	} {
		req := h.newRequest(t, http.MethodGet, "/n/", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		status, hdr, body := h.do(t, req)
		if status != tc.status || body != tc.body || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), `Bearer realm="http://`) {
			t.Errorf("%s: %d %q (www-authenticate %q)", tc.name, status, body, hdr.Get("WWW-Authenticate"))
		}
	}
	if n := len(h.proc.allStreams()); n != 0 {
		t.Errorf("%d streams opened", n)
	}
}
