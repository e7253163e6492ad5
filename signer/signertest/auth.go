package signertest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ocisigner/ocisigner/signer"
)

// This file holds the auth service stand-in and what the three token
// stand-ins (auth service, instance metadata service, proxymux) share: the
// request log, FailNext and the loopback listener. Like Server, they verify
// requests without any code of package signer's signing path.

// Paths of the auth service endpoints the stand-in answers.
const (
	AuthRefreshPath = "/v1/authentication/refresh" // what `oci session refresh` calls
	AuthX509Path    = "/v1/x509"                   // instance-principal federation
)

// Lifetimes of the tokens the stand-ins issue unless told otherwise. OCI
// issues one-hour session tokens, instance tokens of about twenty minutes,
// and one-hour workload tokens.
const (
	defaultSessionLifetime  = time.Hour
	defaultInstanceLifetime = 20 * time.Minute
	defaultWorkloadLifetime = time.Hour
)

// maxTokenRequestBody caps the bodies the token stand-ins read: the largest
// real one, an x509 federation request, is a few KiB.
const maxTokenRequestBody = 1 << 20

// Exchange is one request a token stand-in received and how it answered,
// for tests to assert on (and to read Reason when a product test fails).
// Header and Body are shared by every copy the log hands out: read them,
// do not change them.
type Exchange struct {
	Seq        int64  // arrival order, from 1
	RequestID  string // the opc-request-id answered, if any
	Method     string
	RequestURI string // the target exactly as received
	Path       string // r.URL.Path
	Host       string
	Header     http.Header
	Body       []byte // the body as received (up to 1 MiB), when it was read

	KeyID         string   // the signature's keyId (auth service only)
	SignedHeaders []string // the signature's headers= (auth service only)

	Status  int
	Code    string // the error code answered, "" on success
	Message string // the error message answered, "" on success
	// Reason is the stand-in's precise account of a rejection; the real
	// services' messages are deliberately vague, this is not.
	Reason string
	// Failed reports that FailNext chose the answer, whatever the request.
	Failed bool
	// Token is the JWT issued (without ST$), when one was.
	Token string
}

// exchangeLog numbers and keeps exchanges; it is safe for concurrent use.
type exchangeLog struct {
	seq atomic.Int64
	mu  sync.Mutex
	log []Exchange
}

// start opens the record of r. The caller fills in the answer and passes
// the record to add once it has answered.
func (l *exchangeLog) start(r *http.Request) *Exchange {
	return &Exchange{
		Seq: l.seq.Add(1), Method: r.Method, RequestURI: r.RequestURI, Path: r.URL.Path,
		Host: r.Host, Header: r.Header.Clone(),
	}
}

func (l *exchangeLog) add(e *Exchange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = append(l.log, *e)
}

func (l *exchangeLog) all() []Exchange {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Exchange(nil), l.log...)
}

// failer answers the next n requests with a fixed status, for tests of a
// client's retries and backoff.
type failer struct {
	mu     sync.Mutex
	n      int
	status int
}

func (f *failer) set(n, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n, f.status = max(n, 0), status
}

// take reports whether this request is one to fail, and with what status.
func (f *failer) take() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		return 0, false
	}
	f.n--
	return f.status, true
}

// errorCode is the OCI error code that goes with a status, for answers
// FailNext makes up.
func errorCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return codeInvalidParameter
	case http.StatusUnauthorized:
		return CodeNotAuthenticated
	case http.StatusNotFound:
		return "NotAuthorizedOrNotFound"
	case http.StatusTooManyRequests:
		return "TooManyRequests"
	}
	if s := strings.ReplaceAll(http.StatusText(status), " ", ""); s != "" {
		return s
	}
	return fmt.Sprintf("Status%d", status)
}

// answerError writes OCI's JSON error and notes it in e.
func answerError(w http.ResponseWriter, e *Exchange, rej *rejection) {
	e.Status, e.Code, e.Message, e.Reason = rej.status, rej.code, rej.message, rej.reason
	writeJSON(w, rej.status, struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{rej.code, rej.message})
}

