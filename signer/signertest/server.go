package signertest

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
)

// The verifier below deliberately shares no code with package signer's
// signing path: a bug there must not be mirrored here and cancel out. It
// rebuilds everything from the request as it arrived on the wire.

// defaultNamespace is the Object Storage namespace a new Server answers with.
const defaultNamespace = "axaxnpcrorw5"

// defaultHandlerBodyLimit caps the bodies buffered for Handle()d handlers.
// Default answers never buffer, whatever the size.
const defaultHandlerBodyLimit = 64 << 20

// maxClockSkew is how far the signed date may be from the server clock, as
// OCI allows.
const maxClockSkew = 5 * time.Minute

// The messages OCI answers 401 NotAuthenticated with.
const (
	msgRequiredInfo    = "The required information to complete authentication was not provided or was incorrect."
	msgFailedSignature = "Failed to verify the HTTP(S) Signature"
	// msgBodyHashMismatch is not OCI's documented text (none is published);
	// tests should match on Code and on Received.Reason instead.
	msgBodyHashMismatch = "The x-content-sha256 header does not match the SHA-256 of the request body."
)

// Error codes this server answers with.
const (
	CodeNotAuthenticated      = "NotAuthenticated"
	codeInvalidParameter      = "InvalidParameter"
	codeRequestEntityTooLarge = "RequestEntityTooLarge"
)

// KeyIDKind tells the two keyId forms OCI accepts apart.
type KeyIDKind string

// The keyId forms. The strings match signer.Kind's for the same principals
// so logs line up, but the server classifies keyIds itself.
const (
	KeyIDAPIKey  KeyIDKind = "api_key"        // tenancy/user/fingerprint
	KeyIDSession KeyIDKind = "security_token" // ST$<jwt>
)

// Received is one request as the server saw it and what it answered.
type Received struct {
	Seq        int64  // arrival order, from 1
	RequestID  string // the opc-request-id answered
	Method     string
	RequestURI string // the target exactly as received on the wire
	Host       string // r.Host: the Host header as received
	// TLSServerName is the server name (SNI) the client asked for; "" over
	// plain HTTP or without SNI.
	TLSServerName string
	Header        http.Header
	// ContentLength is what net/http parsed from the request: -1 when the
	// length was unknown (chunked).
	ContentLength    int64
	TransferEncoding []string
	// BodyRead reports whether the body was read; a request rejected on its
	// headers is answered without reading it, as OCI does.
	BodyRead   bool
	BodyLength int64  // bytes received, when BodyRead
	BodySHA256 string // base64 SHA-256 of those bytes, when BodyRead

	KeyID         string    // as sent, even when unknown
	KeyIDKind     KeyIDKind // "" when the Authorization header gave no keyId
	SignedHeaders []string  // the headers="..." parameter, split
	Pattern       string    // the Handle() pattern that answered, if any

	OK      bool   // authentication and the body checks passed
	Status  int    // the status answered
	Code    string // the OCI error code answered, "" when OK
	Message string // the OCI error message answered, "" when OK
	// Reason is the server's precise account of a rejection, for test
	// failures: OCI's messages are deliberately vague, this is not.
	Reason string
}

// verifiedCaller is the verified identity of a request, handed to Handle()d handlers.
type verifiedCaller struct {
	KeyID         string
	Kind          KeyIDKind
	PublicKey     *rsa.PublicKey // the key the signature was verified with
	Token         *signer.Token  // the session token of a ST$ keyId; nil for API keys
	SignedHeaders []string
	RequestID     string
}

type callerKey struct{}

// callerFrom returns the verified caller of a request served by a Handle()d
// handler.
func callerFrom(ctx context.Context) (*verifiedCaller, bool) {
	c, ok := ctx.Value(callerKey{}).(*verifiedCaller)
	return c, ok
}

// Server is an OCI stand-in that verifies request signatures as OCI does and
// records what it received. It listens on 127.0.0.1 only.
type Server struct {
	URL  string // http://127.0.0.1:port (https:// for NewTLSServer)
	Addr string // 127.0.0.1:port

	hs   *httptest.Server
	mux  *http.ServeMux
	pool *x509.CertPool // the CA of a NewTLSServer

	mu        sync.RWMutex
	apiKeys   map[string]*rsa.PublicKey
	issuers   []*Issuer
	clock     func() time.Time
	namespace string
	bodyLimit int64
	handlers  int

	logMu sync.Mutex
	log   []Received

	seq       atomic.Int64
	closeOnce sync.Once
}

