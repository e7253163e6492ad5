package extproc_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/policy"
)

// auditedStack is sharedStack (or, with no identities, the shipped
// envoy.yaml's plain listener) whose signer log and Envoy access log the
// test reads, with the operator's --envoy-identity-header list.
func auditedStack(t *testing.T, id *identities, pf *policyFiles, envoyIdentity ...string) (*stack, *lockedLog) {
	t.Helper()
	logs := &lockedLog{}
	server := func(c *extproc.Config) {
		pf.server(c)
		c.EnvoyIdentityHeaders = envoyIdentity
		c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(&suiteLogs, logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	access := func(c *extproctest.Config) {
		c.AccessLog = func(e extproctest.AccessLogEntry) {
			line, err := extproctest.FormatAccessLog(extproctest.AccessLogFormat, e)
			if err != nil {
				t.Error(err)
			}
			logs.access(line)
		}
	}
	if id == nil {
		return newStack(t, stackOptions{server: server, envoy: access}), logs
	}
	return newStack(t, stackOptions{server: server, envoy: func(c *extproctest.Config) {
		*c = id.sharedConfig(c.Processor, c.Upstream)
		access(c)
	}}), logs
}

// clientSubject is the subject part of the label of every id.client
// certificate: Envoy's subject_peer_certificate, with the comma escaped.
const clientSubject = "subject:CN=workload%2CO=Example"

// signerLine is the one line the signer logged with msg (signed or
// refused) for path; each request of these tests has a path of its own.
func signerLine(t *testing.T, logs *lockedLog, msg, path string) string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, " msg="+msg+" ") && strings.Contains(l, " path="+path+" ") {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d %q lines for %s, want 1:\n%s", len(found), msg, path, logs.String())
	}
	return found[0]
}

// slogText is key=value as the signer's text log writes it (quoted when
// the value holds a space or an =, as a JWT caller's label does).
func slogText(key, value string) string {
	var b bytes.Buffer
	drop := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey {
			return slog.Attr{}
		}
		return a
	}
	slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: drop})).Info("", key, value)
	return strings.TrimSpace(b.String())
}

