package signertest

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
)

// The tests produce requests with signer.Sign (the product's signer) or, for
// requests Sign refuses to make, with a few lines of RSA below; they never
// look at how the server verifies.

// testNow is the server clock in most tests: fixed, so messages that print
// the time can be compared exactly.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) // a Sunday

type field struct{ name, value string }

// wire is a request written byte for byte on a TCP connection, so the
// target, Host and body are exactly what the test says, unnormalised.
type wire struct {
	Method, Target, Host string
	Header               []field // written in order, names as given
	Body                 []byte
	// Chunked sends the body with Transfer-Encoding: chunked and no
	// Content-Length, whatever Header says.
	Chunked bool
}

func (w *wire) get(name string) string {
	for _, f := range w.Header {
		if strings.EqualFold(f.name, name) {
			return f.value
		}
	}
	return ""
}

func (w *wire) set(name, value string) {
	for i, f := range w.Header {
		if strings.EqualFold(f.name, name) {
			w.Header[i].value = value
			return
		}
	}
	w.Header = append(w.Header, field{name, value})
}

func (w *wire) del(name string) {
	out := w.Header[:0]
	for _, f := range w.Header {
		if !strings.EqualFold(f.name, name) {
			out = append(out, f)
		}
	}
	w.Header = out
}

func (w *wire) bytes() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", w.Method, w.Target, w.Host)
	hasLength := false
	for _, f := range w.Header {
		if strings.EqualFold(f.name, "content-length") {
			if w.Chunked {
				continue
			}
			hasLength = true
		}
		fmt.Fprintf(&b, "%s: %s\r\n", f.name, f.value)
	}
	switch {
	case w.Chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	case !hasLength && w.Body != nil:
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(w.Body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	if w.Chunked {
		if len(w.Body) > 0 {
			fmt.Fprintf(&b, "%x\r\n%s\r\n", len(w.Body), w.Body)
		}
		b.WriteString("0\r\n\r\n")
	} else {
		b.Write(w.Body)
	}
	return b.Bytes()
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends w over a fresh connection. closeWrite half-closes the connection
// after writing, as a client that sent a short body and gave up would.
func do(t *testing.T, addr string, w *wire, closeWrite bool) response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(w.bytes()); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: w.Method})
	return readResponse(t, resp, err)
}

// doClient sends w with net/http's client, the target set through
// URL.Opaque so it goes out exactly as signed.
func doClient(t *testing.T, addr string, w *wire) response {
	t.Helper()
	path, query, _ := strings.Cut(w.Target, "?")
	req := &http.Request{
		Method: w.Method,
		URL:    &url.URL{Scheme: "http", Host: addr, Opaque: path, RawQuery: query},
		Host:   w.Host,
		Header: http.Header{},
	}
	for _, f := range w.Header {
		if !strings.EqualFold(f.name, "content-length") {
			req.Header.Add(f.name, f.value)
		}
	}
	if w.Body != nil {
		req.Body = io.NopCloser(bytes.NewReader(w.Body))
		req.ContentLength = int64(len(w.Body))
	}
	resp, err := http.DefaultClient.Do(req)
	return readResponse(t, resp, err)
}

// signed builds a request signed by the product's signer at now.
func signed(t *testing.T, c *signer.Credentials, method, host, target string, body []byte, now time.Time, extra ...field) *wire {
	t.Helper()
	h := http.Header{}
	for _, f := range extra {
		h.Add(f.name, f.value)
	}
	s, err := signer.Sign(&signer.Request{Method: method, Host: host, Target: target, Header: signer.HTTPHeader(h), Body: body}, c, now)
	if err != nil {
		t.Fatal(err)
	}
	w := &wire{Method: method, Target: target, Host: host, Header: append([]field(nil), extra...), Body: body}
	for _, f := range s.Headers {
		w.set(f.Name, f.Value)
	}
	return w
}

// handSigned signs lines (name, value) by hand, for requests the product's
// signer would refuse to make.
func handSigned(t *testing.T, key *rsa.PrivateKey, keyID string, lines ...field) string {
	t.Helper()
	names := make([]string, len(lines))
	text := make([]string, len(lines))
	for i, l := range lines {
		names[i] = l.name
		text[i] = l.name + ": " + l.value
	}
	digest := sha256.Sum256([]byte(strings.Join(text, "\n")))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`Signature version="1",headers="%s",keyId="%s",algorithm="rsa-sha256",signature="%s"`,
		strings.Join(names, " "), keyID, base64.StdEncoding.EncodeToString(sig))
}

