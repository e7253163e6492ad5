package extproc_test

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// With request_body_mode BUFFERED, Envoy buffers an upload's body while the
// answer to its headers is pending and answers 413 once that passes
// request_body_buffer_limit (32 MiB in envoy.yaml), even though the answer
// would switch the body to NONE (ext_proc.cc Filter::onData returns
// StopIterationAndBuffer; filter_manager.cc requestDataTooLarge sends the
// local reply; extproctest models it, TestBodyPastTheLimitBeforeTheHeadersAnswerGets413).
// A client streams 32 MiB in a fraction of a second, so the headers answer
// must never wait on the network while usable credentials exist. The tests
// here hold the auth service's answers at an authGate, so that a refresh,
// a renewal or a first federation is provably in flight when the upload's
// headers are answered.

const (
	instanceProfile = "INSTANCE"
	uploadPath      = "/n/ns/b/bucket/o/"
	bufferLimit     = 32 << 20 // envoy.yaml's request_body_buffer_limit
)

// authGate stands in front of a token service. While held, it keeps every
// request it receives waiting, unanswered and not yet forwarded, until
// Release: whatever sent it is provably in flight meanwhile.
type authGate struct {
	URL string

	proxy *httputil.ReverseProxy

	mu      sync.Mutex
	release chan struct{}  // closed by Release; nil while the gate is open
	held    map[string]int // requests waiting at the gate now, by path
	signal  chan struct{}  // closed and replaced on every change of held
}

// newAuthGate starts a gate on loopback in front of target, holding from
// the start if held.
func newAuthGate(tb testing.TB, target string, held bool) *authGate {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	// NewSingleHostReverseProxy keeps the request's Host, which the
	// session refresh signs: the auth service verifies the gate's host:port
	// as signed.
	g := &authGate{proxy: httputil.NewSingleHostReverseProxy(u), held: map[string]int{}, signal: make(chan struct{})}
	g.proxy.ErrorLog = log.New(io.Discard, "", 0) // a caller gave up: its own error says so
	if held {
		g.release = make(chan struct{})
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: g}}
	srv.Start()
	tb.Cleanup(func() {
		g.Release() // Close waits for the requests it holds
		srv.Close()
	})
	g.URL = srv.URL
	return g
}

func (g *authGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	release := g.release
	if release != nil {
		g.held[r.URL.Path]++
		g.changed()
	}
	g.mu.Unlock()
	if release != nil {
		select {
		case <-release:
		case <-r.Context().Done(): // the caller gave up (fetchTimeout, Close)
		}
		g.mu.Lock()
		g.held[r.URL.Path]--
		g.changed()
		g.mu.Unlock()
		if r.Context().Err() != nil {
			return
		}
	}
	g.proxy.ServeHTTP(w, r)
}

// changed wakes the waiters; g.mu is held.
func (g *authGate) changed() {
	close(g.signal)
	g.signal = make(chan struct{})
}

// Hold makes the gate keep the requests that arrive from now on.
func (g *authGate) Hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.release == nil {
		g.release = make(chan struct{})
	}
}

// Release lets the held requests and every later one through.
func (g *authGate) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.release != nil {
		close(g.release)
		g.release = nil
	}
}

// Held is how many requests for path wait at the gate now.
func (g *authGate) Held(path string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held[path]
}

// WaitHeld waits until n requests for path wait at the gate. The deadline
// only guards against a hang: the wait ends on the arrival itself.
func (g *authGate) WaitHeld(tb testing.TB, path string, n int) {
	tb.Helper()
	guard := time.NewTimer(30 * time.Second)
	defer guard.Stop()
	for {
		g.mu.Lock()
		got, signal := g.held[path], g.signal
		g.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-signal:
		case <-guard.C:
			tb.Fatalf("%d requests for %s held at the auth gate within 30s, want %d", got, path, n)
		}
	}
}

// signedUpload is what the service had done when it signed an upload's
// headers: which profile and key, and what waited at the gate right then.
type signedUpload struct {
	ev        extproc.Event
	refreshes int // session refreshes held at the gate at that moment
	x509      int // instance federations held at the gate at that moment
}

// uploadWitness is the service's Observer: it looks at the gate at the
// moment each PUT is signed, before the headers answer leaves, which is
// the moment that must not wait for the auth service.
type uploadWitness struct {
	g      *authGate
	mu     sync.Mutex
	seen   []signedUpload
	signal chan struct{}
}

func newUploadWitness(g *authGate) *uploadWitness {
	return &uploadWitness{g: g, signal: make(chan struct{})}
}

