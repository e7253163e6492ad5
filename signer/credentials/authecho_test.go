package credentials_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// echoService is a token service on loopback that refuses every request
// with a chosen status and a body it makes from what it was sent: the
// Authorization header and the body, which hold the current session token,
// a signature or a service-account token. The signertest stand-ins answer
// refusals with fixed words of their own, so they cannot play a service
// that echoes.
type echoService struct {
	URL    string
	CAPEM  []byte // the certificate to trust, when it serves TLS
	status int
	answer func(sent string) (contentType string, body []byte)

	mu   sync.Mutex
	sent []string
}

func newEchoService(t *testing.T, status int, useTLS bool, answer func(sent string) (string, []byte)) *echoService {
	t.Helper()
	e := &echoService{status: status, answer: answer}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: e, ReadHeaderTimeout: time.Minute}}
	if useTLS {
		srv.StartTLS() // its certificate names 127.0.0.1
		e.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	return e
}

func (e *echoService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	sent := r.Header.Get("Authorization") + " " + string(body)
	e.mu.Lock()
	e.sent = append(e.sent, sent)
	e.mu.Unlock()
	ct, answer := e.answer(sent)
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(e.status)
	_, _ = w.Write(answer)
}

func (e *echoService) requests() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.sent...)
}

// signatureOf finds the signature in a request's Authorization header.
var signatureOf = regexp.MustCompile(`signature="([^"]+)"`)

// echoMarker starts every echo: a refusal's words that must come through,
// so that a test cannot pass because the answer was dropped altogether.
const echoMarker = "refusal-words"

// echoFiller is pages of text with nothing token-like in it: only the cap
// shortens it (maxRemoteText, 200 bytes).
const echoFiller = "please try again "

// longestFiller is the shortest run of echoFiller no capped text can hold:
// twelve of them are 204 bytes.
var longestFiller = strings.Repeat(echoFiller, 12)

// authOutcome is where a refused token request's answer can surface.
type authOutcome struct {
	event  error  // the background fetch's error (the loop's, the metrics'); nil when none
	client error  // what a request for credentials got; nil when it was served
	secret string // the secret the path's request carries, when known ahead
}

// authPath drives one caller of the auth client (do) against a service at
// url that refuses with status.
type authPath struct {
	name   string
	status int
	tls    bool
	run    func(t *testing.T, svc *echoService, logs *signertest.LogBuffer) authOutcome
}

