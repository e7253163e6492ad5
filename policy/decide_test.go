package policy

import (
	"net/http"
	"strings"
	"testing"
)

const decideYAML = `version: 1
rules:
  - name: ci-restricted
    callers:
      - jwt:
          issuer: https://token.actions.githubusercontent.com
          claims:
            repository: octo-org/*
            ref: refs/heads/release
    profiles: [ci-release]
    services: [objectstorage.us-ashburn-1.oraclecloud.com]
    methods: [PUT]
  - name: ci
    callers:
      - jwt:
          issuer: https://token.actions.githubusercontent.com
          subject: repo:octo-org/**
    profiles: [ci, ci-release]
    services: ["objectstorage.*.oraclecloud.com"]
    methods: [GET, PUT]
  - name: team-a
    callers:
      - spiffe: spiffe://cluster.local/ns/team-a/sa/*
      - jwt:
          issuer: https://kubernetes.default.svc
          subject: system:serviceaccount:team-a:*
    profiles: [team-a, team-a-ro]
    default_profile: team-a
    services: [genai, "inference.generativeai.*.oci.oraclecloud.com"]
    methods: ["*"]
    genai:
      compartment: ocid1.compartment.oc1..teama
      project: ocid1.generativeaiproject.oc1..teama
  - name: chat-keys
    callers:
      - key: chat-*
    profiles: [chat]
    services: [genai]
    methods: [POST]
    genai:
      compartment: ocid1.compartment.oc1..chat
  - name: builders
    callers:
      - dns: "*.build.example.com"
      - spiffe: spiffe://cluster.local/ns/builds/**
    profiles: [b1, b2]
    services: ["**"]
    methods: [GET]
  - name: team-a-shadow
    callers:
      - spiffe: spiffe://cluster.local/ns/team-a/sa/*
    profiles: [admin]
    services: ["**"]
    methods: ["*"]
`

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func spiffe(id string) *Caller { return &Caller{Peer: &Peer{URIs: []string{id}}} }

func gh(sub string, claims map[string][]string) *Caller {
	return &Caller{JWT: &JWT{Issuer: "https://token.actions.githubusercontent.com", Subject: sub, Claims: claims}}
}