func b64sha(b []byte) string {
	s := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// fixture is a server on the fixed test clock that knows one API key and
// trusts one issuer, with credentials for both.
type fixture struct {
	srv     *Server
	issuer  *Issuer
	api     *signer.Credentials
	session *signer.Credentials
	token   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{srv: NewServer(t), issuer: NewIssuer(t)}
	f.srv.SetClock(func() time.Time { return testNow })
	apiKey := Key(t, 0)
	f.api = &signer.Credentials{KeyID: APIKeyID("T", &apiKey.PublicKey), Key: apiKey, Kind: signer.KindAPIKey}
	f.srv.RegisterAPIKey(f.api.KeyID, &apiKey.PublicKey)
	f.srv.TrustIssuer(f.issuer)
	f.token = f.issuer.Mint(t, &Key(t, 1).PublicKey, TokenOptions{IssuedAt: testNow.Add(-10 * time.Minute)})
	var err error
	if f.session, err = signer.NewSessionCredentials(f.token, Key(t, 1)); err != nil {
		t.Fatal(err)
	}
	return f
}

// received finds the log entry of the response r.
func (f *fixture) received(t *testing.T, r response) Received {
	t.Helper()
	id := r.Header.Get("opc-request-id")
	if id == "" {
		t.Fatal("response has no opc-request-id")
	}
	for _, rec := range f.srv.Requests() {
		if rec.RequestID == id {
			return rec
		}
	}
	t.Fatalf("no Received with RequestID %q", id)
	return Received{}
}

type ociError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// wantRejected checks an OCI-shaped error answer and returns the server's
// reason, for the test log.
func (f *fixture) wantRejected(t *testing.T, r response, status int, code, message string) Received {
	t.Helper()
	rec := f.received(t, r)
	if r.Status != status {
		t.Fatalf("status = %d, want %d; body %s; reason: %s", r.Status, status, r.Body, rec.Reason)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content-type = %q, want application/json", ct)
	}
	var e ociError
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.Body, err)
	}
	if e.Code != code || e.Message != message {
		t.Errorf("answer = %+v, want {%s %s}", e, code, message)
	}
	if rec.OK || rec.Status != status || rec.Code != code || rec.Message != message || rec.Reason == "" {
		t.Errorf("recorded %+v", rec)
	}
	t.Logf("reason: %s", rec.Reason)
	return rec
}

func (f *fixture) wantOK(t *testing.T, r response) Received {
	t.Helper()
	rec := f.received(t, r)
	if r.Status != http.StatusOK || !rec.OK {
		t.Fatalf("status = %d, body %s; reason: %s", r.Status, r.Body, rec.Reason)
	}
	return rec
}

func TestAcceptsCorrectlySignedRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const api, session = "api", "session"
	creds := map[string]*signer.Credentials{api: f.api, session: f.session}
	kinds := map[string]KeyIDKind{api: KeyIDAPIKey, session: KeyIDSession}
	const osHost = "objectstorage.us-ashburn-1.oraclecloud.com"
	jsonBody := []byte(`{"displayName":"x","freeformTags":{"a":"b"}}`)

	type tc struct {
		name     string
		creds    string
		method   string
		host     string // "" means the server's host:port
		target   string
		body     []byte
		extra    []field
		edit     func(w *wire) // applied after signing
		client   bool          // send with net/http's client instead of raw TCP
		wantEcho bool
	}
	var cases []tc
	for _, c := range []string{api, session} {
		for _, m := range []string{"GET", "HEAD", "DELETE", "OPTIONS", "POST", "PUT", "PATCH"} {
			var body []byte
			if m == "POST" || m == "PUT" || m == "PATCH" {
				body = jsonBody
			}
			cases = append(cases, tc{name: m + " with " + c, creds: c, method: m,
				target: "/20160918/instances?compartmentId=ocid1.compartment.oc1..aaaa&limit=5", body: body, wantEcho: m != "HEAD"})
		}
	}
	cases = append(cases,
		tc{name: "POST with an empty body", creds: api, method: "POST", target: "/20160918/actions/x", body: []byte{}, wantEcho: true},
		tc{name: "PutObject with its body unsigned", creds: api, method: "PUT", host: osHost, target: "/n/ns/b/bk/o/dir/a.txt",
			body: []byte("hello object"), extra: []field{{"content-type", "text/plain"}}},
		tc{name: "PutObject by session with an unsigned but correct x-content-sha256", creds: session, method: "PUT", host: osHost, target: "/n/ns/b/bk/o/a.txt",
			body: []byte("hello"), edit: func(w *wire) { w.set("x-content-sha256", b64sha([]byte("hello"))) }},
		tc{name: "UploadPart with its body unsigned", creds: api, method: "PUT", host: osHost,
			target: "/n/ns/b/bk/u/big.bin?uploadId=abc-123&uploadPartNum=2", body: bytes.Repeat([]byte{7}, 4096)},
		tc{name: "PUT to /u/ without uploadId is body-signed and verifies", creds: api, method: "PUT", host: osHost,
			target: "/n/ns/b/bk/u/big.bin", body: []byte("x"), wantEcho: true},
		tc{name: "host with a port through net/http's client", creds: api, method: "GET", target: "/20160918/vcns?limit=1", client: true, wantEcho: true},
		tc{name: "POST through net/http's client", creds: session, method: "POST", target: "/20160918/vcns", body: jsonBody, client: true, wantEcho: true},
		tc{name: "host without a port", creds: api, method: "GET", host: "iaas.us-phoenix-1.oraclecloud.com", target: "/20160918/vcns", wantEcho: true},
		tc{name: "percent-encoded target sent as signed", creds: api, method: "GET", host: osHost,
			target: "/n/ns/b/bk/o/a%2Fb%20c%C3%BC.txt?prefix=x%26y&fields=name%2Csize", wantEcho: true},
		tc{name: "raw unicode target sent as signed", creds: session, method: "GET", host: osHost,
			target: "/n/ns/b/bk/o/caf\u00e9/\u00fcber-\u65e5\u672c.txt?prefix=\u00e9t\u00e9", wantEcho: true},
		tc{name: "percent-encoded target through net/http's client", creds: api, method: "DELETE", host: osHost,
			target: "/n/ns/b/bk/o/a%2Fb%3Fc%25d", client: true, wantEcho: true},
		tc{name: "authorization parameters in another order", creds: api, method: "GET", target: "/20160918/vcns", wantEcho: true,
			edit: func(w *wire) { w.set("authorization", reorderParams(w.get("authorization"))) }},
		tc{name: "no version parameter", creds: api, method: "GET", target: "/20160918/vcns", wantEcho: true,
			edit: func(w *wire) {
				w.set("authorization", strings.Replace(w.get("authorization"), `version="1",`, "", 1))
			}},
		tc{name: "namespace probe /n/", creds: api, method: "GET", host: osHost, target: "/n/"},
		tc{name: "namespace probe /n by session", creds: session, method: "GET", host: osHost, target: "/n"},
	)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			host := c.host
			if host == "" {
				host = f.srv.Addr
			}
			w := signed(t, creds[c.creds], c.method, host, c.target, c.body, testNow, c.extra...)
			if c.edit != nil {
				c.edit(w)
			}
			var r response
			if c.client {
				r = doClient(t, f.srv.Addr, w)
			} else {
				r = do(t, f.srv.Addr, w, false)
			}
			rec := f.wantOK(t, r)
			if rec.RequestURI != c.target || rec.Host != host || rec.KeyIDKind != kinds[c.creds] {
				t.Errorf("received %s %q host %q kind %q", rec.Method, rec.RequestURI, rec.Host, rec.KeyIDKind)
			}
			if want := int64(len(c.body)); rec.BodyLength != want || rec.BodySHA256 != b64sha(c.body) {
				t.Errorf("received body %d bytes %s, want %d bytes %s", rec.BodyLength, rec.BodySHA256, want, b64sha(c.body))
			}
			switch {
			case c.wantEcho:
				var e Echo
				if err := json.Unmarshal(r.Body, &e); err != nil {
					t.Fatalf("echo %q: %v", r.Body, err)
				}
				want := Echo{Method: c.method, Path: c.target, Host: host, BodyLength: int64(len(c.body)), BodySHA256: b64sha(c.body), KeyIDKind: kinds[c.creds]}
				if e != want {
					t.Errorf("echo = %+v\nwant   %+v", e, want)
				}
			case strings.HasPrefix(c.target, "/n/ns/"):
				sum := md5.Sum(c.body)
				sha := sha256.Sum256(c.body)
				if got, want := r.Header.Get("opc-content-md5"), base64.StdEncoding.EncodeToString(sum[:]); got != want {
					t.Errorf("opc-content-md5 = %q, want %q", got, want)
				}
				if got, want := r.Header.Get("etag"), hex.EncodeToString(sha[:16]); got != want {
					t.Errorf("etag = %q, want %q", got, want)
				}
			case strings.HasPrefix(c.target, "/n"):
				if string(r.Body) != `"axaxnpcrorw5"` {
					t.Errorf("namespace answer %q", r.Body)
				}
			}
		})
	}
}

// reorderParams rewrites a Go SDK Authorization header with its parameters
// reversed, as another SDK might order them.
func reorderParams(h string) string {
	params := strings.Split(strings.TrimPrefix(h, "Signature "), ",")
	for i, j := 0, len(params)-1; i < j; i, j = i+1, j-1 {
		params[i], params[j] = params[j], params[i]
	}
	return "Signature " + strings.Join(params, ", ")
}

