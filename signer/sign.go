package signer

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names this package reads or writes, lower-case as on the wire in HTTP/2.
const (
	HeaderDate          = "date"
	HeaderXDate         = "x-date"
	HeaderAuthorization = "authorization"
	HeaderContentLength = "content-length"
	HeaderContentType   = "content-type"
	HeaderContentSHA256 = "x-content-sha256"
	HeaderOBOToken      = "opc-obo-token"
	HeaderCrossTenancy  = "x-cross-tenancy-request"
	HeaderSubscription  = "x-subscription"
	DefaultContentType  = "application/json"
	signatureVersion    = "1"
	signatureAlgorithm  = "rsa-sha256"
)

// optionalSigned are signed when the request carries them, after the required
// headers and in this order, as the Java SDK (the one that signs them) does.
var optionalSigned = [...]string{HeaderCrossTenancy, HeaderSubscription, HeaderOBOToken}

// Header gives read access to a request's headers by lower-case name.
type Header interface {
	// Get returns the header's value and whether the request carries it.
	Get(name string) (string, bool)
}

// HTTPHeader adapts net/http's header map (convert an http.Header to it),
// without this package depending on net/http: its keys are in canonical form.
type HTTPHeader map[string][]string

// Get implements Header.
func (h HTTPHeader) Get(name string) (string, bool) {
	v := h[canonicalKey(name)]
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// canonicalKey is net/textproto's canonical form of a header name made of
// token characters: upper case after the start and after each hyphen.
func canonicalKey(name string) string {
	b := []byte(name)
	upper := true
	for i, c := range b {
		switch {
		case upper && 'a' <= c && c <= 'z':
			b[i] = c - ('a' - 'A')
		case !upper && 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
	return string(b)
}

// HTTP methods and the date layout of net/http, here so that signing does
// not import a network package.
const (
	methodPost  = "POST"
	methodPut   = "PUT"
	methodPatch = "PATCH"
	timeFormat  = "Mon, 02 Jan 2006 15:04:05 GMT"
)

// Digest is the length and SHA-256 of a body hashed by the caller where it
// lies, so that Sign need not see the bytes.
type Digest struct {
	Length int64
	SHA256 [sha256.Size]byte
}

// DigestOf hashes body.
func DigestOf(body []byte) Digest {
	return Digest{Length: int64(len(body)), SHA256: sha256.Sum256(body)}
}

// Request is what a signature covers.
type Request struct {
	Method string // GET, POST, ...; case-sensitive as on the wire
	Host   string // the Host that goes upstream, with its port only if the request carries one
	Target string // path and query exactly as sent on the wire
	Header Header // the request's headers; may be nil
	// Body is the request body. It is read only when the request is
	// body-signed and Digest is nil.
	Body []byte
	// Digest, when set, stands for Body.
	Digest *Digest
	// Date, when set, is signed verbatim instead of now. It exists to
	// reproduce recorded requests; a proxy always signs with its clock.
	Date string
	// NoHost leaves host out of the signature. Only OCI's x509 federation
	// endpoint is signed that way (the SDKs do so); API requests never are.
	NoHost bool
}

// Field is one header to set on the request.
type Field struct {
	Name  string // lower-case
	Value string
}

// Signed is the outcome of Sign: the headers to put on the request.
type Signed struct {
	// Headers to set, overwriting any the request has: date,
	// x-content-sha256, content-length and content-type (body-signed
	// requests; content-type only when the request had none),
	// opc-obo-token (credentials with a delegation token), authorization.
	Headers []Field
	// SignedHeaders is the headers="..." parameter: the names in signing order.
	SignedHeaders string
	// SigningString is what was signed. It holds opc-obo-token when the
	// request carries one: log it through MaskSigningString.
	SigningString string
	// BodySigned reports whether the body's digest is part of the signature.
	BodySigned bool
}

// Get returns the value Sign set for name, or "".
func (s *Signed) Get(name string) string {
	for _, f := range s.Headers {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// ErrInvalidRequest is returned by Sign for a request it cannot sign as given.
var ErrInvalidRequest = errors.New("invalid request")

// BodySigned reports whether OCI expects a request's body to be covered by
// its signature. POST, PUT and PATCH are body-signed except Object Storage
// PutObject and UploadPart, whose body is left out so that uploads can
// stream: for those a caller need not buffer or hash the body at all.
// Methods are case-sensitive, as in HTTP and in the SDK.
func BodySigned(method, target string) bool {
	switch method {
	case methodPost, methodPatch:
		return true
	case methodPut:
		return !isObjectUpload(target)
	}
	return false
}

// isObjectUpload matches PutObject (PUT /n/{ns}/b/{bucket}/o/{object}) and
// UploadPart (PUT /n/{ns}/b/{bucket}/u/{object}?uploadId=..&uploadPartNum=..).
func isObjectUpload(target string) bool {
	path, query, _ := strings.Cut(target, "?")
	rest, ok := strings.CutPrefix(path, "/n/")
	if !ok {
		return false
	}
	parts := strings.SplitN(rest, "/", 5) // ns, "b", bucket, "o"|"u", object...
	if len(parts) != 5 || parts[0] == "" || parts[1] != "b" || parts[2] == "" || parts[4] == "" {
		return false
	}
	switch parts[3] {
	case "o":
		return true
	case "u":
		return hasQueryParam(query, "uploadId") && hasQueryParam(query, "uploadPartNum")
	}
	return false
}

func hasQueryParam(query, name string) bool {
	for query != "" {
		var kv string
		kv, query, _ = strings.Cut(query, "&")
		k, _, _ := strings.Cut(kv, "=")
		if k == name {
			return true
		}
	}
	return false
}

// FormatDate formats t as OCI expects in the date header.
func FormatDate(t time.Time) string {
	return t.UTC().Format(timeFormat)
}

// Sign signs r for the credentials c at time now. It is a pure function of
// its arguments (RSASSA-PKCS1-v1_5 is deterministic), so the same inputs give
// the same bytes.
func Sign(r *Request, c *Credentials, now time.Time) (*Signed, error) {
	return signWith(activeBackend(), r, c, now)
}

// signWith is Sign with the RSA backend given, so tests can run every
// backend side by side without changing the process's choice. As aws-sdk-go
// v4's signer does, it builds the signing string, signs it, and writes the
// header, each a step of its own.
func signWith(be rsaBackend, r *Request, c *Credentials, now time.Time) (*Signed, error) {
	if err := checkRequest(r, c); err != nil {
		return nil, err
	}
	date := r.Date
	if date == "" {
		date = FormatDate(now)
	}
	out, err := signingString(r, c, date)
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256([]byte(out.SigningString))
	sig, err := be.signSHA256(c.Key, &digest)
	if err != nil {
		return nil, fmt.Errorf("rsa signature: %w", err)
	}
	out.Headers = append(out.Headers, Field{HeaderAuthorization, authorization(out.SignedHeaders, c.KeyID, sig)})
	return out, nil
}

// checkRequest refuses what cannot be signed as given.
func checkRequest(r *Request, c *Credentials) error {
	switch {
	case c == nil || c.Key == nil || c.KeyID == "":
		return fmt.Errorf("%w: no credentials", ErrInvalidRequest)
	case r.Method == "" || r.Host == "" || r.Target == "":
		return fmt.Errorf("%w: method, host and target are required (got %q %q %q)", ErrInvalidRequest, r.Method, r.Host, r.Target)
	case !isToken(r.Method):
		return fmt.Errorf("%w: method %q is not an HTTP token", ErrInvalidRequest, r.Method)
	case strings.ContainsAny(r.Target, " \r\n") || strings.ContainsAny(r.Host, " \r\n/"):
		return fmt.Errorf("%w: target or host contains a space or line break", ErrInvalidRequest)
	}
	return nil
}

// signingString builds what is signed: the lines of the signed headers in
// the SDK's order, and the headers to set that the signature covers.
func signingString(r *Request, c *Credentials, date string) (*Signed, error) {
	out := &Signed{BodySigned: BodySigned(r.Method, r.Target), Headers: make([]Field, 0, 5)}
	out.Headers = append(out.Headers, Field{HeaderDate, date})
	var b lines
	b.sb.Grow(128 + len(r.Target) + len(r.Host))
	b.add(HeaderDate, date)
	b.add("(request-target)", strings.ToLower(r.Method)+" "+r.Target)
	if !r.NoHost {
		b.add("host", r.Host)
	}
	if out.BodySigned {
		d := r.Digest
		if d == nil {
			dd := DigestOf(r.Body)
			d = &dd
		}
		sum := base64.StdEncoding.EncodeToString(d.SHA256[:])
		length := strconv.FormatInt(d.Length, 10)
		ctype, ok := get(r.Header, HeaderContentType)
		if !ok || ctype == "" {
			ctype = DefaultContentType
			out.Headers = append(out.Headers, Field{HeaderContentType, ctype})
		}
		b.add(HeaderContentLength, length)
		b.add(HeaderContentType, ctype)
		b.add(HeaderContentSHA256, sum)
		out.Headers = append(out.Headers, Field{HeaderContentLength, length}, Field{HeaderContentSHA256, sum})
	}
	for _, name := range optionalSigned {
		v, ok := get(r.Header, name)
		if name == HeaderOBOToken && c.OBOToken != "" {
			// The profile's delegation token: sent and signed in place of
			// any the client sent.
			v, ok = c.OBOToken, true
			out.Headers = append(out.Headers, Field{HeaderOBOToken, v})
		}
		if ok {
			b.add(name, v)
		}
	}
	if b.bad != "" {
		return nil, fmt.Errorf("%w: the %s header contains a line break or NUL", ErrInvalidRequest, b.bad)
	}
	out.SigningString, out.SignedHeaders = b.sb.String(), strings.Join(b.names, " ")
	return out, nil
}

// lines is a signing string being built, one "name: value" line per
// signed header.
type lines struct {
	sb    strings.Builder
	names []string
	bad   string // the first header whose value holds a line break or NUL
}

func (b *lines) add(name, value string) {
	// A line break in a value would forge a line of the signing string; no
	// HTTP stack sends one (or a NUL) anyway. The request target was
	// checked for line breaks already.
	if name != "(request-target)" && strings.ContainsAny(value, "\r\n\x00") && b.bad == "" {
		b.bad = name
	}
	if len(b.names) > 0 {
		b.sb.WriteByte('\n')
	}
	b.sb.WriteString(name)
	b.sb.WriteString(": ")
	b.sb.WriteString(value)
	b.names = append(b.names, name)
}

// isToken reports whether s is an RFC 9110 token, as a method must be.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

func get(h Header, name string) (string, bool) {
	if h == nil {
		return "", false
	}
	return h.Get(name)
}

// authorization renders the header in the Go SDK's parameter order.
func authorization(signedHeaders, keyID string, sig []byte) string {
	var b strings.Builder
	b.Grow(96 + len(signedHeaders) + len(keyID) + base64.StdEncoding.EncodedLen(len(sig)))
	b.WriteString(`Signature version="` + signatureVersion + `",headers="`)
	b.WriteString(signedHeaders)
	b.WriteString(`",keyId="`)
	b.WriteString(keyID)
	b.WriteString(`",algorithm="` + signatureAlgorithm + `",signature="`)
	b.WriteString(base64.StdEncoding.EncodeToString(sig))
	b.WriteString(`"`)
	return b.String()
}

// MaskSigningString hides the values of signed headers that are credentials
// (opc-obo-token), so a signing string can be logged at debug level.
func MaskSigningString(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if v, ok := strings.CutPrefix(l, HeaderOBOToken+": "); ok {
			lines[i] = HeaderOBOToken + ": " + MaskSecret(v)
		}
	}
	return strings.Join(lines, "\n")
}

// MaskSecret keeps enough of a secret to tell two apart in a log and no more.
func MaskSecret(s string) string {
	if len(s) <= 12 {
		return "***"
	}
	return s[:4] + "…" + s[len(s)-4:] + " (" + strconv.Itoa(len(s)) + " bytes)"
}

// MaskKeyID masks a keyId for logs: a session keyId (ST$<jwt>) keeps only
// the token's ends, an API-key keyId keeps the user OCID's tail and the fingerprint.
func MaskKeyID(keyID string) string {
	if tok, ok := strings.CutPrefix(keyID, "ST$"); ok {
		return "ST$" + MaskSecret(tok)
	}
	parts := strings.Split(keyID, "/")
	if len(parts) == 3 {
		return "…" + tail(parts[0], 6) + "/…" + tail(parts[1], 6) + "/" + parts[2]
	}
	return MaskSecret(keyID)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
