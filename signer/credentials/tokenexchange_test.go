package credentials_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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

// The token-exchange principal against the identity domain stand-in
// (signertest.TokenExchange) and the OCI stand-in, on a clock moved by
// hand: no test sleeps for a renewal or a poll.

const (
	txIssuer   = "https://idp.example/oauth2/default"
	txName     = string(signer.KindTokenExchange)
	txOCIHost  = "objectstorage.us-ashburn-1.oraclecloud.com"
	txRotated  = "rotated@idp.example"
	txRotUser  = "ocid1.user.oc1..rotated"
	txSubjFile = "run/subject-token"
)

// txFixture is an identity domain trusting one IdP, the files a platform
// would write, and the OCI stand-in that takes the UPSTs the domain issues.
type txFixture struct {
	tm          timed
	is          *signertest.Issuer
	x           *signertest.TokenExchange
	idp         *signertest.IdP
	oci         *signertest.Server
	dir         string
	subjectPath string
	secretPath  string
	logs        *signertest.LogBuffer
}

func newTXFixture(t *testing.T) *txFixture {
	t.Helper()
	f := &txFixture{tm: newTimed(), is: signertest.NewIssuer(t), idp: signertest.NewIdP(t, txIssuer), dir: t.TempDir(), logs: &signertest.LogBuffer{}}
	f.x = signertest.NewTokenExchange(t, f.is)
	f.x.SetClock(f.tm.clock.Now)
	f.x.TrustIdP(f.idp, signertest.DefaultIdPAudience)
	f.x.MapSubject(txRotated, txRotUser)
	f.oci = signertest.NewServer(t)
	f.oci.TrustIssuer(f.is)
	f.oci.SetClock(f.tm.clock.Now)
	f.subjectPath = filepath.Join(f.dir, filepath.FromSlash(txSubjFile))
	f.secretPath = filepath.Join(f.dir, "client-secret")
	if err := os.WriteFile(f.secretPath, []byte(signertest.DefaultExchangeClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range []string{signertest.DefaultExchangeClientSecret} {
			if strings.Contains(f.logs.String(), s) {
				t.Errorf("the log holds the client secret:\n%s", f.logs.String())
			}
		}
		for _, e := range f.x.Requests() {
			for _, s := range []string{e.Token, url.Values(formOf(e)).Get("subject_token")} {
				if s != "" && strings.Contains(f.logs.String(), s) {
					t.Errorf("the log holds a token:\n%s", f.logs.String())
				}
			}
		}
	})
	return f
}

// writeSubject rotates the subject token file as the kubelet or a CI step
// would (a rename), with a token issued a minute ago on the test's clock.
func (f *txFixture) writeSubject(t *testing.T, o signertest.SubjectTokenOptions) string {
	t.Helper()
	if o.IssuedAt.IsZero() {
		o.IssuedAt = f.tm.clock.Now().Add(-time.Minute)
	}
	return f.idp.WriteToken(t, f.subjectPath, o)
}

func (f *txFixture) settings() credentials.TokenExchange {
	return credentials.TokenExchange{DomainURL: f.x.URL, ClientID: signertest.DefaultExchangeClientID,
		ClientSecretFile: f.secretPath, SubjectTokenFile: f.subjectPath, Region: "iad"}
}

func (f *txFixture) opts(more ...credentials.Option) []credentials.Option {
	return f.tm.opts(append([]credentials.Option{credentials.WithLogger(slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))}, more...)...)
}

