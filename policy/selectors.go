package policy

import (
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

var selectorKinds = []string{"spiffe", "dns", "jwt", "key"}

// callers reads a rule's callers: a list of selectors, each of one kind.
func (ps *parser) callers(ru *rule, n *yaml.Node) error {
	if err := ps.plain(n); err != nil {
		return err
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return ps.fail(n, "callers must be a non-empty list, each entry one of spiffe:, dns:, jwt: or key:")
	}
	if len(n.Content) > maxCallers {
		return ps.fail(n, "callers has %d entries; the limit is %d", len(n.Content), maxCallers)
	}
	for _, sn := range n.Content {
		var sel selector
		seen, err := ps.mapping(sn, selectorKinds, func(key string, v *yaml.Node) error {
			return ps.selector(&sel, key, v)
		})
		if err != nil {
			return err
		}
		if len(seen) != 1 {
			return ps.fail(sn, "a caller entry names exactly one of spiffe:, dns:, jwt: or key: (write another entry for another)")
		}
		ru.callers = append(ru.callers, sel)
	}
	return nil
}

func (ps *parser) selector(sel *selector, kind string, v *yaml.Node) error {
	if kind == "jwt" {
		j, err := ps.jwtSelector(v)
		sel.jwt = j
		return err
	}
	s, err := ps.str(v, kind)
	if err != nil {
		return err
	}
	var p pattern
	switch kind {
	case "spiffe":
		p, err = ps.spiffePattern(v, s)
	case "dns":
		s = strings.ToLower(s)
		if !dnsPatRE.MatchString(s) {
			return ps.fail(v, "dns %s is not a DNS name pattern (letters, digits, '-', '.', '*')", echo(s))
		}
		p, err = ps.compile(v, "dns", s, sepDNS, true)
	case "key":
		if !keyPatRE.MatchString(s) || strings.HasPrefix(s, KeyPrefix) {
			return ps.fail(v, "key %s is not a key name pattern (%s, and '*'); it names a key of the keys file, never the key itself", echo(s), nameRule)
		}
		p, err = ps.compile(v, "key", s, sepNone, false)
	}
	if err != nil {
		return err
	}
	switch kind {
	case "spiffe":
		sel.spiffe = &p
	case "dns":
		sel.dns = &p
	case "key":
		sel.key = &p
	}
	return nil
}

func (ps *parser) compile(n *yaml.Node, what, s, seps string, fold bool) (pattern, error) {
	p, err := compilePattern(s, seps, fold)
	if err != nil {
		return p, ps.fail(n, "%s pattern %s %v", what, echo(s), err)
	}
	return p, nil
}

// spiffePattern: the trust domain is written out, never a pattern: a
// wildcard there would trust every federated domain's workloads alike.
func (ps *parser) spiffePattern(n *yaml.Node, s string) (pattern, error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return pattern{}, ps.fail(n, "spiffe %s does not start with spiffe://", echo(s))
	}
	td, _, _ := strings.Cut(rest, "/")
	if td == "" || strings.Contains(td, "*") || td != strings.ToLower(td) {
		return pattern{}, ps.fail(n, "spiffe %s: the trust domain must be written out in lower case, without '*'", echo(s))
	}
	return ps.compile(n, "spiffe", s, sepPath, false)
}

func (ps *parser) jwtSelector(n *yaml.Node) (*jwtSelector, error) {
	j := &jwtSelector{}
	seen, err := ps.mapping(n, []string{"issuer", "subject", "claims"}, func(key string, v *yaml.Node) error {
		switch key {
		case "issuer":
			s, err := ps.str(v, "issuer")
			if err == nil && strings.Contains(s, "*") {
				err = ps.fail(v, "issuer %s: an issuer is written out, without '*'", echo(s))
			}
			j.issuer = s
			return err
		case "subject":
			s, err := ps.str(v, "subject")
			if err != nil {
				return err
			}
			p, err := ps.compile(v, "subject", s, sepClaim, false)
			j.subject = &p
			return err
		}
		return ps.claimPatterns(j, v)
	})
	if err != nil {
		return nil, err
	}
	if err := ps.require(n, seen, "issuer"); err != nil {
		return nil, err
	}
	if j.subject == nil && len(j.claims) == 0 {
		return nil, ps.fail(n, `a jwt caller names a subject or claims (write subject: "**" for every subject of the issuer)`)
	}
	return j, nil
}

func (ps *parser) claimPatterns(j *jwtSelector, n *yaml.Node) error {
	if n.Kind == yaml.MappingNode && len(n.Content)/2 > maxClaims {
		return ps.fail(n, "claims has %d entries; the limit is %d", len(n.Content)/2, maxClaims)
	}
	var names []string
	if n.Kind == yaml.MappingNode {
		for i := 0; i < len(n.Content); i += 2 {
			names = append(names, n.Content[i].Value)
		}
	}
	_, err := ps.mapping(n, names, func(name string, v *yaml.Node) error {
		if !claimRE.MatchString(name) || name == "iss" || name == "sub" {
			return ps.fail(v, "claim %s is not a claim name (iss and sub are written as issuer and subject; nested claims as a.b)", echo(name))
		}
		s, err := ps.str(v, "claim "+name)
		if err != nil {
			return err
		}
		p, err := ps.compile(v, "claim "+name, s, sepClaim, false)
		j.claims = append(j.claims, claimPattern{name: name, pattern: p})
		return err
	})
	sort.SliceStable(j.claims, func(a, b int) bool { return j.claims[a].name < j.claims[b].name })
	return err
}
