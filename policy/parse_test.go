package policy

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// rule0 is a valid rule to mutate: one line changed at a time.
const rule0 = `version: 1
rules:
  - name: ok
    callers:
      - key: a
    profiles: [p]
    services: [genai]
    methods: [GET]
`

func TestParseErrorsSayWhere(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		line, col int
		rule      int
		ruleName  string
		msg       string
	}{
		{"not YAML", "version: 1\nrules: [\n", 2, 0, 0, "", "not YAML"},
		{"unknown top-level key", "version: 1\nrule: []\n", 2, 1, 0, "", `unknown key "rule"; the keys here are version, rules`},
		{"version missing", "rules: []\n", 1, 1, 0, "", "version is missing"},
		{"another version", "version: 2\nrules: []\n", 1, 10, 0, "", "version \"2\" is not one"},
		{"rules missing", "version: 1\n", 1, 1, 0, "", "rules is missing"},
		{"a key given twice", "version: 1\nversion: 1\nrules: []\n", 2, 1, 0, "", "version is given twice (first on line 1)"},
		{"a second document", rule0 + "---\nversion: 1\n", 9, 1, 0, "", "a second YAML document"},
		{"an unknown rule key", strings.Replace(rule0, "methods:", "method:", 1), 8, 5, 1, "ok", `unknown key "method"`},
		{"a hyphen for an underscore", strings.Replace(rule0, "    methods: [GET]\n", "    methods: [GET]\n    default-profile: p\n", 1), 9, 5, 1, "ok", `unknown key "default-profile"`},
		{"a required rule key missing", strings.Replace(rule0, "    services: [genai]\n", "", 1), 3, 5, 1, "ok", "services is missing"},
		{"the name missing", strings.Replace(rule0, "  - name: ok\n    callers:", "  - callers:", 1), 3, 5, 1, "", "name is missing"},
		{"a bad name", strings.Replace(rule0, "name: ok", "name: -bad", 1), 3, 11, 1, "", `the name "-bad" is not`},
		{"a duplicate rule name", rule0 + strings.SplitN(rule0, "rules:\n", 2)[1], 9, 5, 2, "ok", "taken by the rule on line 3"},
		{"a default outside profiles", strings.Replace(rule0, "profiles: [p]", "profiles: [p, q]\n    default_profile: r", 1), 7, 22, 1, "ok", `default_profile "r" is not one of the rule's profiles (p, q)`},
		{"a profile listed twice", strings.Replace(rule0, "profiles: [p]", "profiles: [p, p]", 1), 6, 19, 1, "ok", `lists "p" twice`},
		{"a profile pattern", strings.Replace(rule0, "profiles: [p]", `profiles: ["p*"]`, 1), 6, 16, 1, "ok", "patterns are not supported"},
		{"an empty list", strings.Replace(rule0, "profiles: [p]", "profiles: []", 1), 6, 15, 1, "ok", "profiles is empty"},
		{"a value for a list", strings.Replace(rule0, "profiles: [p]", "profiles: p", 1), 6, 15, 1, "ok", "profiles must be a list"},
		{"a bad service", strings.Replace(rule0, "services: [genai]", "services: [Gen_AI]", 1), 7, 16, 1, "ok", "neither a service alias"},
		{"a bad host pattern", strings.Replace(rule0, "services: [genai]", `services: ["a.***.com"]`, 1), 7, 16, 1, "ok", `"***"`},
		{"a lower-case method", strings.Replace(rule0, "methods: [GET]", "methods: [get]", 1), 8, 15, 1, "ok", "not an HTTP method in capitals"},
		{"* with other methods", strings.Replace(rule0, "methods: [GET]", `methods: [GET, "*"]`, 1), 8, 20, 1, "ok", "stands alone"},
		{"a genai key unknown", strings.Replace(rule0, "methods: [GET]", "methods: [GET]\n    genai:\n      compartement: ocid1.compartment.oc1..x", 1), 10, 7, 1, "ok", `unknown key "compartement"`},
		{"a compartment that is no OCID", strings.Replace(rule0, "methods: [GET]", "methods: [GET]\n    genai:\n      compartment: my-compartment", 1), 10, 20, 1, "ok", "is not an OCID"},
		{"a caller entry of two kinds", strings.Replace(rule0, "      - key: a\n", "      - key: a\n        dns: a.example.com\n", 1), 5, 9, 1, "ok", "exactly one of"},
		{"a caller of an unknown kind", strings.Replace(rule0, "- key: a", "- spiffeid: spiffe://x/y", 1), 5, 9, 1, "ok", `unknown key "spiffeid"`},
		{"no callers", strings.Replace(rule0, "      - key: a\n", "", 1), 4, 13, 1, "ok", "callers must be a non-empty list"},
		{"a SPIFFE ID without the scheme", strings.Replace(rule0, "key: a", "spiffe: cluster.local/ns/a", 1), 5, 17, 1, "ok", "does not start with spiffe://"},
		{"a wildcard trust domain", strings.Replace(rule0, "key: a", "spiffe: spiffe://*/ns/a", 1), 5, 17, 1, "ok", "trust domain must be written out"},
		{"a jwt without issuer", strings.Replace(rule0, "key: a", "jwt: {subject: x}", 1), 5, 14, 1, "ok", "issuer is missing"},
		{"a jwt issuer pattern", strings.Replace(rule0, "key: a", "jwt: {issuer: 'https://*', subject: x}", 1), 5, 23, 1, "ok", "an issuer is written out"},
		{"a jwt with issuer alone", strings.Replace(rule0, "key: a", "jwt: {issuer: https://i}", 1), 5, 14, 1, "ok", "names a subject or claims"},
		{"a jwt claim named sub", strings.Replace(rule0, "key: a", "jwt: {issuer: https://i, claims: {sub: x}}", 1), 5, 48, 1, "ok", "iss and sub are written as issuer and subject"},
		{"a claim given twice", strings.Replace(rule0, "key: a", "jwt: {issuer: https://i, claims: {a: x, a: y}}", 1), 5, 49, 1, "ok", "a is given twice"},
		{"a key pasted as a name", strings.Replace(rule0, "key: a", "key: "+KeyPrefix+"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1), 5, 14, 1, "ok", "never the key itself"},
		{"an anchor", strings.Replace(rule0, "profiles: [p]", "profiles: &ps [p]", 1), 6, 15, 1, "ok", "anchors and aliases"},
		{"an alias", strings.Replace(rule0, "services: [genai]", "services: *x", 1), 0, 0, 0, "", "not YAML"},
		{"a tag", strings.Replace(rule0, "profiles: [p]", "profiles: !!seq [p]", 1), 6, 15, 1, "ok", "explicit tags"},
		{"a null value", strings.Replace(rule0, "profiles: [p]", "profiles: [p]\n    default_profile:", 1), 7, 21, 1, "ok", "default_profile is empty"},
		{"a control character", strings.Replace(rule0, "profiles: [p]", `profiles: ["p\u0007"]`, 1), 6, 16, 1, "ok", "control character"},
		{"a mapping for a value", strings.Replace(rule0, "key: a", "key: {a: b}", 1), 5, 14, 1, "ok", "must be a single value"},
		{"an empty file", "", 0, 0, 0, "", "the file is empty"},
		{"not a mapping", "- a\n", 1, 1, 0, "", "expected a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), "p.yaml")
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("got %v; want a *ParseError", err)
			}
			if !strings.Contains(pe.Msg, tt.msg) {
				t.Errorf("message %q does not say %q", pe.Msg, tt.msg)
			}
			if tt.line != 0 && (pe.Line != tt.line || pe.Column != tt.col) {
				t.Errorf("at %d:%d; want %d:%d (%v)", pe.Line, pe.Column, tt.line, tt.col, err)
			}
			if pe.Rule != tt.rule || pe.RuleName != tt.ruleName {
				t.Errorf("in rule %d %q; want %d %q", pe.Rule, pe.RuleName, tt.rule, tt.ruleName)
			}
			want := "p.yaml:"
			if pe.Line > 0 {
				want += fmt.Sprint(pe.Line)
			}
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("%q does not start with the file and line", err)
			}
		})
	}
}

