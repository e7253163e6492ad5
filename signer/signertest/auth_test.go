package signertest

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
)

// The token stand-ins' tests build requests as the real clients do: with
// signer.Sign for what `oci session refresh` sends, and by hand (handSigned)
// for what oci-go-sdk sends to /v1/x509, which signs without host. The
// SDK end-to-end tests in metadata_test.go and proxymux_test.go then check
// the stand-ins against oci-go-sdk itself.

// exchangeOf finds the stand-in's record of the answer r by its
// opc-request-id.
func exchangeOf(t *testing.T, log []Exchange, r response) Exchange {
	t.Helper()
	id := r.Header.Get("opc-request-id")
	if id == "" {
		t.Fatal("response has no opc-request-id")
	}
	for _, e := range log {
		if e.RequestID == id {
			return e
		}
	}
	t.Fatalf("no Exchange with RequestID %q", id)
	return Exchange{}
}

// tokenAnswer reads the auth service's {"token": "..."}.
func tokenAnswer(t *testing.T, r response) string {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status = %d, body %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content-type = %q, want application/json", ct)
	}
	var a struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(r.Body, &a); err != nil || a.Token == "" {
		t.Fatalf("answer %s: %v", r.Body, err)
	}
	return a.Token
}

// wantOCIError checks an OCI error answer; message "" skips the message.
func wantOCIError(t *testing.T, r response, e Exchange, status int, code, message string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status = %d, want %d; body %s; reason: %s", r.Status, status, r.Body, e.Reason)
	}
	var got ociError
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("error body %q: %v", r.Body, err)
	}
	if got.Code != code || message != "" && got.Message != message {
		t.Errorf("answer = %+v, want code %s message %q", got, code, message)
	}
	if e.Status != status || e.Code != code || e.Reason == "" || e.Token != "" {
		t.Errorf("recorded %+v", e)
	}
	t.Logf("reason: %s", e.Reason)
}

func samePublicKey(a, b *rsa.PublicKey) bool {
	return a != nil && b != nil && a.E == b.E && a.N.Cmp(b.N) == 0
}

// refreshFixture is an auth service on the fixed test clock and a session
// whose token is ten minutes from expiry, its session five hours from its end.
type refreshFixture struct {
	auth  *AuthService
	is    *Issuer
	key   *rsa.PrivateKey
	opts  TokenOptions
	token string
	cred  *signer.Credentials
}

func newRefreshFixture(t *testing.T) *refreshFixture {
	t.Helper()
	f := &refreshFixture{is: NewIssuer(t), key: Key(t, 1)}
	f.auth = NewAuthService(t, f.is)
	f.auth.SetClock(func() time.Time { return testNow })
	f.opts = TokenOptions{
		IssuedAt: testNow.Add(-50 * time.Minute), Lifetime: time.Hour, SessionEnd: testNow.Add(5 * time.Hour),
		Subject: "ocid1.user.oc1..refresher", Tenant: "ocid1.tenancy.oc1..refresh", Ptype: "user",
	}
	f.token, f.cred = f.session(t, f.opts)
	return f
}

// session mints a token with o for the fixture's key.
func (f *refreshFixture) session(t *testing.T, o TokenOptions) (string, *signer.Credentials) {
	t.Helper()
	tok := f.is.Mint(t, &f.key.PublicKey, o)
	c, err := signer.NewSessionCredentials(tok, f.key)
	if err != nil {
		t.Fatal(err)
	}
	return tok, c
}

func refreshBody(tok string) []byte {
	b, _ := json.Marshal(map[string]string{"currentToken": tok})
	return b
}

// refresh builds what `oci session refresh` sends for c, signed at date.
func (f *refreshFixture) refresh(t *testing.T, c *signer.Credentials, date time.Time) *wire {
	t.Helper()
	return signed(t, c, "POST", f.auth.Addr, AuthRefreshPath, refreshBody(c.Token.Raw), date)
}

