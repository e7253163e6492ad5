package extproctest

import (
	"sync/atomic"
	"testing"

	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Checker decisions with Envoy's default rules (mutation_rules.cc).
func TestCheckerDefaults(t *testing.T) {
	def, _ := newChecker(nil, false)
	strict, _ := newChecker(nil, true)
	tests := []struct {
		name  string
		op    checkOp
		key   string
		value string
		want  checkResult
	}{
		{"ordinary header may be set", opSet, "authorization", "Signature x", checkOK},
		{"ordinary header may be removed", opRemove, "x-oci-route", "", checkOK},
		{":path may be set", opSet, ":path", "/new", checkOK},
		{"host may not be set", opSet, "host", "evil", checkIgnore},
		{":authority may not be set", opSet, ":authority", "evil", checkIgnore},
		{":method may not be set", opSet, ":method", "POST", checkIgnore},
		{":scheme may not be set", opSet, ":scheme", "https", checkIgnore},
		{"x-envoy-* may not be set", opSet, "x-envoy-foo", "1", checkIgnore},
		{"pseudo-headers may not be removed", opRemove, ":path", "", checkIgnore},
		{"host may not be removed", opRemove, "host", "", checkIgnore},
		{"pseudo-headers may not be appended", opAppend, ":path", "/x", checkIgnore},
		{"invalid :status", opSet, ":status", "99", checkIgnore},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := def.check(tt.op, tt.key, tt.value); got != tt.want {
				t.Errorf("default rules: got %v, want %v", got, tt.want)
			}
			want := tt.want
			if want == checkIgnore {
				want = checkFail
			}
			if got := strict.check(tt.op, tt.key, tt.value); got != want {
				t.Errorf("disallow_is_error: got %v, want %v", got, want)
			}
		})
	}
}

// mutation_rules fields widen or narrow the defaults, expressions first.
func TestCheckerRules(t *testing.T) {
	rules := &mutationrulesv3.HeaderMutationRules{
		AllowAllRouting:    wrapperspb.Bool(true),
		AllowEnvoy:         wrapperspb.Bool(true),
		DisallowExpression: &matcherv3.RegexMatcher{Regex: "x-secret-.*"},
	}
	c, err := newChecker(rules, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.check(opSet, "host", "ok.example") != checkOK || c.check(opSet, "x-envoy-x", "1") != checkOK {
		t.Error("allow_all_routing/allow_envoy not honoured")
	}
	if c.check(opSet, "x-secret-key", "v") != checkIgnore {
		t.Error("disallow_expression not honoured")
	}
	if c.check(opSet, "host", "bad/host") != checkIgnore {
		t.Error("invalid authority accepted")
	}
}

// allow_expression is checked before the routing-header rule, so ":authority" alone opens
// :authority and nothing else (Checker::isAllowed): host, :method, :scheme and x-envoy-*
// stay closed. Removing stays forbidden and the value must still be a valid authority.
func TestAllowExpressionOpensOnlyAuthority(t *testing.T) {
	c, err := newChecker(&mutationrulesv3.HeaderMutationRules{
		AllowExpression: &matcherv3.RegexMatcher{Regex: ":authority"},
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		op          checkOp
		name, value string
		want        checkResult
	}{
		{opSet, ":authority", "genai.example", checkOK},
		{opSet, "host", "genai.example", checkFail},
		{opSet, ":method", "POST", checkFail},
		{opSet, ":scheme", "https", checkFail},
		{opSet, "x-envoy-original-path", "/x", checkFail},
		{opRemove, ":authority", "", checkFail},
		{opSet, ":authority", "genai.example/x", checkFail},
		{opSet, ":path", "/x", checkOK},
	}
	for _, tt := range tests {
		if got := c.check(tt.op, tt.name, tt.value); got != tt.want {
			t.Errorf("%v %s=%q: got %v, want %v", tt.op, tt.name, tt.value, got, tt.want)
		}
	}
}

// applyHeaderMutations: invalid names or values and both value fields set are errors even
// without disallow_is_error; value without raw_value sets an empty header; set replaces the
// first occurrence, append adds.
func TestApplyHeaderMutations(t *testing.T) {
	opt := func(key, value, rawValue string, appendIt bool) *corev3.HeaderValueOption {
		o := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value, RawValue: []byte(rawValue)}}
		if appendIt {
			//lint:ignore SA1019 the field ext_proc reads (see mutation.go).
			o.Append = wrapperspb.Bool(true)
		}
		return o
	}
	tests := []struct {
		name    string
		m       *extprocv3.HeaderMutation
		wantErr bool
		want    []headerKV
	}{
		{
			name: "set overwrites the first occurrence",
			m:    &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{opt("x-a", "", "new", false)}},
			want: []headerKV{{":path", "/"}, {"x-a", "new"}, {"x-a", "2"}},
		},
		{
			name: "append adds an entry",
			m:    &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{opt("x-a", "", "3", true)}},
			want: []headerKV{{":path", "/"}, {"x-a", "1"}, {"x-a", "2"}, {"x-a", "3"}},
		},
		{
			name: "value without raw_value gives an empty header",
			m:    &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{opt("x-b", "ignored", "", false)}},
			want: []headerKV{{":path", "/"}, {"x-a", "1"}, {"x-a", "2"}, {"x-b", ""}},
		},
		{
			name:    "both value and raw_value is an error",
			m:       &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{opt("x-b", "v", "r", false)}},
			wantErr: true,
		},
		{
			name:    "invalid value is an error",
			m:       &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{opt("x-b", "", "a\r\nb", false)}},
			wantErr: true,
		},
		{
			name:    "invalid name is an error",
			m:       &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{opt("x b", "", "v", false)}},
			wantErr: true,
		},
		{
			name: "uppercase names are lowered",
			m:    &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{opt("X-C", "", "v", false)}},
			want: []headerKV{{":path", "/"}, {"x-a", "1"}, {"x-a", "2"}, {"x-c", "v"}},
		},
		{
			name: "remove takes every occurrence",
			m:    &extprocv3.HeaderMutation{RemoveHeaders: []string{"X-A"}},
			want: []headerKV{{":path", "/"}},
		},
	}
	def, _ := newChecker(nil, false)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &headerList{kv: []headerKV{{":path", "/"}, {"x-a", "1"}, {"x-a", "2"}}}
			var rejected atomic.Int64
			err := applyHeaderMutations(tt.m, h, false, def, false, &rejected)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if len(h.kv) != len(tt.want) {
				t.Fatalf("headers %v, want %v", h.kv, tt.want)
			}
			for i := range tt.want {
				if h.kv[i] != tt.want[i] {
					t.Errorf("headers %v, want %v", h.kv, tt.want)
					break
				}
			}
		})
	}
}

// Inline headers are coalesced with a comma on add, others keep separate entries.
func TestHeaderListAddCoalescesInlineHeaders(t *testing.T) {
	h := &headerList{}
	h.add("user-agent", "a")
	h.add("user-agent", "b")
	h.add("x-other", "a")
	h.add("x-other", "b")
	h.insert(":method", "GET")
	want := []headerKV{{":method", "GET"}, {"user-agent", "a,b"}, {"x-other", "a"}, {"x-other", "b"}}
	if len(h.kv) != len(want) {
		t.Fatalf("got %v", h.kv)
	}
	for i := range want {
		if h.kv[i] != want[i] {
			t.Fatalf("got %v, want %v", h.kv, want)
		}
	}
}