func (f *txFixture) principal(t *testing.T, tx credentials.TokenExchange, more ...credentials.Option) *credentials.Source {
	t.Helper()
	src, err := credentials.TokenExchangePrincipal(f.opts(append([]credentials.Option{credentials.WithTokenExchange(tx)}, more...)...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// exchanges are the exchanges the domain answered with a token.
func (f *txFixture) exchanges() []signertest.Exchange {
	var out []signertest.Exchange
	for _, e := range f.x.Requests() {
		if e.Token != "" {
			out = append(out, e)
		}
	}
	return out
}

// redirectServer answers 307 to everything, pointing at target.
func redirectServer(t *testing.T, target string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// notFoundServer answers 404 to everything, on loopback.
func notFoundServer(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func formOf(e signertest.Exchange) url.Values {
	v, _ := url.ParseQuery(string(e.Body))
	return v
}

// callOCI signs a request with c and sends it to the OCI stand-in, which
// checks the signature with the UPST's key and the UPST with its issuer.
func (f *txFixture) callOCI(t *testing.T, c *signer.Credentials) signertest.Received {
	t.Helper()
	s, err := signer.Sign(&signer.Request{Method: http.MethodGet, Host: txOCIHost, Target: "/n/"}, c, f.tm.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, f.oci.URL+"/n/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = txOCIHost
	for _, h := range s.Headers {
		req.Header.Set(h.Name, h.Value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	rs := f.oci.Requests()
	return rs[len(rs)-1]
}

func TestTokenExchangeSignsWithTheUPST(t *testing.T) {
	f := newTXFixture(t)
	subject := f.writeSubject(t, signertest.SubjectTokenOptions{})
	src := f.principal(t, f.settings())
	if ev := f.tm.rec.Wait(t, txName, 1); ev.Err != nil {
		t.Fatal(ev.Err) // exchanged ahead of the first request
	}
	c, err := src.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != signer.KindTokenExchange || c.KeyID != "ST$"+c.Token.Raw || c.Region != "us-ashburn-1" ||
		c.Tenancy != signertest.DefaultExchangeTenancy || c.Token.Subject != signertest.DefaultExchangeUser || c.Refreshed.IsZero() {
		t.Fatalf("credentials %+v token %+v", c, c.Token)
	}
	if !c.Token.MatchesKey(&c.Key.PublicKey) || c.Key.N.BitLen() != 2048 {
		t.Fatalf("UPST not bound to a 2048-bit session key (%d bits)", c.Key.N.BitLen())
	}
	if s := c.Subject; s == nil || s.Issuer != txIssuer || s.Subject != signertest.DefaultIdPSubject ||
		strings.Join(s.Audience, ",") != signertest.DefaultIdPAudience || s.File != f.subjectPath || s.Expiry.IsZero() {
		t.Fatalf("subject token described as %+v", c.Subject)
	}
	if r := f.callOCI(t, c); !r.OK || r.KeyIDKind != signertest.KeyIDSession {
		t.Fatalf("OCI refused the UPST-signed request: %d %s (%s)", r.Status, r.Code, r.Reason)
	}
	ex := f.exchanges()
	if len(ex) != 1 || formOf(ex[0]).Get("subject_token") != subject || ex[0].Token != c.Token.Raw {
		t.Fatalf("exchanges %+v", ex)
	}
}

// The UPST is exchanged again ahead of its expiry, with a new session key,
// not before; polls in between cost no exchange.
func TestTokenExchangeRenewsBeforeExpiry(t *testing.T) {
	f := newTXFixture(t)
	subject := f.writeSubject(t, signertest.SubjectTokenOptions{Lifetime: 2 * time.Hour})
	src := f.principal(t, f.settings())
	f.tm.rec.Wait(t, txName, 1)
	first, err := src.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f.tm.clock.Set(first.Token.Expiry.Add(-13 * time.Minute))
	if ev := f.tm.rec.WaitRefresh(t, txName, 1); ev.Err != nil || len(f.exchanges()) != 1 {
		t.Fatalf("exchanged before renewal was due: %v, %d exchanges", ev.Err, len(f.exchanges()))
	}
	f.tm.clock.Set(first.Token.Expiry.Add(-12 * time.Minute)) // a fifth of the hour
	waitExchanges(t, f, 2)
	next, err := src.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if next.Token.Raw == first.Token.Raw || next.Key.Equal(first.Key) || !next.Token.Expiry.After(first.Token.Expiry) {
		t.Fatal("renewal kept the token or the session key")
	}
	if got := formOf(f.exchanges()[1]).Get("subject_token"); got != subject {
		t.Fatal("the renewal did not present the subject token the file holds")
	}
	if r := f.callOCI(t, next); !r.OK {
		t.Fatalf("OCI refused the renewed UPST: %s", r.Reason)
	}
}

// waitExchanges moves nothing: it waits for the loop's background fetches
// until the domain has issued n tokens.
func waitExchanges(t *testing.T, f *txFixture, n int) {
	t.Helper()
	for i := 1; len(f.exchanges()) < n; i++ {
		if ev := f.tm.rec.WaitRefresh(t, txName, i); ev.Err != nil {
			t.Fatalf("background fetch %d: %v", i, ev.Err)
		}
	}
}

// A rotated subject token file is exchanged by the background poll, not
// by a request: a caller keeps the valid UPST and never waits on the
// identity domain. An unchanged file costs no exchange.
func TestTokenExchangeFollowsRotatedSubjectFile(t *testing.T) {
	f := newTXFixture(t)
	f.writeSubject(t, signertest.SubjectTokenOptions{})
	src := f.principal(t, f.settings())
	f.tm.rec.Wait(t, txName, 1)
	first, _ := src.Credentials(context.Background())

	f.tm.clock.Advance(credentialstest.SubjectTokenPollInterval)
	if ev := f.tm.rec.WaitRefresh(t, txName, 1); ev.Err != nil || ev.Expires != first.Token.Expiry {
		t.Fatalf("poll of an unchanged file: %+v", ev)
	}
	if n := len(f.exchanges()); n != 1 {
		t.Fatalf("an unchanged subject token was exchanged again (%d exchanges)", n)
	}

	rotated := f.writeSubject(t, signertest.SubjectTokenOptions{Subject: txRotated})
	for range 3 {
		if c, err := src.Credentials(context.Background()); err != nil || c.Token.Raw != first.Token.Raw {
			t.Fatalf("a request reacted to the rotated file: %v", err)
		}
	}
	if n := len(f.x.Requests()); n != 1 {
		t.Fatalf("a request went to the identity domain (%d requests)", n)
	}
	f.tm.clock.Advance(credentialstest.SubjectTokenPollInterval)
	if ev := f.tm.rec.WaitRefresh(t, txName, 2); ev.Err != nil {
		t.Fatal(ev.Err)
	}
	c, err := src.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ex := f.exchanges()
	if len(ex) != 2 || formOf(ex[1]).Get("subject_token") != rotated || c.Token.Raw != ex[1].Token ||
		c.Token.Subject != txRotUser || c.Subject.Subject != txRotated {
		t.Fatalf("the rotated subject token was not exchanged: %d exchanges, token for %s", len(ex), c.Token.Subject)
	}
	if !strings.Contains(f.logs.String(), "subject token changed") {
		t.Fatalf("the rotation is not logged:\n%s", f.logs.String())
	}
}

// The file a CI step writes after the gateway started: at first the error
// says which file and what writes it, and nothing is sent; once the file
// is there, the next request signs without a restart, and the loop, which
// kept retrying, is satisfied too.
func TestTokenExchangeSubjectFileAppearsLater(t *testing.T) {
	f := newTXFixture(t)
	src := f.principal(t, f.settings())
	ev := f.tm.rec.Wait(t, txName, 1)
	if !errors.Is(ev.Err, signer.ErrFileMissing) || ev.RetryIn != time.Second {
		t.Fatalf("first fetch: %+v", ev)
	}
	_, err := src.Credentials(context.Background())
	var se *signer.Error
	if !errors.As(err, &se) || !errors.Is(err, signer.ErrFileMissing) ||
		!strings.Contains(err.Error(), f.subjectPath) || !strings.Contains(se.Public(), "written by the platform") ||
		strings.Contains(se.Public(), f.subjectPath) {
		t.Fatalf("err = %v (public: %v)", err, se)
	}
	if n := len(f.x.Requests()); n != 0 {
		t.Fatalf("%d requests to the identity domain without a subject token", n)
	}
	f.writeSubject(t, signertest.SubjectTokenOptions{})
	c, err := src.Credentials(context.Background())
	if err != nil {
		t.Fatalf("once the file exists: %v", err)
	}
	if r := f.callOCI(t, c); !r.OK {
		t.Fatalf("OCI refused: %s", r.Reason)
	}
	// The loop's next look finds the credentials in place and does not
	// exchange again.
	f.tm.clock.Advance(credentialstest.SubjectTokenPollInterval)
	if ev := f.tm.rec.WaitRefresh(t, txName, 1); ev.Err != nil {
		t.Fatal(ev.Err)
	}
	if n := len(f.exchanges()); n != 1 {
		t.Fatalf("%d exchanges, want 1", n)
	}
}

// A refused exchange says what the identity domain answered and what fixes
// it, in the error the gateway's client sees; it never carries the secret.
func TestTokenExchangeRefusalNamesAnswerAndFix(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*txFixture, *credentials.TokenExchange) signertest.SubjectTokenOptions
		code  string
		want  []string
	}{
		{"issuer not trusted", func(f *txFixture, _ *credentials.TokenExchange) signertest.SubjectTokenOptions {
			return signertest.SubjectTokenOptions{Issuer: "https://other.example"}
		}, signertest.OAuthInvalidGrant, []string{"invalid_grant", `issuer "https://other.example"`, "trusted identity provider", "audience"}},
		{"audience not the trust's", func(*txFixture, *credentials.TokenExchange) signertest.SubjectTokenOptions {
			return signertest.SubjectTokenOptions{Audience: []string{"sts.amazonaws.com"}}
		}, signertest.OAuthInvalidGrant, []string{"invalid_grant", `audience "sts.amazonaws.com"`, "trust's audience"}},
		{"subject token expired", func(f *txFixture, _ *credentials.TokenExchange) signertest.SubjectTokenOptions {
			return signertest.SubjectTokenOptions{IssuedAt: f.tm.clock.Now().Add(-time.Hour)}
		}, signertest.OAuthInvalidGrant, []string{"invalid_grant", "subject token expired at", "write a fresh one"}},
		{"wrong client secret", func(f *txFixture, _ *credentials.TokenExchange) signertest.SubjectTokenOptions {
			f.x.RegisterClient(signertest.DefaultExchangeClientID, "rotated-in-the-console")
			return signertest.SubjectTokenOptions{}
		}, signertest.OAuthInvalidClient, []string{"invalid_client", "client " + signertest.DefaultExchangeClientID, "secret"}},
		{"grant not allowed", func(f *txFixture, _ *credentials.TokenExchange) signertest.SubjectTokenOptions {
			f.x.Refuse(signertest.OAuthUnauthorizedClient, "The client is not authorized for this grant.")
			return signertest.SubjectTokenOptions{}
		}, signertest.OAuthUnauthorizedClient, []string{"unauthorized_client", "The client is not authorized", "may not use the token exchange grant"}},
		{"redirected", func(f *txFixture, tx *credentials.TokenExchange) signertest.SubjectTokenOptions {
			tx.DomainURL = redirectServer(t, f.x.URL) // the token would follow
			return signertest.SubjectTokenOptions{}
		}, "", []string{"307", "redirected to " + "http://127.0.0.1", "does not follow redirects"}},
		{"not the token endpoint", func(_ *txFixture, tx *credentials.TokenExchange) signertest.SubjectTokenOptions {
			tx.DomainURL = notFoundServer(t) // a server, but not an identity domain
			return signertest.SubjectTokenOptions{}
		}, "", []string{"404", "identity domain URL must be the domain's"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newTXFixture(t)
			tx := f.settings()
			f.writeSubject(t, tc.setup(f, &tx))
			src := f.principal(t, tx)
			if ev := f.tm.rec.Wait(t, txName, 1); ev.Err == nil || ev.RetryIn == 0 {
				t.Fatalf("first fetch: %+v", ev)
			}
			_, err := src.Credentials(context.Background())
			var se *signer.Error
			var ee *credentials.ExchangeError
			if !errors.As(err, &se) || !errors.Is(err, signer.ErrAuthService) || !errors.As(err, &ee) || ee.Code != tc.code {
				t.Fatalf("err = %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(se.Public(), w) {
					t.Errorf("the client's message lacks %q:\n%s", w, se.Public())
				}
			}
			if strings.Contains(err.Error(), signertest.DefaultExchangeClientSecret) || strings.Contains(err.Error(), "eyJ") {
				t.Fatalf("the error carries a secret or a token: %v", err)
			}
			if ee.Status/100 == 3 && len(f.x.Requests()) != 0 {
				t.Fatal("the exchange followed the redirect: the subject token went where it pointed")
			}
		})
	}
}

// An identity domain that echoes what it was sent in error_description
// (the subject token, the client secret), or writes pages of it, does not
// get them into the error, the log or a client's refusal: known secrets
// and token-like text are removed and the text is capped.
func TestTokenExchangeRefusalEchoIsRedactedAndCapped(t *testing.T) {
	f := newTXFixture(t)
	tx := f.settings()
	raw := f.writeSubject(t, signertest.SubjectTokenOptions{})
	other := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
	f.x.Refuse(signertest.OAuthInvalidGrant, "bad subject_token="+raw+" for client_secret="+signertest.DefaultExchangeClientSecret+
		" and "+other+" key=QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2w= \r\nInjected: line "+strings.Repeat("x", 4096))
	var logs signertest.LogBuffer
	src := f.principal(t, tx, credentials.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if ev := f.tm.rec.Wait(t, txName, 1); ev.Err == nil {
		t.Fatalf("first fetch: %+v", ev)
	}
	_, err := src.Credentials(context.Background())
	var se *signer.Error
	var ee *credentials.ExchangeError
	if !errors.As(err, &se) || !errors.As(err, &ee) {
		t.Fatalf("err = %v", err)
	}
	for where, text := range map[string]string{"error": err.Error(), "refusal": se.Public(), "log": logs.String()} {
		for _, secret := range []string{raw[10:60], signertest.DefaultExchangeClientSecret, other, "QUJDREVGR0hJSktMTU5PUFFSU1RV", "\r\nInjected"} {
			if strings.Contains(text, secret) {
				t.Errorf("the %s repeats %q", where, secret)
			}
		}
		if where != "log" && len(text) > 1500 {
			t.Errorf("the %s is %d bytes: the description was not capped", where, len(text))
		}
	}
	if len(ee.Description) > 210 || !strings.Contains(ee.Description, "[redacted]") {
		t.Errorf("description %q: want it capped, with what was removed marked", ee.Description)
	}
}

// Once refused, requests get the refusal without asking the domain again
// for the same tokens; the loop retries with backoff, so a trust added in
// the console takes effect without a restart.
func TestTokenExchangeRefusedUntilTrusted(t *testing.T) {
	f := newTXFixture(t)
	other := signertest.NewIdP(t, "https://ci.example")
	f.idp = other
	f.writeSubject(t, signertest.SubjectTokenOptions{})
	src := f.principal(t, f.settings())
	ev := f.tm.rec.Wait(t, txName, 1)
	if !errors.Is(ev.Err, signer.ErrAuthService) {
		t.Fatalf("first fetch: %+v", ev)
	}
	for range 5 {
		if _, err := src.Credentials(context.Background()); !errors.Is(err, signer.ErrAuthService) {
			t.Fatalf("err = %v", err)
		}
	}
	if n := len(f.x.Requests()); n != 1 {
		t.Fatalf("requests asked the domain again: %d exchanges for one refused token", n)
	}
	f.x.TrustIdP(other, signertest.DefaultIdPAudience)
	f.tm.clock.Advance(ev.RetryIn)
	if ev := f.tm.rec.Wait(t, txName, 2); ev.Err != nil {
		t.Fatalf("retry after the trust was added: %v", ev.Err)
	}
	if _, err := src.Credentials(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A UPST shorter than the refresh margin is renewed halfway through its
// life, not at once and again on every turn of the loop.
func TestTokenExchangeShortUPSTIsNotExchangedInALoop(t *testing.T) {
	f := newTXFixture(t)
	f.x.SetLifetime(4 * time.Minute) // under the default 5-minute margin
	f.writeSubject(t, signertest.SubjectTokenOptions{Lifetime: time.Hour})
	src := f.principal(t, f.settings())
	f.tm.rec.Wait(t, txName, 1)
	first, _ := src.Credentials(context.Background())
	for i := 1; i <= 3; i++ { // 1m30s: polls only
		f.tm.clock.Advance(credentialstest.SubjectTokenPollInterval)
		f.tm.rec.WaitRefresh(t, txName, i)
	}
	if n := len(f.exchanges()); n != 1 {
		t.Fatalf("%d exchanges within the first half of a 4-minute UPST", n)
	}
	f.tm.clock.Set(first.Refreshed.Add(2 * time.Minute))
	waitExchanges(t, f, 2)
}

// A subject token given as a value (OCISIGNER_SUBJECT_TOKEN) and the client
// secret from the environment.
func TestTokenExchangeFromEnvironment(t *testing.T) {
	f := newTXFixture(t)
	subject := f.idp.Mint(t, signertest.SubjectTokenOptions{IssuedAt: f.tm.clock.Now().Add(-time.Minute)})
	env := map[string]string{credentials.EnvClientSecret: signertest.DefaultExchangeClientSecret, credentials.EnvSubjectToken: subject}
	tx := credentials.TokenExchange{DomainURL: f.x.URL, ClientID: signertest.DefaultExchangeClientID, Region: "us-phoenix-1"}
	src := f.principal(t, tx, credentials.WithGetenv(func(k string) string { return env[k] }))
	c, err := src.Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Region != "us-phoenix-1" || c.Subject == nil || c.Subject.File != "" || formOf(f.exchanges()[0]).Get("subject_token") != subject {
		t.Fatalf("credentials %+v subject %+v", c, c.Subject)
	}
}

// What the settings lack is named as the operator sets it.
func TestTokenExchangeSettingsErrors(t *testing.T) {
	ok := credentials.TokenExchange{DomainURL: "https://idcs-abc.identity.oraclecloud.com", ClientID: "id",
		ClientSecretFile: "/s", SubjectTokenFile: "/t", Region: "iad"}
	for _, tc := range []struct {
		name string
		edit func(*credentials.TokenExchange)
		want string
	}{
		{"no URL", func(tx *credentials.TokenExchange) { tx.DomainURL = "" }, "--token-exchange-url"},
		{"http to a remote host", func(tx *credentials.TokenExchange) { tx.DomainURL = "http://idcs-abc.identity.oraclecloud.com" }, "use https://"},
		{"URL with a path", func(tx *credentials.TokenExchange) {
			tx.DomainURL = "https://idcs-abc.identity.oraclecloud.com/ui/v1/signin"
		}, "the domain's URL alone"},
		{"not a URL", func(tx *credentials.TokenExchange) { tx.DomainURL = "idcs-abc.identity.oraclecloud.com" }, "not an https:// URL"},
		{"no client", func(tx *credentials.TokenExchange) { tx.ClientID = "" }, "--client-id"},
		{"no secret", func(tx *credentials.TokenExchange) { tx.ClientSecretFile = "" }, "--client-secret-file or OCISIGNER_CLIENT_SECRET"},
		{"two secrets", func(tx *credentials.TokenExchange) { tx.ClientSecret = "s" }, "both a client secret and a client secret file"},
		{"no subject", func(tx *credentials.TokenExchange) { tx.SubjectTokenFile = "" }, "--subject-token-file or OCISIGNER_SUBJECT_TOKEN"},
		{"two subjects", func(tx *credentials.TokenExchange) { tx.SubjectToken = "x" }, "both a subject token and a subject token file"},
		{"no region", func(tx *credentials.TokenExchange) { tx.Region = "" }, "--region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := ok
			tc.edit(&tx)
			src, err := credentials.TokenExchangePrincipal(credentials.WithTokenExchange(tx), credentials.WithGetenv(func(string) string { return "" }))
			if err == nil {
				src.Close()
			}
			if !errors.Is(err, signer.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrConfig naming %q", err, tc.want)
			}
		})
	}
	// The token endpoint itself is accepted for the domain URL, and the
	// settings as given work.
	for _, u := range []string{ok.DomainURL, ok.DomainURL + "/", ok.DomainURL + "/oauth2/v1/token", "http://127.0.0.1:8080", "http://[::1]:8080/"} {
		tx := ok
		tx.DomainURL = u
		src, err := credentials.TokenExchangePrincipal(credentials.WithTokenExchange(tx))
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		src.Close()
	}
	if _, err := credentials.TokenExchangePrincipal(); !errors.Is(err, signer.ErrConfig) || !strings.Contains(err.Error(), "--token-exchange-url") {
		t.Fatalf("without settings: %v", err)
	}
}

// A subject token file holding GitHub's whole JSON answer, not the token.
func TestTokenExchangeSubjectFileHoldsJSON(t *testing.T) {
	f := newTXFixture(t)
	if err := os.MkdirAll(filepath.Dir(f.subjectPath), 0o700); err != nil {
		t.Fatal(err)
	}
	jwtText := f.idp.Mint(t, signertest.SubjectTokenOptions{IssuedAt: f.tm.clock.Now()})
	if err := os.WriteFile(f.subjectPath, []byte(`{"count":1,"value":"`+jwtText+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	src := f.principal(t, f.settings())
	_, err := src.Credentials(context.Background())
	if !errors.Is(err, signer.ErrTokenMalformed) || !strings.Contains(err.Error(), "holds JSON, not a JWT") || !strings.Contains(err.Error(), ".value") {
		t.Fatalf("err = %v", err)
	}
	if n := len(f.x.Requests()); n != 0 {
		t.Fatalf("%d requests sent with a subject token that is not a JWT", n)
	}
}

// The profile form: authentication_type=token_exchange, files relative to
// the config's folder; the Store form: --principal token-exchange.
func TestTokenExchangeProfileAndStore(t *testing.T) {
	f := newTXFixture(t)
	f.writeSubject(t, signertest.SubjectTokenOptions{})
	folder := signertest.NewFolder(t)
	folder.Write("tx/secret", []byte(signertest.DefaultExchangeClientSecret))
	data, err := os.ReadFile(f.subjectPath)
	if err != nil {
		t.Fatal(err)
	}
	folder.Write("tx/subject", data)
	folder.AppendConfig("TX", "authentication_type", "token_exchange", "domain_url", f.x.URL, "client_id", signertest.DefaultExchangeClientID,
		"client_secret_file", "tx/secret", "subject_token_file", "tx/subject", "region", "phx")
	folder.AppendConfig("HALF", "authentication_type", "token_exchange", "domain_url", f.x.URL)
	cfg, err := openTest(t, folder.ConfigPath(), f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cfg.Source("TX").Credentials(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Kind != signer.KindTokenExchange || c.Profile != "TX" || c.Region != "us-phoenix-1" || c.Subject.File != folder.Path("tx/subject") {
		t.Fatalf("credentials %+v", c)
	}
	if _, err := cfg.Source("HALF").Credentials(context.Background()); !errors.Is(err, signer.ErrConfig) ||
		!strings.Contains(err.Error(), "profile HALF") || !strings.Contains(err.Error(), "client_id") {
		t.Fatalf("incomplete profile: %v", err)
	}

	tx := f.settings()
	st, err := credentials.Open(credentials.Settings{ConfigPath: filepath.Join(t.TempDir(), "none"), DefaultProfile: "DEFAULT",
		Principal: credentials.PrincipalTokenExchange, TokenExchange: &tx}, f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err = st.Source("DEFAULT").Credentials(context.Background())
	if err != nil || c.Kind != signer.KindTokenExchange || c.Profile != txName {
		t.Fatalf("store: %v %+v", err, c)
	}
	if _, err := credentials.Open(credentials.Settings{ConfigPath: filepath.Join(t.TempDir(), "none"), DefaultProfile: "DEFAULT",
		Principal: credentials.PrincipalTokenExchange}); !errors.Is(err, signer.ErrConfig) {
		t.Fatalf("store without settings: %v", err)
	}
}

// Callers arriving together once the subject file appears get one UPST
// from one exchange, not one exchange each.
func TestTokenExchangeOneExchangeForManyCallers(t *testing.T) {
	f := newTXFixture(t)
	src := f.principal(t, f.settings())
	f.tm.rec.Wait(t, txName, 1)
	f.writeSubject(t, signertest.SubjectTokenOptions{})
	var (
		wg     sync.WaitGroup
		tokens sync.Map
		errs   atomic.Int64
	)
	for range 32 {
		wg.Go(func() {
			c, err := src.Credentials(context.Background())
			if err != nil {
				errs.Add(1)
				return
			}
			tokens.Store(c.Token.Raw, true)
		})
	}
	wg.Wait()
	n := 0
	tokens.Range(func(any, any) bool { n++; return true })
	if errs.Load() != 0 || n != 1 || len(f.exchanges()) != 1 {
		t.Fatalf("%d errors, %d distinct tokens, %d exchanges", errs.Load(), n, len(f.exchanges()))
	}
}
