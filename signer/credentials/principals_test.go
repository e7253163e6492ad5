package credentials_test

import (
	"context"
	"crypto/rsa"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// These tests move time by hand (credentialstest.Clock) and wait for the
// background refreshes themselves (credentialstest.Refreshes): none sleeps
// for a refresh to happen.

// nearExpiry mints a one-hour token with minutes left: inside the refresh
// margin from the start.
func nearExpiry(t *testing.T, is *signertest.Issuer, key *rsa.PrivateKey, now time.Time, left time.Duration) string {
	return is.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: now.Add(left - time.Hour)})
}

func refreshes(a *signertest.AuthService) []signertest.Exchange {
	var out []signertest.Exchange
	for _, e := range a.Requests() {
		if e.Path == signertest.AuthRefreshPath {
			out = append(out, e)
		}
	}
	return out
}

// timed is a clock and a refresh recorder shared by the sources of a test
// and the stand-ins they talk to.
type timed struct {
	clock *credentialstest.Clock
	rec   *credentialstest.Refreshes
}

func newTimed() timed {
	return timed{clock: credentialstest.NewClock(time.Now()), rec: credentialstest.NewRefreshes()}
}

func (tm timed) opts(more ...credentials.Option) []credentials.Option {
	return append([]credentials.Option{credentials.WithClock(tm.clock), credentials.WithObserver(tm.rec.Observe)}, more...)
}

// gate sits in front of a server and holds requests until opened, so a
// test can show that nobody waits for what it holds.
type gate struct {
	URL  string
	open chan struct{}
}

func newGate(t *testing.T, target string) *gate {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{open: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(u)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-g.open
		proxy.ServeHTTP(w, r)
	})}}
	srv.Start()
	t.Cleanup(func() {
		select {
		case <-g.open:
		default:
			close(g.open)
		}
		srv.Close()
	})
	g.URL = srv.URL
	return g
}

func TestSessionRefreshedBeforeExpiry(t *testing.T) {
	tm := newTimed()
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, is)
	auth.SetClock(tm.clock.Now)
	held := newGate(t, auth.URL)
	f := signertest.NewFolder(t)
	old := nearExpiry(t, is, key, tm.clock.Now(), 4*time.Minute)
	sess := f.SessionProfile("S", key, old)
	cfg, err := openTest(t, f.ConfigPath(), tm.opts(credentials.WithAuthBaseURL(held.URL))...)
	if err != nil {
		t.Fatal(err)
	}
	src := cfg.Source("S")
	// The refresh is due at once and held at the auth service: callers are
	// served the current token meanwhile.
	c, err := src.Credentials(context.Background())
	if err != nil || c.Token.Raw != old {
		t.Fatalf("a caller waited for the refresh or got another token: %v", err)
	}
	close(held.open)
	if ev := tm.rec.WaitRefresh(t, "S", 1); ev.Err != nil {
		t.Fatal(ev.Err)
	}
	fresh, err := src.Credentials(context.Background())
	if err != nil || fresh.Token.Raw == old {
		t.Fatalf("not refreshed: %v", err)
	}
	if !fresh.Key.Equal(key) || fresh.KeyID != "ST$"+fresh.Token.Raw || fresh.Refreshed.IsZero() {
		t.Fatalf("refreshed credentials %+v", fresh)
	}
	if !fresh.Token.SessionEnd.Equal(c.Token.SessionEnd) || !fresh.Token.Expiry.After(c.Token.Expiry) {
		t.Fatalf("refresh must extend exp within the same session: %v → %v", c.Token.Expiry, fresh.Token.Expiry)
	}
	ex := refreshes(auth)
	if len(ex) != 1 || ex[0].Failed || ex[0].KeyID != "ST$"+old || !strings.Contains(string(ex[0].Body), `"currentToken":"`+old+`"`) {
		t.Fatalf("refresh request %+v", ex)
	}
	// Without --write-back the file is left as the CLI wrote it.
	if data, _ := os.ReadFile(f.Path(sess.TokenPath)); strings.TrimSpace(string(data)) != old {
		t.Fatal("token file changed without write-back")
	}
	// The next refresh comes ahead of the new token's expiry, not before.
	tm.clock.Set(fresh.Token.Expiry.Add(-13 * time.Minute))
	if c, _ := src.Credentials(context.Background()); c.Token.Raw != fresh.Token.Raw || len(refreshes(auth)) != 1 {
		t.Fatal("refreshed again before it was due")
	}
	tm.clock.Set(fresh.Token.Expiry.Add(-5 * time.Minute))
	if ev := tm.rec.WaitRefresh(t, "S", 2); ev.Err != nil || len(refreshes(auth)) != 2 {
		t.Fatalf("second refresh: %v, %d requests", ev.Err, len(refreshes(auth)))
	}
}