func TestParseBounds(t *testing.T) {
	many := func(n int) string {
		var b strings.Builder
		b.WriteString("version: 1\nrules:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - {name: r%d, callers: [key: a], profiles: [p], services: [genai], methods: [GET]}\n", i)
		}
		return b.String()
	}
	if _, err := Parse([]byte(many(MaxRules)), "p"); err != nil {
		t.Fatalf("MaxRules rules refused: %v", err)
	}
	long := strings.Repeat("a", MaxPatternLen-len("spiffe://td/"))
	tests := []struct {
		name, src, msg string
	}{
		{"too many rules", many(MaxRules + 1), "the limit is 1000"},
		{"too large a file", rule0 + "#" + strings.Repeat("x", MaxPolicyBytes), "bytes long; the limit"},
		{"too long a pattern", strings.Replace(rule0, "key: a", "spiffe: spiffe://td/"+long+"x", 1), "the limit is 256"},
		{"too many services", strings.Replace(rule0, "services: [genai]", "services: ["+strings.Repeat("a.b, ", maxServices)+"c.d]", 1), "the limit is 64"},
		{"too many claims", strings.Replace(rule0, "key: a", "jwt: {issuer: i, claims: {"+claimList(maxClaims+1)+"}}", 1), "the limit is 16"},
		{"not UTF-8", "version: 1\nrules: []\n# \xff\n", "not UTF-8"},
		{"nested too deep", "version: 1\nrules: " + strings.Repeat("[", 20000), "not YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), "p")
			if !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v; want %q", err, tt.msg)
			}
		})
	}
	if _, err := Parse([]byte(strings.Replace(rule0, "key: a", "spiffe: spiffe://td/"+long, 1)), "p"); err != nil {
		t.Fatalf("a pattern of MaxPatternLen refused: %v", err)
	}
}

