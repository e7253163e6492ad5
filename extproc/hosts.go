package extproc

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
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

// Exact returns the hosts the patterns name exactly (no wildcard), without
// their ports.
func (p *HostPolicy) Exact() []string {
	var out []string
	for _, pat := range p.patterns {
		if !pat.wildcard {
			out = append(out, pat.host)
		}
	}
	return out
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

// authorize is the one host refusal of the service: a request is signed, or
// re-addressed, only for a host the policy allows. The refusal says what the
// client can do about it, and names --allow-host only for a host that could
// be an OCI endpoint under another name (a private endpoint, a test server):
// never for a public host that is not OCI's, whose operator would then hand
// it signatures.
func (s *Server) authorize(a signer.Authority) *refusal {
	if s.hosts.Allowed(a) {
		return nil
	}
	return hostNotAllowed(a)
}

func hostNotAllowed(a signer.Authority) *refusal {
	host := capEcho(a.String())
	msg := fmt.Sprintf("ocisigner signs only for OCI API hosts (names under %s and the other OCI realm domains); %q is not one",
		"oraclecloud.com", host)
	switch kind := hostKind(a); kind {
	case hostModelAPI:
		msg += ". To reach OCI Generative AI with an OpenAI SDK, set its base URL to http://<this gateway>/genai/openai/v1"
	case hostLocal:
		msg += ". To address OCI through this gateway, send /<OCI host or service alias>/<path> to it, e.g. /objectstorage/n/"
	case hostPrivate:
		msg += fmt.Sprintf(". If it is an OCI endpoint under another name (a private endpoint, a test server), the gateway's operator can allow it with --allow-host %s", host)
	}
	return refuse(http.StatusForbidden, CodeHostNotAllowed, msg)
}

type hostClass int

const (
	hostPublic   hostClass = iota // anything else: no advice to sign for it
	hostModelAPI                  // another provider's model API: the genai alias is meant
	hostLocal                     // this machine: the gateway itself, most likely
	hostPrivate                   // a private network name or address
)

// modelAPIs are the hosts OpenAI-compatible SDKs and tools point at by default.
var modelAPIs = []string{"api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com", "api.mistral.ai",
	"api.cohere.com", "api.cohere.ai", "api.groq.com", "openrouter.ai", "api.together.xyz", "api.deepseek.com", "api.x.ai"}

// privateSuffixes are the domains no public host is under (RFC 6761, 6762,
// 8375 and the names networks use for themselves).
var privateSuffixes = []string{".internal", ".local", ".lan", ".corp", ".home.arpa", ".test", ".example", ".intranet", ".private"}

func hostKind(a signer.Authority) hostClass {
	h := a.Host
	if a.IP {
		ip, err := netip.ParseAddr(strings.Trim(h, "[]"))
		switch {
		case err != nil:
			return hostPublic
		case ip.IsLoopback():
			return hostLocal
		case ip.IsPrivate():
			return hostPrivate
		}
		return hostPublic
	}
	switch {
	case h == "localhost" || strings.HasSuffix(h, ".localhost"):
		return hostLocal
	case slices.Contains(modelAPIs, h) || strings.HasSuffix(h, ".openai.azure.com"):
		return hostModelAPI
	case !strings.Contains(h, "."):
		return hostPrivate
	}
	for _, sfx := range privateSuffixes {
		if strings.HasSuffix(h, sfx) {
			return hostPrivate
		}
	}
	return hostPublic
}
