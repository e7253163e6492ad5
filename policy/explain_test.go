package policy

import (
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	isAlias := func(s string) bool { return s == "genai" || s == "core" }
	tests := []struct {
		method, url, profile string
		want                 Request
	}{
		{"", "http://localhost:10000/genai/openai/v1/chat/completions", "", Request{Method: "GET", Alias: "genai"}},
		{"post", "http://127.0.0.1:10000/GenAI/x", "p", Request{Method: "POST", Alias: "genai", Profile: "p"}},
		{"GET", "http://localhost:10000/objectstorage.us-ashburn-1.oraclecloud.com/n/", "", Request{Method: "GET", Host: "objectstorage.us-ashburn-1.oraclecloud.com"}},
		{"GET", "http://[::1]:10000/iaas.us-ashburn-1.oraclecloud.com:443/x", "", Request{Method: "GET", Host: "iaas.us-ashburn-1.oraclecloud.com:443"}},
		{"GET", "https://objectstorage.us-ashburn-1.oraclecloud.com/n/", "", Request{Method: "GET", Host: "objectstorage.us-ashburn-1.oraclecloud.com"}},
		{"GET", "http://gateway.internal:10000/objectstorage.x.com/n/", "", Request{Method: "GET", Host: "gateway.internal:10000"}},
	}
	for _, tt := range tests {
		got, err := ParseRequest(tt.method, tt.url, tt.profile, isAlias)
		if err != nil || got != tt.want {
			t.Errorf("%s %s: got %+v, %v; want %+v", tt.method, tt.url, got, err, tt.want)
		}
	}
	for _, bad := range [][3]string{{"G T", "http://h/", ""}, {"GET", "ftp://h/", ""}, {"GET", "/path", ""}, {"GET", "http://h/", "a b"}, {"GET", "http://%zz/", ""}} {
		if _, err := ParseRequest(bad[0], bad[1], bad[2], isAlias); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestExplain(t *testing.T) {
	p := mustParse(t, decideYAML)
	genai := Request{Alias: "genai", Method: "POST"}
	tests := []struct {
		name, caller string
		req          Request
		want         []string
	}{
		{"allowed, after rules that do not match", "spiffe://cluster.local/ns/team-a/sa/web", genai, []string{
			"caller:  spiffe://cluster.local/ns/team-a/sa/web",
			`request: POST service alias "genai", profile (none named)`,
			"policy:  policy.yaml",
			"not matching the caller: ci-restricted (line 3), ci (line 13)\n",
			`decided by: rule "team-a" (line 21)`,
			"result:  allowed, signed as profile team-a",
			"Generative AI compartment ocid1.compartment.oc1..teama",
			"Generative AI project ocid1.generativeaiproject.oc1..teama",
		}},
		{"refused by its rule", "key:chat-x", Request{Host: "iaas.us-ashburn-1.oraclecloud.com", Method: "POST", Profile: "chat"}, []string{
			`decided by: rule "chat-keys" (line 34)`,
			`result:  refused, 403 ServiceNotGranted: rule "chat-keys" of the gateway's policy does not grant host "iaas.us-ashburn-1.oraclecloud.com"`,
		}},
		{"no rule", "dns:nobody.example", genai, []string{
			"not matching the caller: ci-restricted (line 3), ci (line 13), team-a (line 21), chat-keys (line 34), builders (line 42), team-a-shadow (line 49)\n",
			"decided by: no rule\n",
			"result:  refused, 403 CallerNotInPolicy",
		}},
		{"nobody", "none", genai, []string{"caller:  none", "result:  refused, 401 CallerNotAuthenticated"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := p.ExplainCaller(tt.caller, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			s := e.String()
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Errorf("%q missing from\n%s", w, s)
				}
			}
		})
	}
	e, _ := None.ExplainCaller("none", genai)
	if s := e.String(); !strings.Contains(s, "policy:  none: allowed as without a policy") {
		t.Errorf("without policy:\n%s", s)
	}
	if _, err := p.ExplainCaller("bob", genai); err == nil {
		t.Error("a bad description explained")
	}
}

func TestExplainListsAtMostTenSkippedRules(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\nrules:\n")
	for i := range 15 {
		b.WriteString("  - {name: r" + string(rune('a'+i)) + ", callers: [key: k" + string(rune('a'+i)) + "], profiles: [p], services: [genai], methods: [GET]}\n")
	}
	e := mustParse(t, b.String()).Explain(&Caller{Key: "zz"}, Request{Alias: "genai", Method: "GET"})
	if len(e.Skipped) != 15 || !strings.Contains(e.String(), "rj (line 12) and 5 more\n") {
		t.Fatalf("%d skipped:\n%s", len(e.Skipped), e)
	}
}
