package extproc_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/policy"
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// policyFiles are a gateway's --policy and --keys, watched on a clock the
// test moves: a reload happens when the test says so, under traffic or not.
type policyFiles struct {
	t                    *testing.T
	clk                  *credentialstest.Clock
	policyPath, keysPath string
	policy               *policy.Watcher[policy.Policy]
	keys                 *policy.Watcher[policy.Keys]
}

const reloadInterval = time.Second

func newPolicyFiles(t *testing.T, policyYAML string) *policyFiles {
	t.Helper()
	dir := t.TempDir()
	pf := &policyFiles{t: t, clk: credentialstest.NewClock(time.Now()), policyPath: filepath.Join(dir, "policy.yaml"), keysPath: filepath.Join(dir, "keys")}
	if err := os.WriteFile(pf.policyPath, []byte(policyYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pf.keysPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(&suiteLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := []policy.Option{policy.WithClock(pf.clk), policy.WithInterval(reloadInterval), policy.WithLogger(logger)}
	var err error
	if pf.policy, err = policy.WatchPolicy(pf.policyPath, opts...); err != nil {
		t.Fatal(err)
	}
	if pf.keys, err = policy.WatchKeys(pf.keysPath, opts...); err != nil {
		t.Fatal(err)
	}
	return pf
}

// addKey makes a gateway key as ocisigner keys add does, and reloads.
func (pf *policyFiles) addKey(name string) policy.Key {
	pf.t.Helper()
	k, err := policy.AddKey(pf.keysPath, name)
	if err != nil {
		pf.t.Fatal(err)
	}
	secret(k.Reveal())
	pf.reload()
	return k
}

// reload is two polls an interval apart: what Run does after a change.
func (pf *policyFiles) reload() (policyErr, keysErr error) {
	pf.policy.Check()
	pf.keys.Check()
	pf.clk.Advance(reloadInterval)
	return pf.policy.Check(), pf.keys.Check()
}

func (pf *policyFiles) server(c *extproc.Config) { c.Policy, c.Keys = pf.policy, pf.keys }

// The policy of the shared-gateway tests: a SPIFFE ID signs as API, a
// service-account token as SESSION, a gateway key reaches Generative AI
// alone, with the compartment and project its rule sets.
const sharedPolicy = `version: 1
rules:
  - name: builders
    callers:
      - spiffe: spiffe://cluster.local/ns/team-a/sa/*
    profiles: [API]
    services: ["**"]
    methods: [GET, POST]
  - name: reporters
    callers:
      - jwt:
          issuer: https://kubernetes.default.svc.cluster.local
          subject: system:serviceaccount:team-b:*
    profiles: [SESSION]
    services: [iaas.us-phoenix-1.oraclecloud.com]
    methods: [GET]
  - name: chat
    callers:
      - key: team-c-*
    profiles: [API]
    services: [genai]
    methods: [POST]
    genai:
      compartment: ocid1.compartment.oc1..chatcompartment
      project: ocid1.generativeaiproject.oc1.us-ashburn-1.chatproject
`

// sharedStack is the whole path with the shared-gateway envoy.yaml in
// front: mTLS at the listener, jwt_authn, both ext_proc filters with the
// peer's attributes and the JWT's metadata.
func sharedStack(t *testing.T, id *identities, pf *policyFiles, more ...func(*extproctest.Config)) *stack {
	t.Helper()
	return newStack(t, stackOptions{server: pf.server, envoy: func(c *extproctest.Config) {
		access := c.AccessLog
		*c = id.sharedConfig(c.Processor, c.Upstream)
		c.AccessLog = access
		for _, f := range more {
			f(c)
		}
	}})
}

func (s *stack) doWith(client *http.Client, req *http.Request) answer {
	s.t.Helper()
	saved := s.client
	s.client = client
	defer func() { s.client = saved }()
	return s.do(req)
}

// Two callers of one shared gateway, each signed as the profile its rule
// grants: a workload by its certificate's SPIFFE ID, another by its
// service-account token; neither names a profile. The token never reaches
// OCI, and the access log says who was served by which rule.
func TestSharedGatewaySignsEachCallerAsItsOwnProfile(t *testing.T) {
	t.Parallel()
	id := newIdentities(t)
	pf := newPolicyFiles(t, sharedPolicy)
	lines := make(chan string, 16)
	s := sharedStack(t, id, pf, func(c *extproctest.Config) {
		c.AccessLog = func(e extproctest.AccessLogEntry) {
			line, err := extproctest.FormatAccessLog(extproctest.AccessLogFormat, e)
			if err != nil {
				t.Error(err)
			}
			lines <- line
		}
	})

	builder := id.client("spiffe://cluster.local/ns/team-a/sa/builder")
	if a := s.doWith(builder, s.request("GET", osHost, "/n/", nil)); a.status != 200 {
		t.Fatalf("builder: %d %s", a.status, a.body)
	}
	if rec := s.lastRecord(); !rec.OK || rec.KeyID != s.apiKeyID {
		t.Fatalf("builder signed as %s (ok %v: %s), want the API profile", rec.KeyID, rec.OK, rec.Reason)
	}
	if l := <-lines; !strings.Contains(l, " rule=builders caller=spiffe://cluster.local/ns/team-a/sa/builder") || !strings.Contains(l, "profile=API") {
		t.Errorf("access log: %s", l)
	}

	reporter := id.client("spiffe://cluster.local/ns/team-b/sa/reporter")
	tok := id.saToken("team-b", "reporter")
	req := s.request("GET", iaasHost, "/20160918/instances", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if a := s.doWith(reporter, req); a.status != 200 {
		t.Fatalf("reporter: %d %s", a.status, a.body)
	}
	rec := s.lastRecord()
	if !rec.OK || rec.KeyIDKind != signertest.KeyIDSession {
		t.Fatalf("reporter signed as %s (ok %v: %s), want the SESSION profile", rec.KeyID, rec.OK, rec.Reason)
	}
	for k, vs := range rec.Header {
		for _, v := range vs {
			if strings.Contains(v, tok[:40]) {
				t.Fatalf("the service-account token reached OCI in %s", k)
			}
		}
	}
	l := <-lines
	if !strings.Contains(l, " rule=reporters caller=") || !strings.Contains(l, "jwt:iss=https://kubernetes.default.svc.cluster.local,sub=system:serviceaccount:team-b:reporter") ||
		strings.Contains(l, tok[:40]) {
		t.Errorf("access log: %s", l)
	}
}

// The same requests refused: each caller outside its grant, a caller no
// rule names, an unknown gateway key, and identities forged in headers. 401
// without a usable identity, 403 for one the policy does not grant, each in
// OCI's error shape naming the rule to change; nothing reaches OCI.
func TestSharedGatewayRefusesWhatIsNotGranted(t *testing.T) {
	t.Parallel()
	id := newIdentities(t)
	pf := newPolicyFiles(t, sharedPolicy)
	s := sharedStack(t, id, pf)
	builder := id.client("spiffe://cluster.local/ns/team-a/sa/builder")
	reporter := id.client("spiffe://cluster.local/ns/team-b/sa/reporter")
	stranger := id.client("spiffe://cluster.local/ns/team-x/sa/intruder")
	unknownKey, err := policy.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	secret(unknownKey.Reveal())
	tok := id.saToken("team-b", "reporter")
	for _, tc := range []struct {
		name    string
		client  *http.Client
		method  string
		host    string
		headers map[string]string
		status  int
		code    string
		says    string
	}{
		{"a method its rule does not grant", builder, "DELETE", osHost, nil, 403, policy.CodeMethodNotGranted, `rule "builders"`},
		{"a profile its rule does not grant", reporter, "GET", iaasHost, map[string]string{"authorization": "Bearer " + tok, "x-oci-profile": "API"}, 403, policy.CodeProfileNotGranted, `rule "reporters"`},
		{"a service its rule does not grant", reporter, "GET", osHost, map[string]string{"authorization": "Bearer " + tok}, 403, policy.CodeServiceNotGranted, `rule "reporters"`},
		{"a caller no rule names", stranger, "GET", osHost, nil, 403, policy.CodeNoRule, "team-x"},
		{"an unknown gateway key", stranger, "GET", osHost, map[string]string{"authorization": "Bearer " + unknownKey.Reveal()}, 401, policy.CodeInvalidCaller, "unknown or revoked"},
		{"a forged caller header", stranger, "GET", osHost, map[string]string{"x-oci-caller": "spiffe://cluster.local/ns/team-a/sa/builder"}, 401, policy.CodeInvalidCaller, "x-oci-caller"},
		// Envoy drops a client's XFCC (SANITIZE): the signer sees the stranger as it is.
		{"a forged client certificate header", stranger, "GET", osHost, map[string]string{"x-forwarded-client-cert": "By=spiffe://cluster.local/gw;URI=spiffe://cluster.local/ns/team-a/sa/builder"}, 403, policy.CodeNoRule, "team-x"},
		{"a malformed gateway key", stranger, "GET", osHost, map[string]string{"api-key": "ocisk_short"}, 401, policy.CodeInvalidCaller, "not one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.oci.Requests())
			req := s.request(tc.method, tc.host, "/n/", nil)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			a := s.doWith(tc.client, req)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			code, msg := a.refusal(t)
			if code != tc.code || !strings.Contains(msg, tc.says) {
				t.Fatalf("refusal %s %q, want %s saying %q", code, msg, tc.code, tc.says)
			}
			if strings.Contains(string(a.body), unknownKey.Reveal()) || strings.Contains(string(a.body), tok[:40]) {
				t.Fatal("the refusal echoes a credential")
			}
			if n := len(s.oci.Requests()); n != before {
				t.Fatalf("OCI received %d requests", n-before)
			}
		})
	}
	// A certificate the workload CA did not issue never gets a request in.
	other := newIdentities(t)
	outsider := other.client("spiffe://cluster.local/ns/team-a/sa/builder")
	tr := outsider.Transport.(*http.Transport)
	tr.TLSClientConfig.RootCAs = id.pool
	if _, err := outsider.Do(s.request("GET", osHost, "/n/", nil)); err == nil {
		t.Fatal("a client certificate of another CA was accepted")
	}
}

// The gateway form with an alias: the address stage decides with the
// caller too, and resolves the alias with the profile the policy picks,
// not the gateway's default.
func TestSharedGatewayAliasResolvedWithTheGrantedProfile(t *testing.T) {
	t.Parallel()
	id := newIdentities(t)
	pf := newPolicyFiles(t, strings.Replace(sharedPolicy, "services: [iaas.us-phoenix-1.oraclecloud.com]", "services: [core]", 1))
	s := sharedStack(t, id, pf)
	reporter := id.client("spiffe://cluster.local/ns/team-b/sa/reporter")
	req := s.request("GET", gateway, "/core/20160918/instances", nil)
	req.Header.Set("Authorization", "Bearer "+id.saToken("team-b", "reporter"))
	if a := s.doWith(reporter, req); a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	// SESSION's region is us-phoenix-1; the default profile (API) is in us-ashburn-1.
	if rec := s.lastRecord(); rec.Host != iaasHost || rec.KeyIDKind != signertest.KeyIDSession {
		t.Fatalf("OCI got %s signed by %s", rec.Host, rec.KeyID)
	}
	// Without the token the same certificate names no rule: refused at the
	// address stage, before the alias is resolved.
	if a := s.doWith(reporter, s.request("GET", gateway, "/core/20160918/instances", nil)); a.status != 403 {
		t.Fatalf("%d %s", a.status, a.body)
	}
}

// The GenAI gateway of a team: the openai-go SDK with a gateway key as its
// api_key reaches Generative AI through the shipped envoy.yaml, with the
// compartment and project of the key's rule whatever it sends itself. The
// key never reaches OCI. Then the key is revoked under traffic (the keys
// file changes, no restart): from the reload on, the same client gets 401.
func TestGatewayKeyWithTheOpenAISDK(t *testing.T) {
	t.Parallel()
	pf := newPolicyFiles(t, sharedPolicy)
	s := newStack(t, stackOptions{server: pf.server})
	genai := signertest.NewGenAI(s.oci)
	key := pf.addKey("team-c-chat")
	ctx := context.Background()
	// A connection per call: Envoy closes one whose request it refused
	// before reading the body, which a reused connection would report as a
	// transport error instead of the 401.
	noReuse := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	client := openai.NewClient(option.WithBaseURL(s.envoy.URL()+"/genai/openai/v1"), option.WithAPIKey(key.Reveal()), option.WithHTTPClient(noReuse),
		option.WithProject("ocid1.generativeaiproject.oc1.us-ashburn-1.mine"), option.WithHeader("opc-compartment-id", "ocid1.compartment.oc1..someoneelse"),
		option.WithMaxRetries(0))
	chat := func() error {
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "meta.llama-3.3-70b-instruct", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
		return err
	}
	if err := chat(); err != nil {
		t.Fatal(err)
	}
	call := genai.Calls()[0]
	if call.Compartment != "ocid1.compartment.oc1..chatcompartment" || call.Project != "ocid1.generativeaiproject.oc1.us-ashburn-1.chatproject" || call.KeyID != s.apiKeyID {
		t.Fatalf("GenAI got compartment %q project %q signed by %s", call.Compartment, call.Project, call.KeyID)
	}
	assertNoKey(t, s, key)

	// Traffic while the key is revoked: every request before the reload is
	// signed, every one after it refused 401, none fails otherwise.
	tr := &keyTraffic{chat: chat}
	tr.start(4)
	tr.more(t, 8)
	if err := policy.RevokeKey(pf.keysPath, "team-c-chat"); err != nil {
		t.Fatal(err)
	}
	tr.more(t, 8) // the file changed; the gateway still has the old keys
	if _, err := pf.reload(); err != nil {
		t.Fatal(err)
	}
	tr.mark()
	tr.more(t, 8)
	ok, refused, other := tr.stop()
	if ok == 0 || refused == 0 || other != nil {
		t.Fatalf("before the reload %d signed; after it %d refused; other failures: %v", ok, refused, other)
	}
	var apiErr *openai.Error
	if err := chat(); !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || !strings.Contains(string(apiErr.DumpResponse(true)), policy.CodeInvalidCaller) ||
		strings.Contains(string(apiErr.DumpResponse(true)), key.Reveal()) {
		t.Fatalf("after revocation: %v", err)
	}
	assertNoKey(t, s, key)
}

// assertNoKey: the key is in no request OCI received (the OCI stand-in
// refuses a Bearer anywhere, and this looks for the key itself).
func assertNoKey(t *testing.T, s *stack, key policy.Key) {
	t.Helper()
	for _, r := range s.oci.Requests() {
		for k, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, key.Reveal()) {
					t.Fatalf("the gateway key reached OCI in %s", k)
				}
			}
		}
		if strings.Contains(r.RequestURI, key.Reveal()) {
			t.Fatal("the gateway key reached OCI in the path")
		}
	}
}

