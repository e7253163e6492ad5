package signertest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	sdkauth "github.com/oracle/oci-go-sdk/v65/common/auth"

	"github.com/ocisigner/ocisigner/signer"
)

const idpIssuer = "https://idp.example/oauth2/default"

// txFixture is a token endpoint on the fixed test clock that trusts one
// IdP, and the session key a workload sends.
type txFixture struct {
	x      *TokenExchange
	is     *Issuer
	idp    *IdP
	sess   *rsa.PrivateKey
	client [2]string
}

func newTXFixture(t *testing.T, is *Issuer) *txFixture {
	t.Helper()
	f := &txFixture{x: NewTokenExchange(t, is), is: is, idp: NewIdP(t, idpIssuer), sess: Key(t, 2),
		client: [2]string{DefaultExchangeClientID, DefaultExchangeClientSecret}}
	f.x.SetClock(func() time.Time { return testNow })
	f.x.TrustIdP(f.idp, DefaultIdPAudience)
	return f
}

func (f *txFixture) subject(t *testing.T, o SubjectTokenOptions) string {
	t.Helper()
	if o.IssuedAt.IsZero() {
		o.IssuedAt = testNow.Add(-time.Minute)
	}
	return f.idp.Mint(t, o)
}

func (f *txFixture) form(t *testing.T, subjectToken string) url.Values {
	t.Helper()
	v, err := exchangeForm(subjectToken, &f.sess.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// post sends body to the endpoint as the SDKs do: form-encoded, Basic
// client authentication; edit changes the request first.
func (f *txFixture) post(t *testing.T, body string, edit func(*http.Request)) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.x.tokenURL(), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(f.client[0], f.client[1])
	if edit != nil {
		edit(req)
	}
	resp, err := http.DefaultClient.Do(req)
	return readResponse(t, resp, err)
}

func upstOf(t *testing.T, r response) string {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status %d, body %s", r.Status, r.Body)
	}
	var out map[string]string
	if err := json.Unmarshal(r.Body, &out); err != nil || len(out) != 1 || out["token"] == "" {
		t.Fatalf("answer %s is not {\"token\": ...}", r.Body)
	}
	return out["token"]
}

func TestTokenExchangeIssuesUPSTBoundToTheKeySent(t *testing.T) {
	api := newFixture(t) // an OCI API stand-in trusting the same issuer
	f := newTXFixture(t, api.issuer)
	f.x.MapSubject("alice@idp.example", "ocid1.user.oc1..alice")
	f.x.setTenancy("ocid1.tenancy.oc1..acme")
	f.x.SetLifetime(20 * time.Minute)
	jwtIn := f.subject(t, SubjectTokenOptions{Subject: "alice@idp.example", Audience: []string{"other", DefaultIdPAudience}})
	r := f.post(t, f.form(t, jwtIn).Encode(), nil)
	upst := upstOf(t, r)
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}

	pub, tok, err := f.is.Verify(upst)
	if err != nil {
		t.Fatal(err)
	}
	if !samePublicKey(pub, &f.sess.PublicKey) {
		t.Error("the UPST's jwk is not the key sent")
	}
	if tok.Subject != "ocid1.user.oc1..alice" || tok.Tenant != "ocid1.tenancy.oc1..acme" || tok.PrincipalType != "user" ||
		!tok.IssuedAt.Equal(testNow) || !tok.Expiry.Equal(testNow.Add(20*time.Minute)) || !tok.SessionEnd.IsZero() {
		t.Errorf("UPST claims %+v", tok)
	}
	reqs := f.x.Requests()
	if len(reqs) != 1 || reqs[0].Status != 200 || reqs[0].Token != upst || reqs[0].Path != tokenExchangePath {
		t.Fatalf("recorded %+v", reqs)
	}

	// The OCI API stand-in takes the UPST with the exchanged key.
	creds, err := signer.NewSessionCredentials(upst, f.sess)
	if err != nil {
		t.Fatal(err)
	}
	api.wantOK(t, doClient(t, api.srv.Addr, signed(t, creds, "GET", api.srv.Addr, "/n/", nil, testNow)))

	// An unmapped subject gets the default user.
	upst = upstOf(t, f.post(t, f.form(t, f.subject(t, SubjectTokenOptions{})).Encode(), nil))
	if _, tok, err := f.is.Verify(upst); err != nil || tok.Subject != DefaultExchangeUser {
		t.Errorf("unmapped subject: %+v, %v", tok, err)
	}
}