func TestSessionRefreshRetriesThenSucceeds(t *testing.T) {
	tm := newTimed()
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, is)
	auth.SetClock(tm.clock.Now)
	auth.FailNext(2, 503)
	f := signertest.NewFolder(t)
	old := nearExpiry(t, is, key, tm.clock.Now(), 4*time.Minute)
	f.SessionProfile("S", key, old)
	cfg, err := openTest(t, f.ConfigPath(), tm.opts(credentials.WithAuthBaseURL(auth.URL))...)
	if err != nil {
		t.Fatal(err)
	}
	src := cfg.Source("S")
	for n := 1; n <= 2; n++ {
		ev := tm.rec.WaitRefresh(t, "S", n)
		if ev.Err == nil || ev.Failures != n || ev.RetryIn != time.Second<<(n-1) {
			t.Fatalf("attempt %d: %+v", n, ev)
		}
		if c, err := src.Credentials(context.Background()); err != nil || c.Token.Raw != old {
			t.Fatalf("signing must go on with the current token while the refresh fails: %v", err)
		}
		tm.clock.Advance(ev.RetryIn)
	}
	if ev := tm.rec.WaitRefresh(t, "S", 3); ev.Err != nil {
		t.Fatal(ev.Err)
	}
	if c, _ := src.Credentials(context.Background()); c.Token.Raw == old {
		t.Fatal("not refreshed after the failures")
	}
	if n := len(refreshes(auth)); n != 3 {
		t.Fatalf("%d refresh attempts, want 2 failures then 1 success", n)
	}
}

func TestSessionRefreshRefusedBecomesExpiredError(t *testing.T) {
	tm := newTimed()
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, is)
	auth.SetClock(tm.clock.Now)
	auth.RefuseRefresh(true)
	f := signertest.NewFolder(t)
	f.SessionProfile("S", key, nearExpiry(t, is, key, tm.clock.Now(), 4*time.Minute))
	var logs signertest.LogBuffer
	cfg, err := openTest(t, f.ConfigPath(), tm.opts(credentials.WithAuthBaseURL(auth.URL), credentials.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))...)
	if err != nil {
		t.Fatal(err)
	}
	src := cfg.Source("S")
	tm.rec.WaitRefresh(t, "S", 1)
	if !strings.Contains(logs.String(), "refused to refresh") {
		t.Fatalf("refusal not logged:\n%s", logs.String())
	}
	// Still valid: it keeps signing until it expires.
	if _, err := src.Credentials(context.Background()); err != nil {
		t.Fatalf("token still valid: %v", err)
	}
	tm.clock.Advance(5 * time.Minute)
	_, err = src.Credentials(context.Background())
	if !errors.Is(err, signer.ErrTokenExpired) || !strings.Contains(err.Error(), "refused to refresh") ||
		!strings.Contains(err.Error(), "oci session authenticate --profile-name S") {
		t.Fatalf("err = %v", err)
	}
	tm.clock.Advance(time.Hour)
	if _, err := src.Credentials(context.Background()); err == nil {
		t.Fatal("an expired session signs")
	}
	if n := len(refreshes(auth)); n != 1 {
		t.Fatalf("a refused session must not be retried: %d attempts, %d fetches", n, tm.rec.Count("S"))
	}
}

// A token the CLI writes to disk is used as soon as it is newer than the
// one ocisigner refreshed itself, and so is a new session.
func TestNewerTokenOnDiskWins(t *testing.T) {
	tm := newTimed()
	key, other := signertest.Key(t, 2), signertest.Key(t, 3)
	is := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, is)
	auth.SetClock(tm.clock.Now)
	f := signertest.NewFolder(t)
	sess := f.SessionProfile("S", key, nearExpiry(t, is, key, tm.clock.Now(), 4*time.Minute))
	cfg, err := openTest(t, f.ConfigPath(), tm.opts(credentials.WithAuthBaseURL(auth.URL))...)
	if err != nil {
		t.Fatal(err)
	}
	src := cfg.Source("S")
	tm.rec.WaitRefresh(t, "S", 1)
	refreshed, err := src.Credentials(context.Background())
	if err != nil || refreshed.Refreshed.IsZero() {
		t.Fatalf("not refreshed: %v", err)
	}
	// `oci session refresh` by hand, later than ocisigner's.
	byCLI := is.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: refreshed.Token.IssuedAt.Add(time.Second)})
	f.Replace(sess.TokenPath, []byte(byCLI))
	if c, _ := src.Credentials(context.Background()); c.Token.Raw != byCLI {
		t.Fatal("newer token on disk not used")
	}
	// `oci session authenticate`: a new key and token.
	renewed := is.Mint(t, &other.PublicKey, signertest.TokenOptions{IssuedAt: tm.clock.Now()})
	f.Replace(sess.KeyPath, signertest.EncodeKey(t, other, signertest.PKCS1, ""))
	f.Replace(sess.TokenPath, []byte(renewed))
	if c, _ := src.Credentials(context.Background()); c.Token.Raw != renewed || !c.Key.Equal(other) {
		t.Fatal("new session on disk not used")
	}
}

