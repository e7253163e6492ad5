package credentials_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// x509Requests counts instance-principal federations at a for the tests.
func x509Requests(a *signertest.AuthService) int {
	n := 0
	for _, e := range a.Requests() {
		if e.Path == signertest.AuthX509Path {
			n++
		}
	}
	return n
}

// A session profile OCI refused is refreshed at once, in the background,
// long before its refresh is due; a flood of further requests within the
// interval asks for nothing more, and once the interval has passed the next
// request is granted again. The recorder sees each early refresh; the auth
// service got exactly one refresh request per grant.
func TestRefreshEarlySessionOncePerInterval(t *testing.T) {
	tm := newTimed()
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, is)
	auth.SetClock(tm.clock.Now)
	f := signertest.NewFolder(t)
	old := is.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: tm.clock.Now()}) // a refresh is 48 minutes away
	f.SessionProfile("S", key, old)
	st, err := credentials.Open(credentials.Settings{ConfigPath: f.ConfigPath(), DefaultProfile: "S"}, tm.opts(credentials.WithAuthBaseURL(auth.URL))...)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if c, err := st.Source("S").Credentials(context.Background()); err != nil || c.Token.Raw != old {
		t.Fatalf("first credentials: %v", err)
	}
	if !st.RefreshEarly("S") {
		t.Fatal("an early refresh of a session profile was not granted")
	}
	if ev := tm.rec.WaitRefresh(t, "S", 1); ev.Err != nil {
		t.Fatal(ev.Err)
	}
	if n := len(refreshes(auth)); n != 1 {
		t.Fatalf("%d refresh requests, want 1", n)
	}
	if c, _ := st.Source("S").Credentials(context.Background()); c.Token.Raw == old {
		t.Fatal("the early refresh did not replace the token")
	}
	for i := range 1000 {
		if st.RefreshEarly("S") {
			t.Fatalf("request %d of a flood within the interval was granted", i)
		}
	}
	tm.clock.Advance(5*time.Minute - time.Second)
	if st.RefreshEarly("S") {
		t.Fatal("granted before the interval ended")
	}
	tm.clock.Advance(time.Second)
	if !st.RefreshEarly("S") {
		t.Fatal("not granted once the interval had passed")
	}
	if ev := tm.rec.WaitRefresh(t, "S", 2); ev.Err != nil {
		t.Fatal(ev.Err)
	}
	if n, all := len(refreshes(auth)), tm.rec.Count("S"); n != 2 || all > 3 {
		t.Fatalf("%d refresh requests and %d fetches, want 2 refreshes after the first fetch", n, all)
	}
}

// What cannot be fetched anew is never asked for: an API key, a profile the
// config lacks. A principal is fetched anew (instance principal: a new
// federation at the auth service).
func TestRefreshEarlyOnlyWhatCanBeFetchedAnew(t *testing.T) {
	tm := newTimed()
	f := signertest.NewFolder(t)
	f.APIKeyProfile("API", signertest.Key(t, 1), "keys/api.pem", signertest.PKCS8, "")
	st, err := credentials.Open(credentials.Settings{ConfigPath: f.ConfigPath(), DefaultProfile: "API"}, tm.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Source("API").Credentials(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st.RefreshEarly("API") || st.RefreshEarly("NOSUCH") {
		t.Fatal("an API key or an unknown profile was refreshed early")
	}

	is := signertest.NewIssuer(t)
	md := signertest.NewMetadataService(t)
	md.SetClock(tm.clock.Now)
	auth := signertest.NewAuthService(t, is)
	auth.SetClock(tm.clock.Now)
	auth.TrustRoot(md.Root())
	ip, err := credentials.Open(credentials.Settings{ConfigPath: filepath.Join(t.TempDir(), "none"), DefaultProfile: "DEFAULT", Principal: credentials.PrincipalInstance},
		tm.opts(credentials.WithMetadataBaseURL(md.BaseURL()), credentials.WithAuthBaseURL(auth.URL))...)
	if err != nil {
		t.Fatal(err)
	}
	defer ip.Close()
	if ip.RefreshEarly("DEFAULT") {
		t.Fatal("granted before the principal had any credentials")
	}
	if _, err := ip.Source("DEFAULT").Credentials(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := x509Requests(auth)
	if !ip.RefreshEarly("DEFAULT") {
		t.Fatal("an instance principal was not refreshed early")
	}
	if ev := tm.rec.WaitRefresh(t, "DEFAULT", 1); ev.Err != nil {
		t.Fatal(ev.Err)
	}
	if n := x509Requests(auth) - before; n != 1 {
		t.Fatalf("%d federations for one early refresh", n)
	}
}
