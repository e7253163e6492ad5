package policy

import (
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// nameRule says what a rule or key name may be.
const nameRule = "a letter or digit, then up to 63 letters, digits, '.', '_' or '-'"

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// validName: rule names are metric labels and key names are log fields, so
// both are short and plain. A name that looks like a gateway key is one
// pasted in the wrong place, and refused.
func validName(s string) bool { return nameRE.MatchString(s) && !strings.Contains(s, KeyPrefix) }

// validProfile: a profile name that looks like a gateway key is a key
// pasted in the wrong place.
func validProfile(s string) bool { return profileRE.MatchString(s) && !strings.Contains(s, KeyPrefix) }

var (
	profileRE = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,128}$`)
	aliasRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	hostRE    = regexp.MustCompile(`^[a-z0-9*][a-z0-9.*-]*$`)
	methodRE  = regexp.MustCompile(`^[A-Z]{1,16}$`)
	ocidRE    = regexp.MustCompile(`^ocid1\.[A-Za-z0-9._-]{1,250}$`)
	claimRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$`)
	dnsPatRE  = regexp.MustCompile(`^[a-z0-9*][a-z0-9.*-]*$`)
	keyPatRE  = regexp.MustCompile(`^[A-Za-z0-9*][A-Za-z0-9._*-]{0,63}$`)
)

var ruleKeys = []string{"name", "callers", "profiles", "default_profile", "services", "methods", "genai"}

func (ps *parser) rules(n *yaml.Node) ([]*rule, error) {
	if err := ps.plain(n); err != nil {
		return nil, err
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil, nil // rules: with nothing: everyone is refused
	}
	if n.Kind != yaml.SequenceNode {
		return nil, ps.fail(n, "rules must be a list of rules, each starting with - name: ...")
	}
	if len(n.Content) > MaxRules {
		return nil, ps.fail(n, "the policy has %d rules; the limit is %d", len(n.Content), MaxRules)
	}
	names := map[string]int{}
	var out []*rule
	for i, rn := range n.Content {
		ps.rule, ps.ruleName = i+1, ""
		ru, err := ps.oneRule(rn)
		if err != nil {
			return nil, err
		}
		if line, dup := names[ru.name]; dup {
			return nil, ps.fail(rn, "the name %s is taken by the rule on line %d; rule names are unique", ru.name, line)
		}
		names[ru.name] = ru.line
		out = append(out, ru)
	}
	ps.rule, ps.ruleName = 0, ""
	return out, nil
}

func (ps *parser) oneRule(n *yaml.Node) (*rule, error) {
	ru := &rule{line: n.Line}
	// The name first, wherever it is written, so that every other error
	// of the rule can say which rule it is in.
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Value == "name" {
				s, err := ps.str(n.Content[i+1], "name")
				if err != nil {
					return nil, err
				}
				if !validName(s) {
					return nil, ps.fail(n.Content[i+1], "the name %s is not %s", echo(s), nameRule)
				}
				ru.name, ps.ruleName = s, s
			}
		}
	}
	var defNode *yaml.Node
	seen, err := ps.mapping(n, ruleKeys, func(key string, v *yaml.Node) error {
		switch key {
		case "callers":
			return ps.callers(ru, v)
		case "profiles":
			return ps.profiles(ru, v)
		case "default_profile":
			defNode = v
			s, err := ps.str(v, "default_profile")
			ru.defaultProfile = s
			return err
		case "services":
			return ps.services(ru, v)
		case "methods":
			return ps.methods(ru, v)
		case "genai":
			return ps.genai(ru, v)
		}
		return nil // name: read above
	})
	if err != nil {
		return nil, err
	}
	if err := ps.require(n, seen, "name", "callers", "profiles", "services", "methods"); err != nil {
		return nil, err
	}
	switch {
	case defNode != nil && !containsStr(ru.profiles, ru.defaultProfile):
		return nil, ps.fail(defNode, "default_profile %s is not one of the rule's profiles (%s)", echo(ru.defaultProfile), strings.Join(ru.profiles, ", "))
	case defNode == nil && len(ru.profiles) == 1:
		ru.defaultProfile = ru.profiles[0]
	}
	return ru, nil
}

func containsStr(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (ps *parser) profiles(ru *rule, n *yaml.Node) error {
	vals, nodes, err := ps.list(n, "profiles", maxProfiles)
	if err != nil {
		return err
	}
	for i, v := range vals {
		if !validProfile(v) {
			return ps.fail(nodes[i], "profile %s is not a profile name (letters, digits, '.', '_', '@', '-'; patterns are not supported here)", echo(v))
		}
	}
	ru.profiles = vals
	return nil
}

// services: "**" is every service; an entry with a dot is a host pattern;
// one without is a service alias.
func (ps *parser) services(ru *rule, n *yaml.Node) error {
	vals, nodes, err := ps.list(n, "services", maxServices)
	if err != nil {
		return err
	}
	for i, v := range vals {
		v = strings.ToLower(v)
		switch {
		case v == "**":
			ru.anyService = true
		case strings.Contains(v, "."):
			if !hostRE.MatchString(v) {
				return ps.fail(nodes[i], "service %s is not a host pattern (letters, digits, '-', '.', and '*' for one label or '**' for any)", echo(v))
			}
			p, err := compilePattern(v, sepDNS, true)
			if err != nil {
				return ps.fail(nodes[i], "service %s %v", echo(v), err)
			}
			ru.hosts = append(ru.hosts, p)
		case aliasRE.MatchString(v):
			ru.aliases = append(ru.aliases, v)
		default:
			return ps.fail(nodes[i], "service %s is neither a service alias (genai) nor a host pattern (objectstorage.*.oraclecloud.com); write ** for every service", echo(v))
		}
	}
	return nil
}

func (ps *parser) methods(ru *rule, n *yaml.Node) error {
	vals, nodes, err := ps.list(n, "methods", maxMethods)
	if err != nil {
		return err
	}
	for i, v := range vals {
		switch {
		case v == "*" && len(vals) == 1:
			ru.anyMethod = true
		case v == "*":
			return ps.fail(nodes[i], `methods: "*" stands alone: it grants every method`)
		case !methodRE.MatchString(v):
			return ps.fail(nodes[i], "method %s is not an HTTP method in capitals (GET, POST, ...)", echo(v))
		}
	}
	ru.methods = vals
	return nil
}

func (ps *parser) genai(ru *rule, n *yaml.Node) error {
	_, err := ps.mapping(n, []string{"compartment", "project"}, func(key string, v *yaml.Node) error {
		s, err := ps.str(v, "genai "+key)
		if err != nil {
			return err
		}
		if !ocidRE.MatchString(s) {
			return ps.fail(v, "genai %s %s is not an OCID (ocid1.<type>.<realm>..<unique id>)", key, echo(s))
		}
		if key == "compartment" {
			ru.compartment = s
		} else {
			ru.project = s
		}
		return nil
	})
	return err
}