// Write-back replaces the token file by rename: a reader sees the old
// token or the new one, whole, never part of one.
func TestWriteBackIsAtomic(t *testing.T) {
	tm := newTimed()
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, is)
	auth.SetClock(tm.clock.Now)
	f := signertest.NewFolder(t)
	sess := f.SessionProfile("S", key, nearExpiry(t, is, key, tm.clock.Now(), 4*time.Minute))
	cfg, err := openTest(t, f.ConfigPath(), tm.opts(credentials.WithAuthBaseURL(auth.URL), credentials.WithWriteBack(true))...)
	if err != nil {
		t.Fatal(err)
	}
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		reads    atomic.Int64
		partials atomic.Int64
		seen     sync.Map
	)
	wg.Go(func() {
		for !stop.Load() {
			data, err := os.ReadFile(f.Path(sess.TokenPath))
			if err != nil {
				partials.Add(1)
				continue
			}
			reads.Add(1)
			tok := strings.TrimSpace(string(data))
			if _, err := signer.ParseToken(tok); err != nil {
				partials.Add(1)
			}
			seen.Store(tok, true)
		}
	})
	src := cfg.Source("S")
	for n := 1; n <= 3; n++ {
		if ev := tm.rec.WaitRefresh(t, "S", n); ev.Err != nil {
			t.Fatal(ev.Err)
		}
		c, err := src.Credentials(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n < 3 {
			tm.clock.Set(c.Token.Expiry.Add(-5 * time.Minute)) // the next one is due
		}
	}
	stop.Store(true)
	wg.Wait()
	cfg.Close() // no write-back in flight while the folder is inspected
	if partials.Load() != 0 {
		t.Fatalf("%d of %d reads saw a missing or partial token file", partials.Load(), reads.Load())
	}
	st, err := os.Stat(f.Path(sess.TokenPath))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v %v", st.Mode(), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(f.Path(sess.TokenPath)))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Fatalf("temporary file left behind: %s", e.Name())
		}
	}
	last := refreshes(auth)
	if data, _ := os.ReadFile(f.Path(sess.TokenPath)); len(last) != 3 || strings.TrimSpace(string(data)) != last[len(last)-1].Token {
		t.Fatalf("the token file does not hold the last of %d refreshed tokens", len(last))
	}
}

// instanceFixture is an instance principal talking to metadata and auth
// stand-ins on the test's clock.
func instanceFixture(t *testing.T, tm timed) (*signertest.MetadataService, *signertest.AuthService, *credentials.Source) {
	is := signertest.NewIssuer(t)
	md := signertest.NewMetadataService(t)
	md.SetClock(tm.clock.Now)
	auth := signertest.NewAuthService(t, is)
	auth.SetClock(tm.clock.Now)
	auth.TrustRoot(md.Root())
	src := credentials.InstancePrincipal(tm.opts(credentials.WithMetadataBaseURL(md.BaseURL()), credentials.WithAuthBaseURL(auth.URL))...)
	t.Cleanup(func() { src.Close() })
	return md, auth, src
}