// NewServer starts a server on a loopback port; t.Cleanup closes it.
func NewServer(t testing.TB) *Server {
	t.Helper()
	return newServer(t, nil)
}

// newServer starts a server speaking plain HTTP/1.1, or TLS with tlsConfig.
func newServer(t testing.TB, tlsConfig *tls.Config) *Server {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("signertest: listen: %v", err)
	}
	s := &Server{
		mux:       http.NewServeMux(),
		apiKeys:   make(map[string]*rsa.PublicKey),
		clock:     time.Now,
		namespace: defaultNamespace,
		bodyLimit: defaultHandlerBodyLimit,
	}
	// Built by hand rather than with httptest.NewServer so the listener is
	// 127.0.0.1 for certain (NewServer may fall back to [::1]).
	s.hs = &httptest.Server{Listener: ln, Config: &http.Server{Handler: s, ReadHeaderTimeout: time.Minute}}
	if tlsConfig != nil {
		s.hs.TLS = tlsConfig
		// A client that refuses the certificate is the test's to report.
		s.hs.Config.ErrorLog = log.New(io.Discard, "", 0)
		s.hs.StartTLS()
	} else {
		s.hs.Start()
	}
	s.URL = s.hs.URL
	s.Addr = ln.Addr().String()
	t.Cleanup(s.Close)
	return s
}

// Close stops the server. It drops open connections first, so a client
// stalled mid-body cannot keep it from closing. It is safe to call twice.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.hs.CloseClientConnections()
		s.hs.Close()
	})
}

// RegisterAPIKey makes keyID (tenancy/user/fingerprint) known with pub. The
// server does not check that the fingerprint in keyID is pub's, so a test
// can register a keyId whose fingerprint lies, as the golden vectors' does.
func (s *Server) RegisterAPIKey(keyID string, pub *rsa.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apiKeys[keyID] = pub
}

// TrustIssuer makes ST$<jwt> keyIds acceptable when the JWT was minted by
// is (checked with is.Verify) and has not expired on the server clock.
// Trust follows the issuer's signing key, so trusting one NewIssuer trusts
// them all (they share a key); use newIssuerWithKey for an untrusted one.
func (s *Server) TrustIssuer(is *Issuer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.issuers = append(s.issuers, is)
}

// newIssuerWithKey returns an issuer that signs with key, so that its tokens
// are rejected by servers trusting only NewIssuer issuers.
func newIssuerWithKey(key *rsa.PrivateKey) *Issuer {
	return &Issuer{key: key}
}

// SetClock sets the clock the date skew and token expiry are judged by;
// nil restores time.Now.
func (s *Server) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = now
}

// Namespace is the Object Storage namespace GET /n answers with.
func (s *Server) Namespace() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.namespace
}

// setNamespace changes the namespace GET /n answers with.
func (s *Server) setNamespace(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.namespace = ns
}

// setHandlerBodyLimit caps the request bodies buffered for Handle()d
// handlers; a larger body is answered 413 without calling the handler.
func (s *Server) setHandlerBodyLimit(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bodyLimit = n
}

// Handle serves pattern (http.ServeMux syntax, e.g. "POST /v1/authentication/refresh")
// with h, after the request has been verified, in place of the default
// answers. The body is read, checked against x-content-sha256 and buffered
// (up to the handler body limit) before h runs, so h reads it as usual;
// callerFrom(r.Context()) gives the verified identity. A request that fails
// verification never reaches h. ServeMux's own redirects apply: with
// "GET /n/" registered, GET /n is answered 301, not with the namespace.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	s.mu.Lock()
	s.handlers++
	s.mu.Unlock()
}

// Requests returns what the server has received so far, in completion order.
func (s *Server) Requests() []Received {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	out := make([]Received, len(s.log))
	copy(out, s.log)
	return out
}

func (s *Server) record(rec *Received) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.log = append(s.log, *rec)
}

