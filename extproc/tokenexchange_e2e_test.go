package extproc_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// The token-exchange principal through the whole path: client → Envoy
// stand-in → ocisigner → OCI stand-in, with the UPST an identity domain
// stand-in issues for a JWT the "platform" writes to a file. The profile
// comes from the config (authentication_type=token_exchange) so the config
// form is what runs; time is moved by hand and the tests wait for the
// background exchanges themselves.

const (
	txProfile     = "TX"
	txIdPIssuer   = "https://token.actions.githubusercontent.com"
	txSubjectRel  = "run/oidc-token"
	txRotatedSub  = "repo:octo-org/octo-repo:ref:refs/heads/next"
	txRotatedUser = "ocid1.user.oc1..rotated"
)

type txStack struct {
	*stack
	clock *credentialstest.Clock
	rec   *credentialstest.Refreshes
	x     *signertest.TokenExchange
	idp   *signertest.IdP
}

// newTXStack is a stack whose config gains profile TX, and an identity
// domain minting with the issuer the OCI stand-in trusts. The subject
// token file is not written: each test decides when it appears.
func newTXStack(t *testing.T) *txStack {
	t.Helper()
	clock := credentialstest.NewClock(time.Now())
	rec := credentialstest.NewRefreshes()
	issuer := signertest.NewIssuer(t)
	s := newStack(t, stackOptions{issuer: issuer,
		signer: []credentials.Option{credentials.WithClock(clock), credentials.WithObserver(rec.Observe)},
		server: func(c *extproc.Config) { c.Clock = clock.Now }})
	s.oci.SetClock(clock.Now)
	ts := &txStack{stack: s, clock: clock, rec: rec, x: signertest.NewTokenExchange(t, issuer), idp: signertest.NewIdP(t, txIdPIssuer)}
	ts.x.SetClock(clock.Now)
	ts.x.TrustIdP(ts.idp, signertest.DefaultIdPAudience)
	ts.x.MapSubject(txRotatedSub, txRotatedUser)
	secret(signertest.DefaultExchangeClientSecret)
	s.folder.Write("tx/client-secret", []byte(signertest.DefaultExchangeClientSecret))
	s.folder.AppendConfig(txProfile, "authentication_type", "token_exchange", "domain_url", ts.x.URL,
		"client_id", signertest.DefaultExchangeClientID, "client_secret_file", "tx/client-secret",
		"subject_token_file", txSubjectRel, "region", "us-phoenix-1")
	t.Cleanup(func() {
		for _, e := range ts.x.Requests() {
			secret(e.Token)
			v, _ := url.ParseQuery(string(e.Body))
			secret(v.Get("subject_token"))
		}
	})
	return ts
}

// writeSubject puts a fresh subject token in the file, by rename, as the
// kubelet or a CI step does.
func (ts *txStack) writeSubject(t *testing.T, o signertest.SubjectTokenOptions) string {
	t.Helper()
	if o.IssuedAt.IsZero() {
		o.IssuedAt = ts.clock.Now().Add(-time.Minute)
	}
	if o.Lifetime == 0 {
		o.Lifetime = time.Hour
	}
	tok := ts.idp.WriteToken(t, ts.folder.Path(txSubjectRel), o)
	secret(tok)
	return tok
}

// exchanges are the exchanges the identity domain answered with a UPST.
func (ts *txStack) exchanges() []signertest.Exchange {
	var out []signertest.Exchange
	for _, e := range ts.x.Requests() {
		if e.Token != "" {
			out = append(out, e)
		}
	}
	return out
}

func (ts *txStack) get(t *testing.T) answer {
	t.Helper()
	req := ts.request("GET", iaasHost, "/20160918/instances", nil)
	req.Header.Set("x-oci-profile", txProfile)
	return ts.do(req)
}

func TestTokenExchangeSignsEndToEnd(t *testing.T) {
	t.Parallel()
	ts := newTXStack(t)
	ts.writeSubject(t, signertest.SubjectTokenOptions{})
	a := ts.get(t)
	if a.status != http.StatusOK {
		t.Fatalf("status %d: %s (OCI: %s)", a.status, a.body, ts.lastRecord().Reason)
	}
	ex := ts.exchanges()
	rec := ts.lastRecord()
	if len(ex) != 1 || !rec.OK || rec.KeyID != "ST$"+ex[0].Token || rec.KeyIDKind != signertest.KeyIDSession || rec.Host != iaasHost {
		t.Fatalf("OCI saw %+v after %d exchanges", rec, len(ex))
	}
}