func echoLogger(logs *signertest.LogBuffer) credentials.Option {
	return credentials.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// sessionRefreshPath is a session profile whose refresh is due at once;
// the service answers the refresh (the current token in its keyId and
// body) with status. The token stays in use until it expires, so a client
// sees the refusal's effects only then.
func sessionRefreshPath(status int) authPath {
	return authPath{name: fmt.Sprintf("session refresh answered %d", status), status: status,
		run: func(t *testing.T, svc *echoService, logs *signertest.LogBuffer) authOutcome {
			tm := newTimed()
			key := signertest.Key(t, 2)
			is := signertest.NewIssuer(t)
			f := signertest.NewFolder(t)
			cur := nearExpiry(t, is, key, tm.clock.Now(), 4*time.Minute)
			f.SessionProfile("S", key, cur)
			cfg, err := openTest(t, f.ConfigPath(), tm.opts(credentials.WithAuthBaseURL(svc.URL), echoLogger(logs))...)
			if err != nil {
				t.Fatal(err)
			}
			ev := tm.rec.WaitRefresh(t, "S", 1)
			// A refusal (401, 403) is final and logged; anything else is the
			// fetch's error, retried.
			if refused := status == http.StatusUnauthorized || status == http.StatusForbidden; refused != (ev.Err == nil) {
				t.Fatalf("refresh answered %d: event error %v", status, ev.Err)
			}
			if c, err := cfg.Source("S").Credentials(context.Background()); err != nil || c.Token.Raw != cur {
				t.Fatalf("the current token must stay in use after a refused refresh: %v", err)
			}
			tm.clock.Advance(5 * time.Minute)
			_, err = cfg.Source("S").Credentials(context.Background())
			if !errors.Is(err, signer.ErrTokenExpired) {
				t.Fatalf("after expiry: err = %v, want the token expired", err)
			}
			return authOutcome{event: ev.Err, client: err, secret: cur}
		}}
}

// instanceFederationPath is an instance principal whose federation at the
// auth service (/v1/x509, signed with the instance's leaf key) is refused.
func instanceFederationPath(status int) authPath {
	return authPath{name: fmt.Sprintf("instance federation answered %d", status), status: status,
		run: func(t *testing.T, svc *echoService, logs *signertest.LogBuffer) authOutcome {
			tm := newTimed()
			md := signertest.NewMetadataService(t)
			md.SetClock(tm.clock.Now)
			src := credentials.InstancePrincipal(tm.opts(credentials.WithMetadataBaseURL(md.BaseURL()),
				credentials.WithAuthBaseURL(svc.URL), echoLogger(logs))...)
			t.Cleanup(func() { src.Close() })
			ev := tm.rec.Wait(t, string(signer.KindInstance), 1)
			if ev.Err == nil {
				t.Fatal("a refused federation gave credentials")
			}
			_, err := src.Credentials(context.Background())
			if err == nil {
				t.Fatal("a refused federation gave a client credentials")
			}
			return authOutcome{event: ev.Err, client: err}
		}}
}

// workloadPath is an OKE workload whose service-account token the proxymux
// (on TLS, trusted through the cluster CA file) refuses.
func workloadPath(status int) authPath {
	return authPath{name: fmt.Sprintf("workload identity answered %d", status), status: status, tls: true,
		run: func(t *testing.T, svc *echoService, logs *signertest.LogBuffer) authOutcome {
			tm := newTimed()
			dir := t.TempDir()
			saPath, caPath := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
			sa := signertest.NewServiceAccountToken(t, "default", "default", time.Now().Add(24*time.Hour))
			if err := os.WriteFile(saPath, []byte(sa), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(caPath, svc.CAPEM, 0o600); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{"OCI_RESOURCE_PRINCIPAL_REGION": "us-ashburn-1"}
			src, err := credentials.WorkloadIdentity(tm.opts(credentials.WithWorkloadIdentity(svc.URL, saPath, caPath),
				credentials.WithGetenv(func(k string) string { return env[k] }), echoLogger(logs))...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { src.Close() })
			ev := tm.rec.Wait(t, string(signer.KindWorkload), 1)
			if ev.Err == nil {
				t.Fatal("a refused service-account token gave credentials")
			}
			_, err = src.Credentials(context.Background())
			if err == nil {
				t.Fatal("a refused service-account token gave a client credentials")
			}
			return authOutcome{event: ev.Err, client: err, secret: sa}
		}}
}

// credentialOf is the secret a request carried: the session token of a
// keyId ST$<token>, a bearer token, else the request's signature.
func credentialOf(sent string) string {
	if m := sessionKeyID.FindStringSubmatch(sent); m != nil {
		return m[1]
	}
	if tok, ok := strings.CutPrefix(sent, "Bearer "); ok {
		tok, _, _ = strings.Cut(tok, " ")
		return tok
	}
	if m := signatureOf.FindStringSubmatch(sent); m != nil {
		return m[1]
	}
	return ""
}

var sessionKeyID = regexp.MustCompile(`keyId="ST\$([^"]+)"`)

// The auth service's refusal (a session refresh, an instance federation)
// and the OKE proxymux's reach the error, the log and, as an error, a
// gateway's clients, as an identity domain's does. A service that echoes
// what it was sent (the current session token, a signature, the
// service-account token), other token- or key-like text or control
// characters, or that writes pages, must not get any of it there: the
// same redaction and cap as TestTokenExchangeRefusalEchoIsRedactedAndCapped
// shows for the token exchange.
func TestAuthServiceRefusalEchoIsRedactedAndCapped(t *testing.T) {
	otherJWT := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
	opaque := "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2w="
	hexSecret := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	echoes := []struct {
		name string
		// echo is the refusal's text, made from what the request carried.
		echo func(sent string) string
		// forbidden is what must appear nowhere.
		forbidden func(sent string) []string
		// redacted: every forbidden piece lies within the first 200 bytes
		// of the echo, so the cap alone cannot hide it: only redaction can.
		redacted bool
	}{
		{"the credential sent, then the whole request", func(sent string) string {
			return echoMarker + ": invalid " + credentialOf(sent) + " in " + sent
		}, func(sent string) []string { return []string{credentialOf(sent)[10:60]} }, true},
		{"a JWT-like string", func(string) string {
			return echoMarker + ": token " + otherJWT + " is not valid"
		}, func(string) []string { return []string{otherJWT, "eyJzdWIiOiJ4In0"} }, true},
		{"a long opaque run", func(string) string {
			return echoMarker + ": key=" + opaque + " secret=" + hexSecret
		}, func(string) []string { return []string{opaque[:28], hexSecret[:32]} }, true},
		{"control characters", func(string) string {
			return echoMarker + ": refused\r\nInjected: forged=entry\x1b[31m\x00 level=INFO"
		}, func(string) []string {
			// As they are, and as slog's text quotes them in the log.
			return []string{"\r", "\x1b", "\x00", `\r\nInjected`, `\x1b[31m`, `\x00`, `\u001b`}
		}, false},
		{"pages of text", func(string) string {
			return echoMarker + ": " + strings.Repeat(echoFiller, 250)
		}, func(string) []string { return []string{longestFiller} }, false},
	}
	// How the service words it: OCI's JSON error (the echo in its message
	// or its code), or a body that is not JSON at all.
	shapes := []struct {
		name string
		body func(text string) (string, []byte)
	}{
		{"OCI error message", func(text string) (string, []byte) {
			b, _ := json.Marshal(map[string]string{"code": "NotAuthenticated", "message": text})
			return "application/json", b
		}},
		{"OCI error code", func(text string) (string, []byte) {
			b, _ := json.Marshal(map[string]string{"code": text, "message": "The required information to complete authentication was not provided."})
			return "application/json", b
		}},
		{"not JSON", func(text string) (string, []byte) { return "text/plain", []byte(text) }},
	}
	paths := []authPath{
		sessionRefreshPath(http.StatusUnauthorized),        // refused: final, logged as an error
		sessionRefreshPath(http.StatusInternalServerError), // failed: retried, the loop's error
		instanceFederationPath(http.StatusUnauthorized),
		workloadPath(http.StatusForbidden),
	}
	for _, p := range paths {
		for _, ec := range echoes {
			for _, sh := range shapes {
				t.Run(p.name+"/"+ec.name+"/"+sh.name, func(t *testing.T) {
					t.Parallel() // each case has a service, a profile and a log of its own
					svc := newEchoService(t, p.status, p.tls, func(sent string) (string, []byte) { return sh.body(ec.echo(sent)) })
					var logs signertest.LogBuffer
					out := p.run(t, svc, &logs)
					sent := svc.requests()
					if len(sent) == 0 {
						t.Fatal("the service was never asked")
					}
					if out.secret != "" && credentialOf(sent[0]) != out.secret {
						t.Fatal("the request did not carry the secret the test means the service to echo")
					}
					var forbidden []string
					for _, s := range sent {
						echo := ec.echo(s)
						for _, f := range ec.forbidden(s) {
							if i := strings.Index(echo, f); ec.redacted && (i < 0 || i+len(f) > 200) {
								t.Fatalf("the echo does not hold %q in its first 200 bytes: the cap alone would hide it", f)
							}
							forbidden = append(forbidden, f)
						}
					}
					// The answer does come through (so the checks below look
					// at it): the log names the status and the refusal's words.
					if l := logs.String(); !strings.Contains(l, fmt.Sprint(p.status)) || !strings.Contains(l, echoMarker) {
						t.Fatalf("the log does not carry the service's answer:\n%s", l)
					}
					texts := map[string]string{"log": logs.String()}
					if out.event != nil {
						texts["error"] = out.event.Error()
						if !strings.Contains(texts["error"], echoMarker) {
							t.Errorf("the error does not carry the service's answer: %v", out.event)
						}
					}
					if out.client != nil {
						// With --disclose-errors a client gets Error(); else Public().
						texts["client's error"] = out.client.Error()
						var se *signer.Error
						if !errors.As(out.client, &se) {
							t.Fatalf("the client's error %T is not a *signer.Error: %v", out.client, out.client)
						}
						texts["client's refusal"] = se.Public()
					}
					for where, text := range texts {
						for _, f := range forbidden {
							if strings.Contains(text, f) {
								t.Errorf("the %s repeats %q:\n%s", where, f, text)
							}
						}
						if where != "log" && strings.ContainsFunc(text, func(r rune) bool { return r < ' ' || r == 0x7f }) {
							t.Errorf("the %s holds control characters: %q", where, text)
						}
						if where != "log" && len(text) > 1500 {
							t.Errorf("the %s is %d bytes: the answer was not capped", where, len(text))
						}
					}
				})
			}
		}
	}
}