func TestRejectsAsOCIDoes(t *testing.T) {
	t.Parallel()
	const (
		unauthorized = http.StatusUnauthorized
		notAuth      = CodeNotAuthenticated
		required     = msgRequiredInfo
		failed       = msgFailedSignature
	)
	body := []byte(`{"compartmentId":"ocid1.compartment.oc1..aaaa","name":"twenty+"}`)
	target := "/20160918/vcns"

	cases := []struct {
		name       string
		req        func(t *testing.T, f *fixture) *wire
		closeWrite bool
		noTrust    bool // the server trusts no issuer
		status     int
		code, msg  string
	}{
		{name: "tampered body of the same length", status: unauthorized, code: notAuth, msg: msgBodyHashMismatch,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "POST", f.srv.Addr, target, body, testNow)
				w.Body = bytes.Replace(body, []byte("twenty+"), []byte("twenty-"), 1)
				return w
			}},
		{name: "tampered upload body with its x-content-sha256 present", status: unauthorized, code: notAuth, msg: msgBodyHashMismatch,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "PUT", f.srv.Addr, "/n/ns/b/bk/o/x", []byte("hello"), testNow, field{"x-content-sha256", b64sha([]byte("hello"))})
				w.Body = []byte("HELLO")
				return w
			}},
		{name: "body shorter than the signed content-length", closeWrite: true, status: http.StatusBadRequest, code: codeInvalidParameter,
			msg: fmt.Sprintf("The request body ended after 10 bytes; Content-Length is %d.", len(body)),
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "POST", f.srv.Addr, target, body, testNow)
				w.Body = body[:10]
				return w
			}},
		{name: "content-length other than the signed one", status: unauthorized, code: notAuth, msg: failed,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "POST", f.srv.Addr, target, body, testNow)
				w.Body = append(append([]byte(nil), body...), ' ')
				w.set("content-length", fmt.Sprint(len(w.Body)))
				return w
			}},
		{name: "signed content-length but the body sent chunked", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "POST", f.srv.Addr, target, body, testNow)
				w.Chunked = true
				return w
			}},
		{name: "signature from another key", status: unauthorized, code: notAuth, msg: failed,
			req: func(t *testing.T, f *fixture) *wire {
				c := *f.api
				c.Key = Key(t, 2)
				return signed(t, &c, "GET", f.srv.Addr, target, nil, testNow)
			}},
		{name: "session token with another session key", status: unauthorized, code: notAuth, msg: failed,
			req: func(t *testing.T, f *fixture) *wire {
				c := *f.session
				c.Key = Key(t, 2)
				return signed(t, &c, "GET", f.srv.Addr, target, nil, testNow)
			}},
		{name: "unregistered keyId", status: unauthorized, code: notAuth, msg: failed,
			req: func(t *testing.T, f *fixture) *wire {
				c := *f.api
				c.KeyID = APIKeyID("NOBODY", &c.Key.PublicKey)
				return signed(t, &c, "GET", f.srv.Addr, target, nil, testNow)
			}},
		{name: "keyId of neither form", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				c := *f.api
				c.KeyID = "ocid1.user.oc1..nofingerprint"
				return signed(t, &c, "GET", f.srv.Addr, target, nil, testNow)
			}},
		{name: "expired session token", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				tok := f.issuer.Mint(t, &Key(t, 1).PublicKey, TokenOptions{IssuedAt: testNow.Add(-61 * time.Minute), Lifetime: time.Hour})
				c, err := signer.NewSessionCredentials(tok, Key(t, 1))
				if err != nil {
					t.Fatal(err)
				}
				return signed(t, c, "GET", f.srv.Addr, target, nil, testNow)
			}},
		{name: "token expiring exactly now", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				tok := f.issuer.Mint(t, &Key(t, 1).PublicKey, TokenOptions{IssuedAt: testNow.Add(-time.Hour), Lifetime: time.Hour})
				c, err := signer.NewSessionCredentials(tok, Key(t, 1))
				if err != nil {
					t.Fatal(err)
				}
				return signed(t, c, "GET", f.srv.Addr, target, nil, testNow)
			}},
		{name: "token from an untrusted issuer", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				rogue := newIssuerWithKey(Key(t, 3))
				tok := rogue.Mint(t, &Key(t, 1).PublicKey, TokenOptions{IssuedAt: testNow})
				c, err := signer.NewSessionCredentials(tok, Key(t, 1))
				if err != nil {
					t.Fatal(err)
				}
				return signed(t, c, "GET", f.srv.Addr, target, nil, testNow)
			}},
		{name: "token when the server trusts no issuer", noTrust: true, status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				return signed(t, f.session, "GET", f.srv.Addr, target, nil, testNow)
			}},
		{name: "date six minutes ahead", status: unauthorized, code: notAuth,
			msg: "Date 'Sun, 01 Mar 2026 12:06:00 UTC' is not within allowed clock skew. Current 'Sun, 01 Mar 2026 12:00:00 UTC', valid datetime range: ['Sun, 01 Mar 2026 11:55:00 UTC', 'Sun, 01 Mar 2026 12:05:00 UTC']",
			req: func(t *testing.T, f *fixture) *wire {
				return signed(t, f.api, "GET", f.srv.Addr, target, nil, testNow.Add(6*time.Minute))
			}},
		{name: "date six minutes behind", status: unauthorized, code: notAuth,
			msg: "Date 'Sun, 01 Mar 2026 11:54:00 UTC' is not within allowed clock skew. Current 'Sun, 01 Mar 2026 12:00:00 UTC', valid datetime range: ['Sun, 01 Mar 2026 11:55:00 UTC', 'Sun, 01 Mar 2026 12:05:00 UTC']",
			req: func(t *testing.T, f *fixture) *wire {
				return signed(t, f.session, "GET", f.srv.Addr, target, nil, testNow.Add(-6*time.Minute))
			}},
		{name: "date not in RFC 1123 GMT", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				d := testNow.Format(time.RFC3339)
				w := &wire{Method: "GET", Target: target, Host: f.srv.Addr}
				w.set("date", d)
				w.set("authorization", handSigned(t, f.api.Key, f.api.KeyID, field{"date", d}, field{"(request-target)", "get " + target}, field{"host", f.srv.Addr}))
				return w
			}},
		{name: "unsigned x-date beside a signed date", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "GET", f.srv.Addr, target, nil, testNow)
				w.set("x-date", signer.FormatDate(testNow))
				return w
			}},
		{name: "host missing from headers=", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				d := signer.FormatDate(testNow)
				w := &wire{Method: "GET", Target: target, Host: f.srv.Addr}
				w.set("date", d)
				w.set("authorization", handSigned(t, f.api.Key, f.api.KeyID, field{"date", d}, field{"(request-target)", "get " + target}))
				return w
			}},
		{name: "no date signed at all", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				w := &wire{Method: "GET", Target: target, Host: f.srv.Addr}
				w.set("date", signer.FormatDate(testNow))
				w.set("authorization", handSigned(t, f.api.Key, f.api.KeyID, field{"(request-target)", "get " + target}, field{"host", f.srv.Addr}))
				return w
			}},
		{name: "POST without x-content-sha256 signed", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				d := signer.FormatDate(testNow)
				w := &wire{Method: "POST", Target: target, Host: f.srv.Addr, Body: body}
				w.set("date", d)
				w.set("content-type", "application/json")
				w.set("content-length", fmt.Sprint(len(body)))
				w.set("authorization", handSigned(t, f.api.Key, f.api.KeyID,
					field{"date", d}, field{"(request-target)", "post " + target}, field{"host", f.srv.Addr},
					field{"content-length", fmt.Sprint(len(body))}, field{"content-type", "application/json"}))
				return w
			}},
		{name: "PUT that is not an upload without body headers signed", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				d := signer.FormatDate(testNow)
				tgt := "/n/ns/b/bk/u/big.bin?uploadId=abc" // no uploadPartNum: not UploadPart
				w := &wire{Method: "PUT", Target: tgt, Host: f.srv.Addr, Body: body}
				w.set("date", d)
				w.set("authorization", handSigned(t, f.api.Key, f.api.KeyID, field{"date", d}, field{"(request-target)", "put " + tgt}, field{"host", f.srv.Addr}))
				return w
			}},
		{name: "query reordered after signing", status: unauthorized, code: notAuth, msg: failed,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "GET", f.srv.Addr, target+"?a=1&b=2", nil, testNow)
				w.Target = target + "?b=2&a=1"
				return w
			}},
		{name: "target re-encoded after signing", status: unauthorized, code: notAuth, msg: failed,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "GET", f.srv.Addr, "/n/ns/b/bk/o/caf\u00e9", nil, testNow)
				w.Target = "/n/ns/b/bk/o/caf%C3%A9"
				return w
			}},
		{name: "host rewritten after signing", status: unauthorized, code: notAuth, msg: failed,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "GET", "objectstorage.us-ashburn-1.oraclecloud.com", "/n/", nil, testNow)
				w.Host = "objectstorage.us-ashburn-1.oraclecloud.com:443"
				return w
			}},
		{name: "signed header missing from the request", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "GET", f.srv.Addr, target, nil, testNow, field{"opc-obo-token", "obo"})
				w.del("opc-obo-token")
				return w
			}},
		{name: "no Authorization header", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "GET", f.srv.Addr, target, nil, testNow)
				w.del("authorization")
				return w
			}},
		{name: "no signature parameter", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "GET", f.srv.Addr, target, nil, testNow)
				a := w.get("authorization")
				w.set("authorization", a[:strings.Index(a, `,signature=`)])
				return w
			}},
		{name: "algorithm other than rsa-sha256", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "GET", f.srv.Addr, target, nil, testNow)
				w.set("authorization", strings.Replace(w.get("authorization"), "rsa-sha256", "hmac-sha256", 1))
				return w
			}},
		{name: "version other than 1", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "GET", f.srv.Addr, target, nil, testNow)
				w.set("authorization", strings.Replace(w.get("authorization"), `version="1"`, `version="2"`, 1))
				return w
			}},
		{name: "garbled parameter list", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "GET", f.srv.Addr, target, nil, testNow)
				w.set("authorization", strings.TrimSuffix(w.get("authorization"), `"`))
				return w
			}},
		{name: "Signature header scheme other than Signature", status: unauthorized, code: notAuth, msg: required,
			req: func(t *testing.T, f *fixture) *wire {
				w := signed(t, f.api, "GET", f.srv.Addr, target, nil, testNow)
				w.set("authorization", "Bearer "+strings.TrimPrefix(w.get("authorization"), "Signature "))
				return w
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			if c.noTrust {
				f.srv = NewServer(t)
				f.srv.SetClock(func() time.Time { return testNow })
			}
			r := do(t, f.srv.Addr, c.req(t, f), c.closeWrite)
			f.wantRejected(t, r, c.status, c.code, c.msg)
		})
	}
}