// The Python SDK sends the PEM's body with its lines and newlines removed;
// that must be the very string the stand-in takes.
func TestExchangeFormKeyIsThePythonSDKsStrippedPEM(t *testing.T) {
	key := Key(t, 2)
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	stripped := strings.NewReplacer("\n", "", "-----BEGIN PUBLIC KEY-----", "", "-----END PUBLIC KEY-----", "").Replace(p)
	v, err := exchangeForm("x", &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if v.Get("public_key") != stripped {
		t.Errorf("exchangeForm public_key %q, Python SDK sends %q", v.Get("public_key"), stripped)
	}
}

func TestTokenExchangeRefuses(t *testing.T) {
	is := NewIssuer(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b64DER := func(k any) string {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(der)
	}
	hs256, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": idpIssuer, "sub": "x", "aud": DefaultIdPAudience, "iat": testNow.Unix(), "exp": testNow.Add(time.Hour).Unix(),
	}).SignedString([]byte("shared secret"))
	if err != nil {
		t.Fatal(err)
	}

	type mutate struct {
		form func(f *txFixture, v url.Values) // changes the SDK-shaped form
		req  func(r *http.Request)
		set  func(f *txFixture)
		subj *SubjectTokenOptions // the subject token minted by the trusted IdP
	}
	for _, tc := range []struct {
		name   string
		m      mutate
		status int
		code   string
		reason string
	}{
		{"no client authentication", mutate{req: func(r *http.Request) { r.Header.Del("Authorization") }}, 401, OAuthInvalidClient, "got 0"},
		{"Bearer instead of Basic", mutate{req: func(r *http.Request) { r.Header.Set("Authorization", "Bearer abc") }}, 401, OAuthInvalidClient, `scheme "Bearer"`},
		{"wrong client secret", mutate{req: func(r *http.Request) { r.SetBasicAuth(DefaultExchangeClientID, "guess") }}, 401, OAuthInvalidClient, "secret"},
		{"unknown client", mutate{req: func(r *http.Request) { r.SetBasicAuth("stranger", DefaultExchangeClientSecret) }}, 401, OAuthInvalidClient, `client "stranger"`},
		{"JSON body", mutate{req: func(r *http.Request) { r.Header.Set("Content-Type", "application/json") }}, 400, oAuthInvalidRequest, "not application/x-www-form-urlencoded"},
		{"not UTF-8", mutate{req: func(r *http.Request) {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=iso-8859-1")
		}}, 400, oAuthInvalidRequest, "charset"},
		{"repeated parameter", mutate{form: func(_ *txFixture, v url.Values) { v.Add("subject_token_type", "jwt") }}, 400, oAuthInvalidRequest, "given 2 times"},
		{"client secret in the body too", mutate{form: func(_ *txFixture, v url.Values) { v.Set("client_secret", DefaultExchangeClientSecret) }}, 400, oAuthInvalidRequest, "in the body"},
		{"other grant type", mutate{form: func(_ *txFixture, v url.Values) { v.Set("grant_type", "client_credentials") }}, 400, oAuthUnsupportedGrantType, "client_credentials"},
		{"no grant type", mutate{form: func(_ *txFixture, v url.Values) { v.Del("grant_type") }}, 400, oAuthUnsupportedGrantType, `grant_type ""`},
		{"RPST requested", mutate{form: func(_ *txFixture, v url.Values) { v.Set("requested_token_type", "urn:oci:token-type:oci-rpst") }}, 400, oAuthInvalidRequest, "oci-rpst"},
		{"no requested token type", mutate{form: func(_ *txFixture, v url.Values) { v.Del("requested_token_type") }}, 400, oAuthInvalidRequest, `requested_token_type ""`},
		{"RFC 8693 subject token type", mutate{form: func(_ *txFixture, v url.Values) { v.Set("subject_token_type", "urn:ietf:params:oauth:token-type:jwt") }}, 400, oAuthInvalidRequest, "subject_token_type"},
		{"no public key", mutate{form: func(_ *txFixture, v url.Values) { v.Del("public_key") }}, 400, oAuthInvalidRequest, "public_key: missing"},
		{"public key as PEM", mutate{form: func(f *txFixture, v url.Values) {
			v.Set("public_key", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(base64.StdEncoding.DecodeString(v.Get("public_key")))})))
		}}, 400, oAuthInvalidRequest, "PEM"},
		{"public key not base64", mutate{form: func(_ *txFixture, v url.Values) { v.Set("public_key", "not*base64") }}, 400, oAuthInvalidRequest, "not standard base64"},
		{"public key URL-safe base64", mutate{form: func(_ *txFixture, v url.Values) {
			v.Set("public_key", base64.RawURLEncoding.EncodeToString(must(base64.StdEncoding.DecodeString(v.Get("public_key")))))
		}}, 400, oAuthInvalidRequest, "not standard base64"},
		{"PKCS#1 key, not SPKI", mutate{form: func(f *txFixture, v url.Values) {
			v.Set("public_key", base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(&f.sess.PublicKey)))
		}}, 400, oAuthInvalidRequest, "not a DER SubjectPublicKeyInfo"},
		{"EC key", mutate{form: func(_ *txFixture, v url.Values) { v.Set("public_key", b64DER(&ec.PublicKey)) }}, 400, oAuthInvalidRequest, "not an RSA key"},
		{"1024-bit key", mutate{form: func(_ *txFixture, v url.Values) { v.Set("public_key", b64DER(&small.PublicKey)) }}, 400, oAuthInvalidRequest, "1024-bit"},
		{"no subject token", mutate{form: func(_ *txFixture, v url.Values) { v.Del("subject_token") }}, 400, oAuthInvalidRequest, "subject_token is missing"},
		{"subject token not a JWT", mutate{form: func(_ *txFixture, v url.Values) { v.Set("subject_token", "opaque-access-token") }}, 400, OAuthInvalidGrant, "not a JWT"},
		{"untrusted issuer", mutate{subj: &SubjectTokenOptions{Issuer: "https://elsewhere.example"}}, 400, OAuthInvalidGrant, "no Identity Propagation Trust"},
		{"signed by another key", mutate{form: func(f *txFixture, v url.Values) {
			v.Set("subject_token", newIdPWithKey(idpIssuer, Key(t, 3)).Mint(t, SubjectTokenOptions{IssuedAt: testNow}))
		}}, 400, OAuthInvalidGrant, "not signed by the trusted IdP's key"},
		{"HS256 with a shared secret", mutate{form: func(_ *txFixture, v url.Values) { v.Set("subject_token", hs256) }}, 400, OAuthInvalidGrant, "RS256 only"},
		{"other audience", mutate{subj: &SubjectTokenOptions{Audience: []string{"api://someone-else"}}}, 400, OAuthInvalidGrant, "does not hold the trust's audience"},
		{"expired", mutate{subj: &SubjectTokenOptions{IssuedAt: testNow.Add(-time.Hour), Lifetime: time.Minute}}, 400, OAuthInvalidGrant, "expired"},
		{"no exp", mutate{subj: &SubjectTokenOptions{Claims: map[string]any{"exp": nil}}}, 400, OAuthInvalidGrant, "required claim"},
		{"not valid yet", mutate{subj: &SubjectTokenOptions{NotBefore: testNow.Add(time.Hour)}}, 400, OAuthInvalidGrant, "not valid yet"},
		{"issued in the future", mutate{subj: &SubjectTokenOptions{IssuedAt: testNow.Add(time.Hour)}}, 400, OAuthInvalidGrant, "not valid yet"},
		{"no sub", mutate{subj: &SubjectTokenOptions{Claims: map[string]any{"sub": nil}}}, 400, OAuthInvalidGrant, "no sub"},
		{"refused by the domain", mutate{set: func(f *txFixture) { f.x.Refuse(OAuthUnauthorizedClient, "The user may not have a UPST.") }}, 400, OAuthUnauthorizedClient, "Refuse is on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTXFixture(t, is)
			if tc.m.set != nil {
				tc.m.set(f)
			}
			o := SubjectTokenOptions{}
			if tc.m.subj != nil {
				o = *tc.m.subj
			}
			v := f.form(t, f.subject(t, o))
			if tc.m.form != nil {
				tc.m.form(f, v)
			}
			r := f.post(t, v.Encode(), tc.m.req)
			wantOAuthError(t, f.x, r, tc.status, tc.code, tc.reason)
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// wantOAuthError checks an answer in OAuth's error shape and its record.
func wantOAuthError(t *testing.T, x *TokenExchange, r response, status int, code, reason string) {
	t.Helper()
	reqs := x.Requests()
	e := reqs[len(reqs)-1]
	if r.Status != status {
		t.Fatalf("status %d, body %s, reason %s; want %d", r.Status, r.Body, e.Reason, status)
	}
	var body map[string]string
	if err := json.Unmarshal(r.Body, &body); err != nil || len(body) != 2 || body["error"] != code || body["error_description"] == "" {
		t.Errorf("answer %s; want {\"error\": %q, \"error_description\": ...}", r.Body, code)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content-type %q", ct)
	}
	if (status == http.StatusUnauthorized) != (r.Header.Get("WWW-Authenticate") != "") {
		t.Errorf("status %d with WWW-Authenticate %q", status, r.Header.Get("WWW-Authenticate"))
	}
	if e.Status != status || e.Code != code || e.Token != "" || !strings.Contains(e.Reason, reason) {
		t.Errorf("recorded %d %s %q, token %v; want reason containing %q", e.Status, e.Code, e.Reason, e.Token != "", reason)
	}
	t.Logf("reason: %s", e.Reason)
}

func TestTokenExchangeAnswersOnlyItsEndpoint(t *testing.T) {
	f := newTXFixture(t, NewIssuer(t))
	r, err := http.Get(f.x.tokenURL())
	wantOAuthError(t, f.x, readResponse(t, r, err), http.StatusMethodNotAllowed, oAuthInvalidRequest, "only POST")
	r, err = http.Post(f.x.URL+"/oauth2/v1/authorize", "application/x-www-form-urlencoded", strings.NewReader(""))
	wantOAuthError(t, f.x, readResponse(t, r, err), http.StatusNotFound, oAuthInvalidRequest, "no endpoint")
}

func TestTokenExchangeFailNextThenAnswers(t *testing.T) {
	f := newTXFixture(t, NewIssuer(t))
	f.x.FailNext(2, http.StatusServiceUnavailable)
	body := f.form(t, f.subject(t, SubjectTokenOptions{})).Encode()
	for i := 0; i < 2; i++ {
		wantOAuthError(t, f.x, f.post(t, body, nil), http.StatusServiceUnavailable, oAuthTemporarilyUnavailable, "FailNext")
	}
	upstOf(t, f.post(t, body, nil))
	reqs := f.x.Requests()
	if !reqs[0].Failed || !reqs[1].Failed || reqs[2].Failed {
		t.Errorf("Failed flags %v %v %v", reqs[0].Failed, reqs[1].Failed, reqs[2].Failed)
	}
}

func TestIdPWriteTokenRotatesTheFile(t *testing.T) {
	idp := NewIdP(t, idpIssuer)
	path := filepath.Join(t.TempDir(), "tokens", "oidc-token")
	first := idp.WriteToken(t, path, SubjectTokenOptions{Subject: "first"})
	second := idp.WriteToken(t, path, SubjectTokenOptions{Subject: "second"})
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != second || first == second {
		t.Errorf("file holds %.20q…, want the second token", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v", fi.Mode(), err)
	}
	if entries, err := os.ReadDir(filepath.Dir(path)); err != nil || len(entries) != 1 {
		t.Errorf("folder holds %d entries (temporary files left?), %v", len(entries), err)
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(second, claims, func(*jwt.Token) (any, error) { return idp.PublicKey(), nil }, jwt.WithValidMethods([]string{"RS256"}))
	if err != nil || claims["sub"] != "second" || claims["iss"] != idpIssuer || tok.Header["kid"] == "" {
		t.Errorf("second token: %v, claims %v, header %v", err, claims, tok.Header)
	}
}

// TestTokenExchangeThroughOCIGoSDK has oci-go-sdk's workload identity
// federation provider exchange a JWT at the stand-in: what the SDK sends is
// what the stand-in takes, and what it answers is what the SDK reads.
func TestTokenExchangeThroughOCIGoSDK(t *testing.T) {
	t.Parallel()
	is := NewIssuer(t)
	x := NewTokenExchange(t, is)
	idp := NewIdP(t, idpIssuer)
	x.TrustIdP(idp, "oci")
	x.MapSubject("repo:acme/app:ref:refs/heads/main", "ocid1.user.oc1..ci")
	// Real time: the SDK judges the UPST's expiry by its own clock.
	jwtIn := idp.Mint(t, SubjectTokenOptions{Subject: "repo:acme/app:ref:refs/heads/main", Audience: []string{"oci"}})
	prov, err := sdkauth.TokenExchangeConfigurationProviderFromToken(jwtIn, sdkauth.TokenExchangeBuilder{
		DomainUrl: x.URL, ClientId: DefaultExchangeClientID, ClientSecret: DefaultExchangeClientSecret,
		Region: "us-ashburn-1", RequestedTokenType: tokenTypeUPST, SubjectTokenType: subjectTokenTypeJWT,
	})
	if err != nil {
		t.Fatal(err)
	}
	keyID, err := prov.KeyID()
	if err != nil {
		for _, e := range x.Requests() {
			t.Logf("exchange: %d %s %s", e.Status, e.Code, e.Reason)
		}
		t.Fatalf("SDK exchange: %v", err)
	}
	key, err := prov.PrivateRSAKey()
	if err != nil {
		t.Fatal(err)
	}
	upst, ok := strings.CutPrefix(keyID, "ST$")
	if !ok {
		t.Fatalf("keyId %.10q… is not ST$", keyID)
	}
	pub, tok, err := is.Verify(upst)
	if err != nil {
		t.Fatal(err)
	}
	if !samePublicKey(pub, &key.PublicKey) || tok.Subject != "ocid1.user.oc1..ci" {
		t.Errorf("UPST sub %q, bound to the SDK's key: %v", tok.Subject, samePublicKey(pub, &key.PublicKey))
	}
	if user, err := prov.UserOCID(); err != nil || user != "ocid1.user.oc1..ci" {
		t.Errorf("SDK UserOCID %q, %v", user, err)
	}
	reqs := x.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	form, err := url.ParseQuery(string(reqs[0].Body))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("oci-go-sdk sent Content-Type %q, form fields %v", reqs[0].Header.Get("Content-Type"), slices.Sorted(maps.Keys(form)))
	if form.Get("subject_token") != jwtIn || !strings.HasPrefix(reqs[0].Header.Get("Authorization"), "Basic ") {
		t.Errorf("SDK request %+v", reqs[0])
	}
}