func TestDecide(t *testing.T) {
	p := mustParse(t, decideYAML)
	genai := Request{Alias: "genai", Method: "POST"}
	genaiHost := "inference.generativeai.us-chicago-1.oci.oraclecloud.com"
	release := map[string][]string{"repository": {"octo-org/app"}, "ref": {"refs/heads/release"}}
	tests := []struct {
		name    string
		caller  *Caller
		req     Request
		status  int // 0: allowed
		code    string
		rule    string
		profile string
		comp    string
		proj    string
	}{
		{"no caller is 401", nil, genai, 401, CodeUnauthenticated, "", "", "", ""},
		{"an empty caller is 401", &Caller{}, genai, 401, CodeUnauthenticated, "", "", "", ""},
		{"an identity beyond the bounds is 401", spiffe("spiffe://cluster.local/ns/team-a/sa/x\n"), genai, 401, CodeInvalidCaller, "", "", "", ""},
		{"an identity no rule names is 403", spiffe("spiffe://cluster.local/ns/team-b/sa/x"), genai, 403, CodeNoRule, "", "", "", ""},
		{"default profile, compartment and project of the rule", spiffe("spiffe://cluster.local/ns/team-a/sa/builder"), genai, 0, "", "team-a", "team-a", "ocid1.compartment.oc1..teama", "ocid1.generativeaiproject.oc1..teama"},
		{"a named profile the rule grants", spiffe("spiffe://cluster.local/ns/team-a/sa/builder"), Request{Alias: "genai", Method: "GET", Profile: "team-a-ro"}, 0, "", "team-a", "team-a-ro", "ocid1.compartment.oc1..teama", "ocid1.generativeaiproject.oc1..teama"},
		{"a named profile the rule does not grant", spiffe("spiffe://cluster.local/ns/team-a/sa/builder"), Request{Alias: "genai", Method: "GET", Profile: "admin"}, 403, CodeProfileNotGranted, "team-a", "", "", ""},
		{"first match wins: a later rule granting admin is not tried", spiffe("spiffe://cluster.local/ns/team-a/sa/builder"), Request{Host: "iaas.us-ashburn-1.oraclecloud.com", Method: "GET", Profile: "admin"}, 403, CodeServiceNotGranted, "team-a", "", "", ""},
		{"* stays within one SPIFFE path segment", spiffe("spiffe://cluster.local/ns/team-a/sa/x/y"), genai, 403, CodeNoRule, "", "", "", ""},
		{"* matches no empty segment", spiffe("spiffe://cluster.local/ns/team-a/sa/"), genai, 403, CodeNoRule, "", "", "", ""},
		{"** crosses segments", spiffe("spiffe://cluster.local/ns/builds/sa/a/b"), Request{Host: "iaas.us-ashburn-1.oraclecloud.com", Method: "GET", Profile: "b2"}, 0, "", "builders", "b2", "", ""},
		{"a host pattern grants the host", spiffe("spiffe://cluster.local/ns/team-a/sa/builder"), Request{Host: genaiHost, Method: "POST"}, 0, "", "team-a", "team-a", "ocid1.compartment.oc1..teama", "ocid1.generativeaiproject.oc1..teama"},
		{"a host with a port, in capitals, with a trailing dot", spiffe("spiffe://cluster.local/ns/team-a/sa/builder"), Request{Host: "Inference.GenerativeAI.us-chicago-1.oci.oraclecloud.com.:443", Method: "POST"}, 0, "", "team-a", "team-a", "ocid1.compartment.oc1..teama", "ocid1.generativeaiproject.oc1..teama"},
		{"a host pattern's * is one label", spiffe("spiffe://cluster.local/ns/team-a/sa/builder"), Request{Host: "inference.generativeai.a.b.oci.oraclecloud.com", Method: "POST"}, 403, CodeServiceNotGranted, "team-a", "", "", ""},
		{"an alias entry does not grant a host", &Caller{Key: "chat-1"}, Request{Host: genaiHost, Method: "POST"}, 403, CodeServiceNotGranted, "chat-keys", "", "", ""},
		{"an alias, in capitals", &Caller{Key: "chat-1"}, Request{Alias: "GenAI", Method: "POST"}, 0, "", "chat-keys", "chat", "ocid1.compartment.oc1..chat", ""},
		{"a method the rule does not grant", &Caller{Key: "chat-1"}, Request{Alias: "genai", Method: "GET"}, 403, CodeMethodNotGranted, "chat-keys", "", "", ""},
		{"methods are case-sensitive", &Caller{Key: "chat-1"}, Request{Alias: "genai", Method: "post"}, 403, CodeMethodNotGranted, "chat-keys", "", "", ""},
		{"a key name the pattern does not match", &Caller{Key: "other"}, genai, 403, CodeNoRule, "", "", "", ""},
		{"a rule with one profile has it as default", &Caller{Key: "chat-1"}, genai, 0, "", "chat-keys", "chat", "ocid1.compartment.oc1..chat", ""},
		{"no profile named and no default", &Caller{Peer: &Peer{DNSNames: []string{"a.build.example.com"}}}, Request{Host: "iaas.us-ashburn-1.oraclecloud.com", Method: "GET"}, 403, CodeProfileNotGranted, "builders", "", "", ""},
		{"DNS SANs match case-insensitively", &Caller{Peer: &Peer{DNSNames: []string{"A.Build.Example.com"}}}, Request{Host: "iaas.us-ashburn-1.oraclecloud.com", Method: "GET", Profile: "b1"}, 0, "", "builders", "b1", "", ""},
		{"a DNS * is one label", &Caller{Peer: &Peer{DNSNames: []string{"a.b.build.example.com"}}}, genai, 403, CodeNoRule, "", "", "", ""},
		{"** grants every service", &Caller{Peer: &Peer{DNSNames: []string{"x.build.example.com"}}}, Request{Host: "anything.example", Method: "GET", Profile: "b1"}, 0, "", "builders", "b1", "", ""},
		{"JWT claims all match: the earlier, narrower rule", gh("repo:octo-org/app:ref:refs/heads/release", release), Request{Host: "objectstorage.us-ashburn-1.oraclecloud.com", Method: "PUT"}, 0, "", "ci-restricted", "ci-release", "", ""},
		{"the narrower rule decides, and refuses what the broader grants", gh("repo:octo-org/app:ref:refs/heads/release", release), Request{Host: "objectstorage.us-ashburn-1.oraclecloud.com", Method: "GET"}, 403, CodeMethodNotGranted, "ci-restricted", "", "", ""},
		{"one claim not matching: the next rule", gh("repo:octo-org/app:ref:refs/heads/main", map[string][]string{"repository": {"octo-org/app"}, "ref": {"refs/heads/main"}}), Request{Host: "objectstorage.eu-frankfurt-1.oraclecloud.com", Method: "GET", Profile: "ci"}, 0, "", "ci", "ci", "", ""},
		{"a claim missing does not match", gh("repo:octo-org/app:x", map[string][]string{"ref": {"refs/heads/release"}}), Request{Host: "objectstorage.eu-frankfurt-1.oraclecloud.com", Method: "GET", Profile: "ci"}, 0, "", "ci", "ci", "", ""},
		{"an array claim matches by any element", gh("repo:octo-org/app:x", map[string][]string{"repository": {"other/x", "octo-org/app"}, "ref": {"refs/heads/release"}}), Request{Host: "objectstorage.us-ashburn-1.oraclecloud.com", Method: "PUT"}, 0, "", "ci-restricted", "ci-release", "", ""},
		{"a claim's * stays within a segment", gh("repo:octo-org/app:x", map[string][]string{"repository": {"octo-org/app/x"}, "ref": {"refs/heads/release"}}), Request{Host: "objectstorage.us-ashburn-1.oraclecloud.com", Method: "PUT"}, 403, CodeProfileNotGranted, "ci", "", "", ""},
		{"the issuer is compared exactly", &Caller{JWT: &JWT{Issuer: "https://token.actions.githubusercontent.com/", Subject: "repo:octo-org/app"}}, genai, 403, CodeNoRule, "", "", "", ""},
		{"a JWT subject pattern", &Caller{JWT: &JWT{Issuer: "https://kubernetes.default.svc", Subject: "system:serviceaccount:team-a:web"}}, genai, 0, "", "team-a", "team-a", "ocid1.compartment.oc1..teama", "ocid1.generativeaiproject.oc1..teama"},
		{"a subject's * stops at ':'", &Caller{JWT: &JWT{Issuer: "https://kubernetes.default.svc", Subject: "system:serviceaccount:team-a:web:x"}}, genai, 403, CodeNoRule, "", "", "", ""},
		{"several identities: any one matching picks the rule", &Caller{Peer: &Peer{URIs: []string{"spiffe://other/x"}}, Key: "chat-9"}, genai, 0, "", "chat-keys", "chat", "ocid1.compartment.oc1..chat", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.caller, tt.req)
			if !d.Enforced {
				t.Fatal("a parsed policy's decision is not enforced")
			}
			if tt.status == 0 {
				if !d.Allowed || d.Status != 0 || d.Code != "" {
					t.Fatalf("refused: %d %s %s", d.Status, d.Code, d.Message)
				}
			} else if d.Allowed || d.Status != tt.status || d.Code != tt.code {
				t.Fatalf("got allowed=%v %d %s (%s); want %d %s", d.Allowed, d.Status, d.Code, d.Message, tt.status, tt.code)
			}
			if d.Rule != tt.rule || d.Profile != tt.profile || d.Compartment != tt.comp || d.Project != tt.proj {
				t.Fatalf("got rule %q profile %q compartment %q project %q; want %q %q %q %q", d.Rule, d.Profile, d.Compartment, d.Project, tt.rule, tt.profile, tt.comp, tt.proj)
			}
			if tt.rule != "" && !d.Allowed && !strings.Contains(d.Message, `rule "`+tt.rule+`"`) {
				t.Errorf("the message does not name the rule to change: %s", d.Message)
			}
			if d.Rule != "" && d.Line == 0 {
				t.Error("no line for the deciding rule")
			}
		})
	}
}

