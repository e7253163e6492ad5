package signertest

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ocisigner/ocisigner/signer"
)

// The JWT-to-UPST token exchange of OCI IAM identity domains (July 2025),
// as the stand-in checks it. Sources:
//
//   - "Token Exchange Grant Type: Exchanging a JSON Web Token for a UPST",
//     https://docs.oracle.com/iaas/Content/Identity/api-getstarted/json_web_token_exchange.htm:
//     the endpoint is the identity domain's OAuth service, /oauth2/v1/token,
//     which "accepts both standard OAuth based authentication
//     headers/payload, and OCI Signatures"; the identity domain validates the
//     JWT against an Identity Propagation Trust (issuer, audience, the IdP's
//     key) and issues a short-lived UPST.
//   - oci-go-sdk v65.130.0 common/auth/workload_identity_federation.go
//     (TokenExchangeConfigurationProviderFromIssuer) and
//     common/auth/federation_client.go
//     (tokenExchangeFederationClient.newTokenExchangeToken): POST
//     <domain URL>/oauth2/v1/token, Content-Type
//     application/x-www-form-urlencoded, Authorization: Basic
//     base64(client_id ":" client_secret) (not form-encoded first), form
//     grant_type=urn:ietf:params:oauth:grant-type:token-exchange,
//     requested_token_type=urn:oci:token-type:oci-upst, subject_token=<JWT>,
//     subject_token_type (the caller's value; "jwt"), public_key=base64 of the
//     DER SubjectPublicKeyInfo of a fresh RSA key (utils.go
//     privateToPublicDERBase64, standard padded base64); the answer is
//     {"token": "<UPST>"} (struct Token, json:"token"), used as ST$<UPST>
//     with the key; a 4xx is not retried.
//   - oci-python-sdk src/oci/auth/signers/token_exchange_signer.py
//     (TokenExchangeSigner._get_new_token): the same request, public_key
//     being the SPKI PEM with its BEGIN/END lines and newlines removed (the
//     same base64), subject_token_type "jwt"; reads response["token"].
//
// Neither SDK sends scope, client_id in the body, or reads an error body
// (Go: "invalid token endpoint response <status>"; Python:
// raise_for_status). The stand-in answers errors in OAuth 2.0's shape
// (RFC 6749 section 5.2), {"error": "...", "error_description": "..."},
// 401 with WWW-Authenticate for client authentication failures and 400
// otherwise; that identity domains use exactly these codes is not stated in
// the sources above. The stand-in does not take OCI-signed exchange
// requests (oci-go-sdk's instance-principal variant), nor RPSTs
// (urn:oci:token-type:oci-rpst).
const (
	tokenExchangePath = "/oauth2/v1/token"

	grantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeUPST          = "urn:oci:token-type:oci-upst"
	subjectTokenTypeJWT    = "jwt"
)

// OAuth 2.0 error codes (RFC 6749 section 5.2) the stand-in answers with.
const (
	oAuthInvalidRequest         = "invalid_request"
	OAuthInvalidClient          = "invalid_client"
	OAuthInvalidGrant           = "invalid_grant"
	OAuthUnauthorizedClient     = "unauthorized_client"
	oAuthUnsupportedGrantType   = "unsupported_grant_type"
	oAuthServerError            = "server_error"
	oAuthTemporarilyUnavailable = "temporarily_unavailable"
)

// Defaults of a new TokenExchange.
const (
	DefaultExchangeClientID     = "signertest-oauth-client"
	DefaultExchangeClientSecret = "signertest-oauth-secret"
	DefaultExchangeUser         = "ocid1.user.oc1..tokenexchange"
	DefaultExchangeTenancy      = "ocid1.tenancy.oc1..tokenexchange"
	defaultUPSTLifetime         = time.Hour
	// minExchangeKeyBits is the smallest session key the stand-in takes;
	// oci-go-sdk sends 3072-bit keys, the Python SDK 2048-bit ones.
	minExchangeKeyBits = 2048
)

// Defaults of the subject tokens an IdP mints.
const (
	DefaultIdPSubject  = "workload@idp.example"
	DefaultIdPAudience = "oci-token-exchange"
	defaultIdPLifetime = 10 * time.Minute
)

// IdP is a test's trusted identity provider (Okta, Entra ID, a CI's OIDC
// issuer...): it mints the RS256 JWTs a workload exchanges for a UPST, and
// writes them to the token file a workload reads, as a CI runner or the
// kubelet would.
type IdP struct {
	Issuer string
	key    *rsa.PrivateKey
	kid    string
}