// keyTraffic runs chat calls until stopped, noting each result and whether
// it started after the mark.
type keyTraffic struct {
	chat    func() error
	results chan keyResult
	halt    atomic.Bool
	marked  atomic.Bool
	seq     atomic.Int64
	wg      sync.WaitGroup
}

type keyResult struct {
	after bool // started after the mark
	err   error
}

func (k *keyTraffic) start(n int) {
	k.results = make(chan keyResult, 1<<16)
	for range n {
		k.wg.Go(func() {
			for !k.halt.Load() {
				after := k.marked.Load()
				err := k.chat()
				k.seq.Add(1)
				k.results <- keyResult{after, err}
			}
		})
	}
}

func (k *keyTraffic) more(t *testing.T, n int64) {
	t.Helper()
	target := k.seq.Load() + n
	waitFor(t, func() bool { return k.seq.Load() >= target })
}

// mark notes that the revocation is loaded: requests starting from now on
// must be refused.
func (k *keyTraffic) mark() { k.marked.Store(true) }

// stop returns the requests signed before the mark, those refused 401 after
// it, and any other outcome (a success after the mark, any other error).
func (k *keyTraffic) stop() (ok, refused int, other error) {
	k.halt.Store(true)
	k.wg.Wait()
	close(k.results)
	for r := range k.results {
		var apiErr *openai.Error
		switch {
		case r.err == nil && !r.after:
			ok++
		case r.err == nil:
			other = errors.Join(other, errors.New("signed after the revocation was loaded"))
		case errors.As(r.err, &apiErr) && apiErr.StatusCode == 401 && r.after:
			refused++
		case errors.As(r.err, &apiErr) && apiErr.StatusCode == 401:
			// Started before the mark, decided after the reload: either answer is right.
		default:
			other = errors.Join(other, r.err)
		}
	}
	return ok, refused, other
}

