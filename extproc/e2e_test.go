package extproc_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// The profile comes from the route's pin, the request header or the
// default, as the operator allows: on a shared gateway the header is not a
// way to pick someone else's profile.
func TestProfileSelection(t *testing.T) {
	t.Parallel()
	pin := func(c *extproctest.Config) {
		c.Metadata = func(r *http.Request) map[string]string {
			if strings.HasPrefix(r.URL.Path, "/pinned/") {
				return map[string]string{"x-oci-profile": "SESSION"}
			}
			return nil
		}
	}
	for _, tc := range []struct {
		name, path, header string
		server             func(*extproc.Config)
		want               signertest.KeyIDKind // "" when refused
		setting            string               // named in the refusal
	}{
		{name: "default", path: "/x", want: signertest.KeyIDAPIKey},
		{name: "request header", path: "/x", header: "SESSION", want: signertest.KeyIDSession},
		{name: "route pin", path: "/pinned/x", want: signertest.KeyIDSession},
		{name: "the same profile in header and pin", path: "/pinned/x", header: "SESSION", want: signertest.KeyIDSession},
		{name: "the route's pin beats the header", path: "/pinned/x", header: "API", setting: "--profile-header-overrides-route"},
		{name: "the header beats the pin when the operator allows it", path: "/pinned/x", header: "API",
			server: func(c *extproc.Config) { c.HeaderOverridesRoute = true }, want: signertest.KeyIDAPIKey},
		{name: "per-request selection off refuses the header", path: "/x", header: "SESSION",
			server: func(c *extproc.Config) { c.NoProfileHeader = true }, setting: "--profile-header"},
		{name: "per-request selection off leaves routes", path: "/pinned/x",
			server: func(c *extproc.Config) { c.NoProfileHeader = true }, want: signertest.KeyIDSession},
		{name: "a profile outside --profiles is refused", path: "/x", header: "SESSION",
			server: func(c *extproc.Config) { c.Profiles = []string{"API"} }, setting: "--profiles"},
		{name: "even when a route pins it", path: "/pinned/x",
			server: func(c *extproc.Config) { c.Profiles = []string{"API"} }, setting: "--profiles"},
		{name: "a profile inside --profiles is signed", path: "/x",
			server: func(c *extproc.Config) { c.Profiles = []string{"API"} }, want: signertest.KeyIDAPIKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, stackOptions{envoy: pin, server: tc.server})
			req := s.request("GET", iaasHost, tc.path, nil)
			if tc.header != "" {
				req.Header.Set("x-oci-profile", tc.header)
			}
			a := s.do(req)
			if tc.want == "" {
				code, msg := a.refusal(t)
				if a.status != http.StatusForbidden || code != extproc.CodeProfileNotServed || !strings.Contains(msg, tc.setting) {
					t.Fatalf("%d %s %q, want 403 %s naming %s", a.status, code, msg, extproc.CodeProfileNotServed, tc.setting)
				}
				if len(s.oci.Requests()) != 0 {
					t.Fatal("a refused request reached OCI")
				}
				return
			}
			if a.status != 200 {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			if rec := s.lastRecord(); rec.KeyIDKind != tc.want {
				t.Fatalf("signed as %s, want %s", rec.KeyIDKind, tc.want)
			}
		})
	}
}

// `oci session refresh` and `oci session authenticate` rewrite the files
// while traffic flows: every request succeeds, both tokens are used.
func TestTokenRotatedOnDiskMidTraffic(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	newKey := signertest.Key(t, 4)
	newTok := s.issuer.Mint(t, &newKey.PublicKey, signertest.TokenOptions{Subject: "ocid1.user.oc1..rotated"})
	secret(newTok)
	tr := s.startTraffic(4)
	tr.more(t, 10)
	s.folder.Replace(s.session.KeyPath, signertest.EncodeKey(t, newKey, signertest.PKCS1, ""))
	s.folder.Replace(s.session.TokenPath, []byte(newTok))
	tr.more(t, 10)
	if f := tr.stop(); f != 0 {
		t.Fatalf("%d of %d requests failed across the rotation", f, tr.sent.Load())
	}
	seen := map[string]bool{}
	for _, r := range s.oci.Requests() {
		if r.KeyIDKind == signertest.KeyIDSession {
			seen[r.KeyID] = true
		}
	}
	if !seen["ST$"+s.session.Token] || !seen["ST$"+newTok] {
		t.Fatalf("want both tokens used, saw %d", len(seen))
	}
}

