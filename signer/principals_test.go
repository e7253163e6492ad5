package signer_test

import (
	"context"
	"crypto/rsa"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// eventually polls cond until it holds; the deadline only guards a hang.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// nearExpiry mints a one-hour token with minutes left: inside the refresh
// margin from the start.
func nearExpiry(t *testing.T, is *signertest.Issuer, key *rsa.PrivateKey, left time.Duration) string {
	return is.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: time.Now().Add(left - time.Hour)})
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

func TestSessionRefreshedBeforeExpiry(t *testing.T) {
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, is)
	f := signertest.NewFolder(t)
	old := nearExpiry(t, is, key, 4*time.Minute)
	sess := f.SessionProfile("S", key, old)
	cfg, err := signer.OpenConfig(f.ConfigPath(), signer.WithAuthBaseURL(auth.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	src := cfg.Source("S")
	c, err := src.Credentials(context.Background())
	if err != nil || c.Token.Raw != old {
		t.Fatalf("first call must not wait for the refresh: %v", err)
	}
	var fresh *signer.Credentials
	eventually(t, "the refresh", func() bool {
		fresh, _ = src.Credentials(context.Background())
		return fresh != nil && fresh.Token.Raw != old
	})
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
}

func TestSessionRefreshRetriesThenSucceeds(t *testing.T) {
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, is)
	auth.FailNext(2, 503)
	f := signertest.NewFolder(t)
	old := nearExpiry(t, is, key, 4*time.Minute)
	f.SessionProfile("S", key, old)
	cfg, err := signer.OpenConfig(f.ConfigPath(), signer.WithAuthBaseURL(auth.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	src := cfg.Source("S")
	eventually(t, "a refresh after two failures", func() bool {
		c, err := src.Credentials(context.Background())
		if err != nil {
			t.Fatalf("signing must go on while the refresh fails: %v", err)
		}
		return c.Token.Raw != old
	})
	if n := len(refreshes(auth)); n != 3 {
		t.Fatalf("%d refresh attempts, want 2 failures then 1 success", n)
	}
}

func TestSessionRefreshRefusedBecomesExpiredError(t *testing.T) {
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, is)
	auth.RefuseRefresh(true)
	f := signertest.NewFolder(t)
	f.SessionProfile("S", key, nearExpiry(t, is, key, 4*time.Minute))
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	var logs signertest.LogBuffer
	cfg, err := signer.OpenConfig(f.ConfigPath(), signer.WithAuthBaseURL(auth.URL), signer.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		signer.WithClock(func() time.Time { return time.Unix(0, clock.Load()) }))
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	src := cfg.Source("S")
	if _, err := src.Credentials(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the refused refresh", func() bool { return strings.Contains(logs.String(), "refused to refresh") })
	// Still valid: it keeps signing until it expires.
	if _, err := src.Credentials(context.Background()); err != nil {
		t.Fatalf("token still valid: %v", err)
	}
	clock.Store(time.Now().Add(5 * time.Minute).UnixNano())
	_, err = src.Credentials(context.Background())
	if !errors.Is(err, signer.ErrTokenExpired) || !strings.Contains(err.Error(), "refused to refresh") ||
		!strings.Contains(err.Error(), "oci session authenticate --profile-name S") {
		t.Fatalf("err = %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(refreshes(auth)); n != 1 {
		t.Fatalf("a refused session must not be retried: %d attempts", n)
	}
}

// A token the CLI writes to disk is used as soon as it is newer than the
// one ocisigner refreshed itself, and so is a new session.
func TestNewerTokenOnDiskWins(t *testing.T) {
	key, other := signertest.Key(t, 2), signertest.Key(t, 3)
	is := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, is)
	f := signertest.NewFolder(t)
	sess := f.SessionProfile("S", key, nearExpiry(t, is, key, 4*time.Minute))
	cfg, err := signer.OpenConfig(f.ConfigPath(), signer.WithAuthBaseURL(auth.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	src := cfg.Source("S")
	var refreshed *signer.Credentials
	eventually(t, "the refresh", func() bool {
		refreshed, _ = src.Credentials(context.Background())
		return refreshed != nil && !refreshed.Refreshed.IsZero()
	})
	// `oci session refresh` by hand, later than ocisigner's.
	byCLI := is.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: refreshed.Token.IssuedAt.Add(time.Second)})
	f.Replace(sess.TokenPath, []byte(byCLI))
	if c, _ := src.Credentials(context.Background()); c.Token.Raw != byCLI {
		t.Fatal("newer token on disk not used")
	}
	// `oci session authenticate`: a new key and token.
	renewed := is.Mint(t, &other.PublicKey, signertest.TokenOptions{})
	f.Replace(sess.KeyPath, signertest.EncodeKey(t, other, signertest.PKCS1, ""))
	f.Replace(sess.TokenPath, []byte(renewed))
	if c, _ := src.Credentials(context.Background()); c.Token.Raw != renewed || !c.Key.Equal(other) {
		t.Fatal("new session on disk not used")
	}
}

// Write-back replaces the token file by rename: a reader sees the old
// token or the new one, whole, never part of one.
func TestWriteBackIsAtomic(t *testing.T) {
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, is)
	auth.SetSessionLifetime(6 * time.Second) // each new token is soon due again: several write-backs
	f := signertest.NewFolder(t)
	first := nearExpiry(t, is, key, 4*time.Minute)
	sess := f.SessionProfile("S", key, first)
	cfg, err := signer.OpenConfig(f.ConfigPath(), signer.WithAuthBaseURL(auth.URL), signer.WithWriteBack(true),
		signer.WithSessionRefresh(true, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		reads    atomic.Int64
		partials atomic.Int64
		seen     sync.Map
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
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
	}()
	if _, err := cfg.Source("S").Credentials(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "three write-backs", func() bool { return len(refreshes(auth)) >= 3 })
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
	n := 0
	seen.Range(func(any, any) bool { n++; return true })
	if n < 3 {
		t.Fatalf("reader saw %d tokens", n)
	}
}

// instanceFixture is an instance principal talking to metadata and auth
// stand-ins, whose tokens live for lifetime and are renewed margin early.
func instanceFixture(t *testing.T, lifetime, margin time.Duration) (*signertest.MetadataService, *signertest.AuthService, signer.Source) {
	is := signertest.NewIssuer(t)
	md := signertest.NewMetadataService(t)
	auth := signertest.NewAuthService(t, is)
	auth.TrustRoot(md.Root())
	auth.SetInstanceLifetime(lifetime)
	src := signer.InstancePrincipal(signer.WithMetadataBaseURL(md.BaseURL()), signer.WithAuthBaseURL(auth.URL),
		signer.WithSessionRefresh(true, margin))
	t.Cleanup(src.(interface{ Close() }).Close)
	return md, auth, src
}

// Instance principal: certificate rotation and token renewals while
// goroutines sign, with no failure and no signature from a mixed pair.
func TestInstancePrincipalRenewsAndFollowsCertRotation(t *testing.T) {
	md, auth, src := instanceFixture(t, 4*time.Second, 2*time.Second)

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
		signed   atomic.Int64
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				c, err := src.Credentials(context.Background())
				if err != nil {
					failures.Add(1)
					t.Error(err)
					return
				}
				s, err := signer.Sign(&signer.Request{Method: "GET", Host: "iaas.us-phoenix-1.oraclecloud.com", Target: "/"}, c, time.Now())
				if err != nil || verifyWithTokenJWK(s) != nil {
					failures.Add(1)
					t.Errorf("sign or verify: %v", err)
					return
				}
				tokens.Store(c.Token.Raw, true)
				signed.Add(1)
			}
		}()
	}
	count := func() int {
		n := 0
		tokens.Range(func(any, any) bool { n++; return true })
		return n
	}
	eventually(t, "a renewal", func() bool { return count() >= 2 })
	firstLeaf, _ := md.Leaf()
	md.RotateLeaf()
	newLeaf, _ := md.Leaf()
	eventually(t, "a renewal with the rotated certificate", func() bool {
		for _, e := range auth.Requests() {
			if e.Path == signertest.AuthX509Path && !e.Failed && strings.Contains(e.KeyID, signertest.CertFingerprint(newLeaf)) {
				return true
			}
		}
		return false
	})
	stop.Store(true)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d failed signatures", failures.Load())
	}
	if signertest.CertFingerprint(firstLeaf) == signertest.CertFingerprint(newLeaf) {
		t.Fatal("rotation did not change the leaf")
	}
	for _, e := range auth.Requests() {
		if e.Failed {
			t.Errorf("federation request refused: %s", e.Reason)
		}
		if strings.Contains(strings.Join(e.SignedHeaders, " "), "host") {
			t.Errorf("federation signed host: %v", e.SignedHeaders)
		}
	}
	t.Logf("%d signatures over %d tokens", signed.Load(), count())
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
			src, err := signer.ResourcePrincipal(signer.WithGetenv(func(k string) string { return tc.env[k] }))
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
	src, err := signer.ResourcePrincipal(signer.WithGetenv(func(k string) string { return env[k] }))
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
		if _, err := signer.ResourcePrincipal(signer.WithGetenv(func(k string) string { return bad[k] })); !errors.Is(err, signer.ErrConfig) {
			t.Errorf("%v: err = %v", bad, err)
		}
	}
}

