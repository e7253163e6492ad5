package extproc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ocisigner/ocisigner/signer"
)

// HostPolicy decides which hosts ocisigner signs for. Signing for a host
// hands it a valid credential for the next five minutes, so by default only
// OCI realm domains are signed; operators add others (a test endpoint, a
// dedicated Object Storage endpoint) by pattern.
type HostPolicy struct {
	patterns []hostPattern
}

// hostPattern is one --allow-host: an exact host (and port, if given), or
// with wildcard any name below domain.
type hostPattern struct {
	host, port string
	wildcard   bool
}

// ErrHostPattern is wrapped by NewHostPolicy for a pattern it cannot use.
var ErrHostPattern = errors.New("invalid allow-host pattern")

// NewHostPolicy accepts patterns "host", "host:port" and "*.domain" (any
// name below domain, at any depth). Hosts and domains follow the rule of
// signer.ParseAuthority; an IP literal is allowed only as an exact host,
// never under a wildcard.
func NewHostPolicy(patterns []string) (*HostPolicy, error) {
	p := &HostPolicy{}
	for _, raw := range patterns {
		pat := strings.TrimSpace(raw)
		if pat == "" {
			continue
		}
		if domain, ok := strings.CutPrefix(pat, "*."); ok {
			domain = strings.ToLower(domain)
			if !signer.ValidHostName(domain) || !strings.Contains(domain, ".") {
				return nil, fmt.Errorf("%w %q: after \"*.\" comes a domain of at least two labels, such as *.corp.example", ErrHostPattern, raw)
			}
			p.patterns = append(p.patterns, hostPattern{host: domain, wildcard: true})
			continue
		}
		if strings.Contains(pat, "*") {
			return nil, fmt.Errorf("%w %q: only a leading \"*.\" wildcard is supported", ErrHostPattern, raw)
		}
		a, err := signer.ParseAuthority(pat)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrHostPattern, raw, err)
		}
		p.patterns = append(p.patterns, hostPattern{host: a.Host, port: a.Port})
	}
	return p, nil
}

// Allowed reports whether requests to a (parsed by signer.ParseAuthority)
// may be signed.
func (p *HostPolicy) Allowed(a signer.Authority) bool {
	if !a.IP && signer.IsRealmHost(a.Host) {
		return true
	}
	for _, pat := range p.patterns {
		switch {
		case pat.wildcard:
			if !a.IP && strings.HasSuffix(a.Host, "."+pat.host) {
				return true
			}
		case pat.host == a.Host && (pat.port == "" || pat.port == a.Port):
			return true
		}
	}
	return false
}