func (w *uploadWitness) Observe(ev extproc.Event) {
	if ev.Method != http.MethodPut || ev.Outcome != extproc.OutcomeSigned {
		return
	}
	s := signedUpload{ev: ev, refreshes: w.g.Held(signertest.AuthRefreshPath), x509: w.g.Held(signertest.AuthX509Path)}
	w.mu.Lock()
	w.seen = append(w.seen, s)
	close(w.signal)
	w.signal = make(chan struct{})
	w.mu.Unlock()
}

func (w *uploadWitness) all() []signedUpload {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]signedUpload(nil), w.seen...)
}

// wait waits until n uploads were signed or done is closed, and returns
// those signed so far.
func (w *uploadWitness) wait(n int, done <-chan struct{}) []signedUpload {
	for {
		w.mu.Lock()
		seen, signal := append([]signedUpload(nil), w.seen...), w.signal
		w.mu.Unlock()
		if len(seen) >= n {
			return seen
		}
		select {
		case <-signal:
		case <-done:
			return w.all()
		}
	}
}

// patternBlock is what uploads repeat. Reading it with copy keeps a GiB
// cheap under the race detector, which instruments a filling
// byte loop at every byte (~4 s a GiB).
var patternBlock = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}()

type blockReader struct{ off int }

func (r *blockReader) Read(p []byte) (int, error) {
	n := copy(p, patternBlock[r.off:])
	r.off = (r.off + n) % len(patternBlock)
	return n, nil
}

// putObject uploads size bytes as profile, as a client that does not ask
// for 100-continue does: the body follows the headers at once.
func (s *stack) putObject(profile, object string, size int64) answer {
	s.t.Helper()
	req := s.request(http.MethodPut, osHost, uploadPath+object, io.LimitReader(&blockReader{}, size))
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("x-oci-profile", profile)
	return s.do(req)
}

// upload finds what OCI received for object.
func (s *stack) upload(object string) (signertest.Received, bool) {
	for _, r := range s.oci.Requests() {
		if r.Method == http.MethodPut && r.RequestURI == uploadPath+object {
			return r, true
		}
	}
	return signertest.Received{}, false
}

// heapPeak samples the heap in use until stopped and returns its peak
// growth over what it was at the start.
func heapPeak() (stop func() (growth int64, allocated uint64)) {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() (int64, uint64) {
		close(done)
		<-finished
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		return int64(peak.Load()) - int64(before.HeapInuse), after.TotalAlloc - before.TotalAlloc
	}
}

// uploadCase is one 1 GiB PutObject of the test below.
type uploadCase struct {
	profile, object string
	held            string // the auth path its credentials' renewal waits on
	keyID           string // what it must be signed with: the credentials before the renewal
	a               answer
}

