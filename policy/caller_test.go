package policy

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestNewJWTFlattensClaims(t *testing.T) {
	var payload map[string]any
	err := json.Unmarshal([]byte(`{
		"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:a:b", "exp": 1700000000,
		"aud": ["x", "y"], "admin": false, "nothing": null,
		"kubernetes.io": {"namespace": "a", "serviceaccount": {"name": "b", "uid": "u"}},
		"deep": {"a": {"b": {"c": {"d": "too deep"}}}}, "mixed": ["s", 1, {"o": 1}]}`), &payload)
	if err != nil {
		t.Fatal(err)
	}
	j, err := NewJWT(payload)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"exp": {"1700000000"}, "aud": {"x", "y"}, "admin": {"false"},
		"kubernetes.io.namespace": {"a"}, "kubernetes.io.serviceaccount.name": {"b"}, "kubernetes.io.serviceaccount.uid": {"u"},
		"mixed": {"s", "1"},
	}
	if !reflect.DeepEqual(j.Claims, want) || j.Issuer != "https://kubernetes.default.svc" || j.Subject != "system:serviceaccount:a:b" {
		t.Fatalf("got %+v", j)
	}
}

func TestNewJWTRefusesWhatItCannotHoldWhole(t *testing.T) {
	many := map[string]any{"iss": "i", "sub": "s"}
	for i := range MaxClaims + 1 {
		many["c"+strings.Repeat("x", i)] = "v"
	}
	arr := make([]any, MaxClaimValues+1)
	for i := range arr {
		arr[i] = "g"
	}
	tests := []struct {
		name    string
		payload map[string]any
	}{
		{"no iss", map[string]any{"sub": "s"}},
		{"sub not a string", map[string]any{"iss": "i", "sub": 5.0}},
		{"too many claims", many},
		{"too many values", map[string]any{"iss": "i", "sub": "s", "groups": arr}},
		{"a value too long", map[string]any{"iss": "i", "sub": "s", "x": strings.Repeat("v", MaxIdentityLen+1)}},
		{"a control character", map[string]any{"iss": "i", "sub": "s\r\nx"}},
		{"not UTF-8", map[string]any{"iss": "i", "sub": "\xff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewJWT(tt.payload); !errors.Is(err, ErrInvalidCaller) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestNewPeer(t *testing.T) {
	p, err := NewPeer([]string{""}, nil, "")
	if p != nil || err != nil {
		t.Fatalf("an empty certificate identity: %v %v", p, err)
	}
	p, err = NewPeer([]string{"spiffe://td/a", ""}, []string{"a.example"}, "CN=a")
	if err != nil || len(p.URIs) != 1 || len(p.DNSNames) != 1 {
		t.Fatalf("%+v %v", p, err)
	}
	if _, err := NewPeer(make17("spiffe://td/x"), nil, ""); !errors.Is(err, ErrInvalidCaller) {
		t.Fatalf("%d SANs: %v", MaxSANs+1, err)
	}
	if _, err := NewPeer(nil, []string{strings.Repeat("a", MaxIdentityLen+1)}, ""); !errors.Is(err, ErrInvalidCaller) {
		t.Fatalf("a long SAN: %v", err)
	}
}

func make17(s string) []string {
	out := make([]string, MaxSANs+1)
	for i := range out {
		out[i] = s + strings.Repeat("x", i)
	}
	return out
}

func TestLabel(t *testing.T) {
	tests := []struct {
		name   string
		caller *Caller
		want   string
	}{
		{"nobody", nil, "none"},
		{"a SPIFFE ID", spiffe("spiffe://td/ns/a"), "spiffe://td/ns/a"},
		{"every identity", &Caller{Peer: &Peer{URIs: []string{"https://x/y"}, DNSNames: []string{"a.example"}, Subject: "CN=a, O=b"},
			JWT: &JWT{Issuer: "https://i", Subject: "s", Claims: map[string][]string{"secret-ish": {"v"}}}, Key: "k1"},
			"uri:https://x/y dns:a.example subject:CN=a%2C%20O=b jwt:iss=https://i,sub=s key:k1"},
		{"a non-ASCII subject", &Caller{JWT: &JWT{Issuer: "i", Subject: "é"}}, "jwt:iss=i,sub=%C3%A9"},
		{"a token pasted as a subject", &Caller{JWT: &JWT{Issuer: "i", Subject: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}}, "jwt:iss=i,sub=[redacted token]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.caller.Label(); got != tt.want {
				t.Fatalf("got %q; want %q", got, tt.want)
			}
		})
	}
	huge := &Caller{Peer: &Peer{URIs: make17("spiffe://td/" + strings.Repeat("p", 900))[:MaxSANs]}}
	if l := huge.Label(); len(l) > maxLabel+32 {
		t.Fatalf("a label of %d bytes", len(l))
	}
}

func TestParseCaller(t *testing.T) {
	tests := []struct {
		desc string
		want *Caller
	}{
		{"none", &Caller{}},
		{"spiffe://td/ns/a", spiffe("spiffe://td/ns/a")},
		{"key:chat-1", &Caller{Key: "chat-1"}},
		{"dns:a.example  uri:https://x/%20y", &Caller{Peer: &Peer{URIs: []string{"https://x/ y"}, DNSNames: []string{"a.example"}}}},
		{"jwt:iss=https://i,sub=repo:o/r:ref:refs/heads/main,groups=a,groups=b%2Cc,kubernetes.io.namespace=n",
			&Caller{JWT: &JWT{Issuer: "https://i", Subject: "repo:o/r:ref:refs/heads/main", Claims: map[string][]string{"groups": {"a", "b,c"}, "kubernetes.io.namespace": {"n"}}}}},
		{"spiffe://td/a key:k subject:CN=x", &Caller{Peer: &Peer{URIs: []string{"spiffe://td/a"}, Subject: "CN=x"}, Key: "k"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := ParseCaller(tt.desc)
			if err != nil {
				t.Fatal(err)
			}
			if got.JWT != nil && len(got.JWT.Claims) == 0 {
				got.JWT.Claims = nil
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v; want %+v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "  ", "none key:a", "bob", "key:a key:b", "jwt:iss=i", "jwt:sub=s", "jwt:iss=i,sub=s,iss=j",
		"jwt:iss=i,sub=s,=v", "jwt:iss=i,sub=s,x", "key:%zz", "key:a%", "key:bad/name", "subject:a subject:b",
		"jwt:iss=i,sub=s jwt:iss=i,sub=s", strings.Repeat("a", maxDescription+1), "dns:a%0Ab"} {
		if c, err := ParseCaller(bad); !errors.Is(err, ErrInvalidCaller) {
			t.Errorf("%.40q: got %+v, %v", bad, c, err)
		}
	}
}

// A label is a description: what the log says can be pasted into
// ocisigner policy check --caller to ask about the same caller.
func TestLabelParsesBack(t *testing.T) {
	for _, c := range []*Caller{
		spiffe("spiffe://td/ns/a b%c,d"),
		{Peer: &Peer{URIs: []string{"https://x/é"}, DNSNames: []string{"a.example"}, Subject: "CN=a, O=b"}, JWT: &JWT{Issuer: "https://i", Subject: "a:b/c=d"}, Key: "k_1.x"},
	} {
		back, err := ParseCaller(c.Label())
		if err != nil {
			t.Fatalf("%q: %v", c.Label(), err)
		}
		if back.JWT != nil {
			back.JWT.Claims = nil
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("%q parsed as %+v; want %+v", c.Label(), back, c)
		}
	}
}