func TestAuthServiceRefreshKeepsTheSession(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		lifetime   time.Duration // SetSessionLifetime; 0 keeps the default
		sessionEnd time.Duration // from testNow; 0 keeps the fixture's
		wantExp    time.Time
	}{
		{name: "new token lives an hour from now by default", wantExp: testNow.Add(time.Hour)},
		{name: "new token lives the configured lifetime", lifetime: 15 * time.Minute, wantExp: testNow.Add(15 * time.Minute)},
		{name: "new token never outlives its session", sessionEnd: 20 * time.Minute, wantExp: testNow.Add(20 * time.Minute)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newRefreshFixture(t)
			f.auth.setSessionLifetime(tc.lifetime)
			cred := f.cred
			if tc.sessionEnd != 0 {
				o := f.opts
				o.SessionEnd = testNow.Add(tc.sessionEnd)
				_, cred = f.session(t, o)
			}
			old := cred.Token

			r := doClient(t, f.auth.Addr, f.refresh(t, cred, testNow))
			raw := tokenAnswer(t, r)
			pub, tok, err := f.is.Verify(raw)
			if err != nil {
				t.Fatalf("refreshed token does not verify: %v", err)
			}
			if raw == old.Raw {
				t.Error("refresh answered the same token")
			}
			if !samePublicKey(pub, &f.key.PublicKey) {
				t.Error("refreshed token is for another key than the session's")
			}
			if tok.Subject != old.Subject || tok.Tenant != old.Tenant || tok.PrincipalType != old.PrincipalType {
				t.Errorf("claims = %q %q %q, want %q %q %q", tok.Subject, tok.Tenant, tok.PrincipalType, old.Subject, old.Tenant, old.PrincipalType)
			}
			if !tok.SessionEnd.Equal(old.SessionEnd) {
				t.Errorf("sess_exp = %v, want the session's %v", tok.SessionEnd, old.SessionEnd)
			}
			if !tok.IssuedAt.Equal(testNow) || !tok.Expiry.Equal(tc.wantExp) {
				t.Errorf("iat, exp = %v, %v; want %v, %v", tok.IssuedAt, tok.Expiry, testNow, tc.wantExp)
			}
			e := exchangeOf(t, f.auth.Requests(), r)
			if e.Token != raw || e.Status != http.StatusOK || e.KeyID != "ST$"+old.Raw || e.Path != AuthRefreshPath {
				t.Errorf("recorded %+v", e)
			}

			// The new token refreshes in turn, and the session still ends when it did.
			next, err := signer.NewSessionCredentials(raw, f.key)
			if err != nil {
				t.Fatal(err)
			}
			_, tok2, err := f.is.Verify(tokenAnswer(t, doClient(t, f.auth.Addr, f.refresh(t, next, testNow))))
			if err != nil || !tok2.SessionEnd.Equal(old.SessionEnd) {
				t.Errorf("second refresh: %v, sess_exp %v", err, tok2)
			}
		})
	}
}

