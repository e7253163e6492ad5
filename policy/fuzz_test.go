package policy

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParse: any input is a policy or a *ParseError whose line is in the
// file; a policy decides without panicking, and names only its own rules.
func FuzzParse(f *testing.F) {
	for _, s := range []string{rule0, decideYAML, bigPolicy("a"), "version: 1\nrules: []\n", "version: 1\nrules: [{name: a, callers: [{jwt: {issuer: i, claims: {a.b: '*'}}}], profiles: [p], services: ['**'], methods: ['*']}]\n"} {
		f.Add([]byte(s))
	}
	callers := []*Caller{nil, {Key: "a"}, spiffe("spiffe://cluster.local/ns/team-a/sa/x"),
		{JWT: &JWT{Issuer: "i", Subject: "s", Claims: map[string][]string{"a.b": {"x"}}}}, {Peer: &Peer{DNSNames: []string{"a.b.c"}}}}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "f")
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("not a *ParseError: %v", err)
			}
			if lines := yamlLines(data); pe.Line < 0 || pe.Line > lines+1 {
				t.Fatalf("line %d of a %d-line file", pe.Line, lines)
			}
			return
		}
		for _, c := range callers {
			for _, r := range []Request{{Alias: "genai", Method: "GET"}, {Host: "a.b.oraclecloud.com:443", Method: "POST", Profile: "p"}} {
				d := p.Decide(c, r)
				if d.Allowed == (d.Status != 0) || (d.Rule != "" && !validName(d.Rule)) {
					t.Fatalf("%+v", d)
				}
				if d.Allowed && d.Profile == "" {
					t.Fatalf("allowed without a profile: %+v", d)
				}
			}
		}
	})
}

// yamlLines counts lines as YAML does (and an editor showing the file):
// a line ends at "\r\n", "\n" or a lone "\r".
func yamlLines(data []byte) int {
	return bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n")) + 1
}

// FuzzParseCaller: a description is a valid caller or an ErrInvalidCaller;
// a caller's label, unless cut short or redacted, describes it again.
func FuzzParseCaller(f *testing.F) {
	for _, s := range []string{"none", "spiffe://td/ns/a", "key:k", "dns:a.b uri:https://x/%20", "jwt:iss=i,sub=s,g=a,g=b", "subject:CN=a%2C", "key:a key:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, desc string) {
		c, err := ParseCaller(desc)
		if err != nil {
			if !errors.Is(err, ErrInvalidCaller) {
				t.Fatalf("not an ErrInvalidCaller: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed into an invalid caller: %v", err)
		}
		l := c.Label()
		if strings.Contains(l, "…[") || strings.Contains(l, "[redacted") {
			return
		}
		back, err := ParseCaller(l)
		if err != nil {
			t.Fatalf("the label %q of %q does not parse: %v", l, desc, err)
		}
		if back.Label() != l {
			t.Fatalf("%q → %q → %q", desc, l, back.Label())
		}
	})
}

// FuzzParseKeys: a keys file parses or fails with a line, and never
// panics; a parsed file looks up without panicking.
func FuzzParseKeys(f *testing.F) {
	f.Add([]byte("# c\na sha256:" + strings.Repeat("a", 64) + "\n"))
	f.Add([]byte("a b c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := ParseKeys(data, "k")
		if err != nil {
			if !errors.Is(err, ErrInvalidKeys) {
				t.Fatalf("%v", err)
			}
			return
		}
		k, _ := GenerateKey()
		if _, err := ks.Lookup(k); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("a new key found: %v", err)
		}
	})
}
