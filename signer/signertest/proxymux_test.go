package signertest

import (
	"bytes"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdkauth "github.com/oracle/oci-go-sdk/v65/common/auth"
)

// pmClient trusts the proxymux's CA, as a pod trusts its ca.crt.
func pmClient(t *testing.T, p *Proxymux) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.CAPEM()) {
		t.Fatal("CAPEM holds no certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// podKeyBody is the body oci-go-sdk sends: the session public key's whole
// PEM under "podKey".
func podKeyBody(t *testing.T, pub *rsa.PublicKey) []byte {
	return mustJSON(t, map[string]string{"podKey": string(publicKeyPEM(t, pub))})
}

// pmRequest is a token request as oci-go-sdk makes it; edit changes it.
func pmRequest(t *testing.T, p *Proxymux, body []byte, edit func(*http.Request)) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.URL(), bytes.NewBuffer(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Add("Authorization", "Bearer "+p.ServiceAccountToken())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("opc-request-id", "C0FFEE0123456789ABCDEF0123456789")
	if edit != nil {
		edit(req)
	}
	resp, err := pmClient(t, p).Do(req)
	return readResponse(t, resp, err)
}

// workloadToken reads the answer as oci-go-sdk does: drop the quotes,
// base64-decode, read "token", drop "ST$".
func workloadToken(t *testing.T, r response) string {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status = %d, body %s", r.Status, r.Body)
	}
	var quoted string // the body is a JSON string literal
	if err := json.Unmarshal(r.Body, &quoted); err != nil || string(r.Body) != `"`+quoted+`"` {
		t.Fatalf("body %s is not a plain JSON string: %v", r.Body, err)
	}
	inner, err := base64.StdEncoding.DecodeString(string(r.Body[1 : len(r.Body)-1]))
	if err != nil {
		t.Fatalf("body is not base64: %v", err)
	}
	var tok struct{ Token string }
	if err := json.Unmarshal(inner, &tok); err != nil {
		t.Fatalf("decoded body %s: %v", inner, err)
	}
	raw, ok := strings.CutPrefix(tok.Token, "ST$")
	if !ok {
		t.Fatalf("token %q does not start with ST$", tok.Token)
	}
	return raw
}

func TestProxymuxIssuesWorkloadToken(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		set         func(t *testing.T, p *Proxymux)
		lifetime    time.Duration
		sub, tenant string
	}{
		{name: "defaults", lifetime: time.Hour, sub: defaultWorkloadSubject, tenant: defaultWorkloadTenancy},
		{name: "configured lifetime", set: func(_ *testing.T, p *Proxymux) { p.SetLifetime(10 * time.Minute) },
			lifetime: 10 * time.Minute, sub: defaultWorkloadSubject, tenant: defaultWorkloadTenancy},
		{name: "configured identity", set: func(_ *testing.T, p *Proxymux) {
			p.setIdentity("ocid1.workload.oc1..w", "ocid1.tenancy.oc1..t")
		},
			lifetime: time.Hour, sub: "ocid1.workload.oc1..w", tenant: "ocid1.tenancy.oc1..t"},
		{name: "rotated service account token", set: func(t *testing.T, p *Proxymux) {
			p.SetServiceAccountToken(NewServiceAccountToken(t, "apps", "reader", time.Now().Add(time.Hour)))
		},
			lifetime: time.Hour, sub: defaultWorkloadSubject, tenant: defaultWorkloadTenancy},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			is := NewIssuer(t)
			p := NewProxymux(t, is)
			p.SetClock(func() time.Time { return testNow })
			if tc.set != nil {
				tc.set(t, p)
			}
			key := Key(t, 1)
			r := pmRequest(t, p, podKeyBody(t, &key.PublicKey), nil)
			raw := workloadToken(t, r)
			pub, tok, err := is.Verify(raw)
			if err != nil {
				t.Fatalf("workload token does not verify: %v", err)
			}
			if !samePublicKey(pub, &key.PublicKey) {
				t.Error("token's jwk is not the podKey")
			}
			if tok.PrincipalType != "resource" || tok.Subject != tc.sub || tok.Tenant != tc.tenant {
				t.Errorf("ptype, sub, tenant = %q %q %q", tok.PrincipalType, tok.Subject, tok.Tenant)
			}
			if !tok.IssuedAt.Equal(testNow) || !tok.Expiry.Equal(testNow.Add(tc.lifetime)) || !tok.SessionEnd.IsZero() {
				t.Errorf("iat, exp, sess_exp = %v, %v, %v", tok.IssuedAt, tok.Expiry, tok.SessionEnd)
			}
			reqs := p.Requests()
			if len(reqs) != 1 || reqs[0].Token != raw || reqs[0].Status != http.StatusOK || reqs[0].RequestID != "C0FFEE0123456789ABCDEF0123456789" {
				t.Errorf("recorded %+v", reqs)
			}
		})
	}
}

