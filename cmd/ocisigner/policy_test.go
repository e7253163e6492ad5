package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/policy"
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
)

const testPolicy = `version: 1
rules:
  - name: builders
    callers:
      - spiffe: spiffe://cluster.local/ns/team-a/sa/*
    profiles: [API]
    services: ["**"]
    methods: [GET, POST]
  - name: chat
    callers:
      - key: team-c-*
    profiles: [API]
    services: ["**"]
    methods: [GET, POST]
`

// writePolicy writes a policy and an empty keys file into a new folder.
func writePolicy(t *testing.T, text string) (policyPath, keysPath string) {
	t.Helper()
	dir := t.TempDir()
	policyPath, keysPath = filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "keys")
	if err := os.WriteFile(policyPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keysPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return policyPath, keysPath
}

// `policy check` says what a caller gets and which rule decides, with exit
// 6 for a refusal; a policy that does not parse stops it with its line.
func TestPolicyCheckCommand(t *testing.T) {
	pol, _ := writePolicy(t, testPolicy)
	bad, _ := writePolicy(t, "version: 1\nrules:\n  - name: x\n    callers: []\n")
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		exit  int
		wants []string
	}{
		{"allowed", []string{"check", "--policy", pol, "--caller", "spiffe://cluster.local/ns/team-a/sa/builder", "https://objectstorage.us-ashburn-1.oraclecloud.com/n/"}, nil,
			exitOK, []string{`decided by: rule "builders" (line 3)`, "allowed, signed as profile API"}},
		{"from the environment", []string{"check", "--caller", "key:team-c-chat", "--method", "POST", "http://localhost:10000/genai/openai/v1/chat/completions"},
			map[string]string{"OCISIGNER_POLICY": pol}, exitOK, []string{`service alias "genai"`, "not matching the caller: builders (line 3)", `rule "chat" (line 9)`}},
		{"refused", []string{"check", "--policy", pol, "--caller", "key:team-c-chat", "--method", "DELETE", "https://objectstorage.us-ashburn-1.oraclecloud.com/n/"}, nil,
			exitRefused, []string{"refused, 403 MethodNotGranted", `rule "chat"`}},
		{"nobody", []string{"check", "--policy", pol, "--caller", "none", "https://objectstorage.us-ashburn-1.oraclecloud.com/n/"}, nil,
			exitRefused, []string{"401 CallerNotAuthenticated"}},
		{"broken policy", []string{"check", "--policy", bad, "--caller", "none", "https://x.oraclecloud.com/"}, nil, exitUsage, []string{bad + ":4:14:", "callers must be"}},
		{"no policy", []string{"check", "--caller", "none", "https://x.oraclecloud.com/"}, nil, exitUsage, []string{"--policy"}},
		{"no caller", []string{"check", "--policy", pol, "https://x.oraclecloud.com/"}, nil, exitUsage, []string{"--caller"}},
		{"a caller that is no description", []string{"check", "--policy", pol, "--caller", "bob", "https://x.oraclecloud.com/"}, nil, exitUsage, []string{"--caller:", "spiffe://"}},
		{"not check", []string{"--policy", pol, "--caller", "none", "explain", "https://x.oraclecloud.com/"}, nil, exitUsage, []string{"usage: ocisigner policy check"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, tc.env, append([]string{"policy"}, tc.args...)...)
			if code != tc.exit {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.exit, out, errOut)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out+errOut, w) {
					t.Errorf("lacks %q:\n%s%s", w, out, errOut)
				}
			}
		})
	}
}