// chatPolicy is one version of a GenAI gateway's policy: gateway keys of
// team C sign as profile with compartment. The compartment comes last, so
// that a file cut short inside it still parses, with another compartment.
func chatPolicy(profile, compartment string) string {
	return `version: 1
rules:
  - name: chat
    callers:
      - key: team-c-*
    profiles: [` + profile + `]
    services: ["inference.generativeai.*.oci.oraclecloud.com"]
    methods: [POST]
    genai:
      compartment: ` + compartment + "\n"
}

// Policy reload under traffic. Two versions alternate while clients send
// requests, each rewritten in place the slow way (half of it first, the
// rest an instant later), and a broken version comes in between. Every
// request OCI receives was signed under one whole version: its profile and
// its compartment belong together. The half-written files, which parse on
// their own (with a compartment cut short), are never used, and the broken
// one keeps the last good version, with its error reported.
func TestPolicyReloadUnderTraffic(t *testing.T) {
	t.Parallel()
	const compA, compB = "ocid1.compartment.oc1..versionaaaaaaaa", "ocid1.compartment.oc1..versionbbbbbbbb"
	versions := []string{chatPolicy("API", compA), chatPolicy("SESSION", compB)}
	for _, v := range versions {
		half := v[:len(v)-6]
		if _, err := policy.Parse([]byte(half), "half"); err != nil {
			t.Fatalf("the half-written file must parse for this test to mean anything: %v", err)
		}
	}
	pf := newPolicyFiles(t, versions[0])
	s := newStack(t, stackOptions{server: pf.server})
	genai := signertest.NewGenAI(s.oci)
	key := pf.addKey("team-c-chat")
	const host = "inference.generativeai.us-ashburn-1.oci.oraclecloud.com"
	tr := &keyTraffic{chat: func() error {
		req := s.request("POST", host, "/openai/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+key.Reveal())
		resp, err := s.client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return nil
	}}
	tr.start(4)
	write := func(text string) {
		if err := os.WriteFile(pf.policyPath, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		next := versions[(i+1)%2]
		write(next[:len(next)-6]) // a writer part-way through...
		pf.policy.Check()
		tr.more(t, 4)
		write(next) // ...and done
		pf.clk.Advance(reloadInterval)
		pf.policy.Check() // changed since it was first seen: not read yet
		pf.clk.Advance(reloadInterval)
		if err := pf.policy.Check(); err != nil {
			t.Fatal(err)
		}
		tr.more(t, 8)
		if i == 1 {
			write("version: 1\nrules: [\n") // broken
			pf.policy.Check()
			pf.clk.Advance(reloadInterval)
			if err := pf.policy.Check(); err == nil || !strings.Contains(err.Error(), "policy.yaml:") {
				t.Fatalf("a broken policy: %v", err)
			}
			tr.more(t, 8) // still signed, under the last good version
			write(next)
			pf.policy.Check()
			pf.clk.Advance(reloadInterval)
			pf.policy.Check()
		}
	}
	ok, _, other := tr.stop()
	if other != nil {
		t.Fatalf("%d signed, and: %v", ok, other)
	}
	seen := map[string]int{}
	for _, c := range genai.Calls() {
		kind := "API"
		if c.KeyID != s.apiKeyID {
			kind = "SESSION"
		}
		pair := kind + " " + c.Compartment
		seen[pair]++
		if pair != "API "+compA && pair != "SESSION "+compB {
			t.Errorf("signed as %s with compartment %s: not one version of the policy", kind, c.Compartment)
		}
	}
	if len(seen) != 2 {
		t.Errorf("requests per version: %v; want both versions to have signed", seen)
	}
	if !strings.Contains(suiteLogs.String(), "new policy file is not usable; keeping the last good one") {
		t.Error("the broken version was not logged")
	}
}

// What the stand-in does not reproduce of a shared gateway's identity, it
// refuses to read rather than read as something else: each of these would
// change who the signer believes is asking.
func TestSharedGatewayShapesTheStandInRefuses(t *testing.T) {
	t.Parallel()
	id := newIdentities(t)
	data, err := sharedGatewayFile()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"unverified client certificates", "trusted_ca: { filename: /etc/envoy/tls/ca.crt }", "trusted_ca: { filename: /etc/envoy/tls/ca.crt }\n                  trust_chain_verification: ACCEPT_UNTRUSTED"},
		{"a client's XFCC forwarded", "forward_client_cert_details: SANITIZE", "forward_client_cert_details: APPEND_FORWARD"},
		{"payload forwarded in a header", "payload_in_metadata: kubernetes", "payload_in_metadata: kubernetes\n                          forward_payload_header: x-jwt-payload"},
		{"tokens from the query", "from_headers:\n                            - name: authorization\n                              value_prefix: \"Bearer \"", "from_params: [access_token]"},
		{"claims without verification", "- allow_missing_or_failed: {}", "- extract_only_without_validation: {}"},
		{"JWKS fetched", "local_jwks: { filename: /etc/envoy/jwks/jwks.json }", "remote_jwks: { http_uri: { uri: \"https://kubernetes.default.svc/openid/v1/jwks\", cluster: oci, timeout: 5s } }"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(data), tc.old) {
				t.Fatalf("the file no longer has %q", tc.old)
			}
			_, err := id.configFrom([]byte(strings.Replace(string(data), tc.old, tc.new, 1)), "127.0.0.1:1", "127.0.0.1:2")
			if !errors.Is(err, extproctest.ErrUnsupported) {
				t.Fatalf("err %v, want ErrUnsupported", err)
			}
		})
	}
}
