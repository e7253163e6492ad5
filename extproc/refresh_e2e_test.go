package extproc_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// A session token about to expire is refreshed by ocisigner while traffic
// flows through Envoy: no request fails across the switch, and OCI sees the
// old token, then the new one.
func TestSessionRefreshedUnderTraffic(t *testing.T) {
	issuer := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, issuer)
	s := newStack(t, stackOptions{issuer: issuer, signer: []signer.Option{signer.WithAuthBaseURL(auth.URL)}})
	// The first attempts fail, so traffic runs on the old token for a while.
	auth.FailNext(2, 503)
	key := signertest.Key(t, 2)
	old := s.issuer.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: time.Now().Add(-57 * time.Minute)})
	secret(old)
	s.folder.Replace(s.session.TokenPath, []byte(old))

	tr := s.startTraffic(3)
	newTokenUsed := func() bool {
		for _, r := range s.oci.Requests() {
			if r.KeyIDKind == signertest.KeyIDSession && r.KeyID != "ST$"+old && r.OK {
				return true
			}
		}
		return false
	}
	waitFor(t, newTokenUsed)
	tr.more(t, 10) // and some more on the new token
	if f := tr.stop(); f != 0 {
		t.Fatalf("%d of %d requests failed across the refresh", f, tr.sent.Load())
	}
	var oldSeen bool
	for _, r := range s.oci.Requests() {
		if r.KeyID == "ST$"+old {
			oldSeen = true
		}
		if r.KeyIDKind == signertest.KeyIDSession {
			secret(strings.TrimPrefix(r.KeyID, "ST$"))
		}
	}
	if !oldSeen {
		t.Fatal("the old token was never used: the switch was not under traffic")
	}
}