// Instance principal: fetched ahead of use, certificate rotation and token
// renewals while goroutines sign, with no failure and no signature from a
// mixed pair.
func TestInstancePrincipalRenewsAndFollowsCertRotation(t *testing.T) {
	tm := newTimed()
	md, auth, src := instanceFixture(t, tm)
	if ev := tm.rec.Wait(t, string(signer.KindInstance), 1); ev.Err != nil {
		t.Fatal(ev.Err) // federated before anyone asked
	}
	c, err := src.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != signer.KindInstance || c.Region != "us-phoenix-1" || c.Tenancy != signertest.DefaultInstanceTenancy || c.Token.PrincipalType != "instance" {
		t.Fatalf("credentials %+v token %+v", c, c.Token)
	}
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		failures atomic.Int64
		tokens   sync.Map
	)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				c, err := src.Credentials(context.Background())
				if err != nil {
					failures.Add(1)
					t.Error(err)
					return
				}
				s, err := signer.Sign(&signer.Request{Method: "GET", Host: "iaas.us-phoenix-1.oraclecloud.com", Target: "/"}, c, tm.clock.Now())
				if err != nil || verifyWithTokenJWK(s) != nil {
					failures.Add(1)
					t.Errorf("sign or verify: %v", err)
					return
				}
				tokens.Store(c.Token.Raw, true)
			}
		})
	}
	renew := func(n int) *signer.Credentials {
		t.Helper()
		cur, _ := src.Credentials(context.Background())
		tm.clock.Set(cur.Token.Expiry.Add(-5 * time.Minute))
		if ev := tm.rec.Wait(t, string(signer.KindInstance), n); ev.Err != nil {
			t.Fatal(ev.Err)
		}
		next, _ := src.Credentials(context.Background())
		if next.Token.Raw == cur.Token.Raw || next.Key.Equal(cur.Key) {
			t.Fatalf("renewal %d kept the token or the session key", n)
		}
		return next
	}
	renew(2)
	firstLeaf, _ := md.Leaf()
	md.RotateLeaf()
	newLeaf, _ := md.Leaf()
	renew(3)
	stop.Store(true)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d failed signatures", failures.Load())
	}
	if signertest.CertFingerprint(firstLeaf) == signertest.CertFingerprint(newLeaf) {
		t.Fatal("rotation did not change the leaf")
	}
	var rotatedUsed bool
	for _, e := range auth.Requests() {
		if e.Failed {
			t.Errorf("federation request refused: %s", e.Reason)
		}
		if strings.Contains(strings.Join(e.SignedHeaders, " "), "host") {
			t.Errorf("federation signed host: %v", e.SignedHeaders)
		}
		rotatedUsed = rotatedUsed || e.Path == signertest.AuthX509Path && strings.Contains(e.KeyID, signertest.CertFingerprint(newLeaf))
	}
	if !rotatedUsed {
		t.Fatal("the renewal after the rotation did not present the new certificate")
	}
}

func TestResourcePrincipal(t *testing.T) {
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	rpst := is.Mint(t, &key.PublicKey, signertest.TokenOptions{Ptype: "resource"})
	pemText := string(signertest.EncodeKey(t, key, signertest.EncryptedPKCS8, "pw"))
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p+".tmp", []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
	}{
		{"values", map[string]string{"OCI_RESOURCE_PRINCIPAL_RPST": rpst, "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM": pemText, "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE": "pw"}},
		{"files", map[string]string{"OCI_RESOURCE_PRINCIPAL_RPST": write("rpst", rpst), "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM": write("key.pem", pemText), "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE": write("pass", "pw")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["OCI_RESOURCE_PRINCIPAL_VERSION"] = "2.2"
			tc.env["OCI_RESOURCE_PRINCIPAL_REGION"] = "iad"
			src, err := credentials.ResourcePrincipal(credentials.WithGetenv(func(k string) string { return tc.env[k] }))
			if err != nil {
				t.Fatal(err)
			}
			c, err := src.Credentials(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if c.KeyID != "ST$"+rpst || c.Kind != signer.KindResource || c.Region != "us-ashburn-1" {
				t.Fatalf("%+v", c)
			}
		})
	}
	// Files are read again when they change: a rotated RPST is used at once.
	next := is.Mint(t, &key.PublicKey, signertest.TokenOptions{Ptype: "resource"})
	env := map[string]string{"OCI_RESOURCE_PRINCIPAL_VERSION": "2.2", "OCI_RESOURCE_PRINCIPAL_REGION": "phx",
		"OCI_RESOURCE_PRINCIPAL_RPST": write("rpst", rpst), "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM": write("key.pem", pemText),
		"OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM_PASSPHRASE": "pw"}
	src, err := credentials.ResourcePrincipal(credentials.WithGetenv(func(k string) string { return env[k] }))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := src.Credentials(context.Background()); err != nil || c.Token.Raw != rpst {
		t.Fatal(err)
	}
	write("rpst", next)
	if c, err := src.Credentials(context.Background()); err != nil || c.Token.Raw != next {
		t.Fatalf("rotated RPST not used: %v", err)
	}
	// Configuration errors say what is missing.
	for _, bad := range []map[string]string{
		{"OCI_RESOURCE_PRINCIPAL_VERSION": "1.1"},
		{"OCI_RESOURCE_PRINCIPAL_VERSION": "2.2", "OCI_RESOURCE_PRINCIPAL_REGION": "phx"},
	} {
		if _, err := credentials.ResourcePrincipal(credentials.WithGetenv(func(k string) string { return bad[k] })); !errors.Is(err, signer.ErrConfig) {
			t.Errorf("%v: err = %v", bad, err)
		}
	}
}