// The platform rotates the subject token file while requests flow: none
// fails, the background poll exchanges the new token (the next exchange
// presents it), and OCI sees the old UPST, then the new one.
func TestTokenExchangeRotationUnderTraffic(t *testing.T) {
	t.Parallel()
	ts := newTXStack(t)
	ts.writeSubject(t, signertest.SubjectTokenOptions{})
	if a := ts.get(t); a.status != http.StatusOK {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	tr := ts.txTraffic(3)
	tr.more(t, 10)
	rotated := ts.writeSubject(t, signertest.SubjectTokenOptions{Subject: txRotatedSub})
	tr.more(t, 10) // still the first UPST: requests do not react to the file
	if n := len(ts.exchanges()); n != 1 {
		t.Fatalf("a request exchanged the rotated token itself (%d exchanges)", n)
	}
	for i := 1; len(ts.exchanges()) < 2; i++ {
		ts.clock.Advance(credentialstest.SubjectTokenPollInterval)
		if ev := ts.rec.WaitRefresh(t, txProfile, i); ev.Err != nil {
			t.Fatalf("background fetch %d: %v", i, ev.Err)
		}
	}
	tr.more(t, 10) // and some on the new UPST
	if f := tr.stop(); f != 0 {
		t.Fatalf("%d of %d requests failed across the rotation", f, tr.sent.Load())
	}
	ex := ts.exchanges()
	if v, _ := url.ParseQuery(string(ex[1].Body)); v.Get("subject_token") != rotated {
		t.Fatal("the exchange after the rotation did not present the new subject token")
	}
	var oldSeen, newSeen bool
	for _, r := range ts.oci.Requests() {
		oldSeen = oldSeen || r.OK && r.KeyID == "ST$"+ex[0].Token
		newSeen = newSeen || r.OK && r.KeyID == "ST$"+ex[1].Token
	}
	if !oldSeen || !newSeen {
		t.Fatalf("first UPST used %v, rotated UPST used %v: the switch was not under traffic", oldSeen, newSeen)
	}
}

// The identity domain refuses: the client gets ocisigner's 401 naming the
// domain's answer and the fix, and nothing reaches OCI.
func TestTokenExchangeRefusedIs401WithTheFix(t *testing.T) {
	t.Parallel()
	ts := newTXStack(t)
	ts.writeSubject(t, signertest.SubjectTokenOptions{Issuer: "https://gitlab.example.com"})
	a := ts.get(t)
	code, msg := a.refusal(t)
	if a.status != http.StatusUnauthorized || code != extproc.CodeCredentialsInvalid {
		t.Fatalf("status %d code %s: %s", a.status, code, msg)
	}
	t.Logf("refusal: %s", msg)
	for _, want := range []string{"profile " + txProfile, "invalid_grant", `issuer "https://gitlab.example.com"`, "trusted identity provider", "audience"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal lacks %q: %s", want, msg)
		}
	}
	if n := len(ts.oci.Requests()); n != 0 {
		t.Fatalf("%d requests reached OCI", n)
	}
}

// GitHub Actions writes the subject token in a step after the gateway
// started: requests are refused with a message that says so until the file
// is there, then signed, with no restart.
func TestTokenExchangeSubjectFileAppearsAfterStart(t *testing.T) {
	t.Parallel()
	ts := newTXStack(t)
	for range 2 {
		a := ts.get(t)
		code, msg := a.refusal(t)
		if a.status != http.StatusUnauthorized || code != extproc.CodeCredentialsInvalid ||
			!strings.Contains(msg, "file missing") || !strings.Contains(msg, "written by the platform") {
			t.Fatalf("status %d code %s: %s", a.status, code, msg)
		}
	}
	if n := len(ts.x.Requests()); n != 0 {
		t.Fatalf("%d exchanges without a subject token", n)
	}
	ts.writeSubject(t, signertest.SubjectTokenOptions{})
	if a := ts.get(t); a.status != http.StatusOK {
		t.Fatalf("once the file exists: status %d: %s", a.status, a.body)
	}
	if rec := ts.lastRecord(); !rec.OK || rec.KeyID != "ST$"+ts.exchanges()[0].Token {
		t.Fatalf("OCI saw %+v", rec)
	}
}

// txTraffic is startTraffic for profile TX: GETs until stop.
func (ts *txStack) txTraffic(clients int) *traffic {
	tr := &traffic{}
	for range clients {
		tr.wg.Go(func() {
			for !tr.halt.Load() {
				req := ts.request("GET", iaasHost, "/20160918/instances", nil)
				req.Header.Set("x-oci-profile", txProfile)
				resp, err := ts.client.Do(req)
				tr.sent.Add(1)
				if err != nil {
					tr.failures.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					tr.failures.Add(1)
				}
			}
		})
	}
	return tr
}