func TestProxymuxRejects(t *testing.T) {
	t.Parallel()
	const invalid = codeInvalidParameter
	// editing returns a prep that only changes the request.
	editing := func(edit func(r *http.Request)) func(*testing.T, *Proxymux) func(*http.Request) {
		return func(*testing.T, *Proxymux) func(*http.Request) { return edit }
	}
	cases := []struct {
		name string
		// prep sets the proxymux up and returns how to change the SDK's request.
		prep   func(t *testing.T, p *Proxymux) func(*http.Request)
		body   func(t *testing.T) []byte // nil: the SDK's body
		status int
		code   string
	}{
		{name: "wrong service account token", status: http.StatusUnauthorized, code: CodeNotAuthenticated,
			prep: func(t *testing.T, p *Proxymux) func(*http.Request) {
				other := NewServiceAccountToken(t, "default", "default", time.Now().Add(time.Hour))
				return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+other) }
			}},
		{name: "token rotated away", status: http.StatusUnauthorized, code: CodeNotAuthenticated,
			prep: func(t *testing.T, p *Proxymux) func(*http.Request) {
				old := p.ServiceAccountToken()
				p.SetServiceAccountToken(NewServiceAccountToken(t, "default", "default", time.Now().Add(time.Hour)))
				return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+old) }
			}},
		{name: "token without Bearer", status: http.StatusUnauthorized, code: CodeNotAuthenticated,
			prep: func(t *testing.T, p *Proxymux) func(*http.Request) {
				tok := p.ServiceAccountToken()
				return func(r *http.Request) { r.Header.Set("Authorization", tok) }
			}},
		{name: "no Authorization", status: http.StatusUnauthorized, code: CodeNotAuthenticated,
			prep: editing(func(r *http.Request) { r.Header.Del("Authorization") })},
		{name: "basic cluster", status: http.StatusForbidden, code: "NotAuthorized",
			prep: func(t *testing.T, p *Proxymux) func(*http.Request) { p.setForbidden(true); return nil }},
		{name: "content type not JSON", status: http.StatusBadRequest, code: invalid,
			prep: editing(func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") })},
		{name: "no opc-request-id", status: http.StatusBadRequest, code: invalid,
			prep: editing(func(r *http.Request) { r.Header.Del("opc-request-id") })},
		{name: "podKey sanitised as for /v1/x509", status: http.StatusBadRequest, code: invalid,
			body: func(t *testing.T) []byte {
				return mustJSON(t, map[string]string{"podKey": sanitize(publicKeyPEM(t, &Key(t, 1).PublicKey))})
			}},
		{name: "podKey in PKCS#1", status: http.StatusBadRequest, code: invalid,
			body: func(t *testing.T) []byte {
				b := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&Key(t, 1).PublicKey)})
				return mustJSON(t, map[string]string{"podKey": string(b)})
			}},
		{name: "field spelled podkey", status: http.StatusBadRequest, code: invalid,
			body: func(t *testing.T) []byte {
				return mustJSON(t, map[string]string{"podkey": string(publicKeyPEM(t, &Key(t, 1).PublicKey))})
			}},
		{name: "GET", status: http.StatusMethodNotAllowed, code: "MethodNotAllowed",
			prep: editing(func(r *http.Request) { r.Method = http.MethodGet })},
		{name: "other path", status: http.StatusNotFound, code: "NotFound",
			prep: editing(func(r *http.Request) { r.URL.Path = "/resourcePrincipalSessionToken" })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := NewProxymux(t, NewIssuer(t))
			body := podKeyBody(t, &Key(t, 1).PublicKey)
			if tc.body != nil {
				body = tc.body(t)
			}
			var edit func(*http.Request)
			if tc.prep != nil {
				edit = tc.prep(t, p)
			}
			r := pmRequest(t, p, body, edit)
			reqs := p.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests recorded", len(reqs))
			}
			wantProxymuxError(t, r, reqs[0], tc.status, tc.code)
		})
	}
}

func wantProxymuxError(t *testing.T, r response, e Exchange, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %d, want %d; body %s; reason: %s", r.Status, status, r.Body, e.Reason)
	}
	var got ociError
	if err := json.Unmarshal(r.Body, &got); err != nil || got.Code != code {
		t.Errorf("answer %s, want code %s (%v)", r.Body, code, err)
	}
	if e.Status != status || e.Code != code || e.Reason == "" || e.Token != "" {
		t.Errorf("recorded %+v", e)
	}
	t.Logf("reason: %s", e.Reason)
}