func TestAuthServiceRefreshRejects(t *testing.T) {
	t.Parallel()
	const (
		unauthorized = http.StatusUnauthorized
		notAuth      = CodeNotAuthenticated
		required     = msgRequiredInfo
		failed       = msgFailedSignature
	)
	cases := []struct {
		name      string
		setup     func(f *refreshFixture)
		req       func(t *testing.T, f *refreshFixture) *wire
		status    int
		code, msg string
	}{
		{name: "signed with another key than the token's", status: unauthorized, code: notAuth, msg: failed,
			req: func(t *testing.T, f *refreshFixture) *wire {
				c := *f.cred
				c.Key = Key(t, 2)
				return f.refresh(t, &c, testNow)
			}},
		{name: "signed date changed after signing", status: unauthorized, code: notAuth, msg: failed,
			req: func(t *testing.T, f *refreshFixture) *wire {
				w := f.refresh(t, f.cred, testNow)
				w.set("date", signer.FormatDate(testNow.Add(time.Second)))
				return w
			}},
		{name: "body altered after signing", status: unauthorized, code: notAuth, msg: msgBodyHashMismatch,
			req: func(t *testing.T, f *refreshFixture) *wire {
				w := f.refresh(t, f.cred, testNow)
				w.Body = bytes.Replace(w.Body, []byte(`"currentToken"`), []byte(`"currentTokeN"`), 1)
				return w
			}},
		{name: "token minted by an untrusted issuer", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *refreshFixture) *wire {
				tok := newIssuerWithKey(Key(t, 2)).Mint(t, &f.key.PublicKey, f.opts)
				c, err := signer.NewSessionCredentials(tok, f.key)
				if err != nil {
					t.Fatal(err)
				}
				return f.refresh(t, c, testNow)
			}},
		{name: "token without jwk", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *refreshFixture) *wire {
				o := f.opts
				o.NoJWK = true
				_, c := f.session(t, o)
				return f.refresh(t, c, testNow)
			}},
		{name: "currentToken is another token than the keyId's", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *refreshFixture) *wire {
				other, _ := f.session(t, f.opts) // same key and claims, another jti
				return signed(t, f.cred, "POST", f.auth.Addr, AuthRefreshPath, refreshBody(other), testNow)
			}},
		{name: "currentToken missing", status: http.StatusBadRequest, code: codeInvalidParameter,
			req: func(t *testing.T, f *refreshFixture) *wire {
				return signed(t, f.cred, "POST", f.auth.Addr, AuthRefreshPath, []byte(`{}`), testNow)
			}},
		{name: "currentToken spelled in another case", status: http.StatusBadRequest, code: codeInvalidParameter,
			req: func(t *testing.T, f *refreshFixture) *wire {
				body := []byte(`{"CurrentToken":"` + f.token + `"}`)
				return signed(t, f.cred, "POST", f.auth.Addr, AuthRefreshPath, body, testNow)
			}},
		{name: "token expired", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *refreshFixture) *wire {
				o := f.opts
				o.IssuedAt = testNow.Add(-time.Hour) // exp = testNow exactly
				_, c := f.session(t, o)
				return f.refresh(t, c, testNow)
			}},
		{name: "session ended though the token has not expired", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *refreshFixture) *wire {
				o := f.opts
				o.SessionEnd = testNow
				_, c := f.session(t, o)
				return f.refresh(t, c, testNow)
			}},
		{name: "RefuseRefresh", status: unauthorized, code: notAuth, msg: required,
			setup: func(f *refreshFixture) { f.auth.RefuseRefresh(true) },
			req:   func(t *testing.T, f *refreshFixture) *wire { return f.refresh(t, f.cred, testNow) }},
		{name: "date outside the clock skew", status: unauthorized, code: notAuth,
			req: func(t *testing.T, f *refreshFixture) *wire { return f.refresh(t, f.cred, testNow.Add(-6*time.Minute)) }},
		{name: "host not signed", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *refreshFixture) *wire {
				return x509Wire(t, f.auth.Addr, AuthRefreshPath, "ST$"+f.token, f.key, refreshBody(f.token), testNow, false)
			}},
		{name: "API-key keyId", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *refreshFixture) *wire {
				c := &signer.Credentials{KeyID: APIKeyID("R", &f.key.PublicKey), Key: f.key, Kind: signer.KindAPIKey}
				return signed(t, c, "POST", f.auth.Addr, AuthRefreshPath, refreshBody(f.token), testNow)
			}},
		{name: "GET", status: http.StatusMethodNotAllowed, code: "MethodNotAllowed",
			req: func(t *testing.T, f *refreshFixture) *wire {
				return signed(t, f.cred, "GET", f.auth.Addr, AuthRefreshPath, nil, testNow)
			}},
		{name: "unknown path", status: http.StatusNotFound, code: "NotAuthorizedOrNotFound",
			req: func(t *testing.T, f *refreshFixture) *wire {
				return signed(t, f.cred, "POST", f.auth.Addr, "/v1/authentication/refreshes", refreshBody(f.token), testNow)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newRefreshFixture(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			r := doClient(t, f.auth.Addr, tc.req(t, f))
			wantOCIError(t, r, exchangeOf(t, f.auth.Requests(), r), tc.status, tc.code, tc.msg)
		})
	}
}