func TestWorkloadIdentity(t *testing.T) {
	is := signertest.NewIssuer(t)
	pm := signertest.NewProxymux(t, is)
	pm.SetLifetime(4 * time.Second)
	dir := t.TempDir()
	saPath, caPath := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caPath, pm.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(saPath, []byte(pm.ServiceAccountToken()), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"OCI_RESOURCE_PRINCIPAL_REGION": "us-ashburn-1"}
	src, err := signer.WorkloadIdentity(signer.WithWorkloadIdentity(pm.URL(), saPath, caPath),
		signer.WithGetenv(func(k string) string { return env[k] }), signer.WithSessionRefresh(true, 2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer src.(interface{ Close() }).Close()
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
	first := c.Token.Raw
	eventually(t, "a renewal with the rotated service-account token", func() bool {
		c, err := src.Credentials(context.Background())
		return err == nil && c.Token.Raw != first
	})
	for _, e := range pm.Requests() {
		if e.Failed && e.Status != 401 {
			t.Errorf("proxymux refused: %s", e.Reason)
		}
	}
	// Outside a pod it says so.
	if _, err := signer.WorkloadIdentity(signer.WithGetenv(func(string) string { return "" })); !errors.Is(err, signer.ErrConfig) ||
		!strings.Contains(err.Error(), "KUBERNETES_SERVICE_HOST") {
		t.Fatalf("err = %v", err)
	}
}

// A failed renewal is retried with backoff while the current token keeps
// signing.
func TestInstancePrincipalRenewalRetries(t *testing.T) {
	_, auth, src := instanceFixture(t, 6*time.Second, 5*time.Second)
	first, err := src.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	auth.FailNext(2, 503)
	eventually(t, "a renewal after two failures", func() bool {
		c, err := src.Credentials(context.Background())
		if err != nil {
			t.Fatalf("signing must go on while renewal fails: %v", err)
		}
		return c.Token.Raw != first.Token.Raw
	})
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