func TestDecideWithoutPolicyKeepsTheRequest(t *testing.T) {
	d := None.Decide(nil, Request{Profile: "any", Host: "x.example", Method: "DELETE"})
	if !d.Allowed || d.Enforced || d.Profile != "any" || d.Status != 0 || d.MetricLabel() != LabelNoPolicy {
		t.Fatalf("%+v", d)
	}
	var w *Watcher[Policy]
	if w.Current() != nil {
		t.Fatal("a nil watcher has a policy")
	}
}

func TestEmptyRulesRefuseEveryone(t *testing.T) {
	for _, src := range []string{"version: 1\nrules: []\n", "version: 1\nrules:\n"} {
		p := mustParse(t, src)
		d := p.Decide(&Caller{Key: "k"}, Request{Alias: "genai", Method: "GET"})
		if d.Allowed || d.Status != http.StatusForbidden || d.Code != CodeNoRule {
			t.Fatalf("%q: %+v", src, d)
		}
	}
}

// Metric labels must stay a closed set whatever callers come: the rules'
// names and three fixed values, even for a thousand distinct identities.
func TestMetricLabelsAreBounded(t *testing.T) {
	p := mustParse(t, decideYAML)
	labels := map[string]bool{}
	ids := []string{"spiffe://cluster.local/ns/team-a/sa/", "spiffe://cluster.local/ns/builds/", "spiffe://evil/", ""}
	for i := range 1000 {
		for _, id := range ids {
			var c *Caller
			if id != "" {
				c = spiffe(id + strings.Repeat("x", i%50+1) + string(rune('a'+i%26)))
			}
			labels[p.Decide(c, Request{Alias: "genai", Method: "GET"}).MetricLabel()] = true
		}
		labels[p.Decide(&Caller{Key: "chat-" + strings.Repeat("z", i%60+1)}, Request{Alias: "genai", Method: "POST"}).MetricLabel()] = true
	}
	labels[None.Decide(nil, Request{}).MetricLabel()] = true
	allowed := map[string]bool{LabelNoPolicy: true, LabelUnauthenticated: true, LabelNoRule: true}
	for _, ru := range p.rules {
		allowed[ru.name] = true
	}
	for l := range labels {
		if !allowed[l] {
			t.Errorf("label %q is neither a rule name nor a fixed label", l)
		}
	}
	for _, want := range []string{LabelNoPolicy, LabelUnauthenticated, LabelNoRule, "team-a", "builders", "chat-keys"} {
		if !labels[want] {
			t.Errorf("label %q never seen: the test does not exercise it", want)
		}
	}
}

func TestCodesAreClosed(t *testing.T) {
	p := mustParse(t, decideYAML)
	seen := map[string]bool{}
	for _, c := range []*Caller{nil, spiffe("bad\x00"), spiffe("spiffe://x/y"), {Key: "chat-1"}} {
		for _, r := range []Request{{Alias: "genai", Method: "GET"}, {Alias: "genai", Method: "POST", Profile: "nope"}, {Host: "x.example", Method: "POST"}} {
			d := p.Decide(c, r)
			if !d.Allowed {
				seen[d.Code] = true
			}
		}
	}
	for code := range seen {
		if !containsStr(Codes, code) {
			t.Errorf("code %q is not in Codes", code)
		}
	}
	if len(seen) < 5 {
		t.Errorf("only %d codes exercised: %v", len(seen), seen)
	}
}

// Decide runs on every request: read, not gated.
func BenchmarkDecide(b *testing.B) {
	p := mustParse(b, bigPolicy("a")) // the caller's rule after 20 others
	c := &Caller{Key: "k"}
	r := Request{Alias: "genai", Method: "GET"}
	for range b.N {
		if d := p.Decide(c, r); !d.Allowed {
			b.Fatal(d.Message)
		}
	}
}