// `keys add` prints the key once, on stdout alone, and stores its hash;
// `keys revoke` removes it. Neither writes the key anywhere else.
func TestKeysCommands(t *testing.T) {
	_, keys := writePolicy(t, testPolicy)
	code, out, errOut := runCmd(t, nil, "keys", "add", "team-c-chat", "--keys", keys)
	key := strings.TrimSpace(out)
	if code != exitOK || !regexp.MustCompile(`^ocisk_[A-Za-z0-9_-]{43}$`).MatchString(key) || strings.Contains(errOut, key) || !strings.Contains(errOut, "only time") {
		t.Fatalf("add: exit %d stdout %q stderr %q", code, out, errOut)
	}
	data, _ := os.ReadFile(keys)
	ks, err := policy.ParseKeys(data, keys)
	if err != nil || strings.Contains(string(data), key) {
		t.Fatalf("keys file: %v\n%s", err, data)
	}
	if name, err := ks.Lookup(policy.NewKey(key)); err != nil || name != "team-c-chat" {
		t.Fatalf("the printed key is not the stored one: %q %v", name, err)
	}
	if fi, _ := os.Stat(keys); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	for _, tc := range []struct {
		args []string
		exit int
		want string
	}{
		{[]string{"keys", "add", "team-c-chat", "--keys", keys}, exitUsage, "already"},
		{[]string{"keys", "add", "bad name", "--keys", keys}, exitUsage, "is not a letter or digit"},
		{[]string{"keys", "add", "x"}, exitUsage, "--keys"},
		{[]string{"keys", "list", "x", "--keys", keys}, exitUsage, "usage: ocisigner keys add|revoke"},
		{[]string{"keys", "revoke", "team-c-chat", "--keys", keys}, exitOK, "refuses the key from its next reload"},
		{[]string{"keys", "revoke", "team-c-chat", "--keys", keys}, exitUsage, "no key of that name"},
		{[]string{"keys", "revoke", "x", "--keys", filepath.Join(t.TempDir(), "none")}, exitConfig, "does not exist"},
	} {
		code, out, errOut := runCmd(t, nil, tc.args...)
		if code != tc.exit || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("%v: exit %d stdout %q stderr %q", tc.args, code, out, errOut)
		}
	}
}

// serve reads --policy and --keys at start: a file that does not parse, or
// that is missing, stops it with exit 2 and the line; flags that make no
// sense without a policy are refused.
func TestServePolicyStartupErrors(t *testing.T) {
	fx := newFixture(t)
	bad, keys := writePolicy(t, "version: 1\nrules:\n  - name: x\n    callers: [{spiffe: example.org}]\n    profiles: [API]\n    services: [\"**\"]\n    methods: [GET]\n")
	if err := os.WriteFile(keys, []byte("k ocisk_"+strings.Repeat("a", 43)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good, _ := writePolicy(t, testPolicy)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API", "OCISIGNER_ADMIN": "127.0.0.1:0", "OCISIGNER_LISTEN": "127.0.0.1:0"}
	for _, tc := range []startupCase{
		{"policy that does not parse", env, []string{"--policy", bad}, exitUsage, bad + ":4:24: rule 1 (x): spiffe \"example.org\" does not start with spiffe://"},
		{"policy missing", env, []string{"--policy", bad + ".nope"}, exitUsage, "does not exist"},
		{"keys file holding a key", env, []string{"--policy", good, "--keys", keys}, exitUsage, keys + ":1: the line holds a gateway key itself"},
		{"keys without policy", env, []string{"--keys", keys}, exitUsage, "--keys needs --policy"},
		{"identity header without policy", env, []string{"--envoy-identity-header", "x-forwarded-client-cert"}, exitUsage, "needs --policy"},
		{"identity header ocisigner does not refuse", env, []string{"--policy", good, "--envoy-identity-header", "x-user"}, exitUsage, "name one of those"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var out, errb strings.Builder
			code := run(ctx, append([]string{"serve"}, tc.args...), &out, &errb, mapEnv(tc.env))
			if code != tc.exit || !strings.Contains(errb.String(), tc.msg) || strings.Contains(errb.String(), "ocisk_aaaa") {
				t.Fatalf("exit %d, want %d with %q; stderr:\n%s", code, tc.exit, tc.msg, errb.String())
			}
		})
	}
}

// withCaller adds what Envoy would send about the caller to a headers
// message: request attributes, and a verified JWT's payload.
func withCaller(m *extprocv3.ProcessingRequest, attrs map[string]any, jwtPayloads map[string]any) *extprocv3.ProcessingRequest {
	if attrs != nil {
		st, err := structpb.NewStruct(attrs)
		if err != nil {
			panic(err)
		}
		m.Attributes = map[string]*structpb.Struct{extproc.ExtProcAttributesKey: st}
	}
	if jwtPayloads != nil {
		st, err := structpb.NewStruct(jwtPayloads)
		if err != nil {
			panic(err)
		}
		m.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{extproc.JWTMetadataNamespace: st}}
	}
	return m
}