// rejection is an answer other than success.
type rejection struct {
	status  int
	code    string
	message string
	reason  string
}

func notAuthenticated(message, format string, args ...any) *rejection {
	return &rejection{status: http.StatusUnauthorized, code: CodeNotAuthenticated, message: message, reason: fmt.Sprintf(format, args...)}
}

// ServeHTTP verifies the request, then answers it: by a Handle()d handler,
// else by the default answers.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	seq := s.seq.Add(1)
	rid := fmt.Sprintf("%016X%016X", seq, uint64(time.Now().UnixNano()))
	// OCI answers a client-chosen opc-request-id as its prefix.
	if c := r.Header.Get("opc-request-id"); c != "" {
		rid = c + "/" + rid
	}
	w.Header().Set("opc-request-id", rid)

	rec := &Received{
		Seq: seq, RequestID: rid, Method: r.Method, RequestURI: r.RequestURI, Host: r.Host,
		Header: r.Header.Clone(), ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding,
	}
	if r.TLS != nil {
		rec.TLSServerName = r.TLS.ServerName
	}
	defer s.record(rec)

	caller, rej := s.verify(r, rec)
	if rej != nil {
		s.reject(w, rec, rej)
		return
	}
	caller.RequestID = rid

	s.mu.RLock()
	hasHandlers, limit := s.handlers > 0, s.bodyLimit
	s.mu.RUnlock()
	if hasHandlers {
		if _, pattern := s.mux.Handler(r); pattern != "" {
			s.serveHandler(w, r, rec, caller, pattern, limit)
			return
		}
	}

	upload := isObjectUpload(r.Method, r.RequestURI)
	b, ok := s.verifyBody(w, r, rec, -1, upload)
	if !ok {
		return
	}
	rec.OK, rec.Status = true, http.StatusOK

	w.Header().Set("Content-Type", "application/json")
	switch {
	case upload:
		// Object Storage answers uploads with an empty body and the etag;
		// this etag is derived from the content so tests can predict it.
		w.Header().Set("etag", hex.EncodeToString(b.sha[:16]))
		w.Header().Set("opc-content-md5", base64.StdEncoding.EncodeToString(b.md5))
		w.Header().Set("last-modified", s.now().UTC().Format(http.TimeFormat))
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodGet && (r.URL.Path == "/n" || r.URL.Path == "/n/"):
		writeJSON(w, http.StatusOK, s.Namespace())
	default:
		writeJSON(w, http.StatusOK, Echo{
			Method: r.Method, Path: r.RequestURI, Host: r.Host,
			BodyLength: b.n, BodySHA256: b.sha256B64(), KeyIDKind: caller.Kind,
		})
	}
}

// verifyBody reads the body, records what arrived, and checks it against
// the signed x-content-sha256 and content-length; on a mismatch it answers
// as OCI does and reports false.
func (s *Server) verifyBody(w http.ResponseWriter, r *http.Request, rec *Received, limit int64, upload bool) (body, bool) {
	b, rej := readBody(r, limit, upload)
	rec.BodyRead, rec.BodyLength, rec.BodySHA256 = true, b.n, b.sha256B64()
	if rej == nil {
		rej = checkBody(r, b)
	}
	if rej != nil {
		s.reject(w, rec, rej)
		return b, false
	}
	return b, true
}

// Echo is the default answer's body, for tests to decode.
type Echo struct {
	Method     string    `json:"method"`
	Path       string    `json:"path"` // the target exactly as received (path and query)
	Host       string    `json:"host"`
	BodyLength int64     `json:"bodyLength"`
	BodySHA256 string    `json:"bodySha256"` // base64
	KeyIDKind  KeyIDKind `json:"keyIdKind"`
}

func (s *Server) serveHandler(w http.ResponseWriter, r *http.Request, rec *Received, caller *verifiedCaller, pattern string, limit int64) {
	rec.Pattern = pattern
	b, ok := s.verifyBody(w, r, rec, limit, false)
	if !ok {
		return
	}
	rec.OK = true
	r2 := r.WithContext(context.WithValue(r.Context(), callerKey{}, caller))
	r2.Body = io.NopCloser(bytes.NewReader(b.buf))
	r2.ContentLength = b.n
	sw := &statusWriter{ResponseWriter: w}
	s.mux.ServeHTTP(sw, r2)
	rec.Status = sw.status
	if rec.Status == 0 {
		rec.Status = http.StatusOK
	}
}