func TestProxymuxFailNextThenAnswers(t *testing.T) {
	t.Parallel()
	p := NewProxymux(t, NewIssuer(t))
	p.FailNext(2, http.StatusBadGateway)
	body := podKeyBody(t, &Key(t, 1).PublicKey)
	for i := range 2 {
		r := pmRequest(t, p, body, nil)
		wantProxymuxError(t, r, p.Requests()[i], http.StatusBadGateway, "BadGateway")
	}
	workloadToken(t, pmRequest(t, p, body, nil))
	reqs := p.Requests()
	if len(reqs) != 3 || !reqs[0].Failed || !reqs[1].Failed || reqs[2].Failed {
		t.Errorf("recorded %+v", reqs)
	}
}

func TestProxymuxServesTLSForLoopbackIP(t *testing.T) {
	t.Parallel()
	p := NewProxymux(t, NewIssuer(t))
	if !strings.HasPrefix(p.URL(), "https://127.0.0.1:") || !strings.HasSuffix(p.URL(), proxymuxPath) {
		t.Errorf("URL() = %q", p.URL())
	}
	cases := []struct {
		name    string
		trustCA bool
		wantErr bool
	}{
		{name: "client trusting ca.crt connects", trustCA: true},
		{name: "client trusting only system roots fails", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: x509.NewCertPool()}
			if tc.trustCA {
				cfg.RootCAs.AddCert(p.caCert())
			}
			conn, err := tls.Dial("tcp", p.Addr, cfg)
			if tc.wantErr {
				var unknown x509.UnknownAuthorityError
				if err == nil || !errors.As(err, &unknown) {
					t.Fatalf("err = %v, want an unknown authority", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			leaf := conn.ConnectionState().PeerCertificates[0]
			if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
				t.Errorf("server certificate IPs = %v", leaf.IPAddresses)
			}
		})
	}
}

// TestWorkloadIdentityThroughOCIGoSDK has oci-go-sdk's OKE workload
// identity provider get its token from the proxymux stand-in. The SDK pins
// the proxymux port to 12250; the host it is given ends in "#" so that the
// ":12250/..." it appends becomes a URL fragment, which is not sent. It sets
// environment variables, so it does not run in parallel.
func TestWorkloadIdentityThroughOCIGoSDK(t *testing.T) {
	is := NewIssuer(t)
	p := NewProxymux(t, is)
	sa := NewServiceAccountToken(t, "apps", "reader", time.Now().Add(time.Hour))
	p.SetServiceAccountToken(sa)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, p.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OCI_KUBERNETES_SERVICE_ACCOUNT_CERT_PATH", caFile)
	t.Setenv("OCI_RESOURCE_PRINCIPAL_REGION", "us-phoenix-1")

	host := p.Addr + proxymuxPath + "#"
	prov, err := sdkauth.OkeWorkloadIdentityConfigurationProviderWithServiceAccountTokenProviderK8sService(
		&host, sdkauth.NewSuppliedServiceAccountTokenProvider(sa), p.CAPEM())
	if err != nil {
		t.Fatalf("SDK provider: %v", err)
	}
	keyID, err := prov.KeyID()
	if err != nil {
		for _, e := range p.Requests() {
			t.Logf("proxymux: %d %s", e.Status, e.Reason)
		}
		t.Fatalf("SDK token request: %v", err)
	}
	sessKey, err := prov.PrivateRSAKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := strings.CutPrefix(keyID, "ST$")
	if !ok {
		t.Fatalf("SDK keyId %q is not ST$", keyID)
	}
	pub, tok, err := is.Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !samePublicKey(pub, &sessKey.PublicKey) || tok.PrincipalType != "resource" {
		t.Errorf("token: ptype %q, jwk matches SDK key: %v", tok.PrincipalType, samePublicKey(pub, &sessKey.PublicKey))
	}
	if tenancy, err := prov.TenancyOCID(); err != nil || tenancy != defaultWorkloadTenancy {
		t.Errorf("SDK tenancy (res_tenant) = %q, %v", tenancy, err)
	}
	reqs := p.Requests()
	if len(reqs) != 1 || reqs[0].Header.Get("opc-request-id") == "" || reqs[0].Header.Get("Authorization") != "Bearer "+sa {
		t.Fatalf("recorded %+v", reqs)
	}
	var body map[string]string
	if err := json.Unmarshal(reqs[0].Body, &body); err != nil || !strings.HasPrefix(body["podKey"], "-----BEGIN PUBLIC KEY-----\n") {
		t.Errorf("SDK body %s (%v)", reqs[0].Body, err)
	}
	t.Logf("SDK sent podKey %.40q…, Content-Type %q", body["podKey"], reqs[0].Header.Get("Content-Type"))
}