// Two 1 GiB PutObjects, one signed by a session profile whose refresh is
// in flight, one by an instance principal whose renewal is in flight, both
// held at the auth service from before the uploads start until both were
// signed: no failure, OCI gets each GiB, and the headers were answered from
// the credentials at hand while the renewals waited. They run at once, so
// the two cases share the machine's two cores. Under the race detector a
// GiB through the whole path costs about 15 s of CPU (3.5 s of it the OCI
// stand-in's MD5 and SHA-256), so the test runs in parallel: beside
// TestKeepaliveAcceptsEnvoyPings, which sleeps for 17 s.
func TestUploadsStreamWhileCredentialsRenew(t *testing.T) {
	clock := credentialstest.NewClock(time.Now())
	rec := credentialstest.NewRefreshes()
	issuer := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, issuer)
	auth.SetClock(clock.Now)
	md := signertest.NewMetadataService(t)
	auth.TrustRoot(md.Root())
	g := newAuthGate(t, auth.URL, false)
	witness := newUploadWitness(g)
	s := newStack(t, stackOptions{issuer: issuer,
		signer: []credentials.Option{credentials.WithAuthBaseURL(g.URL), credentials.WithMetadataBaseURL(md.BaseURL()),
			credentials.WithClock(clock), credentials.WithObserver(rec.Observe)},
		server: func(c *extproc.Config) { c.Clock, c.Observer = clock.Now, witness },
		envoy:  func(c *extproctest.Config) { c.Proxy100Continue = true }, // as envoy.yaml; this client does not ask for 100
	})
	s.oci.SetClock(clock.Now)
	t.Cleanup(g.Release) // before the stack's cleanups, which wait for refreshes to end
	ctx := context.Background()

	// An instance-principal profile, fetched ahead of its first use.
	s.folder.AppendConfig(instanceProfile, "authentication_type", "instance_principal")
	if names := strings.Join(s.config.Names(), " "); !strings.Contains(names, instanceProfile) {
		t.Fatalf("profile %s not loaded: %s", instanceProfile, names)
	}
	if ev := rec.Wait(t, instanceProfile, 1); ev.Err != nil || !ev.Initial {
		t.Fatalf("instance principal not federated ahead of use: %+v", ev)
	}
	inst, err := s.config.Source(instanceProfile).Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A session token issued 35 minutes ago: its refresh falls due at +13
	// minutes and it expires at +25, while the instance token renews at
	// +15 and expires at +20.
	key := signertest.Key(t, 2)
	old := issuer.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: clock.Now().Add(-35 * time.Minute)})
	secret(old)
	s.folder.Replace(s.session.TokenPath, []byte(old))
	sess, err := s.config.Source("SESSION").Credentials(ctx)
	if err != nil || sess.Token.Raw != old {
		t.Fatalf("the session's new token file was not read: %v", err)
	}
	secret(inst.Token.Raw)

	// A minute before the first expiry both are past their refresh time
	// and still valid: the loop starts both, and both wait at the gate.
	g.Hold()
	clock.Set(earliest(inst.Token.Expiry, sess.Token.Expiry).Add(-time.Minute))
	g.WaitHeld(t, signertest.AuthRefreshPath, 1)
	g.WaitHeld(t, signertest.AuthX509Path, 1)

	uploads := []*uploadCase{
		{profile: "SESSION", object: "session.bin", held: signertest.AuthRefreshPath, keyID: sess.KeyID},
		{profile: instanceProfile, object: "instance.bin", held: signertest.AuthX509Path, keyID: inst.KeyID},
	}
	heap := heapPeak()
	var wg sync.WaitGroup
	for _, u := range uploads {
		wg.Go(func() { u.a = s.putObject(u.profile, u.object, uploadSize) })
	}
	uploaded := make(chan struct{})
	go func() { wg.Wait(); close(uploaded) }()
	// Both headers answers are out once both were signed (the witness
	// runs before the answer is sent): the renewals may go on. Uploads
	// that end unsigned (Envoy's 413) end the wait too.
	signed := witness.wait(len(uploads), uploaded)
	g.Release()
	<-uploaded
	growth, allocated := heap()

	for _, u := range uploads {
		if u.a.status != http.StatusOK {
			got, _ := s.upload(u.object)
			t.Errorf("%s: status %d %s (OCI: %s)", u.profile, u.a.status, u.a.body, got.Reason)
			continue
		}
		got, ok := s.upload(u.object)
		switch {
		case !ok:
			t.Errorf("%s: OCI received no upload", u.profile)
		case !got.OK || got.BodyLength != uploadSize:
			t.Errorf("%s: OCI received %d of %d bytes, ok=%v: %s", u.profile, got.BodyLength, uploadSize, got.OK, got.Reason)
		case got.KeyID != u.keyID:
			t.Errorf("%s: signed with keyId %s, not the credentials at hand when the renewal started", u.profile, signer.MaskKeyID(got.KeyID))
		case strings.Contains(strings.Join(got.SignedHeaders, " "), "x-content-sha256"):
			t.Errorf("%s: the body was signed, so it was buffered: %v", u.profile, got.SignedHeaders)
		}
	}
	for _, u := range uploads {
		var su *signedUpload
		for i := range signed {
			if signed[i].ev.Profile == u.profile {
				su = &signed[i]
			}
		}
		if su == nil {
			t.Errorf("%s: not signed while its renewal waited at the auth service", u.profile)
			continue
		}
		held := map[string]int{signertest.AuthRefreshPath: su.refreshes, signertest.AuthX509Path: su.x509}
		if held[u.held] < 1 {
			t.Errorf("%s: signed when no renewal waited at the auth service (%v): the test proves nothing", u.profile, held)
		}
		if !su.ev.Streamed {
			t.Errorf("%s: signed as a buffered body", u.profile)
		}
	}
	if st := s.envoy.Stats(); st.ModeOverridesHonoured != 2 || st.LocalRepliesTooLarge != 0 || st.LocalRepliesTimeout != 0 {
		t.Errorf("Envoy: %d mode overrides honoured (want 2), %d 413s, %d 504s", st.ModeOverridesHonoured, st.LocalRepliesTooLarge, st.LocalRepliesTimeout)
	}
	// Everything (client, Envoy stand-in, ocisigner, OCI stand-in) is in
	// this process: either body buffered anywhere would show in the heap as
	// uploadSize (1 GiB; 64 MiB under -race). The bound leaves room for a
	// test running beside this one.
	// Nor may anything allocate in proportion to the bodies (a copy per
	// chunk, a loop spinning beside the upload): the allocations stay far
	// below what the uploads carry (a quarter; half under -race, where the
	// stacks' own allocations are a larger share of smaller uploads).
	t.Logf("two %d MiB PutObjects at once: peak heap growth %d KiB, %d KiB allocated", uploadSize>>20, growth>>10, allocated>>10)
	if growth > min(128<<20, uploadSize*3/4) {
		t.Errorf("heap grew %d MiB for two %d MiB uploads: a body was buffered", growth>>20, uploadSize>>20)
	}
	if allocated > max(2*uploadSize/4, 64<<20) {
		t.Errorf("%d MiB allocated while %d MiB were uploaded: memory is not flat", allocated>>20, 2*uploadSize>>20)
	}

	// The renewals held during the uploads then complete.
	if ev := rec.WaitRefresh(t, "SESSION", 1); ev.Err != nil {
		t.Errorf("session refresh after the gate opened: %v", ev.Err)
	}
	if ev := rec.Wait(t, instanceProfile, 2); ev.Err != nil {
		t.Errorf("instance renewal after the gate opened: %v", ev.Err)
	}
	for _, p := range []string{"SESSION", instanceProfile} {
		if c, err := s.config.Source(p).Credentials(ctx); err == nil {
			secret(c.Token.Raw)
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// What the fetch ahead buys: the first use of an instance principal whose
// federation is still waiting on the auth service (held at the gate) makes
// the headers answer wait, and Envoy answers the upload 413 once it has
// buffered 32 MiB of it. Once the federation is through, an upload twice
// the buffer limit goes through. Envoy's message timeout is raised here so
// that under the race detector the 413, and not a 504 for the pending
// answer, is what ends the upload.
func TestUploadWaitingOnFederationGets413(t *testing.T) {
	t.Parallel()
	rec := credentialstest.NewRefreshes()
	issuer := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, issuer)
	md := signertest.NewMetadataService(t)
	auth.TrustRoot(md.Root())
	g := newAuthGate(t, auth.URL, true)
	witness := newUploadWitness(g)
	s := newStack(t, stackOptions{issuer: issuer,
		signer: []credentials.Option{credentials.WithAuthBaseURL(g.URL), credentials.WithMetadataBaseURL(md.BaseURL()),
			credentials.WithObserver(rec.Observe)},
		server: func(c *extproc.Config) { c.Observer = witness },
		envoy: func(c *extproctest.Config) {
			c.Proxy100Continue = true
			c.MessageTimeout, c.MaxMessageTimeout = 5*time.Minute, 5*time.Minute
		},
	})
	t.Cleanup(g.Release)

	s.folder.AppendConfig(instanceProfile, "authentication_type", "instance_principal")
	if names := strings.Join(s.config.Names(), " "); !strings.Contains(names, instanceProfile) {
		t.Fatalf("profile %s not loaded: %s", instanceProfile, names)
	}
	// The loop's fetch ahead of first use is under way, waiting on the
	// auth service; the upload comes first.
	g.WaitHeld(t, signertest.AuthX509Path, 1)
	a := s.putObject(instanceProfile, "early.bin", uploadSize)
	if a.status != http.StatusRequestEntityTooLarge || string(a.body) != "Payload Too Large" {
		t.Fatalf("upload while the federation waited: %d %s, want Envoy's 413", a.status, a.body)
	}
	if n := g.Held(signertest.AuthX509Path); n != 1 {
		t.Fatalf("%d federations held when the 413 came, want 1: the answer did not wait on it", n)
	}
	if _, ok := s.upload("early.bin"); ok {
		t.Error("OCI received the refused upload")
	}
	if len(witness.all()) != 0 {
		t.Error("the upload was signed before the federation was through")
	}
	if st := s.envoy.Stats(); st.LocalRepliesTooLarge != 1 || st.ModeOverridesHonoured != 0 {
		t.Errorf("Envoy: %d 413s (want 1), %d mode overrides honoured (want 0)", st.LocalRepliesTooLarge, st.ModeOverridesHonoured)
	}

	g.Release()
	if ev := rec.Wait(t, instanceProfile, 1); ev.Err != nil {
		t.Fatalf("federation after the gate opened: %v", ev.Err)
	}
	const size = 2 * bufferLimit
	if a := s.putObject(instanceProfile, "later.bin", size); a.status != http.StatusOK {
		t.Fatalf("upload with the credentials fetched: %d %s", a.status, a.body)
	}
	if got, ok := s.upload("later.bin"); !ok || !got.OK || got.BodyLength != size {
		t.Fatalf("OCI received %+v", got)
	}
	if c, err := s.config.Source(instanceProfile).Credentials(context.Background()); err == nil {
		secret(c.Token.Raw)
	}
}