func TestAuthServiceFailNextThenAnswers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		n      int
		status int
		code   string
	}{
		{name: "two 503s", n: 2, status: http.StatusServiceUnavailable, code: "ServiceUnavailable"},
		{name: "one 429", n: 1, status: http.StatusTooManyRequests, code: "TooManyRequests"},
		{name: "one 500", n: 1, status: http.StatusInternalServerError, code: "InternalServerError"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newRefreshFixture(t)
			f.auth.FailNext(tc.n, tc.status)
			w := f.refresh(t, f.cred, testNow)
			for i := 0; i < tc.n; i++ {
				r := doClient(t, f.auth.Addr, w)
				e := exchangeOf(t, f.auth.Requests(), r)
				wantOCIError(t, r, e, tc.status, tc.code, "")
				if !e.Failed {
					t.Errorf("request %d: Failed not recorded", i+1)
				}
			}
			r := doClient(t, f.auth.Addr, w)
			tokenAnswer(t, r)
			if e := exchangeOf(t, f.auth.Requests(), r); e.Failed {
				t.Error("answered request recorded as Failed")
			}
			if got := len(f.auth.Requests()); got != tc.n+1 {
				t.Errorf("%d requests recorded, want %d", got, tc.n+1)
			}
		})
	}
}

// x509Fixture is an auth service trusting a metadata service's root, both
// on the fixed test clock, and a session key to federate.
type x509Fixture struct {
	auth *AuthService
	is   *Issuer
	md   *MetadataService
	sess *rsa.PrivateKey
}

func newX509Fixture(t *testing.T) *x509Fixture {
	t.Helper()
	f := &x509Fixture{is: NewIssuer(t), md: NewMetadataService(t), sess: Key(t, 1)}
	f.md.SetClock(func() time.Time { return testNow })
	f.md.RotateLeaf() // dated by the test clock
	f.auth = NewAuthService(t, f.is)
	f.auth.SetClock(func() time.Time { return testNow })
	f.auth.TrustRoot(f.md.Root())
	return f
}

// x509Details mirrors oci-go-sdk's X509FederationDetails.
type x509Details struct {
	Certificate              string   `json:"certificate,omitempty"`
	PublicKey                string   `json:"publicKey,omitempty"`
	IntermediateCertificates []string `json:"intermediateCertificates,omitempty"`
	FingerprintAlgorithm     string   `json:"fingerprintAlgorithm,omitempty"`
}

// sanitize is oci-go-sdk's sanitizeCertificateString.
func sanitize(pemText []byte) string {
	return strings.NewReplacer(
		"-----BEGIN CERTIFICATE-----", "", "-----END CERTIFICATE-----", "",
		"-----BEGIN PUBLIC KEY-----", "", "-----END PUBLIC KEY-----", "",
		"\n", "").Replace(string(pemText))
}

