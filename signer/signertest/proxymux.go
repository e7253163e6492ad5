package signertest

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
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ocisigner/ocisigner/signer"
)

// proxymuxPath is the path of the OKE proxymux's token endpoint (port 12250
// of the Kubernetes service host in a cluster).
const proxymuxPath = "/resourcePrincipalSessionTokens"

// Defaults of a new Proxymux.
const (
	defaultWorkloadSubject = "ocid1.workload.oc1..proxymuxtest"
	defaultWorkloadTenancy = "ocid1.tenancy.oc1..workloadtest"
)

// NewServiceAccountToken makes a Kubernetes service account token for
// namespace/name expiring at exp, shaped as the kubelet projects one: a
// JWT with the service account claims. The proxymux only compares tokens,
// but clients read them: oci-go-sdk refuses one that is not a JWT or whose
// exp is less than five minutes away.
func NewServiceAccountToken(t testing.TB, namespace, name string, exp time.Time) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("signertest: service account token key: %v", err)
	}
	serial, err := newSerial()
	if err != nil {
		t.Fatalf("signertest: %v", err)
	}
	const apiServer = "https://kubernetes.default.svc.cluster.local"
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": apiServer,
		"aud": []string{apiServer},
		"sub": "system:serviceaccount:" + namespace + ":" + name,
		"iat": exp.Add(-time.Hour).Unix(),
		"nbf": exp.Add(-time.Hour).Unix(),
		"exp": exp.Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"serviceaccount": map[string]string{"name": name, "uid": fmt.Sprintf("%x", serial)},
		},
	}).SignedString(key)
	if err != nil {
		t.Fatalf("signertest: service account token: %v", err)
	}
	return tok
}

// Proxymux is a stand-in for the OKE proxymux, which exchanges a pod's
// Kubernetes service account token for a resource principal session token
// (OKE workload identity). It serves HTTPS on 127.0.0.1 with a certificate
// for IP 127.0.0.1 issued by a CA of its own, whose PEM (CAPEM) stands for
// /var/run/secrets/kubernetes.io/serviceaccount/ca.crt. Tokens are minted by
// the Issuer it was made with. It starts out accepting a service account
// token for default/default valid for 24 hours (ServiceAccountToken).
type Proxymux struct {
	Addr string // 127.0.0.1:port

	is    *Issuer
	caPEM []byte
	ca    *x509.Certificate

	mu        sync.Mutex
	clock     func() time.Time
	saToken   string
	lifetime  time.Duration
	subject   string
	tenancy   string
	forbidden bool
	claims    *[2]string // tenant, res_tenant; nil: the tenancy in both

	fail failer
	log  exchangeLog
}

// NewProxymux starts a proxymux minting with is; t.Cleanup closes it.
func NewProxymux(t testing.TB, is *Issuer) *Proxymux {
	t.Helper()
	ca, cert := serverCertificate(t, "signertest proxymux CA", x509.Certificate{
		Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	now := time.Now()
	p := &Proxymux{is: is, ca: ca, caPEM: certPEM(ca), clock: time.Now,
		saToken:  NewServiceAccountToken(t, "default", "default", now.Add(24*time.Hour)),
		lifetime: defaultWorkloadLifetime, subject: defaultWorkloadSubject, tenancy: defaultWorkloadTenancy}
	hs := startLoopback(t, p, func(hs *httptest.Server) {
		hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		// A client that does not trust the CA fails its handshake; that is
		// the test's to report, not the server log's.
		hs.Config.ErrorLog = log.New(io.Discard, "", 0)
		hs.StartTLS()
	})
	p.Addr = hs.Listener.Addr().String()
	return p
}

// URL is the token endpoint, https://127.0.0.1:port/resourcePrincipalSessionTokens.
func (p *Proxymux) URL() string { return "https://" + p.Addr + proxymuxPath }

// CAPEM is the PEM of the CA that issued the server's certificate, as a pod
// finds the cluster CA in its service account's ca.crt.
func (p *Proxymux) CAPEM() []byte { return append([]byte(nil), p.caPEM...) }

// caCert is the certificate CAPEM holds.
func (p *Proxymux) caCert() *x509.Certificate { return p.ca }

// SetServiceAccountToken sets the one bearer token accepted from now on, as
// when the kubelet rotates a projected service account token (make one
// with NewServiceAccountToken).
func (p *Proxymux) SetServiceAccountToken(tok string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.saToken = tok
}

// ServiceAccountToken is the bearer token accepted.
func (p *Proxymux) ServiceAccountToken() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.saToken
}

// SetLifetime sets the lifetime of the tokens issued; zero restores the default.
func (p *Proxymux) SetLifetime(d time.Duration) {
	if d <= 0 {
		d = defaultWorkloadLifetime
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lifetime = d
}

// setIdentity sets the sub and tenancy claims of the tokens issued; an
// empty value keeps the current one.
func (p *Proxymux) setIdentity(subject, tenancy string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if subject != "" {
		p.subject = subject
	}
	if tenancy != "" {
		p.tenancy = tenancy
	}
}

// SetTenancyClaims sets the tenant and res_tenant claims of the tokens it
// issues ("" leaves a claim out), instead of the identity's tenancy in both.
func (p *Proxymux) SetTenancyClaims(tenant, resTenant string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.claims = &[2]string{tenant, resTenant}
}

// tenancyClaims are the tenant and res_tenant claims to write: the
// identity's tenancy in both unless SetTenancyClaims said otherwise.
func (p *Proxymux) tenancyClaims(tenancy string) (string, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.claims != nil {
		return p.claims[0], p.claims[1]
	}
	return tenancy, tenancy
}

// setForbidden makes authenticated requests get a 403, as a basic (not
// enhanced) cluster answers: workload identity needs an enhanced cluster.
func (p *Proxymux) setForbidden(forbidden bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forbidden = forbidden
}

// SetClock sets the clock the tokens issued are dated by; nil restores time.Now.
func (p *Proxymux) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clock = now
}

// FailNext answers the next n requests, whatever they are, with status and
// an OCI error body, before looking at them; n <= 0 stops failing.
func (p *Proxymux) FailNext(n, status int) { p.fail.set(n, status) }

// Requests returns what the proxymux has received so far, in completion order.
func (p *Proxymux) Requests() []Exchange { return p.log.all() }

// ServeHTTP answers a request as the proxymux does.
func (p *Proxymux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := p.log.start(r)
	defer p.log.add(e)
	if id := r.Header.Get("opc-request-id"); id != "" {
		e.RequestID = id
		w.Header().Set("opc-request-id", id)
	}
	if status, ok := p.fail.take(); ok {
		e.Failed = true
		answerError(w, e, failNextRejection(status))
		return
	}
	tok, rej := p.issue(r, e)
	if rej != nil {
		answerError(w, e, rej)
		return
	}
	e.Status, e.Token = http.StatusOK, tok
	// The answer is a JSON string holding base64 of {"token": "ST$<jwt>"}:
	// oci-go-sdk strips the quotes, decodes the base64, reads "token" and
	// drops its first three characters.
	inner, err := json.Marshal(map[string]string{"token": "ST$" + tok})
	if err != nil {
		panic(err) // a map of strings always marshals
	}
	body := `"` + base64.StdEncoding.EncodeToString(inner) + `"`
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, body)
}