// A policy's gateway: the keys file and the policy reload under a running
// service (the watchers' Run, on the service's clock); a version that does
// not parse keeps the last good one with a metric and a log line naming
// the line. The gateway key is never in a log line, a metric or a refusal.
func TestServePolicyReloadsAndNeverShowsTheKey(t *testing.T) {
	pol, keys := writePolicy(t, testPolicy)
	key, err := policy.AddKey(keys, "team-c-chat")
	if err != nil {
		t.Fatal(err)
	}
	clk := credentialstest.NewClock(time.Now())
	h := newHostile(t, serveOptions{clock: clk, policy: policyOptions{policyFile: pol, keysFile: keys}}, 1)
	svc, logs := h.svc, h.logs
	metricsURL := "http://" + svc.adminL.Addr().String() + "/metrics"
	signedWithKey := func() bool {
		resps, err := h.exchange(headersMsg(request("GET", realmHost, "/n/", header{"authorization", "Bearer " + key.Reveal()}), true))
		return err == nil && signedAnything(resps)
	}
	if !signedWithKey() {
		t.Fatal("the key's rule does not sign")
	}
	// Until the file is reloaded, Run is what reloads it: keep moving the
	// clock until the service has.
	reloaded := func(series string, want float64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			clk.Advance(policy.DefaultInterval)
			_, body := get(t, metricsURL)
			if v, _ := metricValue(body, series); v == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached %v:\n%s", series, want, grepLines(body, "ocisigner_policy"))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := os.WriteFile(pol, []byte(testPolicy+"  - name: broken\n    callers: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reloaded(`ocisigner_policy_reload_failures{file="policy"}`, 1)
	if !signedWithKey() {
		t.Fatal("the last good policy was not kept")
	}
	if !strings.Contains(logs.String(), "new policy file is not usable; keeping the last good one") || !strings.Contains(logs.String(), pol+":16:") {
		t.Errorf("no log line naming the line:\n%s", logs.String())
	}
	if err := policy.RevokeKey(keys, "team-c-chat"); err != nil {
		t.Fatal(err)
	}
	reloaded(`ocisigner_policy_reloads_total{file="keys",outcome="ok"}`, 1)
	resps, err := h.exchange(headersMsg(request("GET", realmHost, "/n/", header{"api-key", key.Reveal()}), true))
	r, ok := immediate(t, resps)
	if err != nil || !ok || r.status != 401 || r.code != policy.CodeInvalidCaller || signedAnything(resps) {
		t.Fatalf("a revoked key: %+v %v", r, err)
	}
	_, body := get(t, metricsURL)
	if v, _ := metricValue(body, `ocisigner_policy_requests_total{outcome="signed",rule="chat"}`); v != 2 {
		t.Errorf("requests by rule:\n%s", grepLines(body, "ocisigner_policy_requests_total"))
	}
	for what, text := range map[string]string{"the log": logs.String(), "/metrics": body, "the refusal": string(resps[0].GetImmediateResponse().GetBody())} {
		if strings.Contains(text, key.Reveal()) || strings.Contains(text, key.Reveal()[:20]) {
			t.Errorf("the gateway key is in %s", what)
		}
	}
	if !strings.Contains(logs.String(), `caller=key:team-c-chat rule=chat`) {
		t.Errorf("the signed line does not name the caller:\n%s", grepLines(logs.String(), "time="))
	}
}

// Hostile identities: what Envoy would never send, sent straight to the
// gRPC port, is refused with 401 before anything is signed, and a huge one
// does not fill the log.
func TestHostileIdentitiesAreRefusedBeforeSigning(t *testing.T) {
	pol, keys := writePolicy(t, testPolicy)
	h := newHostile(t, serveOptions{policy: policyOptions{policyFile: pol, keysFile: keys}}, 1)
	get := func() *extprocv3.ProcessingRequest { return headersMsg(request("GET", realmHost, "/n/"), true) }
	builder := "spiffe://cluster.local/ns/team-a/sa/builder"
	payload := func(claims map[string]any) map[string]any {
		p := map[string]any{"iss": "https://issuer.example", "sub": "s"}
		for k, v := range claims {
			p[k] = v
		}
		return map[string]any{"kubernetes": p}
	}
	manyClaims := map[string]any{}
	for i := range 200 {
		manyClaims[fmt.Sprintf("c%d", i)] = "v"
	}
	for _, tc := range []struct {
		name string
		msg  *extprocv3.ProcessingRequest
	}{
		{"a 100 KB URI SAN", withCaller(get(), map[string]any{extproc.AttrPeerURISAN: builder + strings.Repeat("a", 100<<10)}, nil)},
		{"a URI SAN with a line break", withCaller(get(), map[string]any{extproc.AttrPeerURISAN: builder + "\nspiffe://x"}, nil)},
		{"a URI SAN that is not a string", withCaller(get(), map[string]any{extproc.AttrPeerURISAN: 42.0}, nil)},
		{"a subject with a control character", withCaller(get(), map[string]any{extproc.AttrPeerURISAN: builder, extproc.AttrPeerSubject: "CN=a\x1bb"}, nil)},
		{"two JWT payloads", withCaller(get(), map[string]any{extproc.AttrPeerURISAN: builder}, map[string]any{"a": payload(nil)["kubernetes"], "b": payload(nil)["kubernetes"]})},
		{"a JWT payload that is a string", withCaller(get(), nil, map[string]any{"kubernetes": "eyJhbGciOi"})},
		{"a JWT payload without iss", withCaller(get(), nil, map[string]any{"kubernetes": map[string]any{"sub": "s"}})},
		{"a JWT with 200 claims", withCaller(get(), nil, payload(manyClaims))},
		{"a JWT claim of 2 KB", withCaller(get(), nil, payload(map[string]any{"x": strings.Repeat("x", 2048)}))},
		{"a key 100 KB long", headersMsg(request("GET", realmHost, "/n/", header{"authorization", "Bearer ocisk_" + strings.Repeat("A", 100<<10)}), true)},
		{"two keys", headersMsg(request("GET", realmHost, "/n/", header{"authorization", "Bearer ocisk_" + strings.Repeat("A", 43)}, header{"api-key", "ocisk_" + strings.Repeat("B", 43)}), true)},
		{"a caller header", withCaller(headersMsg(request("GET", realmHost, "/n/", header{"x-oci-caller", builder}), true), map[string]any{extproc.AttrPeerURISAN: builder}, nil)},
		{"a forwarded client certificate", withCaller(headersMsg(request("GET", realmHost, "/n/", header{"x-forwarded-client-cert", "URI=" + builder}), true), map[string]any{extproc.AttrPeerURISAN: builder}, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.logs.Len()
			resps, err := h.exchange(tc.msg)
			r, ok := immediate(t, resps)
			if err != nil || !ok || r.status != 401 || r.code != policy.CodeInvalidCaller || signedAnything(resps) {
				t.Fatalf("%+v %v, want 401 %s", r, err, policy.CodeInvalidCaller)
			}
			if raw := resps[0].GetImmediateResponse().GetBody(); len(raw) > 2048 {
				t.Errorf("%d-byte refusal", len(raw))
			}
			if grown := h.logs.Len() - before; grown > 4096 {
				t.Errorf("the log grew %d bytes for one refusal", grown)
			}
		})
	}
	// The same caller, well formed, is signed.
	resps, err := h.exchange(withCaller(get(), map[string]any{extproc.AttrPeerURISAN: builder, extproc.AttrPeerSubject: "CN=builder"}, nil))
	if err != nil || !signedAnything(resps) {
		t.Fatalf("the well-formed caller was not signed: %v", err)
	}
}

// With a policy, a flood of distinct callers (SPIFFE IDs of a rule, and of
// no rule) and hostile rule labels leave the metrics' series where they
// were: the rule label is a rule of the policy or a fixed value, and the
// caller is never a label.
func TestHostileCallersCannotGrowMetrics(t *testing.T) {
	pol, keys := writePolicy(t, testPolicy)
	h := newHostile(t, serveOptions{policy: policyOptions{policyFile: pol, keysFile: keys}}, 4)
	metricsURL := "http://" + h.svc.adminL.Addr().String() + "/metrics"
	series := func() (int, int) {
		_, body := get(t, metricsURL)
		return strings.Count(body, "\nocisigner_requests_total{") + strings.Count(body, "\nocisigner_policy_requests_total{"), len(body)
	}
	caller := func(i int) *extprocv3.ProcessingRequest {
		ns := "team-a"
		if i%2 == 1 {
			ns = fmt.Sprintf("team-%06d", i) // no rule
		}
		return withCaller(headersMsg(request("GET", realmHost, "/n/"), true),
			map[string]any{extproc.AttrPeerURISAN: fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/w%06d", ns, i), extproc.AttrPeerSubject: fmt.Sprintf("CN=w%06d", i)}, nil)
	}
	observe := func(i int) {
		h.svc.metrics.Observe(extproc.Event{Profile: "API", Method: "GET", Outcome: extproc.OutcomeSigned, Rule: fmt.Sprintf("rule-%d", i), Caller: fmt.Sprintf("key:k%d", i)})
	}
	for i := range 2 {
		if _, err := h.exchange(caller(i)); err != nil {
			t.Fatal(err)
		}
	}
	observe(-1)
	baseSeries, baseSize := series()
	var wg sync.WaitGroup
	var failures atomic.Int64
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				if _, err := h.exchange(caller(i)); err != nil {
					failures.Add(1)
				}
			}
		})
	}
	for i := 2; i < metricNamesViaGRPC; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	for i := range 5000 {
		observe(i)
	}
	if f := failures.Load(); f != 0 {
		t.Fatalf("%d exchanges failed", f)
	}
	gotSeries, gotSize := series()
	if gotSeries != baseSeries {
		t.Errorf("%d series after %d distinct callers, %d before", gotSeries, metricNamesViaGRPC+5000, baseSeries)
	}
	if gotSize > baseSize+1024 {
		t.Errorf("/metrics grew from %d to %d bytes", baseSize, gotSize)
	}
}