// failNextRejection is the answer FailNext makes.
func failNextRejection(status int) *rejection {
	return &rejection{status: status, code: errorCode(status),
		message: "Injected failure: the service is not answering normally.", reason: fmt.Sprintf("FailNext: answering %d", status)}
}

// startLoopback serves h on 127.0.0.1 (never [::1], which httptest.NewServer
// may fall back to) and closes it at t's cleanup. configure, when given,
// finishes setting the server up and starts it (as StartTLS does).
func startLoopback(t testing.TB, h http.Handler, configure func(*httptest.Server)) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("signertest: listen: %v", err)
	}
	hs := &httptest.Server{Listener: ln, Config: &http.Server{Handler: h, ReadHeaderTimeout: time.Minute}}
	if configure != nil {
		configure(hs)
	} else {
		hs.Start()
	}
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
	})
	return hs
}

// AuthService is a stand-in for OCI's auth service (auth.<region>.<realm
// domain>): it refreshes session tokens as `oci session refresh` asks it to,
// and federates instance principals as oci-go-sdk's x509 federation client
// asks it to. Tokens are minted by the Issuer it was made with, which is
// also the only issuer whose tokens it takes for refresh. It listens on
// 127.0.0.1 only.
type AuthService struct {
	URL  string // http://127.0.0.1:port: what stands for https://auth.<region>.<domain>
	Addr string // 127.0.0.1:port

	is *Issuer

	mu               sync.Mutex
	clock            func() time.Time
	sessionLifetime  time.Duration
	instanceLifetime time.Duration
	refuseRefresh    bool
	roots            []*x509.Certificate

	fail failer
	log  exchangeLog
}

// NewAuthService starts an auth service minting with is; t.Cleanup closes it.
func NewAuthService(t testing.TB, is *Issuer) *AuthService {
	t.Helper()
	a := &AuthService{is: is, clock: time.Now, sessionLifetime: defaultSessionLifetime, instanceLifetime: defaultInstanceLifetime}
	hs := startLoopback(t, a, nil)
	a.URL, a.Addr = hs.URL, hs.Listener.Addr().String()
	return a
}

// SetClock sets the clock that judges the signed date, token expiry, the
// session end and certificate validity, and dates the tokens issued; nil
// restores time.Now.
func (a *AuthService) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.clock = now
}