// An operator whose front proxy sets x-forwarded-user itself says so with
// --envoy-identity-header x-forwarded-user (Config.EnvoyIdentityHeaders):
// a request carrying it is then signed instead of refused as forged, and
// the signer still takes the caller only from what Envoy verified (here,
// the client certificate), never from the header. The same request to a
// gateway that did not name the header is refused, which shows the header
// does reach the signer through Envoy; naming one header lets no other
// through.
func TestEnvoyIdentityHeaderPassesButNeverNamesTheCaller(t *testing.T) {
	t.Parallel()
	id := newIdentities(t)
	pf := newPolicyFiles(t, sharedPolicy)
	refusing, _ := auditedStack(t, id, pf)
	allowing, logs := auditedStack(t, id, pf, "x-forwarded-user")
	builder := id.client("spiffe://cluster.local/ns/team-a/sa/builder")
	stranger := id.client("spiffe://cluster.local/ns/team-x/sa/intruder")
	const builderID = "spiffe://cluster.local/ns/team-a/sa/builder"
	// A caller's label is all Envoy verified: the SPIFFE ID and the
	// certificate's subject (id.client's, as Envoy renders it, escaped).
	builderLabel := builderID + " " + clientSubject
	strangerLabel := "spiffe://cluster.local/ns/team-x/sa/intruder " + clientSubject
	send := func(s *stack, client *http.Client, path string, headers ...string) answer {
		t.Helper()
		req := s.request("GET", osHost, path, nil)
		for i := 0; i < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		return s.doWith(client, req)
	}

	// Without the flag, the header is a forgery: refused before signing.
	if a := send(refusing, builder, "/n/not-named", "x-forwarded-user", "alice"); a.status != 401 {
		t.Fatalf("x-forwarded-user to a gateway that did not name it: %d %s, want 401", a.status, a.body)
	} else if code, msg := a.refusal(t); code != policy.CodeInvalidCaller || !strings.Contains(msg, "--envoy-identity-header x-forwarded-user") {
		t.Fatalf("refusal %s %q", code, msg)
	}
	if n := len(refusing.oci.Requests()); n != 0 {
		t.Fatalf("OCI received %d requests from the refusing gateway", n)
	}

	// With it, the same request is signed, as the certificate's rule grants.
	if a := send(allowing, builder, "/n/named", "x-forwarded-user", "alice"); a.status != 200 {
		t.Fatalf("x-forwarded-user named by the operator: %d %s, want 200", a.status, a.body)
	}
	if rec := allowing.lastRecord(); !rec.OK || rec.KeyID != allowing.apiKeyID {
		t.Fatalf("signed as %s (ok %v: %s), want the builders rule's API profile", rec.KeyID, rec.OK, rec.Reason)
	}
	if l := signerLine(t, logs, "signed", "/n/named"); !strings.HasSuffix(l, " "+slogText("caller", builderLabel)+" rule=builders") {
		t.Errorf("the signed line does not name the certificate's caller:\n%s", l)
	}
	if l := logs.accessLine(t, `"GET /n/named `); !strings.Contains(l, " 200 ") || !strings.HasSuffix(l, " rule=builders caller="+builderLabel+"\n") {
		t.Errorf("access log: %s", l)
	}

	// A caller no rule names cannot borrow a granted identity through it:
	// the header is let through, not read.
	before := len(allowing.oci.Requests())
	a := send(allowing, stranger, "/n/borrowed", "x-forwarded-user", builderID)
	if a.status != 403 {
		t.Fatalf("a stranger naming the builder in x-forwarded-user: %d %s, want 403", a.status, a.body)
	}
	if code, msg := a.refusal(t); code != policy.CodeNoRule || !strings.Contains(msg, "team-x") {
		t.Fatalf("refusal %s %q, want %s for the stranger itself", code, msg, policy.CodeNoRule)
	}
	if l := signerLine(t, logs, "refused", "/n/borrowed"); !strings.Contains(l, " "+slogText("caller", strangerLabel)+" ") || strings.Contains(l, "team-a") {
		t.Errorf("the refused line does not name the certificate's caller:\n%s", l)
	}

	// The flag names one header: another identity header is still refused.
	a = send(allowing, builder, "/n/other-header", "x-forwarded-user", "alice", "x-oci-caller", builderID)
	if a.status != 401 {
		t.Fatalf("x-oci-caller beside the named header: %d %s, want 401", a.status, a.body)
	}
	if code, msg := a.refusal(t); code != policy.CodeInvalidCaller || !strings.Contains(msg, "x-oci-caller") {
		t.Fatalf("refusal %s %q", code, msg)
	}
	if n := len(allowing.oci.Requests()); n != before {
		t.Fatalf("OCI received %d requests that should have been refused", n-before)
	}
}