// statusWriter notes the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) reject(w http.ResponseWriter, rec *Received, rej *rejection) {
	rec.OK, rec.Status, rec.Code, rec.Message, rec.Reason = false, rej.status, rej.code, rej.message, rej.reason
	writeJSON(w, rej.status, struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{rej.code, rej.message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(err) // only this file's own types are marshalled
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Server) now() time.Time {
	s.mu.RLock()
	clock := s.clock
	s.mu.RUnlock()
	return clock()
}

// verify authenticates r on its headers alone, so a rejected upload is
// answered before its body is read, as OCI does.
func (s *Server) verify(r *http.Request, rec *Received) (*verifiedCaller, *rejection) {
	sr, rej := parseSignedRequest(r, requiredSigned(r.Method, r.RequestURI), s.now())
	if sr != nil {
		rec.KeyID, rec.SignedHeaders = sr.keyID, sr.names
		if strings.HasPrefix(sr.keyID, "ST$") {
			rec.KeyIDKind = KeyIDSession
		} else if sr.keyID != "" {
			rec.KeyIDKind = KeyIDAPIKey
		}
	}
	if rej != nil {
		return nil, rej
	}
	caller, rej := s.resolveKey(sr.keyID)
	if rej != nil {
		return nil, rej
	}
	if rej := sr.verify(caller.PublicKey); rej != nil {
		return nil, rej
	}
	caller.SignedHeaders = sr.names
	return caller, nil
}

// ParseAuthorization reads an Authorization header, `Signature
// name="value",...`, into its parameters by name, in any order, and refuses a
// header OCI would not read (another scheme, an unquoted or repeated
// parameter). Values cannot hold a double quote: none of OCI's can.
func ParseAuthorization(h string) (map[string]string, error) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, "Signature") {
		return nil, fmt.Errorf("scheme %q is not Signature", scheme)
	}
	params := make(map[string]string)
	for {
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			break
		}
		name, after, ok := strings.Cut(rest, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t,\"") {
			return nil, errors.New("garbled parameter list")
		}
		if !strings.HasPrefix(after, `"`) {
			return nil, fmt.Errorf("parameter %s is not quoted", name)
		}
		end := strings.IndexByte(after[1:], '"')
		if end < 0 {
			return nil, fmt.Errorf("parameter %s is not terminated", name)
		}
		if _, dup := params[name]; dup {
			return nil, fmt.Errorf("parameter %s given twice", name)
		}
		params[name] = after[1 : 1+end]
		rest = strings.TrimLeft(after[2+end:], " \t")
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return nil, fmt.Errorf("no comma after parameter %s", name)
		}
		rest = rest[1:]
	}
	return params, nil
}

// requiredSigned lists the headers OCI insists are signed for a request
// (besides date or x-date, either of which will do).
func requiredSigned(method, target string) []string {
	base := []string{"(request-target)", "host"}
	switch method {
	case http.MethodPost, http.MethodPatch:
	case http.MethodPut:
		if isObjectUpload(method, target) {
			return base
		}
	default:
		return base
	}
	return append(base, "content-length", "content-type", "x-content-sha256")
}

// isObjectUpload matches Object Storage PutObject (PUT /n/{ns}/b/{bucket}/o/{object})
// and UploadPart (PUT /n/{ns}/b/{bucket}/u/{object}?uploadId=..&uploadPartNum=..),
// whose bodies OCI lets go unsigned so they can stream. It reads the raw
// target: an object name may hold encoded or literal slashes.
func isObjectUpload(method, target string) bool {
	if method != http.MethodPut {
		return false
	}
	path, query, _ := strings.Cut(target, "?")
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return false
	}
	var seg [4]string
	for i := range seg {
		seg[i], rest, ok = strings.Cut(rest, "/")
		if !ok || seg[i] == "" {
			return false
		}
	}
	// seg = n, {ns}, b, {bucket}; rest = ("o"|"u") "/" object
	if seg[0] != "n" || seg[2] != "b" {
		return false
	}
	kind, object, ok := strings.Cut(rest, "/")
	if !ok || object == "" {
		return false
	}
	switch kind {
	case "o":
		return true
	case "u":
		var id, part bool
		for _, kv := range strings.Split(query, "&") {
			k, _, _ := strings.Cut(kv, "=")
			id = id || k == "uploadId"
			part = part || k == "uploadPartNum"
		}
		return id && part
	}
	return false
}