func TestClockSkewBoundary(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	target := "/20160918/vcns"
	cases := []struct {
		name   string
		offset time.Duration
		header string // date or x-date
		ok     bool
	}{
		{"date four minutes ahead is accepted", 4 * time.Minute, "date", true},
		{"date four minutes behind is accepted", -4 * time.Minute, "date", true},
		{"date exactly five minutes behind is accepted", -5 * time.Minute, "date", true},
		{"date six minutes ahead is rejected", 6 * time.Minute, "date", false},
		{"x-date four minutes behind is accepted", -4 * time.Minute, "x-date", true},
		{"x-date six minutes behind is rejected", -6 * time.Minute, "x-date", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := signer.FormatDate(testNow.Add(c.offset))
			w := &wire{Method: "GET", Target: target, Host: f.srv.Addr}
			w.set(c.header, d)
			if c.header == "x-date" {
				// A stale date beside x-date must not matter: OCI judges x-date.
				w.set("date", signer.FormatDate(testNow.Add(-time.Hour)))
			}
			w.set("authorization", handSigned(t, f.api.Key, f.api.KeyID, field{c.header, d}, field{"(request-target)", "get " + target}, field{"host", f.srv.Addr}))
			r := do(t, f.srv.Addr, w, false)
			if c.ok {
				f.wantOK(t, r)
				return
			}
			rec := f.received(t, r)
			if r.Status != http.StatusUnauthorized || !strings.Contains(rec.Message, "is not within allowed clock skew") {
				t.Fatalf("status %d, message %q", r.Status, rec.Message)
			}
		})
	}
}

