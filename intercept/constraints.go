package intercept

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/ocisigner/ocisigner/signer"
)

// ErrInvalidDomain is wrapped for a domain or host the CA cannot be
// constrained to.
var ErrInvalidDomain = errors.New("invalid interception domain")

// names is what a CA serves: whole domains (a realm domain, an operator's
// *.domain) and single hosts (an operator's exact --allow-host). Both lists
// are sorted, lower-case, and minimal: no host lies under a domain of the
// list, and no domain under another.
type names struct {
	domains []string
	hosts   []string
}

// parseNames reads the operator's patterns as --allow-host takes them:
// "*.domain" is the domain and every name below it; "host" and "host:port"
// are that host alone (a certificate has no port). The OCI realm domains are
// always added. IP literals are refused: the CA excludes every IP address,
// so interception cannot serve one (proxy and gateway forms still can).
func parseNames(patterns []string) (names, error) {
	var n names
	n.domains = append(n.domains, signer.RealmDomains()...)
	for _, raw := range patterns {
		p := strings.ToLower(strings.TrimSpace(raw))
		if p == "" {
			continue
		}
		if d, ok := strings.CutPrefix(p, "*."); ok {
			if !signer.ValidHostName(d) || !strings.Contains(d, ".") {
				return names{}, fmt.Errorf("%w %q: after \"*.\" comes a domain of at least two labels, such as *.corp.example", ErrInvalidDomain, raw)
			}
			n.domains = append(n.domains, d)
			continue
		}
		if strings.Contains(p, "*") {
			return names{}, fmt.Errorf("%w %q: only a leading \"*.\" wildcard is supported", ErrInvalidDomain, raw)
		}
		a, err := signer.ParseAuthority(p)
		if err != nil {
			return names{}, fmt.Errorf("%w %q: %w", ErrInvalidDomain, raw, err)
		}
		if a.IP {
			return names{}, fmt.Errorf("%w %q: an IP address cannot be intercepted (the CA excludes every IP); leave it out of the interception domains", ErrInvalidDomain, raw)
		}
		n.hosts = append(n.hosts, a.Host)
	}
	return n.minimal(), nil
}

// under reports whether name is d or lies below it.
func under(name, d string) bool {
	return name == d || strings.HasSuffix(name, "."+d)
}

func (n names) minimal() names {
	var out names
	slices.Sort(n.domains)
	for _, d := range slices.Compact(n.domains) {
		if !slices.ContainsFunc(n.domains, func(o string) bool { return o != d && under(d, o) }) {
			out.domains = append(out.domains, d)
		}
	}
	slices.Sort(n.hosts)
	for _, h := range slices.Compact(n.hosts) {
		if !slices.ContainsFunc(out.domains, func(d string) bool { return under(h, d) }) {
			out.hosts = append(out.hosts, h)
		}
	}
	return out
}

// serves reports whether a leaf for host may be issued.
func (n names) serves(host string) bool {
	return slices.Contains(n.hosts, host) || slices.ContainsFunc(n.domains, func(d string) bool { return under(host, d) })
}

// constraints is the name-constraints extension of a CA serving n. A DNS
// constraint permits a name and everything below it (RFC 5280 4.2.1.10, as
// Go's and OpenSSL's verifiers read it), so a single host is permitted as
// itself and the names below it are excluded with a leading-dot
// constraint, which both verifiers read as "strictly below". That
// exclusion is left out when another name the CA serves lies below the
// host, since exclusions win over permissions: the CA then permits that
// host's subtree, which is wider than asked but never narrower.
func (n names) constraints() (permitted, excluded []string) {
	permitted = append(append(permitted, n.domains...), n.hosts...)
	for _, h := range n.hosts {
		below := func(o string) bool { return o != h && under(o, h) }
		if !slices.ContainsFunc(n.domains, below) && !slices.ContainsFunc(n.hosts, below) {
			excluded = append(excluded, "."+h)
		}
	}
	slices.Sort(permitted)
	return permitted, excluded
}

// allIPs are the IP ranges every CA here excludes: no leaf with an IP SAN
// can verify under it.
func allIPs() []*net.IPNet {
	return []*net.IPNet{
		{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
	}
}

// excludesAllIPs reports whether ranges cover every IPv4 and every IPv6
// address.
func excludesAllIPs(ranges []*net.IPNet) bool {
	var v4, v6 bool
	for _, r := range ranges {
		ones, bits := r.Mask.Size()
		if ones == 0 && bits == 32 {
			v4 = true
		}
		if ones == 0 && bits == 128 {
			v6 = true
		}
	}
	return v4 && v6
}

// dnsPermits reports whether a name verifies under a CA's permitted and
// excluded DNS constraints, as Go's crypto/x509 matches them
// (matchDomainConstraint: a leading dot means strictly below).
func dnsPermits(name string, permitted, excluded []string) bool {
	match := func(c string) bool {
		if d, ok := strings.CutPrefix(strings.ToLower(c), "."); ok {
			return strings.HasSuffix(name, "."+d)
		}
		return under(name, strings.ToLower(c))
	}
	if slices.ContainsFunc(excluded, match) {
		return false
	}
	return len(permitted) == 0 || slices.ContainsFunc(permitted, match)
}
