package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Bounds on a policy file, against a hostile or mistaken one.
const (
	MaxPolicyBytes = 1 << 20
	MaxRules       = 1000
	maxCallers     = 100 // selectors of one rule
	maxProfiles    = 64
	maxServices    = 64
	maxMethods     = 16
	maxClaims      = 16 // claim patterns of one selector
	maxValueLen    = 256
)

// Parse reads a policy file's content; source names it in errors. Every
// error is a *ParseError with the line (and column) of what to fix.
func Parse(data []byte, source string) (*Policy, error) {
	ps := &parser{source: source}
	root, err := ps.document(data)
	if err != nil {
		return nil, err
	}
	p := &Policy{source: source}
	var rulesNode *yaml.Node
	seen, err := ps.mapping(root, []string{"version", "rules"}, func(key string, v *yaml.Node) error {
		switch key {
		case "version":
			s, err := ps.str(v, "version")
			if err == nil && s != "1" {
				err = ps.fail(v, "version %s is not one this ocisigner reads; write version: 1", echo(s))
			}
			return err
		default:
			rulesNode = v
			return nil
		}
	})
	if err != nil {
		return nil, err
	}
	if err := ps.require(root, seen, "version", "rules"); err != nil {
		return nil, err
	}
	if p.rules, err = ps.rules(rulesNode); err != nil {
		return nil, err
	}
	return p, nil
}

// document parses data into its one YAML document's root node.
func (ps *parser) document(data []byte) (*yaml.Node, error) {
	if len(data) > MaxPolicyBytes {
		return nil, ps.fail(nil, "the file is %d bytes long; the limit is %d", len(data), MaxPolicyBytes)
	}
	if !utf8.Valid(data) {
		return nil, ps.fail(nil, "the file is not UTF-8 text")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, ps.fail(nil, "the file is empty; a policy starts with version: 1 and rules:")
		}
		return nil, ps.syntax(err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, ps.syntax(err)
		}
		return nil, ps.fail(&more, "a second YAML document starts here; a policy file holds one")
	}
	if len(doc.Content) != 1 {
		return nil, ps.fail(&doc, "the file holds no YAML document")
	}
	return doc.Content[0], nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntax turns the YAML parser's error into a *ParseError with its line.
func (ps *parser) syntax(err error) error {
	msg := err.Error()
	e := &ParseError{File: ps.source, kind: ErrInvalidPolicy, Msg: "not YAML: " + redact(strings.TrimPrefix(msg, "yaml: "))}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = "not YAML: " + redact(m[2])
	}
	return e
}

// parser walks the YAML node tree itself, rather than decoding into
// structs, so that every error has a line and a column, unknown and
// repeated keys are errors, and anchors, aliases and tags (which could
// make one line mean something written elsewhere) are refused.
type parser struct {
	source   string
	rule     int // 1-based, while in a rule
	ruleName string
}

func (ps *parser) fail(n *yaml.Node, format string, args ...any) *ParseError {
	e := &ParseError{File: ps.source, Rule: ps.rule, RuleName: ps.ruleName, Msg: fmt.Sprintf(format, args...), kind: ErrInvalidPolicy}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// plain refuses YAML features a policy has no use for.
func (ps *parser) plain(n *yaml.Node) error {
	switch {
	case n.Kind == yaml.AliasNode || n.Anchor != "":
		return ps.fail(n, "anchors and aliases (& and *) are not supported in a policy: write each value where it applies (quote a pattern that starts with *)")
	case n.Style&yaml.TaggedStyle != 0:
		return ps.fail(n, "explicit tags (%s) are not supported in a policy", echo(n.Tag))
	}
	return nil
}

// mapping checks that n is a mapping whose keys are all known and each
// given once, calls fn for each in order, and returns the keys it saw.
func (ps *parser) mapping(n *yaml.Node, known []string, fn func(key string, v *yaml.Node) error) (map[string]*yaml.Node, error) {
	if err := ps.plain(n); err != nil {
		return nil, err
	}
	if n.Kind != yaml.MappingNode {
		return nil, ps.fail(n, "expected a mapping with the keys %s", strings.Join(known, ", "))
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if err := ps.plain(k); err != nil {
			return nil, err
		}
		if k.Kind != yaml.ScalarNode {
			return nil, ps.fail(k, "a key must be a plain name")
		}
		if !slices.Contains(known, k.Value) {
			return nil, ps.fail(k, "unknown key %s; the keys here are %s", echo(k.Value), strings.Join(known, ", "))
		}
		if first, ok := seen[k.Value]; ok {
			return nil, ps.fail(k, "%s is given twice (first on line %d)", k.Value, first.Line)
		}
		seen[k.Value] = k
		if err := fn(k.Value, v); err != nil {
			return nil, err
		}
	}
	return seen, nil
}

func (ps *parser) require(n *yaml.Node, seen map[string]*yaml.Node, keys ...string) error {
	for _, k := range keys {
		if _, ok := seen[k]; !ok {
			return ps.fail(n, "%s is missing", k)
		}
	}
	return nil
}

// str reads a scalar as written.
func (ps *parser) str(n *yaml.Node, what string) (string, error) {
	if err := ps.plain(n); err != nil {
		return "", err
	}
	switch {
	case n.Kind != yaml.ScalarNode:
		return "", ps.fail(n, "%s must be a single value", what)
	case n.ShortTag() == "!!null" || n.Value == "":
		return "", ps.fail(n, "%s is empty", what)
	case len(n.Value) > maxValueLen:
		return "", ps.fail(n, "%s is %d bytes long; the limit is %d", what, len(n.Value), maxValueLen)
	case strings.IndexFunc(n.Value, isControl) >= 0:
		return "", ps.fail(n, "%s holds a control character", what)
	}
	return n.Value, nil
}

// list reads a sequence of at most max scalars, refusing repeats.
func (ps *parser) list(n *yaml.Node, what string, max int) ([]string, []*yaml.Node, error) {
	if err := ps.plain(n); err != nil {
		return nil, nil, err
	}
	if n.Kind != yaml.SequenceNode {
		return nil, nil, ps.fail(n, "%s must be a list, such as [a, b]", what)
	}
	if len(n.Content) == 0 {
		return nil, nil, ps.fail(n, "%s is empty", what)
	}
	if len(n.Content) > max {
		return nil, nil, ps.fail(n, "%s has %d entries; the limit is %d", what, len(n.Content), max)
	}
	out := make([]string, 0, len(n.Content))
	for _, e := range n.Content {
		s, err := ps.str(e, "an entry of "+what)
		if err != nil {
			return nil, nil, err
		}
		if i := slices.Index(out, s); i >= 0 {
			return nil, nil, ps.fail(e, "%s lists %s twice (first on line %d)", what, echo(s), n.Content[i].Line)
		}
		out = append(out, s)
	}
	return out, n.Content, nil
}