// The golden vectors were signed with the date "Thu, 05 Jan 2014 21:31:40
// GMT" (5 January 2014 was a Sunday). The server reads dates with
// time.Parse, which checks a weekday's spelling but not that it fits.
func TestGoldenVectorsVerify(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../testdata/oci-signing-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vf struct {
		Date          string `json:"date"`
		KeyID         string `json:"key_id"`
		PrivateKeyPEM string `json:"private_key_pem"`
		Vectors       []struct {
			Name           string            `json:"name"`
			Method         string            `json:"method"`
			URL            string            `json:"url"`
			RequestHeaders map[string]string `json:"request_headers"`
			Body           *string           `json:"body"`
			BodyExcluded   bool              `json:"body_excluded_from_signature"`
			XContentSHA256 string            `json:"x_content_sha256"`
			Authorization  string            `json:"authorization"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(data, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Vectors) != 8 {
		t.Fatalf("want 8 vectors, got %d", len(vf.Vectors))
	}
	key, err := signer.ParsePrivateKey([]byte(vf.PrivateKeyPEM), nil)
	if err != nil {
		t.Fatal(err)
	}
	date, err := time.Parse(http.TimeFormat, vf.Date)
	if err != nil {
		t.Fatal(err)
	}
	if date.Weekday() != time.Sunday {
		t.Fatalf("the vectors' date is a %s; this test's comment is stale", date.Weekday())
	}
	s := NewServer(t)
	s.SetClock(func() time.Time { return date.Add(30 * time.Second) })
	s.RegisterAPIKey(vf.KeyID, &key.PublicKey)
	f := &fixture{srv: s}

	for _, v := range vf.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			hostTarget, ok := strings.CutPrefix(v.URL, "https://")
			if !ok {
				t.Fatalf("url %q", v.URL)
			}
			host, path, _ := strings.Cut(hostTarget, "/")
			w := &wire{Method: v.Method, Target: "/" + path, Host: host}
			for k, val := range v.RequestHeaders {
				w.set(k, val)
			}
			if v.Body != nil {
				w.Body = []byte(*v.Body)
				if !v.BodyExcluded {
					w.set("content-length", fmt.Sprint(len(w.Body)))
					w.set("x-content-sha256", v.XContentSHA256)
				}
			}
			w.set("authorization", v.Authorization)
			rec := f.wantOK(t, do(t, s.Addr, w, false))
			if rec.KeyID != vf.KeyID {
				t.Errorf("keyId %q", rec.KeyID)
			}
		})
	}

	t.Run("one minute past the skew window the same vector is rejected", func(t *testing.T) {
		s2 := NewServer(t)
		s2.SetClock(func() time.Time { return date.Add(6 * time.Minute) })
		s2.RegisterAPIKey(vf.KeyID, &key.PublicKey)
		v := vf.Vectors[0]
		host, path, _ := strings.Cut(strings.TrimPrefix(v.URL, "https://"), "/")
		w := &wire{Method: v.Method, Target: "/" + path, Host: host}
		w.set("date", vf.Date)
		w.set("authorization", v.Authorization)
		r := do(t, s2.Addr, w, false)
		if r.Status != http.StatusUnauthorized || !strings.Contains(string(r.Body), "Date 'Sun, 05 Jan 2014 21:31:40 UTC' is not within allowed clock skew") {
			t.Fatalf("status %d body %s", r.Status, r.Body)
		}
	})
}

func TestHandlersAnswerVerifiedRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var calls sync.Map // path -> count, to prove rejected requests never arrive
	f.srv.Handle("POST /v1/authentication/refresh", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Store(r.URL.Path, true)
		c, ok := callerFrom(r.Context())
		if !ok || c.Kind != KeyIDSession || c.Token == nil {
			http.Error(w, "no session caller", http.StatusInternalServerError)
			return
		}
		var in struct {
			CurrentToken string `json:"currentToken"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.CurrentToken != c.Token.Raw {
			http.Error(w, fmt.Sprintf("body: %v", err), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token":%q}`, "new-"+c.RequestID)
	}))
	f.srv.Handle("GET /n/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Store(r.URL.Path, true)
		c, _ := callerFrom(r.Context())
		fmt.Fprintf(w, `"custom-%s"`, c.Kind)
	}))
	authHost := "auth.us-phoenix-1.oraclecloud.com"
	refreshBody := []byte(`{"currentToken": "` + f.token + `"}`)

	cases := []struct {
		name    string
		req     func(t *testing.T) *wire
		limit   int64
		status  int
		wantSub string // in the body
		pattern string
		called  bool
	}{
		{name: "refresh by a valid session reaches the handler with its body and caller",
			req: func(t *testing.T) *wire {
				return signed(t, f.session, "POST", authHost, "/v1/authentication/refresh", refreshBody, testNow)
			},
			status: http.StatusOK, wantSub: `{"token":"new-`, pattern: "POST /v1/authentication/refresh", called: true},
		{name: "registered handler takes precedence over the namespace answer",
			req:    func(t *testing.T) *wire { return signed(t, f.api, "GET", "objectstorage.x", "/n/", nil, testNow) },
			status: http.StatusOK, wantSub: `"custom-api_key"`, pattern: "GET /n/", called: true},
		{name: "body over the handler limit is refused before the handler",
			req: func(t *testing.T) *wire {
				return signed(t, f.session, "POST", authHost, "/v1/authentication/refresh", refreshBody, testNow)
			},
			limit: 16, status: http.StatusRequestEntityTooLarge, wantSub: codeRequestEntityTooLarge, pattern: "POST /v1/authentication/refresh"},
		{name: "a request failing verification never reaches the handler",
			req: func(t *testing.T) *wire {
				c := *f.session
				c.Key = Key(t, 2)
				return signed(t, &c, "POST", authHost, "/v1/authentication/refresh", refreshBody, testNow)
			},
			status: http.StatusUnauthorized, wantSub: msgFailedSignature},
		{name: "a tampered body never reaches the handler",
			req: func(t *testing.T) *wire {
				w := signed(t, f.session, "POST", authHost, "/v1/authentication/refresh", refreshBody, testNow)
				w.Body = bytes.ToUpper(w.Body)
				return w
			},
			status: http.StatusUnauthorized, wantSub: msgBodyHashMismatch, pattern: "POST /v1/authentication/refresh"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls.Clear()
			limit := c.limit
			if limit == 0 {
				limit = defaultHandlerBodyLimit
			}
			f.srv.setHandlerBodyLimit(limit)
			r := do(t, f.srv.Addr, c.req(t), false)
			rec := f.received(t, r)
			if r.Status != c.status || !strings.Contains(string(r.Body), c.wantSub) {
				t.Fatalf("status %d body %s, want %d with %q; reason %s", r.Status, r.Body, c.status, c.wantSub, rec.Reason)
			}
			if rec.Pattern != c.pattern || rec.Status != c.status {
				t.Errorf("recorded pattern %q status %d", rec.Pattern, rec.Status)
			}
			called := false
			calls.Range(func(any, any) bool { called = true; return false })
			if called != c.called {
				t.Errorf("handler called = %v, want %v", called, c.called)
			}
		})
	}
}

