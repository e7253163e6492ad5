package extproc

import (
	"fmt"
	"net"
	"strings"

	"github.com/ocisigner/ocisigner/signer"
)

// HostPolicy decides which hosts ocisigner signs for. Signing for a host
// hands it a valid credential for the next five minutes, so by default only
// OCI realm domains are signed; operators add others (a test endpoint, a
// dedicated Object Storage endpoint) by pattern.
type HostPolicy struct {
	patterns []string
}

// NewHostPolicy accepts patterns "host", "host:port", "*.domain" (any
// subdomain, at any depth) and "*" (everything: for tests only).
func NewHostPolicy(patterns []string) (*HostPolicy, error) {
	p := &HostPolicy{}
	for _, raw := range patterns {
		pat := strings.ToLower(strings.TrimSpace(raw))
		if pat == "" {
			continue
		}
		if strings.Contains(pat[1:], "*") || strings.HasPrefix(pat, "*") && pat != "*" && !strings.HasPrefix(pat, "*.") {
			return nil, fmt.Errorf("allow-host pattern %q: only a leading \"*.\" wildcard is supported", raw)
		}
		p.patterns = append(p.patterns, pat)
	}
	return p, nil
}

// Allowed reports whether requests to authority may be signed.
func (p *HostPolicy) Allowed(authority string) bool {
	if authority == "" {
		return false
	}
	if signer.IsRealmHost(authority) {
		return true
	}
	a := strings.ToLower(authority)
	host := a
	if h, _, err := net.SplitHostPort(a); err == nil {
		host = h
	}
	for _, pat := range p.patterns {
		switch {
		case pat == "*":
			return true
		case strings.HasPrefix(pat, "*."):
			if strings.HasSuffix(host, pat[1:]) && len(host) > len(pat)-1 {
				return true
			}
		case pat == a || pat == host:
			return true
		}
	}
	return false
}