func publicKeyPEM(t *testing.T, pub *rsa.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// details builds the body the SDK sends for the metadata service's current leaf.
func (f *x509Fixture) details(t *testing.T) x509Details {
	t.Helper()
	leaf, _ := f.md.Leaf()
	return x509Details{
		Certificate:              sanitize(certPEM(leaf)),
		PublicKey:                sanitize(publicKeyPEM(t, &f.sess.PublicKey)),
		IntermediateCertificates: []string{sanitize(certPEM(f.md.intermediateCert()))},
		FingerprintAlgorithm:     "SHA256",
	}
}

// keyID is the SDK's keyId for the current leaf.
func (f *x509Fixture) keyID() string {
	leaf, _ := f.md.Leaf()
	return f.md.currentTenancy() + "/fed-x509-sha256/" + CertFingerprint(leaf)
}

// x509Wire signs a POST by hand as oci-go-sdk's auth client does: date,
// (request-target), then (only if withHost) host, then the body headers.
func x509Wire(t *testing.T, addr, path, keyID string, key *rsa.PrivateKey, body []byte, date time.Time, withHost bool) *wire {
	t.Helper()
	d := signer.FormatDate(date)
	lines := []field{{"date", d}, {"(request-target)", "post " + path}}
	if withHost {
		lines = append(lines, field{"host", addr})
	}
	lines = append(lines,
		field{"content-length", strconv.Itoa(len(body))},
		field{"content-type", "application/json"},
		field{"x-content-sha256", b64sha(body)})
	return &wire{Method: "POST", Target: path, Host: addr, Body: body, Header: []field{
		{"date", d}, {"content-type", "application/json"}, {"content-length", strconv.Itoa(len(body))},
		{"x-content-sha256", b64sha(body)}, {"authorization", handSigned(t, key, keyID, lines...)},
	}}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAuthServiceFederatesInstance(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		withHost bool
		lifetime time.Duration
		wantExp  time.Duration
	}{
		{name: "signed without host as the SDK does", wantExp: 20 * time.Minute},
		{name: "signed with host too", withHost: true, wantExp: 20 * time.Minute},
		{name: "configured lifetime", lifetime: 5 * time.Minute, wantExp: 5 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newX509Fixture(t)
			f.auth.SetInstanceLifetime(tc.lifetime)
			_, leafKey := f.md.Leaf()
			r := doClient(t, f.auth.Addr, x509Wire(t, f.auth.Addr, AuthX509Path, f.keyID(), leafKey, mustJSON(t, f.details(t)), testNow, tc.withHost))
			raw := tokenAnswer(t, r)
			pub, tok, err := f.is.Verify(raw)
			if err != nil {
				t.Fatalf("instance token does not verify: %v", err)
			}
			if !samePublicKey(pub, &f.sess.PublicKey) {
				t.Error("instance token's jwk is not the session key sent")
			}
			if tok.PrincipalType != "instance" || tok.Tenant != f.md.currentTenancy() || tok.Subject != f.md.currentInstanceID() {
				t.Errorf("ptype, tenant, sub = %q %q %q", tok.PrincipalType, tok.Tenant, tok.Subject)
			}
			if !tok.IssuedAt.Equal(testNow) || !tok.Expiry.Equal(testNow.Add(tc.wantExp)) || !tok.SessionEnd.IsZero() {
				t.Errorf("iat, exp, sess_exp = %v, %v, %v", tok.IssuedAt, tok.Expiry, tok.SessionEnd)
			}
			e := exchangeOf(t, f.auth.Requests(), r)
			if e.Token != raw || e.KeyID != f.keyID() {
				t.Errorf("recorded %+v", e)
			}
		})
	}
}