func TestNamespaceAndRequestIDs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if got := f.srv.Namespace(); got != defaultNamespace {
		t.Fatalf("default namespace %q", got)
	}
	f.srv.setNamespace("tenancyns")
	w := signed(t, f.api, "GET", "objectstorage.us-phoenix-1.oraclecloud.com", "/n", nil, testNow, field{"opc-request-id", "CLIENT123"})
	r := do(t, f.srv.Addr, w, false)
	f.wantOK(t, r)
	if string(r.Body) != `"tenancyns"` {
		t.Errorf("namespace answer %s", r.Body)
	}
	if id := r.Header.Get("opc-request-id"); !strings.HasPrefix(id, "CLIENT123/") {
		t.Errorf("opc-request-id %q does not start with the client's", id)
	}
	// Every answer carries an opc-request-id, rejections included.
	w.del("authorization")
	if r := do(t, f.srv.Addr, w, false); r.Header.Get("opc-request-id") == "" || r.Status != http.StatusUnauthorized {
		t.Errorf("rejection: status %d, opc-request-id %q", r.Status, r.Header.Get("opc-request-id"))
	}
}

// patternReader yields n bytes of a fixed pattern, hashing what it yields,
// without ever holding more than one block.
type patternReader struct {
	block []byte
	left  int64
	sum   hash.Hash
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n := copy(b, p.block)
	p.sum.Write(b[:n])
	p.left -= int64(n)
	return n, nil
}