func claimList(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf("c%d: v", i))
	}
	return strings.Join(parts, ", ")
}

// The sample in the package doc is what operators copy: it must parse and
// mean what it says.
func TestDocSamplesParse(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	policyYAML := docBlock(t, string(doc), "//\tversion: 1")
	p, err := Parse([]byte(policyYAML), "doc.go")
	if err != nil {
		t.Fatalf("the doc's policy: %v\n%s", err, policyYAML)
	}
	d := p.Decide(spiffe("spiffe://cluster.local/ns/team-a/sa/web"), Request{Alias: "genai", Method: "POST"})
	if !d.Allowed || d.Profile != "team-a" || d.Compartment == "" || d.Project == "" {
		t.Errorf("the doc's team-a: %+v", d)
	}
	d = p.Decide(&Caller{Peer: &Peer{DNSNames: []string{"x.build.example.com"}}}, Request{Host: "iaas.us-ashburn-1.oraclecloud.com", Method: "GET"})
	if !d.Allowed || d.Profile != "builds" {
		t.Errorf("the doc's dns-clients: %+v", d)
	}
	keys := docBlock(t, string(doc), "//\t# ocisigner gateway keys")
	ks, err := ParseKeys([]byte(keys), "doc.go")
	if err != nil || len(ks.Names()) != 2 {
		t.Fatalf("the doc's keys file: %v %v", err, ks.Names())
	}
}

// docBlock returns the indented block of doc comment that starts with
// the line start.
func docBlock(t *testing.T, doc, start string) string {
	i := strings.Index(doc, start)
	if i < 0 {
		t.Fatalf("no %q in doc.go", start)
	}
	var b strings.Builder
	for _, l := range strings.Split(doc[i:], "\n") {
		if !strings.HasPrefix(l, "//\t") {
			break
		}
		b.WriteString(strings.TrimPrefix(l, "//\t") + "\n")
	}
	return b.String()
}
