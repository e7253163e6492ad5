package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// shippedEnvoy is the Envoy stand-in configured by the repository's
// envoy.yaml, in front of the service at signer and OCI at upstream; each
// access log line goes to lines.
func shippedEnvoy(t *testing.T, signer, upstream string, lines chan<- string) *extproctest.Envoy {
	t.Helper()
	c := shippedEnvoyConfig(t, signer, upstream)
	c.AccessLog = func(e extproctest.AccessLogEntry) {
		line, err := extproctest.FormatAccessLog(extproctest.AccessLogFormat, e)
		if err != nil {
			t.Error(err)
		}
		lines <- line
	}
	e, err := extproctest.New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// until polls cond; the deadline only turns a hang into a failure.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
	}
}

// OCI's refusals of what the gateway signed, end to end through the Envoy
// stand-in built from envoy.yaml (its observing filter) and a running
// `serve`: a flood of 401s from the Generative AI stand-in for a session
// profile is counted by profile and status, shows in /readyz and in each
// access log line, and asks for exactly one early refresh of the session,
// which the credentials recorder sees and after which the next request is
// signed with the new token and accepted. A 403 is counted, and refreshes
// nothing. None of it delays a response: the observing filter never waits.
func TestOCIRefusalsSeenAndSessionRefreshedOnce(t *testing.T) {
	fx := newFixture(t)
	clk := credentialstest.NewClock(time.Now())
	rec := credentialstest.NewRefreshes()
	auth := signertest.NewAuthService(t, fx.issuer)
	auth.SetClock(clk.Now)
	var logs syncBuffer
	svc := startService(t, map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API"},
		serveOptions{clock: clk, observe: rec.Observe, profileHeader: "x-oci-profile",
			creds: credentialFlags{authURL: urlFlag{value: auth.URL}, sessionRefresh: true}}, &logs)
	genai := signertest.NewGenAI(fx.oci)
	fx.oci.Handle("GET /n/forbidden", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"code":"NotAllowed","message":"not allowed"}`)
	}))
	lines := make(chan string, 256)
	envoy := shippedEnvoy(t, svc.lis.Addr().String(), fx.oci.Addr, lines)
	admin := "http://" + svc.adminL.Addr().String()
	send := func(profile, method, target string, body string) int {
		req, err := http.NewRequest(method, envoy.URL()+target, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "localhost"
		req.Header.Set("x-oci-profile", profile)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	chat := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`

	const flood = 40
	genai.RefuseNext(flood)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range flood / 4 {
				if st := send("SESSION", "POST", "/genai/openai/v1/chat/completions", chat); st != http.StatusUnauthorized {
					t.Errorf("status %d, want OCI's 401", st)
				}
			}
		}()
	}
	wg.Wait()
	if st := send("API", "GET", "/objectstorage/n/forbidden", ""); st != http.StatusForbidden {
		t.Fatalf("status %d, want OCI's 403", st)
	}
	metric := func(series string) float64 {
		_, text := get(t, admin+"/metrics")
		v, _ := metricValue(text, series)
		return v
	}
	until(t, "every refusal counted", func() bool {
		return metric(`ocisigner_oci_refusals_total{profile="SESSION",status="401"}`) == flood &&
			metric(`ocisigner_oci_refusals_total{profile="API",status="403"}`) == 1
	})
	if ev := rec.WaitRefresh(t, "SESSION", 1); ev.Err != nil {
		t.Fatalf("the early refresh failed: %v", ev.Err)
	}
	// Every refusal has been observed (counted above): one early refresh
	// for the flood, none for the API key's 403.
	n := 0
	for _, ev := range rec.All() {
		if !ev.Initial && (ev.Source == "SESSION" || ev.Source == "API") {
			n++
		}
	}
	if refreshed := refreshRequests(auth); n != 1 || refreshed != 1 {
		t.Fatalf("%d background fetches and %d session refreshes after %d 401s, want 1 of each", n, refreshed, flood)
	}

	code, body := get(t, admin+"/readyz")
	var rd readiness
	if err := json.Unmarshal([]byte(body), &rd); err != nil || code != http.StatusOK || !rd.Ready {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	if len(rd.OCIRefusals) != 2 {
		t.Fatalf("/readyz oci_refusals: %s", body)
	}
	api, sess := rd.OCIRefusals[0], rd.OCIRefusals[1]
	if sess.Profile != "SESSION" || sess.Status != 401 || sess.Count != flood || sess.EarlyRefresh == nil || sess.RequestID == "" || sess.Principal != "security_token" {
		t.Errorf("/readyz SESSION: %+v", sess)
	}
	if api.Profile != "API" || api.Status != 403 || api.Count != 1 || api.EarlyRefresh != nil {
		t.Errorf("/readyz API: %+v", api)
	}
	refusedLines := 0
	for range flood + 1 {
		select {
		case l := <-lines:
			if strings.Contains(l, " 401 via_upstream ") && strings.Contains(l, "profile=SESSION") && strings.Contains(l, "outcome=signed") {
				refusedLines++
			}
		case <-time.After(20 * time.Second):
			t.Fatal("missing access log lines")
		}
	}
	if refusedLines != flood {
		t.Fatalf("%d access log lines say OCI refused SESSION's signed request, want %d", refusedLines, flood)
	}
	if out := logs.String(); strings.Count(out, `msg="OCI refused a signed request" profile=SESSION status=401`) != flood ||
		!strings.Contains(out, "early_refresh=true") {
		t.Errorf("the service's log:\n%s", grepLines(out, "level=WARN"))
	}

	// The refreshed token signs the next request, and OCI accepts it.
	if st := send("SESSION", "POST", "/genai/openai/v1/chat/completions", chat); st != http.StatusOK {
		t.Fatalf("after the early refresh: status %d", st)
	}
	calls := genai.Calls()
	if last, first := calls[len(calls)-1], calls[0]; last.KeyID == first.KeyID {
		t.Fatal("the request after the refresh was signed with the refused token")
	}
}

func refreshRequests(a *signertest.AuthService) int {
	n := 0
	for _, e := range a.Requests() {
		if e.Path == signertest.AuthRefreshPath {
			n++
		}
	}
	return n
}

// syncBuffer is a log sink safe for the service's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// --genai-project is checked at start: anything but a project's OCID is a
// usage error, exit 2, by flag or by environment.
func TestGenAIProjectCheckedAtStart(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API", "OCISIGNER_ADMIN": "127.0.0.1:0", "OCISIGNER_LISTEN": "127.0.0.1:0"}
	for _, v := range []string{"ocid1.compartment.oc1..notaproject", "\r\nocid1.generativeaiproject.oc1..x", "project"} {
		for _, how := range []string{"flag", "env"} {
			t.Run(fmt.Sprintf("%s %q", how, v), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				args, e := []string{"serve"}, map[string]string{}
				for k, val := range env {
					e[k] = val
				}
				if how == "flag" {
					args = append(args, "--genai-project", v)
				} else {
					e["OCISIGNER_GENAI_PROJECT"] = v
				}
				var out, errb strings.Builder
				if code := run(ctx, args, &out, &errb, mapEnv(e)); code != exitUsage || !strings.Contains(errb.String(), "--genai-project: invalid OCID") {
					t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitUsage, errb.String())
				}
			})
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb strings.Builder
	if code := run(ctx, []string{"serve", "--genai-project", "ocid1.generativeaiproject.oc1.us-chicago-1.amaaaa"}, &out, &errb, mapEnv(env)); code != exitOK {
		t.Fatalf("a project's OCID: exit %d\n%s", code, errb.String())
	}
}