func TestWorkloadIdentity(t *testing.T) {
	tm := newTimed()
	is := signertest.NewIssuer(t)
	pm := signertest.NewProxymux(t, is)
	pm.SetClock(tm.clock.Now)
	saPath, caPath := workloadFiles(t, pm)
	env := map[string]string{"OCI_RESOURCE_PRINCIPAL_REGION": "us-ashburn-1"}
	src, err := credentials.WorkloadIdentity(tm.opts(credentials.WithWorkloadIdentity(pm.URL(), saPath, caPath),
		credentials.WithGetenv(func(k string) string { return env[k] }))...)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	tm.rec.Wait(t, string(signer.KindWorkload), 1)
	c, err := src.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != signer.KindWorkload || c.Region != "us-ashburn-1" || !c.Token.MatchesKey(&c.Key.PublicKey) {
		t.Fatalf("%+v", c)
	}
	// Kubernetes rotates the projected service-account token: the next
	// renewal must present the new one.
	rotated := signertest.NewServiceAccountToken(t, "default", "default", time.Now().Add(24*time.Hour))
	pm.SetServiceAccountToken(rotated)
	if err := os.WriteFile(saPath, []byte(rotated), 0o600); err != nil {
		t.Fatal(err)
	}
	tm.clock.Set(c.Token.Expiry.Add(-5 * time.Minute))
	if ev := tm.rec.Wait(t, string(signer.KindWorkload), 2); ev.Err != nil {
		t.Fatalf("renewal with the rotated service-account token: %v", ev.Err)
	}
	if next, err := src.Credentials(context.Background()); err != nil || next.Token.Raw == c.Token.Raw {
		t.Fatalf("not renewed: %v", err)
	}
	for _, e := range pm.Requests() {
		if e.Failed {
			t.Errorf("proxymux refused: %s", e.Reason)
		}
	}
	// Outside a pod it says so.
	if _, err := credentials.WorkloadIdentity(credentials.WithGetenv(func(string) string { return "" })); !errors.Is(err, signer.ErrConfig) ||
		!strings.Contains(err.Error(), "KUBERNETES_SERVICE_HOST") {
		t.Fatalf("err = %v", err)
	}
}

// A failed renewal is retried with backoff while the current token keeps
// signing.
func TestInstancePrincipalRenewalRetries(t *testing.T) {
	tm := newTimed()
	_, auth, src := instanceFixture(t, tm)
	tm.rec.Wait(t, string(signer.KindInstance), 1)
	first, err := src.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	auth.FailNext(2, 503)
	tm.clock.Set(first.Token.Expiry.Add(-5 * time.Minute))
	for n := 2; n <= 3; n++ {
		ev := tm.rec.Wait(t, string(signer.KindInstance), n)
		if ev.Err == nil {
			t.Fatalf("attempt %d succeeded", n)
		}
		if c, err := src.Credentials(context.Background()); err != nil || c.Token.Raw != first.Token.Raw {
			t.Fatalf("signing must go on with the current token while renewal fails: %v", err)
		}
		tm.clock.Advance(ev.RetryIn)
	}
	if ev := tm.rec.Wait(t, string(signer.KindInstance), 4); ev.Err != nil {
		t.Fatal(ev.Err)
	}
	if c, _ := src.Credentials(context.Background()); c.Token.Raw == first.Token.Raw {
		t.Fatal("not renewed after the failures")
	}
	failed := 0
	for _, e := range auth.Requests() {
		if e.Failed {
			failed++
		}
	}
	if failed != 2 {
		t.Fatalf("%d failed federation requests, want 2", failed)
	}
}

// workloadFiles writes the proxymux's CA certificate and the pod's
// service-account token where WithWorkloadIdentity reads them.
func workloadFiles(t *testing.T, pm *signertest.Proxymux) (saPath, caPath string) {
	t.Helper()
	dir := t.TempDir()
	saPath, caPath = filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caPath, pm.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(saPath, []byte(pm.ServiceAccountToken()), 0o600); err != nil {
		t.Fatal(err)
	}
	return saPath, caPath
}