// buildSigningString rebuilds what the client must have signed, in the
// order of headers=, from the request as received.
func buildSigningString(r *http.Request, names []string) (string, *rejection) {
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte('\n')
		}
		var v string
		switch n {
		case "(request-target)":
			v = strings.ToLower(r.Method) + " " + r.RequestURI
		case "host":
			v = r.Host
		default:
			if strings.HasPrefix(n, "(") {
				return "", notAuthenticated(msgRequiredInfo, "pseudo-header %s is not one OCI signs", n)
			}
			vals := r.Header.Values(n)
			if len(vals) == 0 {
				if n == "content-length" && len(r.TransferEncoding) > 0 {
					return "", notAuthenticated(msgRequiredInfo, "content-length is signed but the body came with Transfer-Encoding %v and no Content-Length", r.TransferEncoding)
				}
				return "", notAuthenticated(msgRequiredInfo, "signed header %q is not in the request", n)
			}
			// draft-cavage: several values of one header are joined by ", ".
			v = strings.Join(vals, ", ")
		}
		b.WriteString(n)
		b.WriteString(": ")
		b.WriteString(v)
	}
	return b.String(), nil
}

// skewLayout is how OCI prints dates in its clock-skew message.
const skewLayout = "Mon, 02 Jan 2006 15:04:05 UTC"

// checkDate judges x-date if the request has one, else date, against the
// server clock. The header judged must be signed, or the skew check would
// protect nothing.
func checkDate(r *http.Request, signed map[string]bool, now time.Time) *rejection {
	name := "date"
	if r.Header.Get("x-date") != "" {
		name = "x-date"
	}
	raw := r.Header.Get(name)
	if raw == "" {
		return notAuthenticated(msgRequiredInfo, "request has neither date nor x-date")
	}
	if !signed[name] {
		return notAuthenticated(msgRequiredInfo, "%s is what the date is judged by but it is not signed", name)
	}
	// time.Parse checks the weekday's spelling but not that it fits the date.
	d, err := time.Parse(http.TimeFormat, raw)
	if err != nil {
		return notAuthenticated(msgRequiredInfo, "%s %q is not an RFC 1123 GMT date", name, raw)
	}
	now = now.UTC()
	lo, hi := now.Add(-maxClockSkew), now.Add(maxClockSkew)
	if d.Before(lo) || d.After(hi) {
		msg := fmt.Sprintf("Date '%s' is not within allowed clock skew. Current '%s', valid datetime range: ['%s', '%s']",
			d.Format(skewLayout), now.Format(skewLayout), lo.Format(skewLayout), hi.Format(skewLayout))
		return notAuthenticated(msg, "%s %q is %v from the server clock", name, raw, d.Sub(now))
	}
	return nil
}