var (
	idpOnce sync.Once
	idpKey  *rsa.PrivateKey
)

// NewIdP returns an IdP for issuer. All of a process's NewIdP share one
// signing key (generating keys is slow) that neither Key(t, i) nor an
// Issuer uses; newIdPWithKey makes one a trust does not cover.
func NewIdP(t testing.TB, issuer string) *IdP {
	t.Helper()
	idpOnce.Do(func() {
		k, err := fixedKey(idpKeyAt)
		if err != nil {
			panic(err)
		}
		idpKey = k
	})
	return newIdPWithKey(issuer, idpKey)
}

// newIdPWithKey returns an IdP for issuer that signs with key.
func newIdPWithKey(issuer string, key *rsa.PrivateKey) *IdP {
	return &IdP{Issuer: issuer, key: key, kid: signer.Fingerprint(&key.PublicKey)}
}

// PublicKey is the key its tokens verify with.
func (p *IdP) PublicKey() *rsa.PublicKey { return &p.key.PublicKey }

// SubjectTokenOptions shape a minted subject token. Zero values give a
// ten-minute token issued now for DefaultIdPSubject and DefaultIdPAudience.
type SubjectTokenOptions struct {
	Subject   string
	Audience  []string
	Issuer    string // overrides the IdP's, for a token that lies about its issuer
	IssuedAt  time.Time
	Lifetime  time.Duration
	NotBefore time.Time // zero: no nbf claim
	// Claims are set last: extra claims, or a registered one replaced (a
	// nil value removes it, e.g. "exp": nil for a token that never expires).
	Claims map[string]any
}