// docs/shared-gateway.md's example policy parses, and its `policy check`
// example prints what the doc shows.
func TestSharedGatewayDocExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "shared-gateway.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := func(after, fence string) string {
		_, rest, ok := strings.Cut(string(doc), after)
		if !ok {
			t.Fatalf("no %q in the doc", after)
		}
		_, rest, _ = strings.Cut(rest, fence+"\n")
		text, _, _ := strings.Cut(rest, "```")
		return text
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(block("## The policy file", "```yaml tested")), 0o600); err != nil {
		t.Fatal(err)
	}
	session := block("## Checking a policy", "```sh tested")
	var cmdline []string
	lines := strings.Split(session, "\n")
	for len(lines) > 0 {
		l := strings.TrimPrefix(lines[0], "$ ocisigner ")
		lines = lines[1:]
		more := strings.HasSuffix(l, "\\")
		cmdline = append(cmdline, strings.Fields(strings.TrimSuffix(l, "\\"))...)
		if !more {
			break
		}
	}
	want := strings.Join(lines, "\n")
	t.Chdir(dir)
	code, out, errOut := runCmd(t, nil, cmdline...)
	if code != exitOK || out != want {
		t.Fatalf("%v: exit %d\n%s%s\nwant:\n%s", cmdline, code, out, errOut, want)
	}
	// The chart example's values: its policy parses, its keys file too.
	var values struct {
		Gateway struct{ Policy, Keys string }
	}
	if err := yaml.Unmarshal([]byte(block("## Kubernetes", "```yaml tested")), &values); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Parse([]byte(values.Gateway.Policy), "values"); err != nil {
		t.Error(err)
	}
	if ks, err := policy.ParseKeys([]byte(values.Gateway.Keys), "values"); err != nil || len(ks.Names()) != 1 {
		t.Errorf("keys: %v", err)
	}
}
