package deploy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// docMarker starts the comment line that documents a value: the file's style
// (and helm-docs'), "# -- what it is and why you would change it".
const docMarker = "# --"

// undocumentedValues returns the path of every key of a values file that has
// no doc comment, in document order ("gateway.service.type", a key in a list
// "a.b[0].c"), each with its line.
//
// The rule: every key of every block mapping, at any depth (inside lists
// too), needs a doc comment of its own, which is either
//
//   - in the comment lines directly above the key: the contiguous comment
//     lines with no blank line between them and the key (yaml.v3's head
//     comment, from its last blank line on), of which one starts with
//     "# --"; or
//   - on the key's line: a trailing comment starting with "# --", after the
//     key (a block below it) or after its value (a scalar or flow value).
//
// A parent's comment never documents its children, and a comment without the
// marker does not count: a commented-out example (app.env's, gateway.policy's)
// sits directly above the next key and would otherwise pass for its doc.
// The one exception is a key inside a flow mapping ({cpu: 50m, memory: 64Mi}):
// the flow mapping is one value written on its parent's line, which has no
// room for a comment per key, so the parent key's doc covers it.
func undocumentedValues(text string) ([]string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a single YAML document holding a mapping")
	}
	var missing []string
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			if n.Style&yaml.FlowStyle != 0 {
				return // covered by the parent key's doc (the exception above)
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if !hasDocComment(k, v) {
					missing = append(missing, fmt.Sprintf("%s (line %d)", p, k.Line))
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, item := range n.Content {
				walk(item, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(doc.Content[0], "")
	return missing, nil
}

// hasDocComment reports whether key k (with value v) is documented by the
// rule of undocumentedValues.
func hasDocComment(k, v *yaml.Node) bool {
	// yaml.v3 keeps a blank line inside a head comment as an empty line (a
	// blank line between the comment and the key as a trailing one): only
	// the lines after the last blank line are directly above the key.
	head := strings.Split(k.HeadComment, "\n")
	for i := len(head) - 1; i >= 0 && strings.TrimSpace(head[i]) != ""; i-- {
		if isDocLine(head[i]) {
			return true
		}
	}
	if isDocLine(k.LineComment) {
		return true
	}
	// A scalar or flow value on the key's line holds the line's comment.
	return v.Line == k.Line && isDocLine(v.LineComment)
}

func isDocLine(line string) bool {
	line = strings.TrimSpace(line)
	return line == docMarker || strings.HasPrefix(line, docMarker+" ")
}

// TestHelmValuesDocumented requires a doc comment on every value of the
// chart's values.yaml (the rule of undocumentedValues): an operator reads
// there what each value does and why they would change it.
func TestHelmValuesDocumented(t *testing.T) {
	t.Parallel()
	missing, err := undocumentedValues(readChartFiles(t)["values.yaml"])
	if err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	for _, p := range missing {
		t.Errorf("values.yaml: %s has no %q comment directly above it or on its line", p, docMarker)
	}
}

// TestHelmValuesDocCheckCatches proves the check has teeth: on small values
// files it names exactly the keys the rule leaves undocumented.
func TestHelmValuesDocCheckCatches(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, text string
		want       []string
	}{
		{"every form of doc", `# -- Head.
a: 1
b: 2 # -- On the value's line.
c: # -- On the key's line, a block below.
  # -- Head, nested.
  d: x
# -- A flow mapping: its keys are covered.
e: {cpu: 50m, memory: 64Mi}
f: {cpu: "1"} # -- On a flow value's line.
# -- The marker alone.
# Continued without it.
g: []
`, nil},
		{"a value without a comment", "# -- Documented.\na: 1\nb: 2\n", []string{"b (line 3)"}},
		{"a comment without the marker", "# Just a note.\na: 1\nb: 2 # a note\n", []string{"a (line 2)", "b (line 3)"}},
		{"a blank line between comment and key", "# -- Documented.\na: 1\n\n# -- Detached.\n\nb: 2\n", []string{"b (line 6)"}},
		{"the doc above a blank line, a note below", "# -- Detached.\n\n# Note.\na: 1\n", []string{"a (line 4)"}},
		{"a commented-out example above the key", "# -- A list.\na: []\n#  - x\n#  - y\nb: 1\n", []string{"b (line 5)"}},
		{"a parent's doc does not cover its block", "# -- The parent.\na:\n  b: 1\n  # -- Documented.\n  c: 2\n", []string{"a.b (line 3)"}},
		{"an undocumented parent of documented keys", "a:\n  # -- Documented.\n  b: 1\n", []string{"a (line 1)"}},
		{"an undocumented key holding a flow mapping", "r:\n  # -- Documented.\n  requests: {cpu: 1m}\n  limits: {memory: 1Mi}\n", []string{"r (line 1)", "r.limits (line 4)"}},
		{"keys in a list", "# -- A list.\na:\n  - # -- Documented.\n    n: 1\n    m: 2\n", []string{"a[0].m (line 5)"}},
	}
	for _, c := range cases {
		got, err := undocumentedValues(c.text)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: undocumented %q, want %q", c.name, got, c.want)
		}
	}
	for _, bad := range []string{"a: [", "- a\n- b\n", ""} {
		if _, err := undocumentedValues(bad); err == nil {
			t.Errorf("%q: no error, want one (not a values file)", bad)
		}
	}
}