func TestManyConcurrentStreams(t *testing.T) {
	before := runtime.NumGoroutine()
	// concurrentStreams RSA signatures queue on two cores (and slower under
	// the race detector): Envoy's 5s message timeout is not what this tests.
	var details sync.Map // why Envoy answered a request itself, if it did
	s := newStack(t, stackOptions{envoy: func(c *extproctest.Config) {
		c.MessageTimeout = 5 * time.Minute
		c.AccessLog = func(e extproctest.AccessLogEntry) {
			if e.Status != 200 {
				details.Store(e.ResponseCodeDetails, true)
			}
		}
	}})
	n := concurrentStreams
	var (
		wg       sync.WaitGroup
		failures atomic.Int64
		start    = make(chan struct{})
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			method, body := "GET", io.Reader(nil)
			if i%2 == 1 {
				method, body = "POST", strings.NewReader(fmt.Sprintf(`{"n":%d}`, i))
			}
			req := s.request(method, iaasHost, fmt.Sprintf("/c/%d", i), body)
			if i%3 == 0 {
				req.Header.Set("x-oci-profile", "SESSION")
			}
			resp, err := s.client.Do(req)
			if err != nil {
				failures.Add(1)
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failures.Add(1)
				t.Errorf("request %d: %d %s", i, resp.StatusCode, b)
			}
		}()
	}
	close(start)
	wg.Wait()
	if failures.Load() != 0 {
		var why []string
		details.Range(func(k, _ any) bool { why = append(why, k.(string)); return true })
		t.Fatalf("%d of %d failed: %v", failures.Load(), n, why)
	}
	ok := 0
	for _, r := range s.oci.Requests() {
		if r.OK {
			ok++
		}
	}
	if ok != n {
		t.Fatalf("OCI verified %d of %d", ok, n)
	}
	// Tear the stack down and every goroutine it started must end.
	s.client.CloseIdleConnections()
	_ = s.envoy.Close()
	s.grpc.Stop()
	s.config.Close()
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before+5 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("condition not met in time; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// No path ends a stream OK before the request was answered: each of these
// makes the handler fail, and Envoy answers the client without forwarding.
func TestNoStreamEndsOKUnanswered(t *testing.T) {
	t.Parallel()
	t.Run("panic in the handler", func(t *testing.T) {
		s := newStack(t, stackOptions{trackStatus: true, server: func(c *extproc.Config) {
			c.Credentials = overrideCredentials{base: c.Credentials, profile: "API", src: panicSource{}}
		}})
		a := s.do(s.request("GET", iaasHost, "/", nil))
		if code, _ := a.refusal(t); a.status != 500 || code != extproc.CodeInternal {
			t.Fatalf("status %d code %s", a.status, code)
		}
		if len(s.oci.Requests()) != 0 {
			t.Fatal("forwarded")
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		block := &blockingSource{entered: make(chan struct{}, 1), release: make(chan struct{})}
		s := newStack(t, stackOptions{trackStatus: true,
			envoy: func(c *extproctest.Config) { c.MessageTimeout = 300 * time.Millisecond },
			server: func(c *extproc.Config) {
				c.Credentials = overrideCredentials{base: c.Credentials, profile: "API", src: block}
			}})
		a := s.do(s.request("GET", iaasHost, "/", nil))
		if a.status != http.StatusGatewayTimeout {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		if err := s.handlerStatus(); err == nil {
			t.Fatal("handler returned OK for a stream it never answered")
		}
		if len(s.oci.Requests()) != 0 {
			t.Fatal("forwarded")
		}
	})
	t.Run("server stopped mid-request", func(t *testing.T) {
		block := &blockingSource{entered: make(chan struct{}, 1), release: make(chan struct{})}
		s := newStack(t, stackOptions{trackStatus: true, server: func(c *extproc.Config) {
			c.Credentials = overrideCredentials{base: c.Credentials, profile: "API", src: block}
		}})
		res := make(chan answer, 1)
		go func() { res <- s.do(s.request("GET", iaasHost, "/", nil)) }()
		<-block.entered
		s.grpc.Stop()
		a := <-res
		if a.status != http.StatusInternalServerError {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		if err := s.handlerStatus(); err == nil {
			t.Fatal("handler returned OK for a stream it never answered")
		}
		if len(s.oci.Requests()) != 0 {
			t.Fatal("forwarded")
		}
	})
	t.Run("graceful stop lets the request finish", func(t *testing.T) {
		block := &blockingSource{entered: make(chan struct{}, 1), release: make(chan struct{})}
		s := newStack(t, stackOptions{server: func(c *extproc.Config) {
			block.then = c.Credentials.Source("API")
			c.Credentials = overrideCredentials{base: c.Credentials, profile: "API", src: block}
		}})
		res := make(chan answer, 1)
		go func() { res <- s.do(s.request("GET", iaasHost, "/", nil)) }()
		<-block.entered
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		close(block.release)
		if a := <-res; a.status != 200 {
			t.Fatalf("status %d: %s", a.status, a.body)
		}
		<-stopped
	})
	t.Run("body over the limit", func(t *testing.T) {
		s := newStack(t, stackOptions{maxBody: 10, trackStatus: true})
		a := s.do(s.request("PATCH", iaasHost, "/", strings.NewReader("more than ten bytes")))
		if code, _ := a.refusal(t); a.status != 413 || code != extproc.CodeBodyTooLarge {
			t.Fatalf("status %d code %s", a.status, code)
		}
		if len(s.oci.Requests()) != 0 {
			t.Fatal("forwarded")
		}
		// Answered: now an OK end is right, and the stream ends at once.
		if err := s.handlerStatus(); err != nil {
			t.Fatalf("handler returned %v after answering", err)
		}
	})
}

// Envoy keeps the stream of a buffered request open until OCI's response
// headers arrive. ocisigner ends it as soon as the request is signed, so a
// signer that stops (a restart, a drain that times out) while OCI works on
// the request no longer turns OCI's answer, for a request OCI executed,
// into a 500.
func TestSignerStoppedAfterSigningDoesNotFailTheRequest(t *testing.T) {
	s := newStack(t, stackOptions{trackStatus: true})
	entered, release := make(chan struct{}), make(chan struct{})
	s.oci.Handle("POST /20160918/instances", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"ocid1.instance.oc1..created"}`)
	}))
	res := make(chan answer, 1)
	go func() {
		res <- s.do(s.request("POST", iaasHost, "/20160918/instances", strings.NewReader(`{"shape":"VM"}`)))
	}()
	<-entered
	// The stream ended with the signed answer: Envoy saw it close, OK.
	if err := s.handlerStatus(); err != nil {
		t.Fatalf("the stream of a signed request ended with %v, want OK", err)
	}
	waitFor(t, func() bool { return s.envoy.Stats().ClosedOKAfterLastAnswer == 1 })
	s.grpc.Stop() // the signer goes away while OCI still works on the request
	close(release)
	a := <-res
	if a.status != http.StatusCreated || !strings.Contains(string(a.body), "created") {
		t.Fatalf("client got %d %s, want OCI's 201", a.status, a.body)
	}
}

// A request for a route the operator pins is signed as that profile even
// when its credentials change kind on disk; used to test Credentials wiring.
var _ = signer.KindSession

func TestMainChecksLogsForSecrets(t *testing.T) {
	// The check itself runs in TestMain after every test; this makes sure
	// the suite produced debug logs to check, signing strings included.
	s := newStack(t, stackOptions{})
	if a := s.do(s.request("GET", iaasHost, "/", nil)); a.status != 200 {
		t.Fatal(a.status)
	}
	logs := suiteLogs.String()
	if !strings.Contains(logs, "signing string") || !strings.Contains(logs, "key_id=") {
		t.Fatalf("debug logs missing:\n%s", logs)
	}
	_ = context.Background
}

// One info line per request, with what an operator needs and no query
// values or credentials; the signing string only at debug, masked.
func TestLogLinePerRequest(t *testing.T) {
	s := newStack(t, stackOptions{})
	req := s.request("POST", iaasHost, "/loglinetest?compartmentId=ocid1.compartment.oc1..secretvalue&limit=10", strings.NewReader(`{"x":1}`))
	req.Header.Set("opc-obo-token", "obo-token-that-must-not-be-logged-0123456789")
	if a := s.do(req); a.status != 200 {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	var line, debug string
	for _, l := range strings.Split(suiteLogs.String(), "\n") {
		if strings.Contains(l, "/loglinetest") && strings.Contains(l, "msg=signed") {
			line = l
		}
		if strings.Contains(l, "msg=\"signing string\"") && strings.Contains(l, "loglinetest") {
			debug = l
		}
	}
	for _, want := range []string{"level=INFO", "profile=API", "kind=api_key", "method=POST", "host=" + iaasHost,
		`path="/loglinetest?compartmentId=…&limit=…"`, "body_bytes=7", `signed_headers="date (request-target) host content-length content-type x-content-sha256 opc-obo-token"`,
		"outcome=signed", "duration=", "key_id=…"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, "secretvalue") || strings.Contains(line, s.apiKeyID) {
		t.Errorf("log line carries query values or the full keyId:\n%s", line)
	}
	if debug == "" || strings.Contains(debug, "secretvalue") == false || strings.Contains(debug, "obo-token-that-must-not-be-logged") {
		// The signing string holds the target as signed, but never the OBO token.
		t.Errorf("debug signing string wrong:\n%s", debug)
	}
	secret("obo-token-that-must-not-be-logged-0123456789")
}
