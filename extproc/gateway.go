package extproc

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/ocisigner/ocisigner/signer"
)

// A request whose :authority is the gateway itself rather than an OCI API
// host is "gateway-addressed": its first path segment names where it goes,
// so that a client configured with a base URL reaches OCI by URL alone:
//
//	http://localhost:10000/objectstorage.us-ashburn-1.oraclecloud.com/n/   an explicit OCI host
//	http://localhost:10000/genai/openai/v1/chat/completions                an alias, resolved with
//	                                                                        the profile's region
//
// ocisigner removes the segment, sets :authority and :path by header
// mutation and signs exactly the host and target that go upstream. The
// host passes the same host policy as a proxy-form request's.

// gatewayTarget is a gateway-addressed request's first segment, parsed.
type gatewayTarget struct {
	host  string       // an explicit host[:port], parsed; "" for an alias
	alias signer.Alias // the alias, when host is ""
	rest  string       // the target after the segment, byte for byte; "/" at least
}

// parseGateway reads the first segment of a gateway-addressed target. It
// refuses what could be read more than one way: an empty segment, dot
// segments, percent-encoding or userinfo in it, a port on an alias. A
// segment that is neither an OCI host nor a known alias means the request
// was not meant for OCI at all: 403, as for any host that is not OCI's.
func (s *Server) parseGateway(authority, target string) (*gatewayTarget, *refusal) {
	bad := func(format string, args ...any) *refusal {
		return refuse(http.StatusBadRequest, CodeGatewayPath, fmt.Sprintf(format, args...)+
			"; address OCI through the gateway as /<OCI host or service alias>/<path>, for example /objectstorage.us-ashburn-1.oraclecloud.com/n/ or /genai/openai/v1/chat/completions")
	}
	if !strings.HasPrefix(target, "/") {
		return nil, bad("the request target %q does not start with /", capEcho(target))
	}
	if target == "/" || strings.HasPrefix(target, "/?") {
		// Nothing that looks like a gateway address: a request for a host
		// that is not OCI's, refused as such.
		return nil, s.notOCI(authority, "")
	}
	end := strings.IndexAny(target[1:], "/?")
	if end < 0 {
		end = len(target) - 1
	}
	seg, rest := target[1:1+end], target[1+end:]
	switch {
	case rest == "":
		rest = "/"
	case rest[0] == '?':
		rest = "/" + rest
	}
	switch {
	case seg == "":
		return nil, bad("the first path segment is empty")
	case seg == "." || seg == "..":
		return nil, bad("the first path segment is %q", seg)
	case strings.Contains(seg, "%"):
		return nil, bad("the first path segment %q is percent-encoded; write the host as it is", capEcho(seg))
	case strings.Contains(seg, "@"):
		return nil, bad("the first path segment %q carries user information", capEcho(seg))
	}
	name, port, hasPort := strings.Cut(seg, ":")
	if a, ok := s.aliases[strings.ToLower(name)]; ok {
		if hasPort {
			return nil, bad("the alias %s takes no port (%q)", a.Name, capEcho(port))
		}
		return &gatewayTarget{alias: a, rest: rest}, nil
	}
	if !strings.ContainsAny(seg, ".:[") {
		return nil, s.notOCI(authority, seg)
	}
	a, err := signer.ParseAuthority(seg)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, CodeInvalidHost,
			fmt.Sprintf("the first path segment %q is not a host name with an optional port: %v", capEcho(seg), err))
	}
	if !s.hosts.Allowed(a) {
		return nil, hostNotAllowed(a.String(), "")
	}
	return &gatewayTarget{host: a.String(), rest: rest}, nil
}

// notOCI is the refusal of a request for a host that is not OCI's and that
// does not address OCI through the gateway either.
func (s *Server) notOCI(authority, seg string) *refusal {
	more := ""
	if seg != "" {
		more = fmt.Sprintf(". %q is neither an OCI host nor a service alias (%s)", capEcho(seg), strings.Join(s.aliasNames(), ", "))
	}
	return hostNotAllowed(authority, more+". To address OCI through this gateway, use /<OCI host or service alias>/<path>")
}

// hostNotAllowed is the refusal of a host outside the realms and the
// operator's --allow-host patterns; more is said after the fix.
func hostNotAllowed(host, more string) *refusal {
	host = capEcho(host)
	return refuse(http.StatusForbidden, CodeHostNotAllowed,
		fmt.Sprintf("ocisigner signs only for OCI API hosts; %q is not one. If it should be, start ocisigner with --allow-host %s%s", host, host, more))
}

// resolve returns the host a gateway target names for credentials of a
// region, checked against the host policy.
func (s *Server) resolve(g *gatewayTarget, creds *signer.Credentials) (host string, r *refusal) {
	if g.host != "" {
		return g.host, nil
	}
	if creds.Region == "" {
		return "", refuse(http.StatusBadRequest, CodeGatewayPath, fmt.Sprintf(
			"the alias %s is resolved with the profile's region, and profile %s has none; add region=... to the profile, or address the host itself (/%s/...)",
			g.alias.Name, capEcho(creds.Profile), g.alias.Template))
	}
	region, err := signer.ParseRegion(creds.Region)
	if err == nil {
		host, err = g.alias.Host(region)
	}
	if err != nil {
		return "", refuse(http.StatusBadRequest, CodeGatewayPath, err.Error())
	}
	a, err := signer.ParseAuthority(host)
	if err != nil || !s.hosts.Allowed(a) {
		return "", refuse(http.StatusForbidden, CodeHostNotAllowed,
			fmt.Sprintf("the alias %s resolves to %q, which ocisigner does not sign for; start ocisigner with --allow-host %s if it should", g.alias.Name, host, host))
	}
	return a.String(), nil
}

func (s *Server) aliasNames() []string {
	names := make([]string, 0, len(s.aliases))
	for n := range s.aliases {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// isGenAIInference reports a host of OCI Generative AI's inference API,
// whose requests must name a compartment.
func isGenAIInference(host string) bool {
	return strings.HasPrefix(host, "inference.generativeai.")
}