func TestAuthServiceFederationRejects(t *testing.T) {
	t.Parallel()
	const (
		unauthorized = http.StatusUnauthorized
		notAuth      = CodeNotAuthenticated
		required     = msgRequiredInfo
		failed       = msgFailedSignature
		badRequest   = http.StatusBadRequest
		invalid      = codeInvalidParameter
	)
	// send signs d with the leaf key for keyID at date, without host.
	send := func(t *testing.T, f *x509Fixture, keyID string, d x509Details, date time.Time) *wire {
		_, leafKey := f.md.Leaf()
		return x509Wire(t, f.auth.Addr, AuthX509Path, keyID, leafKey, mustJSON(t, d), date, false)
	}
	cases := []struct {
		name      string
		req       func(t *testing.T, f *x509Fixture) *wire
		status    int
		code, msg string
	}{
		{name: "leaf of an instance whose root is not trusted", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *x509Fixture) *wire {
				other := NewMetadataService(t)
				other.SetClock(func() time.Time { return testNow })
				other.RotateLeaf() // valid now, so only its chain is wrong
				leaf, key := other.Leaf()
				d := f.details(t)
				d.Certificate = sanitize(certPEM(leaf))
				d.IntermediateCertificates = []string{sanitize(certPEM(other.intermediateCert()))}
				keyID := other.currentTenancy() + "/fed-x509-sha256/" + CertFingerprint(leaf)
				return x509Wire(t, f.auth.Addr, AuthX509Path, keyID, key, mustJSON(t, d), testNow, false)
			}},
		{name: "no intermediate sent", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *x509Fixture) *wire {
				d := f.details(t)
				d.IntermediateCertificates = nil
				return send(t, f, f.keyID(), d, testNow)
			}},
		{name: "keyId names another tenancy", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *x509Fixture) *wire {
				leaf, _ := f.md.Leaf()
				return send(t, f, "ocid1.tenancy.oc1..other/fed-x509-sha256/"+CertFingerprint(leaf), f.details(t), testNow)
			}},
		{name: "keyId names another certificate's fingerprint", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *x509Fixture) *wire {
				return send(t, f, f.md.currentTenancy()+"/fed-x509-sha256/"+CertFingerprint(f.md.intermediateCert()), f.details(t), testNow)
			}},
		{name: "keyId fingerprint in upper case", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *x509Fixture) *wire {
				tenancy, fp, _ := strings.Cut(f.keyID(), "/fed-x509-sha256/")
				return send(t, f, tenancy+"/fed-x509-sha256/"+strings.ToUpper(fp), f.details(t), testNow)
			}},
		{name: "keyId in the SHA-1 form", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *x509Fixture) *wire {
				return send(t, f, strings.Replace(f.keyID(), "fed-x509-sha256", "fed-x509", 1), f.details(t), testNow)
			}},
		{name: "signed with the session key instead of the leaf's", status: unauthorized, code: notAuth, msg: failed,
			req: func(t *testing.T, f *x509Fixture) *wire {
				return x509Wire(t, f.auth.Addr, AuthX509Path, f.keyID(), f.sess, mustJSON(t, f.details(t)), testNow, false)
			}},
		{name: "leaf expired", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *x509Fixture) *wire {
				later := testNow.Add(leafValidity + time.Minute)
				f.auth.SetClock(func() time.Time { return later })
				return send(t, f, f.keyID(), f.details(t), later)
			}},
		{name: "content-type not signed", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *x509Fixture) *wire {
				body := mustJSON(t, f.details(t))
				_, key := f.md.Leaf()
				w := x509Wire(t, f.auth.Addr, AuthX509Path, f.keyID(), key, body, testNow, false)
				w.set("authorization", handSigned(t, key, f.keyID(),
					field{"date", signer.FormatDate(testNow)}, field{"(request-target)", "post /v1/x509"},
					field{"content-length", strconv.Itoa(len(body))}, field{"x-content-sha256", b64sha(body)}))
				return w
			}},
		{name: "certificate sent as PEM, not sanitised", status: badRequest, code: invalid,
			req: func(t *testing.T, f *x509Fixture) *wire {
				leaf, _ := f.md.Leaf()
				d := f.details(t)
				d.Certificate = string(certPEM(leaf))
				return send(t, f, f.keyID(), d, testNow)
			}},
		{name: "publicKey field spelled publickey", status: badRequest, code: invalid,
			req: func(t *testing.T, f *x509Fixture) *wire {
				body := bytes.Replace(mustJSON(t, f.details(t)), []byte(`"publicKey"`), []byte(`"publickey"`), 1)
				_, key := f.md.Leaf()
				return x509Wire(t, f.auth.Addr, AuthX509Path, f.keyID(), key, body, testNow, false)
			}},
		{name: "fingerprintAlgorithm missing", status: badRequest, code: invalid,
			req: func(t *testing.T, f *x509Fixture) *wire {
				d := f.details(t)
				d.FingerprintAlgorithm = ""
				return send(t, f, f.keyID(), d, testNow)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newX509Fixture(t)
			r := doClient(t, f.auth.Addr, tc.req(t, f))
			wantOCIError(t, r, exchangeOf(t, f.auth.Requests(), r), tc.status, tc.code, tc.msg)
		})
	}
}

func TestAuthServiceUntrustingRefusesFederation(t *testing.T) {
	t.Parallel()
	f := newX509Fixture(t)
	auth := NewAuthService(t, f.is) // trusts no root
	auth.SetClock(func() time.Time { return testNow })
	_, key := f.md.Leaf()
	r := doClient(t, auth.Addr, x509Wire(t, auth.Addr, AuthX509Path, f.keyID(), key, mustJSON(t, f.details(t)), testNow, false))
	wantOCIError(t, r, exchangeOf(t, auth.Requests(), r), http.StatusUnauthorized, CodeNotAuthenticated, msgRequiredInfo)
}