// setSessionLifetime sets the lifetime of refreshed session tokens (they
// never outlive their session's sess_exp); zero restores the default.
func (a *AuthService) setSessionLifetime(d time.Duration) {
	if d <= 0 {
		d = defaultSessionLifetime
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sessionLifetime = d
}

// SetInstanceLifetime sets the lifetime of instance-principal tokens; zero
// restores the default.
func (a *AuthService) SetInstanceLifetime(d time.Duration) {
	if d <= 0 {
		d = defaultInstanceLifetime
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.instanceLifetime = d
}

// RefuseRefresh makes refresh requests that are otherwise fine get a 401, as
// OCI answers once it will no longer refresh a session.
func (a *AuthService) RefuseRefresh(refuse bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refuseRefresh = refuse
}

// TrustRoot makes the x509 endpoint accept leaf certificates that chain,
// through an intermediate sent with them, to root (MetadataService.Root).
func (a *AuthService) TrustRoot(root *x509.Certificate) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.roots = append(a.roots, root)
}

// FailNext answers the next n requests, whatever they are, with status and
// an OCI error body, before looking at them; n <= 0 stops failing.
func (a *AuthService) FailNext(n, status int) { a.fail.set(n, status) }

// Requests returns what the service has received so far, in completion order.
func (a *AuthService) Requests() []Exchange { return a.log.all() }

type authSettings struct {
	now              time.Time
	sessionLifetime  time.Duration
	instanceLifetime time.Duration
	refuseRefresh    bool
	roots            []*x509.Certificate
}

func (a *AuthService) settings() authSettings {
	a.mu.Lock()
	defer a.mu.Unlock()
	return authSettings{a.clock(), a.sessionLifetime, a.instanceLifetime, a.refuseRefresh, append([]*x509.Certificate(nil), a.roots...)}
}

// ServeHTTP answers a request as the auth service does.
func (a *AuthService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := a.log.start(r)
	defer a.log.add(e)
	e.RequestID = fmt.Sprintf("%016X%016X", e.Seq, uint64(time.Now().UnixNano()))
	if c := r.Header.Get("opc-request-id"); c != "" {
		e.RequestID = c + "/" + e.RequestID
	}
	w.Header().Set("opc-request-id", e.RequestID)

	if status, ok := a.fail.take(); ok {
		e.Failed = true
		answerError(w, e, failNextRejection(status))
		return
	}
	var required []string
	switch r.URL.Path {
	case AuthRefreshPath:
		// An ordinary POST: OCI's usual required headers.
		required = []string{"(request-target)", "host", "content-length", "content-type", "x-content-sha256"}
	case AuthX509Path:
		// The SDKs sign federation requests without host (oci-go-sdk's
		// genericHeaders: "host is not needed for the federation endpoint").
		required = []string{"(request-target)", "content-length", "content-type", "x-content-sha256"}
	default:
		answerError(w, e, &rejection{status: http.StatusNotFound, code: "NotAuthorizedOrNotFound",
			message: "Authorization failed or requested resource not found.", reason: fmt.Sprintf("no endpoint %s", r.URL.Path)})
		return
	}
	if r.Method != http.MethodPost {
		answerError(w, e, &rejection{status: http.StatusMethodNotAllowed, code: "MethodNotAllowed",
			message: "The method is not allowed on this resource.", reason: fmt.Sprintf("%s %s: only POST is answered", r.Method, r.URL.Path)})
		return
	}

	st := a.settings()
	sr, rej := parseSignedRequest(r, required, st.now)
	if sr != nil {
		e.KeyID, e.SignedHeaders = sr.keyID, sr.names
	}
	if rej != nil {
		answerError(w, e, rej)
		return
	}
	b, rej := readBody(r, maxTokenRequestBody, false)
	e.Body = b.buf
	if rej == nil {
		rej = checkBody(r, b)
	}
	if rej != nil {
		answerError(w, e, rej)
		return
	}

	var tok string
	if r.URL.Path == AuthRefreshPath {
		tok, rej = a.refresh(sr, b.buf, st)
	} else {
		tok, rej = a.federate(sr, b.buf, st)
	}
	if rej != nil {
		answerError(w, e, rej)
		return
	}
	e.Status, e.Token = http.StatusOK, tok
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

// refresh checks a refresh request whose headers parsed and whose body
// matched its digest, and mints the successor of its token.
func (a *AuthService) refresh(sr *signedRequest, body []byte, st authSettings) (string, *rejection) {
	raw, ok := strings.CutPrefix(sr.keyID, "ST$")
	if !ok {
		return "", notAuthenticated(msgRequiredInfo, "refresh must be signed with the session key, keyId ST$<current token>; got keyId %q", sr.keyID)
	}
	pub, tok, err := a.is.Verify(raw)
	if err != nil {
		return "", notAuthenticated(msgRequiredInfo, "the keyId's token was not minted by the service's issuer, or names no jwk: %v", err)
	}
	if !st.now.Before(tok.Expiry) {
		return "", notAuthenticated(msgRequiredInfo, "the keyId's token expired at %s (service clock %s)", tok.Expiry.UTC().Format(time.RFC3339), st.now.UTC().Format(time.RFC3339))
	}
	if rej := sr.verify(pub); rej != nil {
		return "", rej
	}

	fields, rej := jsonObject(body, "currentToken")
	if rej != nil {
		return "", rej
	}
	var current string
	if err := json.Unmarshal(fields["currentToken"], &current); err != nil || current == "" {
		return "", invalidParameter("currentToken must be a non-empty string; body %s", body)
	}
	if current != raw {
		return "", notAuthenticated(msgRequiredInfo, "currentToken in the body is not the token of the keyId")
	}
	if st.refuseRefresh {
		return "", notAuthenticated(msgRequiredInfo, "RefuseRefresh is on")
	}
	if tok.SessionEnd.IsZero() {
		return "", notAuthenticated(msgRequiredInfo, "the token has no sess_exp: it is not a refreshable session token")
	}
	if !st.now.Before(tok.SessionEnd) {
		return "", notAuthenticated(msgRequiredInfo, "the session ended at %s (service clock %s)", tok.SessionEnd.UTC().Format(time.RFC3339), st.now.UTC().Format(time.RFC3339))
	}

	// The successor is the same session: every claim is kept (jwk, sub,
	// tenant, ptype, sess_exp, verbatim) but the times and the token id.
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, claims); err != nil {
		return "", notAuthenticated(msgRequiredInfo, "reading the token's claims: %v", err)
	}
	exp := st.now.Add(st.sessionLifetime)
	if exp.After(tok.SessionEnd) {
		exp = tok.SessionEnd
	}
	claims["iat"] = st.now.Unix()
	claims["exp"] = exp.Unix()
	out, err := a.is.mintClaims(claims)
	if err != nil {
		return "", internalError("minting the refreshed token: %v", err)
	}
	return out, nil
}

// federate checks an x509 federation request whose headers parsed and whose
// body matched its digest, and mints an instance-principal token.
func (a *AuthService) federate(sr *signedRequest, body []byte, st authSettings) (string, *rejection) {
	tenancy, fp, ok := strings.Cut(sr.keyID, "/fed-x509-sha256/")
	if !ok || tenancy == "" || fp == "" || strings.Contains(fp, "/") {
		return "", notAuthenticated(msgRequiredInfo, "keyId %q is not <tenancy>/fed-x509-sha256/<leaf fingerprint>", sr.keyID)
	}
	fields, rej := jsonObject(body, "certificate", "publicKey", "intermediateCertificates", "fingerprintAlgorithm")
	if rej != nil {
		return "", rej
	}
	var req struct {
		Certificate, PublicKey, FingerprintAlgorithm string
		Intermediates                                []string
	}
	for name, dst := range map[string]any{
		"certificate": &req.Certificate, "publicKey": &req.PublicKey,
		"fingerprintAlgorithm": &req.FingerprintAlgorithm, "intermediateCertificates": &req.Intermediates,
	} {
		if v, ok := fields[name]; ok {
			if err := json.Unmarshal(v, dst); err != nil {
				return "", invalidParameter("%s: %v", name, err)
			}
		}
	}
	if req.FingerprintAlgorithm != "SHA256" {
		return "", invalidParameter("fingerprintAlgorithm is %q; the SDK sends \"SHA256\" to match fed-x509-sha256", req.FingerprintAlgorithm)
	}
	leafDER, err := sanitizedDER(req.Certificate)
	if err != nil {
		return "", invalidParameter("certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		return "", invalidParameter("certificate: %v", err)
	}
	if got := CertFingerprint(leaf); got != fp {
		return "", notAuthenticated(msgRequiredInfo, "keyId names fingerprint %s but the certificate in the body has %s", fp, got)
	}
	inter := x509.NewCertPool()
	interSeen := make(map[string]bool)
	for i, s := range req.Intermediates {
		der, err := sanitizedDER(s)
		if err != nil {
			return "", invalidParameter("intermediateCertificates[%d]: %v", i, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return "", invalidParameter("intermediateCertificates[%d]: %v", i, err)
		}
		inter.AddCert(c)
		interSeen[string(c.Raw)] = true
	}
	if len(st.roots) == 0 {
		return "", notAuthenticated(msgRequiredInfo, "the service trusts no root (call TrustRoot)")
	}
	roots := x509.NewCertPool()
	for _, c := range st.roots {
		roots.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: st.now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return "", notAuthenticated(msgRequiredInfo, "leaf certificate does not chain to a trusted root at %s: %v", st.now.UTC().Format(time.RFC3339), err)
	}
	viaIntermediate := false
	for _, ch := range chains {
		viaIntermediate = viaIntermediate || len(ch) >= 3 && interSeen[string(ch[1].Raw)]
	}
	if !viaIntermediate {
		return "", notAuthenticated(msgRequiredInfo, "leaf certificate chains to a root but not through an intermediate sent with it")
	}
	if got := certTenancy(leaf); got != tenancy {
		return "", notAuthenticated(msgRequiredInfo, "keyId names tenancy %q but the leaf certificate is for %q", tenancy, got)
	}
	leafPub, ok := leaf.PublicKey.(*rsa.PublicKey)
	if !ok {
		return "", notAuthenticated(msgRequiredInfo, "leaf certificate key is %T, not RSA", leaf.PublicKey)
	}
	if rej := sr.verify(leafPub); rej != nil {
		return "", rej
	}
	sessDER, err := sanitizedDER(req.PublicKey)
	if err != nil {
		return "", invalidParameter("publicKey: %v", err)
	}
	k, err := x509.ParsePKIXPublicKey(sessDER)
	if err != nil {
		return "", invalidParameter("publicKey is not a PKIX public key: %v", err)
	}
	sessPub, ok := k.(*rsa.PublicKey)
	if !ok {
		return "", invalidParameter("publicKey is %T, not RSA", k)
	}

	// An instance token, shaped as the auth service's: no sess_exp (it is
	// not refreshed but federated again), the certificate's OU values as
	// opc-* claims.
	instance := certOU(leaf, "opc-instance:")
	if instance == "" {
		instance = leaf.Subject.CommonName
	}
	claims := jwt.MapClaims{
		"iss":             "authService.oracle.com",
		"aud":             "oci",
		"sub":             instance,
		"tenant":          tenancy,
		"ptype":           "instance",
		"ttype":           "x509",
		"opc-certtype":    "instance",
		"opc-instance":    instance,
		"opc-tenant":      tenancy,
		"opc-compartment": certOU(leaf, "opc-compartment:"),
		"iat":             st.now.Unix(),
		"exp":             st.now.Add(st.instanceLifetime).Unix(),
		"jwk":             signer.JWK(sessPub, "sess"),
	}
	out, err := a.is.mintClaims(claims)
	if err != nil {
		return "", internalError("minting the instance token: %v", err)
	}
	return out, nil
}

// CertFingerprint is how oci-go-sdk names a leaf certificate in a
// fed-x509-sha256 keyId: the SHA-256 of its DER as lowercase hex pairs
// joined by colons.
func CertFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return strings.ReplaceAll(fmt.Sprintf("% x", sum[:]), " ", ":")
}

// certTenancy is the tenancy OCID an instance certificate is for, from its
// subject's opc-tenant:<ocid> value, as oci-go-sdk reads it; "" if none.
func certTenancy(c *x509.Certificate) string { return certOU(c, "opc-tenant:") }

// certOU finds the subject attribute value starting with prefix (any
// attribute type, as the SDK looks) and returns the rest of it.
func certOU(c *x509.Certificate, prefix string) string {
	for _, n := range c.Subject.Names {
		if v, ok := n.Value.(string); ok && strings.HasPrefix(v, prefix) {
			return v[len(prefix):]
		}
	}
	return ""
}

// sanitizedDER decodes a certificate or public key as oci-go-sdk puts it in
// a federation body: its PEM with the BEGIN/END lines and all newlines
// removed, i.e. bare base64 of the DER. A full PEM is refused: the SDK never
// sends one, so a client sending one differs from the SDK.
func sanitizedDER(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("missing")
	}
	if strings.Contains(s, "-----") || strings.ContainsAny(s, "\r\n \t") {
		return nil, errors.New("not sanitised as the SDK sends it (BEGIN/END lines and newlines must be removed)")
	}
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	return der, nil
}

// jsonObject reads body as a JSON object holding only the given fields,
// spelled exactly (encoding/json would match them in any case, which the
// service does not).
func jsonObject(body []byte, allowed ...string) (map[string]json.RawMessage, *rejection) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, invalidParameter("body is not a JSON object: %s", body)
	}
	for k := range m {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		if !known {
			return nil, invalidParameter("unknown field %q in body (want %s)", k, strings.Join(allowed, ", "))
		}
	}
	return m, nil
}