// A streamed upload must cost the server a buffer, not the body: product
// tests push 1 GiB through it. Allocation is counted process-wide, so this
// test is not parallel (parallel tests wait until sequential ones finish).
func TestStreamsUploadsWithoutBuffering(t *testing.T) {
	const size = streamedUpload
	f := newFixture(t)
	target := "/n/ns/b/bk/o/big.bin"
	w := signed(t, f.api, "PUT", f.srv.Addr, target, nil, testNow)
	block := make([]byte, 64<<10)
	for i := range block {
		block[i] = byte(i * 7)
	}
	body := &patternReader{block: block, left: size, sum: sha256.New()}
	req, err := http.NewRequest("PUT", f.srv.URL+target, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	for _, h := range w.Header {
		req.Header.Set(h.name, h.value)
	}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	runtime.ReadMemStats(&after)

	rec := f.received(t, response{Status: resp.StatusCode, Header: resp.Header})
	if resp.StatusCode != http.StatusOK || !rec.OK {
		t.Fatalf("status %d reason %s", resp.StatusCode, rec.Reason)
	}
	if want := base64.StdEncoding.EncodeToString(body.sum.Sum(nil)); rec.BodyLength != size || rec.BodySHA256 != want {
		t.Errorf("received %d bytes %s, want %d bytes %s", rec.BodyLength, rec.BodySHA256, size, want)
	}
	// Client and server together, one request: a few buffers, far below
	// the body. Buffering the body would allocate at least size bytes.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("%d MiB allocated to move a %d MiB body", alloc>>20, size>>20)
	} else {
		t.Logf("%d KiB allocated to move a %d MiB body", alloc>>10, size>>20)
	}
}

// A thousand requests at once, GETs and POSTs, while the log is being read:
// run under -race this proves the server's state is guarded.
func TestThousandConcurrentRequests(t *testing.T) {
	t.Parallel()
	const n = concurrentRequests
	f := newFixture(t)
	// Signing is the slow part; a handful of signed requests, each sent
	// many times, keep the test about the server. OCI does not reject
	// replays within the skew window either.
	var variants []*wire
	for i := 0; i < 10; i++ {
		c := f.api
		if i%2 == 1 {
			c = f.session
		}
		if i%3 == 0 {
			variants = append(variants, signed(t, c, "POST", f.srv.Addr, fmt.Sprintf("/20160918/p/%d", i), []byte(fmt.Sprintf(`{"i":%d}`, i)), testNow))
		} else {
			variants = append(variants, signed(t, c, "GET", f.srv.Addr, fmt.Sprintf("/20160918/g/%d?x=%d", i, i), nil, testNow))
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
	t.Cleanup(client.CloseIdleConnections)

	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(w *wire) {
			defer wg.Done()
			path, query, _ := strings.Cut(w.Target, "?")
			req := &http.Request{Method: w.Method, URL: &url.URL{Scheme: "http", Host: f.srv.Addr, Path: path, RawQuery: query}, Host: w.Host, Header: http.Header{}}
			for _, h := range w.Header {
				if h.name != "content-length" {
					req.Header.Set(h.name, h.value)
				}
			}
			if w.Body != nil {
				req.Body = io.NopCloser(bytes.NewReader(w.Body))
				req.ContentLength = int64(len(w.Body))
			}
			<-start
			resp, err := client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("%s %s: status %d", w.Method, w.Target, resp.StatusCode)
			}
		}(variants[i%len(variants)])
	}
	done := make(chan struct{})
	go func() { // read the log while it is being written
		for {
			select {
			case <-done:
				return
			default:
				_ = f.srv.Requests()
				runtime.Gosched()
			}
		}
	}()
	close(start)
	wg.Wait()
	close(done)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	recs := f.srv.Requests()
	if len(recs) != n {
		t.Fatalf("logged %d requests, want %d", len(recs), n)
	}
	seen := make(map[int64]bool, n)
	for _, r := range recs {
		if !r.OK || seen[r.Seq] {
			t.Fatalf("bad or duplicate entry %+v", r)
		}
		seen[r.Seq] = true
	}
}

// readResponse reads a whole response, failing the test on any error,
// the round trip's included.
func readResponse(t *testing.T, resp *http.Response, err error) response {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, body}
}