// Every refusal under a policy says who was refused, on the signer's
// refused line (caller= and rule=) and in the access log (from the
// dynamic metadata of the ImmediateResponse), as the signed line does:
// an operator reading why a workload got 401 or 403 needs to know which
// workload it was. A caller the rule does not grant is named by its label;
// one whose identity was refused is "(invalid)"; a request with no
// identity is "none". Neither line ever holds the forged value.
func TestRefusedLinesNameTheCaller(t *testing.T) {
	t.Parallel()
	id := newIdentities(t)
	pf := newPolicyFiles(t, sharedPolicy)
	s, logs := auditedStack(t, id, pf)
	builder := id.client("spiffe://cluster.local/ns/team-a/sa/builder")
	reporter := id.client("spiffe://cluster.local/ns/team-b/sa/reporter")
	stranger := id.client("spiffe://cluster.local/ns/team-x/sa/intruder")
	tok := id.saToken("team-b", "reporter")
	reporterLabel := "spiffe://cluster.local/ns/team-b/sa/reporter " + clientSubject + " jwt:iss=" + kubeIssuer + ",sub=system:serviceaccount:team-b:reporter"
	for _, tc := range []struct {
		name    string
		client  *http.Client
		method  string
		path    string
		headers map[string]string
		status  int
		code    string
		caller  string // its label
		rule    string // on the signer's line: the metric label
		logRule string // in the access log: the deciding rule, "-" for none
	}{
		{"a method the rule does not grant", builder, "DELETE", "/n/refused-method", nil, 403, policy.CodeMethodNotGranted,
			"spiffe://cluster.local/ns/team-a/sa/builder " + clientSubject, "builders", "builders"},
		{"a service the rule does not grant, to a JWT caller", reporter, "GET", "/n/refused-service", map[string]string{"authorization": "Bearer " + tok}, 403, policy.CodeServiceNotGranted,
			reporterLabel, "reporters", "reporters"},
		{"a caller no rule names", stranger, "GET", "/n/refused-no-rule", nil, 403, policy.CodeNoRule,
			"spiffe://cluster.local/ns/team-x/sa/intruder " + clientSubject, policy.LabelNoRule, "-"},
		{"a forged caller header", stranger, "GET", "/n/refused-forged", map[string]string{"x-oci-caller": "spiffe://cluster.local/ns/team-a/sa/forged"}, 401, policy.CodeInvalidCaller,
			"(invalid)", policy.LabelUnauthenticated, "-"},
		{"a malformed gateway key", builder, "GET", "/n/refused-key", map[string]string{"api-key": "ocisk_short"}, 401, policy.CodeInvalidCaller,
			"(invalid)", policy.LabelUnauthenticated, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := s.request(tc.method, osHost, tc.path, nil)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			a := s.doWith(tc.client, req)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			if code, _ := a.refusal(t); code != tc.code {
				t.Fatalf("refusal %s, want %s", code, tc.code)
			}
			line := signerLine(t, logs, "refused", tc.path)
			if want := " " + slogText("caller", tc.caller) + " rule=" + tc.rule; !strings.HasSuffix(line, want) {
				t.Errorf("the refused line lacks %q:\n%s", want, line)
			}
			access := logs.accessLine(t, `"`+tc.method+" "+tc.path+" ")
			if want := " rule=" + tc.logRule + " caller=" + tc.caller + "\n"; !strings.HasSuffix(access, want) || !strings.Contains(access, "outcome="+tc.code+" ") {
				t.Errorf("access log lacks outcome=%s and %q:\n%s", tc.code, want, access)
			}
			for _, l := range []string{line, access} {
				if strings.Contains(l, "team-a/sa/forged") || strings.Contains(l, tok[:40]) {
					t.Errorf("a log line holds what the client sent as its identity:\n%s", l)
				}
			}
		})
	}
	if n := len(s.oci.Requests()); n != 0 {
		t.Fatalf("OCI received %d requests", n)
	}

	// No identity at all, on the shipped envoy.yaml's plain listener.
	plain, plainLogs := auditedStack(t, nil, pf)
	a := plain.do(plain.request("GET", osHost, "/n/refused-nobody", nil))
	if a.status != 401 {
		t.Fatalf("no identity: %d %s, want 401", a.status, a.body)
	}
	if code, _ := a.refusal(t); code != policy.CodeUnauthenticated {
		t.Fatalf("no identity: %s, want %s", code, policy.CodeUnauthenticated)
	}
	if line := signerLine(t, plainLogs, "refused", "/n/refused-nobody"); !strings.HasSuffix(line, " caller=none rule="+policy.LabelUnauthenticated) {
		t.Errorf("the refused line does not say there was no caller:\n%s", line)
	}
	if access := plainLogs.accessLine(t, `"GET /n/refused-nobody `); !strings.HasSuffix(access, " rule=- caller=none\n") {
		t.Errorf("access log: %s", access)
	}
}