// resolveKey finds the public key a keyId stands for.
func (s *Server) resolveKey(keyID string) (*verifiedCaller, *rejection) {
	s.mu.RLock()
	pub := s.apiKeys[keyID]
	issuers := append([]*Issuer(nil), s.issuers...)
	s.mu.RUnlock()

	raw, isSession := strings.CutPrefix(keyID, "ST$")
	if !isSession {
		if parts := strings.Split(keyID, "/"); len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return nil, notAuthenticated(msgRequiredInfo, "keyId %q is neither ST$<token> nor tenancy/user/fingerprint", keyID)
		}
		if pub == nil {
			return nil, notAuthenticated(msgFailedSignature, "keyId %q is not a registered API key", keyID)
		}
		return &verifiedCaller{KeyID: keyID, Kind: KeyIDAPIKey, PublicKey: pub}, nil
	}
	if len(issuers) == 0 {
		return nil, notAuthenticated(msgRequiredInfo, "ST$ keyId but the server trusts no issuer")
	}
	var errs []error
	for _, is := range issuers {
		pub, tok, err := is.Verify(raw)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if now := s.now(); !now.Before(tok.Expiry) {
			return nil, notAuthenticated(msgRequiredInfo, "session token expired at %s (server clock %s)", tok.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
		return &verifiedCaller{KeyID: keyID, Kind: KeyIDSession, PublicKey: pub, Token: tok}, nil
	}
	return nil, notAuthenticated(msgRequiredInfo, "session token was not minted by a trusted issuer: %v", errors.Join(errs...))
}

// body is what was read of a request body.
type body struct {
	n   int64
	sha [sha256.Size]byte
	md5 []byte // uploads only
	buf []byte // handlers only
}

func (b *body) sha256B64() string { return base64.StdEncoding.EncodeToString(b.sha[:]) }

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// readBody hashes the body while reading it in chunks. With limit >= 0 it
// also keeps the bytes, refusing more than limit; with limit < 0 it keeps
// nothing, so a 1 GiB upload costs one 64 KiB buffer.
func readBody(r *http.Request, limit int64, withMD5 bool) (body, *rejection) {
	var out body
	sh := sha256.New()
	ws := []io.Writer{sh}
	var mh hash.Hash
	if withMD5 {
		mh = md5.New()
		ws = append(ws, mh)
	}
	var keep *bytes.Buffer
	src := io.Reader(r.Body)
	if limit >= 0 {
		if r.ContentLength > limit {
			return out, &rejection{status: http.StatusRequestEntityTooLarge, code: codeRequestEntityTooLarge,
				message: "The request body is too large for this endpoint.", reason: fmt.Sprintf("Content-Length %d exceeds the handler body limit %d", r.ContentLength, limit)}
		}
		keep = &bytes.Buffer{}
		if r.ContentLength > 0 {
			keep.Grow(int(r.ContentLength))
		}
		ws = append(ws, keep)
		src = io.LimitReader(r.Body, limit+1)
	}
	bufp := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(io.MultiWriter(ws...), src, *bufp)
	copyBufs.Put(bufp)
	out.n = n
	sh.Sum(out.sha[:0])
	if mh != nil {
		out.md5 = mh.Sum(nil)
	}
	if keep != nil {
		out.buf = keep.Bytes()
	}
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return out, &rejection{status: http.StatusBadRequest, code: codeInvalidParameter,
			message: fmt.Sprintf("The request body ended after %d bytes; Content-Length is %d.", n, r.ContentLength),
			reason:  fmt.Sprintf("body shorter than Content-Length: got %d of %d bytes", n, r.ContentLength)}
	case err != nil:
		return out, &rejection{status: http.StatusBadRequest, code: codeInvalidParameter,
			message: "The request body could not be read.", reason: fmt.Sprintf("reading body after %d bytes: %v", n, err)}
	case limit >= 0 && n > limit:
		return out, &rejection{status: http.StatusRequestEntityTooLarge, code: codeRequestEntityTooLarge,
			message: "The request body is too large for this endpoint.", reason: fmt.Sprintf("body exceeds the handler body limit %d", limit)}
	}
	return out, nil
}

// checkBody holds the body actually received to what the headers claim:
// x-content-sha256 whenever present (signed or not: OCI checks a hash it is
// given) and content-length whenever present. net/http already stops a body
// at its Content-Length and reports a short one (readBody answers that 400),
// so the length check only guards against a framing net/http let through.
func checkBody(r *http.Request, b body) *rejection {
	if v := r.Header.Values("x-content-sha256"); len(v) > 0 {
		if got := b.sha256B64(); strings.Join(v, ", ") != got {
			return notAuthenticated(msgBodyHashMismatch, "x-content-sha256 %q but the %d bytes received hash to %q", strings.Join(v, ", "), b.n, got)
		}
	}
	if v := r.Header.Values("content-length"); len(v) > 0 {
		want, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil || want != b.n {
			return &rejection{status: http.StatusBadRequest, code: codeInvalidParameter,
				message: fmt.Sprintf("Content-Length %s does not match the %d bytes received.", v[0], b.n),
				reason:  fmt.Sprintf("content-length %q but %d bytes received", v[0], b.n)}
		}
	}
	return nil
}
