package extproc_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// A session token about to expire is refreshed by ocisigner while traffic
// flows through Envoy: no request fails across the switch, and OCI sees the
// old token, then the new one. Time is moved by hand; the test waits for
// the refreshes themselves.
func TestSessionRefreshedUnderTraffic(t *testing.T) {
	clock := credentialstest.NewClock(time.Now())
	rec := credentialstest.NewRefreshes()
	issuer := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, issuer)
	auth.SetClock(clock.Now)
	s := newStack(t, stackOptions{issuer: issuer,
		signer: []credentials.Option{credentials.WithAuthBaseURL(auth.URL), credentials.WithClock(clock), credentials.WithObserver(rec.Observe)},
		server: func(c *extproc.Config) { c.Clock = clock.Now }})
	s.oci.SetClock(clock.Now)
	// The first attempts fail, so traffic runs on the old token for a while.
	auth.FailNext(2, 503)
	key := signertest.Key(t, 2)
	old := s.issuer.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: clock.Now().Add(-57 * time.Minute)})
	secret(old)
	s.folder.Replace(s.session.TokenPath, []byte(old))

	tr := s.startTraffic(3)
	tr.more(t, 10)
	for n := 1; n <= 2; n++ {
		ev := rec.WaitRefresh(t, "SESSION", n)
		if ev.Err == nil {
			t.Fatalf("refresh %d did not fail as the auth service was told to", n)
		}
		tr.more(t, 10) // traffic goes on with the old token meanwhile
		clock.Advance(ev.RetryIn)
	}
	if ev := rec.WaitRefresh(t, "SESSION", 3); ev.Err != nil {
		t.Fatal(ev.Err)
	}
	tr.more(t, 10) // and some more on the new token
	if f := tr.stop(); f != 0 {
		t.Fatalf("%d of %d requests failed across the refresh", f, tr.sent.Load())
	}
	var oldSeen, newSeen bool
	for _, r := range s.oci.Requests() {
		switch {
		case r.KeyID == "ST$"+old:
			oldSeen = true
		case r.KeyIDKind == signertest.KeyIDSession && r.OK:
			newSeen = true
		}
		if r.KeyIDKind == signertest.KeyIDSession {
			secret(strings.TrimPrefix(r.KeyID, "ST$"))
		}
	}
	if !oldSeen || !newSeen {
		t.Fatalf("old token used %v, new token used %v: the switch was not under traffic", oldSeen, newSeen)
	}
}