// issue checks a token request as oci-go-sdk's
// x509FederationClientForOkeWorkloadIdentity sends it and mints the token.
func (p *Proxymux) issue(r *http.Request, e *Exchange) (string, *rejection) {
	if r.URL.Path != proxymuxPath {
		return "", &rejection{status: http.StatusNotFound, code: "NotFound", message: "Not found.", reason: fmt.Sprintf("no endpoint %s", r.URL.Path)}
	}
	if r.Method != http.MethodPost {
		return "", &rejection{status: http.StatusMethodNotAllowed, code: "MethodNotAllowed",
			message: "The method is not allowed on this resource.", reason: fmt.Sprintf("%s: only POST is answered", r.Method)}
	}
	p.mu.Lock()
	now, saToken, lifetime, subject, tenancy, forbidden := p.clock(), p.saToken, p.lifetime, p.subject, p.tenancy, p.forbidden
	p.mu.Unlock()

	auth := r.Header.Values("Authorization")
	if len(auth) != 1 {
		return "", notAuthenticated(msgRequiredInfo, "want one Authorization header, got %d", len(auth))
	}
	bearer, ok := strings.CutPrefix(auth[0], "Bearer ")
	if !ok {
		return "", notAuthenticated(msgRequiredInfo, "Authorization is not Bearer <service account token>")
	}
	if bearer != saToken {
		return "", notAuthenticated(msgRequiredInfo, "the bearer is not the current service account token (%s)", signer.MaskSecret(bearer))
	}
	if forbidden {
		return "", &rejection{status: http.StatusForbidden, code: "NotAuthorized",
			message: "Workload identity requires an enhanced cluster.", reason: "SetForbidden is on"}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return "", invalidParameter("Content-Type %q is not application/json", r.Header.Get("Content-Type"))
	}
	if r.Header.Get("opc-request-id") == "" {
		return "", invalidParameter("no opc-request-id header (the SDK always sends one)")
	}
	b, rej := readBody(r, maxTokenRequestBody, false)
	e.Body = b.buf
	if rej != nil {
		return "", rej
	}
	fields, rej := jsonObject(b.buf, "podKey")
	if rej != nil {
		return "", rej
	}
	var podKey string
	if err := json.Unmarshal(fields["podKey"], &podKey); err != nil || podKey == "" {
		return "", invalidParameter("podKey must be a non-empty string; body %s", b.buf)
	}
	pub, err := parsePodKey(podKey)
	if err != nil {
		return "", invalidParameter("podKey: %v", err)
	}

	// A resource principal session token, shaped as RPSTs are: ptype
	// resource, the resource's tenancy also as res_tenant (the claim the
	// SDK reads), no sess_exp (it is not refreshed but requested again).
	claims := jwt.MapClaims{
		"iss":             "authService.oracle.com",
		"aud":             "oci",
		"sub":             subject,
		"res_compartment": tenancy,
		"ptype":           "resource",
		"iat":             now.Unix(),
		"exp":             now.Add(lifetime).Unix(),
		"jwk":             signer.JWK(pub, "sess"),
	}
	tenant, resTenant := p.tenancyClaims(tenancy)
	if tenant != "" {
		claims["tenant"] = tenant
	}
	if resTenant != "" {
		claims["res_tenant"] = resTenant
	}
	tok, err := p.is.mintClaims(claims)
	if err != nil {
		return "", internalError("minting the workload token: %v", err)
	}
	return tok, nil
}

// parsePodKey reads the session public key as oci-go-sdk sends it to the
// proxymux: a whole PKIX PEM block, BEGIN/END lines and newlines included
// (unlike the x509 endpoint, which gets the sanitised form).
func parsePodKey(s string) (*rsa.PublicKey, error) {
	block, rest := pem.Decode([]byte(s))
	if block == nil {
		return nil, fmt.Errorf("not a PEM block (the SDK sends the public key's PEM, BEGIN/END lines included)")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("PEM type %q is not PUBLIC KEY", block.Type)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("data after the PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing public key: %w", err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is %T, not RSA", k)
	}
	return pub, nil
}