// Mint returns a subject token.
func (p *IdP) Mint(t testing.TB, o SubjectTokenOptions) string {
	t.Helper()
	if o.Subject == "" {
		o.Subject = DefaultIdPSubject
	}
	if len(o.Audience) == 0 {
		o.Audience = []string{DefaultIdPAudience}
	}
	if o.Issuer == "" {
		o.Issuer = p.Issuer
	}
	if o.IssuedAt.IsZero() {
		o.IssuedAt = time.Now()
	}
	if o.Lifetime == 0 {
		o.Lifetime = defaultIdPLifetime
	}
	claims := jwt.MapClaims{
		"iss": o.Issuer,
		"sub": o.Subject,
		"aud": o.Audience,
		"iat": o.IssuedAt.Unix(),
		"exp": o.IssuedAt.Add(o.Lifetime).Unix(),
	}
	if !o.NotBefore.IsZero() {
		claims["nbf"] = o.NotBefore.Unix()
	}
	for k, v := range o.Claims {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = p.kid
	s, err := tok.SignedString(p.key)
	if err != nil {
		t.Fatalf("signertest: minting a subject token: %v", err)
	}
	return s
}

// WriteToken mints a token and puts it in path (mode 0600) by renaming a
// temporary file over it, so that a reader sees the old token or the new,
// never half of one: calling it again rotates the file. It returns the
// token written.
func (p *IdP) WriteToken(t testing.TB, path string, o SubjectTokenOptions) string {
	t.Helper()
	tok := p.Mint(t, o)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	tmp := fmt.Sprintf("%s.tmp%d", path, renameSeq.Add(1))
	if err := os.WriteFile(tmp, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return tok
}

// trust is an Identity Propagation Trust: which IdP's tokens the domain
// takes, for which audience.
type trust struct {
	issuer   string
	audience string
	key      *rsa.PublicKey
}

// TokenExchange is a stand-in for an OCI IAM identity domain's token
// endpoint doing the JWT-to-UPST exchange (see the sources above). It
// listens on 127.0.0.1 only; URL stands for https://idcs-<id>.identity.oraclecloud.com.
// It starts out knowing the OAuth client DefaultExchangeClientID /
// DefaultExchangeClientSecret and trusting no IdP. UPSTs are minted by the
// Issuer it was made with, so a Server trusting that Issuer takes
// ST$<UPST> signed with the exchanged key.
type TokenExchange struct {
	URL  string // http://127.0.0.1:port, the identity domain URL
	Addr string // 127.0.0.1:port

	is *Issuer

	mu    sync.Mutex
	clock func() time.Time
	set   exchangeSettings // its now is unset: settings dates a copy

	fail failer
	log  exchangeLog
}

// NewTokenExchange starts a token endpoint minting with is; t.Cleanup closes it.
func NewTokenExchange(t testing.TB, is *Issuer) *TokenExchange {
	t.Helper()
	x := &TokenExchange{is: is, clock: time.Now, set: exchangeSettings{
		clients: map[string]string{DefaultExchangeClientID: DefaultExchangeClientSecret},
		users:   map[string]string{}, tenancy: DefaultExchangeTenancy, lifetime: defaultUPSTLifetime,
	}}
	hs := startLoopback(t, x, nil)
	x.URL, x.Addr = hs.URL, hs.Listener.Addr().String()
	return x
}

// tokenURL is the endpoint, URL + tokenExchangePath.
func (x *TokenExchange) tokenURL() string { return x.URL + tokenExchangePath }

// RegisterClient makes an OAuth client (a confidential application of the
// domain) known, or changes its secret.
func (x *TokenExchange) RegisterClient(id, secret string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.set.clients[id] = secret
}

// TrustIdP makes the domain take p's tokens whose aud holds audience, as
// an Identity Propagation Trust for p.Issuer does.
func (x *TokenExchange) TrustIdP(p *IdP, audience string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.set.trusts = append(x.set.trusts, trust{issuer: p.Issuer, audience: audience, key: p.PublicKey()})
}

// MapSubject makes a subject token's sub become user (a user OCID) in the
// UPST; a subject not mapped becomes DefaultExchangeUser.
func (x *TokenExchange) MapSubject(sub, user string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.set.users[sub] = user
}

// setTenancy sets the tenant claim of the UPSTs issued.
func (x *TokenExchange) setTenancy(ocid string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.set.tenancy = ocid
}

// SetLifetime sets the lifetime of the UPSTs issued; zero restores the default.
func (x *TokenExchange) SetLifetime(d time.Duration) {
	if d <= 0 {
		d = defaultUPSTLifetime
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.set.lifetime = d
}

// SetClock sets the clock subject tokens are judged by and UPSTs dated by;
// nil restores time.Now.
func (x *TokenExchange) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.clock = now
}

// Refuse makes exchanges that pass every check answered with the OAuth
// error code (401 for invalid_client, else 400) and description instead,
// as a domain answers when the trust maps the subject to no user or the
// user may not have a UPST; an empty code stops refusing.
func (x *TokenExchange) Refuse(code, description string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if code == "" {
		x.set.refusal = nil
		return
	}
	x.set.refusal = &oauthError{status: oauthStatus(code), code: code, description: description, reason: "Refuse is on: " + code}
}

// FailNext answers the next n requests, whatever they are, with status
// (server_error, or temporarily_unavailable for 503) before looking at
// them; n <= 0 stops failing.
func (x *TokenExchange) FailNext(n, status int) { x.fail.set(n, status) }

// Requests returns what the endpoint has received so far, in completion
// order. Exchange.Code and Message hold the OAuth error and description.
func (x *TokenExchange) Requests() []Exchange { return x.log.all() }

// oauthError is a refusal in OAuth 2.0's shape.
type oauthError struct {
	status      int
	code        string
	description string
	reason      string
}

func oauthStatus(code string) int {
	if code == OAuthInvalidClient {
		return http.StatusUnauthorized
	}
	return http.StatusBadRequest
}

func oauthErr(code, description, format string, args ...any) *oauthError {
	return &oauthError{status: oauthStatus(code), code: code, description: description, reason: fmt.Sprintf(format, args...)}
}

// exchangeSettings is what an exchange is judged by, dated now.
type exchangeSettings struct {
	now      time.Time
	clients  map[string]string
	trusts   []trust
	users    map[string]string
	tenancy  string
	lifetime time.Duration
	refusal  *oauthError
}

func (x *TokenExchange) settings() exchangeSettings {
	x.mu.Lock()
	defer x.mu.Unlock()
	st := x.set
	st.now = x.clock()
	st.clients, st.users, st.trusts = maps.Clone(st.clients), maps.Clone(st.users), slices.Clone(st.trusts)
	return st
}

// ServeHTTP answers a request as an identity domain's token endpoint does
// for the JWT-to-UPST exchange.
func (x *TokenExchange) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := x.log.start(r)
	defer x.log.add(e)
	if status, ok := x.fail.take(); ok {
		e.Failed = true
		code := oAuthServerError
		if status == http.StatusServiceUnavailable {
			code = oAuthTemporarilyUnavailable
		}
		x.answerError(w, e, &oauthError{status: status, code: code, description: "The service is not answering normally.", reason: fmt.Sprintf("FailNext: answering %d", status)})
		return
	}
	tok, oerr := x.exchange(r, e)
	if oerr != nil {
		x.answerError(w, e, oerr)
		return
	}
	e.Status, e.Token = http.StatusOK, tok
	// RFC 6749 section 5.1: token answers are not to be cached.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

func (x *TokenExchange) answerError(w http.ResponseWriter, e *Exchange, o *oauthError) {
	e.Status, e.Code, e.Message, e.Reason = o.status, o.code, o.description, o.reason
	if o.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="identity domain"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, o.status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{o.code, o.description})
}

// exchange checks the request in the order a token endpoint does (the
// client, then the form, then the grant) and mints the UPST.
func (x *TokenExchange) exchange(r *http.Request, e *Exchange) (string, *oauthError) {
	if r.URL.Path != tokenExchangePath {
		return "", &oauthError{status: http.StatusNotFound, code: oAuthInvalidRequest, description: "Not found.", reason: fmt.Sprintf("no endpoint %s", r.URL.Path)}
	}
	if r.Method != http.MethodPost {
		return "", &oauthError{status: http.StatusMethodNotAllowed, code: oAuthInvalidRequest,
			description: "The token endpoint takes POST.", reason: fmt.Sprintf("%s: only POST is answered", r.Method)}
	}
	st := x.settings()

	auths := r.Header.Values("Authorization")
	if len(auths) != 1 {
		return "", oauthErr(OAuthInvalidClient, "Client authentication failed.", "want one Authorization header (Basic client_id:client_secret), got %d", len(auths))
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		scheme, _, _ := strings.Cut(auths[0], " ")
		return "", oauthErr(OAuthInvalidClient, "Client authentication failed.", "Authorization scheme %q is not Basic base64(client_id:client_secret)", scheme)
	}
	if want, known := st.clients[id]; !known || want != secret {
		return "", oauthErr(OAuthInvalidClient, "Client authentication failed.", "client %q is unknown or its secret (%s) is wrong", id, signer.MaskSecret(secret))
	}

	if mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return "", oauthErr(oAuthInvalidRequest, "The request must be form-encoded.", "Content-Type %q is not application/x-www-form-urlencoded", r.Header.Get("Content-Type"))
	} else if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return "", oauthErr(oAuthInvalidRequest, "The request must be UTF-8.", "charset %q is not utf-8", cs)
	}
	b, rej := readBody(r, maxTokenRequestBody, false)
	e.Body = b.buf
	if rej != nil {
		return "", oauthErr(oAuthInvalidRequest, "The request body could not be read.", "%s", rej.reason)
	}
	form, err := url.ParseQuery(string(b.buf))
	if err != nil {
		return "", oauthErr(oAuthInvalidRequest, "The request body is not a form.", "parsing the form: %v", err)
	}
	// RFC 6749 section 3.2: parameters must not be repeated.
	for k, v := range form {
		if len(v) != 1 {
			return "", oauthErr(oAuthInvalidRequest, "A parameter is repeated.", "parameter %s given %d times", k, len(v))
		}
	}
	if form.Has("client_secret") || form.Has("client_id") {
		return "", oauthErr(oAuthInvalidRequest, "Use one client authentication method.", "client credentials in the body as well as in Authorization (the SDKs use Basic only)")
	}
	if g := form.Get("grant_type"); g != grantTypeTokenExchange {
		return "", oauthErr(oAuthUnsupportedGrantType, "The grant type is not supported.", "grant_type %q is not %s", g, grantTypeTokenExchange)
	}
	if rt := form.Get("requested_token_type"); rt != tokenTypeUPST {
		return "", oauthErr(oAuthInvalidRequest, "The requested token type is not supported.", "requested_token_type %q is not %s", rt, tokenTypeUPST)
	}
	if stt := form.Get("subject_token_type"); stt != subjectTokenTypeJWT {
		return "", oauthErr(oAuthInvalidRequest, "The subject token type is not supported.", "subject_token_type %q is not %q", stt, subjectTokenTypeJWT)
	}
	pub, why := parseExchangeKey(form.Get("public_key"))
	if why != "" {
		return "", oauthErr(oAuthInvalidRequest, "The public key is invalid.", "public_key: %s", why)
	}
	sub, oerr := verifySubjectToken(form.Get("subject_token"), st)
	if oerr != nil {
		return "", oerr
	}
	if st.refusal != nil {
		return "", st.refusal
	}

	user, ok := st.users[sub]
	if !ok {
		user = DefaultExchangeUser
	}
	// A user principal session token: ptype user, bound to the key sent.
	// No sess_exp: it is not refreshed but exchanged again.
	claims := jwt.MapClaims{
		"iss":    "authService.oracle.com",
		"aud":    "oci",
		"sub":    user,
		"tenant": st.tenancy,
		"ptype":  "user",
		"iat":    st.now.Unix(),
		"exp":    st.now.Add(st.lifetime).Unix(),
		"jwk":    signer.JWK(pub, "sess"),
	}
	tok, err := x.is.mintClaims(claims)
	if err != nil {
		return "", &oauthError{status: http.StatusInternalServerError, code: oAuthServerError, description: "Internal error.", reason: fmt.Sprintf("minting the UPST: %v", err)}
	}
	return tok, nil
}

