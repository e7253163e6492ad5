package credentials_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// earlyPrincipal is a principal alone in a Store, opened as serve
// --principal opens it, on a test clock, with what its issuer handed out.
type earlyPrincipal struct {
	tm   timed
	st   *credentials.Store
	name string // the store's default profile: the principal
	// rotate runs before each early refresh is asked for: what the platform
	// does meanwhile (a resource principal's RPST file rewritten); nil:
	// nothing, the service issues something new at each fetch.
	rotate func()
	// latest is the token the principal must sign with after a fetch:
	// the one its service issued last, or the RPST file's.
	latest func() string
	// issued counts the tokens the service issued; nil for a resource
	// principal, which has no service (its files are all it reads).
	issued func() int
}

// backgroundRefreshes counts the background fetches of source after the one
// ahead of the first use: the early refreshes, when nothing is due.
func backgroundRefreshes(rec *credentialstest.Refreshes, source string) int {
	n := 0
	for _, ev := range rec.All() {
		if ev.Source == source && !ev.Initial {
			n++
		}
	}
	return n
}

// issuedTokens are the tokens a stand-in's successful answers carried.
func issuedTokens(ex []signertest.Exchange) []string {
	var out []string
	for _, e := range ex {
		if e.Token != "" && !e.Failed {
			out = append(out, e.Token)
		}
	}
	return out
}

func lastOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// resourceEarly is a resource principal whose RPST is a file the platform
// rewrites: an early refresh reads the files again, and the RPST in them
// is what it must sign with next.
func resourceEarly(t *testing.T) earlyPrincipal {
	tm := newTimed()
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	dir := t.TempDir()
	rpstPath := filepath.Join(dir, "rpst")
	var current string
	// Each RPST is issued at the clock's now, the first ten minutes before:
	// every one has an expiry of its own, so the refresh event says which
	// one the refresh read.
	write := func(issuedAt time.Time) {
		current = is.Mint(t, &key.PublicKey, signertest.TokenOptions{Ptype: "resource", IssuedAt: issuedAt})
		if err := os.WriteFile(rpstPath+".tmp", []byte(current), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(rpstPath+".tmp", rpstPath); err != nil { // as the platform does: whole or not at all
			t.Fatal(err)
		}
	}
	write(tm.clock.Now().Add(-10 * time.Minute))
	env := map[string]string{"OCI_RESOURCE_PRINCIPAL_VERSION": "2.2", "OCI_RESOURCE_PRINCIPAL_REGION": "iad",
		"OCI_RESOURCE_PRINCIPAL_RPST": rpstPath, "OCI_RESOURCE_PRINCIPAL_PRIVATE_PEM": string(signertest.EncodeKey(t, key, signertest.PKCS1, ""))}
	name := string(signer.KindResource)
	st, err := credentials.Open(credentials.Settings{ConfigPath: filepath.Join(dir, "none"), DefaultProfile: name, Principal: credentials.PrincipalResource},
		tm.opts(credentials.WithGetenv(func(k string) string { return env[k] }))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return earlyPrincipal{tm: tm, st: st, name: name,
		rotate: func() { write(tm.clock.Now()) },
		latest: func() string { return current }}
}

// workloadEarly is an OKE workload identity at a proxymux stand-in: an
// early refresh is a new exchange of the service-account token.
func workloadEarly(t *testing.T) earlyPrincipal {
	tm := newTimed()
	pm := signertest.NewProxymux(t, signertest.NewIssuer(t))
	pm.SetClock(tm.clock.Now)
	saPath, caPath := workloadFiles(t, pm)
	env := map[string]string{"OCI_RESOURCE_PRINCIPAL_REGION": "us-ashburn-1"}
	name := string(signer.KindWorkload)
	st, err := credentials.Open(credentials.Settings{ConfigPath: filepath.Join(t.TempDir(), "none"), DefaultProfile: name, Principal: credentials.PrincipalWorkload},
		tm.opts(credentialstest.WorkloadIdentity(pm.URL(), saPath, caPath), credentials.WithGetenv(func(k string) string { return env[k] }))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return earlyPrincipal{tm: tm, st: st, name: name,
		latest: func() string { return lastOf(issuedTokens(pm.Requests())) },
		issued: func() int { return len(issuedTokens(pm.Requests())) }}
}

// tokenExchangeEarly is the token-exchange principal at an identity domain
// stand-in, its subject token given as a value: nothing is polled, so the
// only fetches after the first are the early refreshes, each a new
// exchange although the UPST is far from due.
func tokenExchangeEarly(t *testing.T) earlyPrincipal {
	f := newTXFixture(t)
	tx := f.settings()
	tx.SubjectTokenFile = ""
	tx.SubjectToken = f.idp.Mint(t, signertest.SubjectTokenOptions{IssuedAt: f.tm.clock.Now().Add(-time.Minute), Lifetime: time.Hour})
	st, err := credentials.Open(credentials.Settings{ConfigPath: filepath.Join(f.dir, "none"), DefaultProfile: txName,
		Principal: credentials.PrincipalTokenExchange, TokenExchange: &tx}, f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return earlyPrincipal{tm: f.tm, st: st, name: txName,
		latest: func() string { return lastOf(issuedTokens(f.exchanges())) },
		issued: func() int { return len(f.exchanges()) }}
}

// A resource principal, an OKE workload identity and a token exchange are
// fetched anew when OCI refuses their credentials (extproc's 401), as
// sessions and instance principals are: each grant is one background fetch
// and the next request signs with what it fetched, and a flood of refusals
// within five minutes of a grant asks for nothing more, by the store's
// clock. Nothing here is due on its own: the tokens have most of an hour
// left, so every fetch counted is an early one.
func TestRefreshEarlyPrincipalsOncePerInterval(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(*testing.T) earlyPrincipal
	}{
		{"resource principal", resourceEarly},
		{"workload identity", workloadEarly},
		{"token exchange", tokenExchangeEarly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each case has a clock, a store and stand-ins of its own
			p := tc.open(t)
			src := p.st.Source(p.name)
			first, err := src.Credentials(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if first.Token.Raw != p.latest() {
				t.Fatal("the first credentials are not the token issued")
			}
			issuedBefore := 0
			if p.issued != nil {
				issuedBefore = p.issued()
			}
			grant := func(n int, prev *signer.Credentials) *signer.Credentials {
				t.Helper()
				if p.rotate != nil {
					p.rotate()
				}
				if !p.st.RefreshEarly(p.name) {
					t.Fatalf("early refresh %d was not granted", n)
				}
				ev := p.tm.rec.WaitRefresh(t, p.name, n)
				if ev.Err != nil {
					t.Fatalf("early refresh %d: %v", n, ev.Err)
				}
				next, err := src.Credentials(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if next.Token.Raw == prev.Token.Raw || next.Token.Raw != p.latest() || !ev.Expires.Equal(next.Token.Expiry) {
					t.Fatalf("after early refresh %d the credentials are not the ones it fetched", n)
				}
				if !next.Token.MatchesKey(&next.Key.PublicKey) {
					t.Fatalf("after early refresh %d the token is not bound to the key it signs with", n)
				}
				return next
			}
			second := grant(1, first)
			for i := range 1000 {
				if p.st.RefreshEarly(p.name) {
					t.Fatalf("request %d of a flood within the interval was granted", i)
				}
			}
			p.tm.clock.Advance(5*time.Minute - time.Second)
			if p.st.RefreshEarly(p.name) {
				t.Fatal("granted before the interval ended")
			}
			p.tm.clock.Advance(time.Second)
			grant(2, second)
			// Close waits for any fetch under way: what is counted below is
			// all the two grants caused.
			p.st.Close()
			if n := backgroundRefreshes(p.tm.rec, p.name); n != 2 {
				t.Fatalf("%d background fetches for 2 early refreshes", n)
			}
			if p.issued != nil {
				if n := p.issued() - issuedBefore; n != 2 {
					t.Fatalf("the service issued %d tokens for 2 early refreshes", n)
				}
			}
		})
	}
}