func invalidParameter(format string, args ...any) *rejection {
	return &rejection{status: http.StatusBadRequest, code: codeInvalidParameter,
		message: "The request body is invalid.", reason: fmt.Sprintf(format, args...)}
}

func internalError(format string, args ...any) *rejection {
	return &rejection{status: http.StatusInternalServerError, code: "InternalServerError",
		message: "Internal error.", reason: fmt.Sprintf(format, args...)}
}

// mintClaims signs claims as the issuer, with a fresh jti. The stand-ins use
// it rather than Mint where a token must have claims Mint does not write
// (or lack sess_exp, which Mint always writes), and because Mint reports
// errors through t.Fatal, which must not run on a server goroutine.
func (is *Issuer) mintClaims(claims jwt.MapClaims) (string, error) {
	is.mu.Lock()
	is.n++
	jti := is.n
	is.mu.Unlock()
	claims["jti"] = fmt.Sprintf("tok-%d", jti)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(is.key)
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	return tok, nil
}

// signedRequest is a request's signature, checked as far as the headers
// alone allow: the key it must verify with may come from the body.
type signedRequest struct {
	keyID         string
	names         []string
	signingString string
	sig           []byte
}

// parseSignedRequest checks the Authorization header's form, that the
// required headers (and date or x-date) are signed, and the date's skew,
// and rebuilds the signing string from the request as received.
func parseSignedRequest(r *http.Request, required []string, now time.Time) (*signedRequest, *rejection) {
	auths := r.Header.Values("Authorization")
	if len(auths) != 1 {
		return nil, notAuthenticated(msgRequiredInfo, "want one Authorization header, got %d", len(auths))
	}
	params, err := ParseAuthorization(auths[0])
	if err != nil {
		return nil, notAuthenticated(msgRequiredInfo, "Authorization header: %v", err)
	}
	sr := &signedRequest{keyID: params["keyId"]}
	for _, p := range []string{"headers", "keyId", "algorithm", "signature"} {
		if params[p] == "" {
			return sr, notAuthenticated(msgRequiredInfo, "Authorization header has no %s parameter", p)
		}
	}
	if v, ok := params["version"]; ok && v != "1" {
		return sr, notAuthenticated(msgRequiredInfo, "signature version %q is not 1", v)
	}
	if a := params["algorithm"]; a != "rsa-sha256" {
		return sr, notAuthenticated(msgRequiredInfo, "algorithm %q is not rsa-sha256", a)
	}
	if sr.sig, err = base64.StdEncoding.DecodeString(params["signature"]); err != nil {
		return sr, notAuthenticated(msgRequiredInfo, "signature is not base64: %v", err)
	}
	sr.names = strings.Fields(strings.ToLower(params["headers"]))
	signed := make(map[string]bool, len(sr.names))
	for _, n := range sr.names {
		if signed[n] {
			return sr, notAuthenticated(msgRequiredInfo, "header %q is listed twice in headers=", n)
		}
		signed[n] = true
	}
	for _, n := range required {
		if !signed[n] {
			return sr, notAuthenticated(msgRequiredInfo, "%s %s must sign %q; headers=%q", r.Method, r.RequestURI, n, params["headers"])
		}
	}
	if !signed["date"] && !signed["x-date"] {
		return sr, notAuthenticated(msgRequiredInfo, "neither date nor x-date is signed; headers=%q", params["headers"])
	}
	var rej *rejection
	if sr.signingString, rej = buildSigningString(r, sr.names); rej != nil {
		return sr, rej
	}
	if rej := checkDate(r, signed, now); rej != nil {
		return sr, rej
	}
	return sr, nil
}

// verify checks the signature with pub.
func (sr *signedRequest) verify(pub *rsa.PublicKey) *rejection {
	digest := sha256.Sum256([]byte(sr.signingString))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sr.sig); err != nil {
		return notAuthenticated(msgFailedSignature, "signature does not verify with the key of keyId over signing string %q", sr.signingString)
	}
	return nil
}