// parseExchangeKey reads public_key as the SDKs send it: standard base64 of
// an RSA key's DER SubjectPublicKeyInfo, no PEM lines. It returns why not.
func parseExchangeKey(s string) (*rsa.PublicKey, string) {
	if s == "" {
		return nil, "missing"
	}
	if strings.Contains(s, "-----") || strings.ContainsAny(s, "\r\n \t") {
		return nil, "a PEM block; the SDKs send the bare base64 of the DER, BEGIN/END lines and newlines removed"
	}
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Sprintf("not standard base64: %v", err)
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Sprintf("not a DER SubjectPublicKeyInfo: %v", err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Sprintf("a %T, not an RSA key", k)
	}
	if pub.N.BitLen() < minExchangeKeyBits {
		return nil, fmt.Sprintf("a %d-bit key; at least %d bits", pub.N.BitLen(), minExchangeKeyBits)
	}
	return pub, ""
}

// verifySubjectToken checks the JWT against the trust for its issuer:
// RS256 signature by the IdP's key, aud holding the trust's audience, exp
// required and in the future, nbf and iat not in the future, and a sub.
// It returns the subject.
func verifySubjectToken(raw string, st exchangeSettings) (string, *oauthError) {
	const bad = "The subject token is invalid."
	if raw == "" {
		return "", oauthErr(oAuthInvalidRequest, "subject_token is required.", "subject_token is missing")
	}
	unverified := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, unverified); err != nil {
		return "", oauthErr(OAuthInvalidGrant, bad, "subject_token is not a JWT: %v", err)
	}
	iss, _ := unverified["iss"].(string)
	var tr *trust
	for i := range st.trusts {
		if st.trusts[i].issuer == iss {
			tr = &st.trusts[i]
			break
		}
	}
	if tr == nil {
		return "", oauthErr(OAuthInvalidGrant, bad, "no Identity Propagation Trust for issuer %q (TrustIdP)", iss)
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return tr.key, nil },
		jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(tr.issuer), jwt.WithAudience(tr.audience),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithTimeFunc(func() time.Time { return st.now }))
	if err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
			return "", oauthErr(OAuthInvalidGrant, bad, "subject_token is not signed by the trusted IdP's key for %s (RS256 only): %v", iss, err)
		case errors.Is(err, jwt.ErrTokenExpired):
			return "", oauthErr(OAuthInvalidGrant, bad, "subject_token expired (exp %s, domain clock %s)", claimTime(claims, "exp"), st.now.UTC().Format(time.RFC3339))
		case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
			return "", oauthErr(OAuthInvalidGrant, bad, "subject_token lacks a required claim: %v", err)
		case errors.Is(err, jwt.ErrTokenInvalidAudience):
			return "", oauthErr(OAuthInvalidGrant, bad, "subject_token aud %v does not hold the trust's audience %q", claims["aud"], tr.audience)
		case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			return "", oauthErr(OAuthInvalidGrant, bad, "subject_token is not valid yet (nbf %s, iat %s, domain clock %s)", claimTime(claims, "nbf"), claimTime(claims, "iat"), st.now.UTC().Format(time.RFC3339))
		}
		return "", oauthErr(OAuthInvalidGrant, bad, "subject_token: %v", err)
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		return "", oauthErr(OAuthInvalidGrant, bad, "subject_token has no sub")
	}
	return sub, nil
}

// claimTime renders a NumericDate claim for a reason, "none" if absent.
func claimTime(c jwt.MapClaims, name string) string {
	v, ok := c[name].(float64)
	if !ok {
		return "none"
	}
	return time.Unix(int64(v), 0).UTC().Format(time.RFC3339)
}

// exchangeForm is the form of a JWT-to-UPST exchange as the SDKs send it,
// for tests that build requests by hand.
func exchangeForm(subjectToken string, pub *rsa.PublicKey) (url.Values, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("signertest: marshalling the public key: %w", err)
	}
	return url.Values{
		"grant_type":           {grantTypeTokenExchange},
		"requested_token_type": {tokenTypeUPST},
		"subject_token":        {subjectToken},
		"subject_token_type":   {subjectTokenTypeJWT},
		"public_key":           {base64.StdEncoding.EncodeToString(der)},
	}, nil
}
