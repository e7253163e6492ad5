package extproc

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/ocisigner/ocisigner/internal/text"
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
// Such a request goes through two ext_proc filters (envoy.yaml). The first,
// in the address stage (address.go), only re-addresses it: it removes the
// segment and sets :authority and :path, and Envoy matches the route again.
// The second, the one every proxy-form request goes through, signs it on the
// route it now has, with that route's profile pin: one door for signing.

// gatewayTarget is a gateway-addressed request's first segment, split.
type gatewayTarget struct {
	seg  string // the segment as written
	name string // before any ':'
	port string // after it, when there is one
	rest string // the target after the segment, byte for byte; "/" at least
}

// splitGateway takes a gateway-addressed target apart, knowing nothing of
// aliases or hosts. It refuses what could be read more than one way: an
// empty segment, dot segments, percent-encoding or userinfo in it. A target
// that addresses nothing ("/", "/?...") gives nil and no refusal.
func splitGateway(target string) (*gatewayTarget, *refusal) {
	if !strings.HasPrefix(target, "/") {
		return nil, badGatewayPath("the request target %q does not start with /", capEcho(target))
	}
	if target == "/" || strings.HasPrefix(target, "/?") {
		return nil, nil
	}
	end := strings.IndexAny(target[1:], "/?")
	if end < 0 {
		end = len(target) - 1
	}
	g := &gatewayTarget{seg: target[1 : 1+end], rest: target[1+end:]}
	switch {
	case g.rest == "":
		g.rest = "/"
	case g.rest[0] == '?':
		g.rest = "/" + g.rest
	}
	switch {
	case g.seg == "":
		return nil, badGatewayPath("the first path segment is empty")
	case g.seg == "." || g.seg == "..":
		return nil, badGatewayPath("the first path segment is %q", g.seg)
	case strings.Contains(g.seg, "%"):
		return nil, badGatewayPath("the first path segment %q is percent-encoded; write the host as it is", capEcho(g.seg))
	case strings.Contains(g.seg, "@"):
		return nil, badGatewayPath("the first path segment %q carries user information", capEcho(g.seg))
	}
	g.name, g.port, _ = strings.Cut(g.seg, ":")
	return g, nil
}

func badGatewayPath(format string, args ...any) *refusal {
	return refuse(http.StatusBadRequest, CodeGatewayPath, fmt.Sprintf(format, args...)+
		"; address OCI through the gateway as /<OCI host or service alias>/<path>, for example /objectstorage.us-ashburn-1.oraclecloud.com/n/ or /genai/openai/v1/chat/completions")
}

// resolved is where a gateway target goes.
type resolved struct {
	authority string       // the host (and port) to send to, authorized
	target    string       // the request target to send
	alias     signer.Alias // the alias, when it named one
}

// resolveGateway returns where g goes: an alias of the service, rendered
// with the region of the credentials creds gives (asked only for an alias),
// or an explicit host; either way authorized by the host policy.
func (s *Server) resolveGateway(g *gatewayTarget, creds func() (*signer.Credentials, *refusal)) (*resolved, *refusal) {
	if a, ok := s.aliases[strings.ToLower(g.name)]; ok {
		if g.port != "" {
			return nil, badGatewayPath("the alias %s takes no port (%q)", a.Name, capEcho(g.port))
		}
		c, r := creds()
		if r != nil {
			return nil, r
		}
		host, r := s.aliasHost(a, c)
		if r != nil {
			return nil, r
		}
		return &resolved{authority: host, target: a.Target(g.rest), alias: a}, nil
	}
	a, err := signer.ParseAuthority(g.seg)
	if !strings.ContainsAny(g.seg, ".:[") && (err != nil || !s.hosts.Allowed(a)) {
		// A single word that is no alias: a host only when the operator
		// allowed it by that name (--allow-host myhost).
		return nil, s.notAddressed(g)
	}
	if err != nil {
		return nil, refuse(http.StatusBadRequest, CodeInvalidHost,
			fmt.Sprintf("the first path segment %q is not a host name with an optional port: %v", capEcho(g.seg), err))
	}
	if r := s.authorize(a); r != nil {
		return nil, r
	}
	return &resolved{authority: a.String(), target: g.rest}, nil
}

// aliasHost renders an alias for the region of c, authorized.
func (s *Server) aliasHost(a signer.Alias, c *signer.Credentials) (string, *refusal) {
	if c.Region == "" {
		return "", refuse(http.StatusBadRequest, CodeGatewayPath, fmt.Sprintf(
			"the alias %s is resolved with the profile's region, and profile %s has none; add region=... to the profile, or address the host itself (/%s/...)",
			a.Name, capEcho(c.Profile), a.Template))
	}
	region, err := signer.ParseRegion(c.Region)
	var host string
	if err == nil {
		host, err = a.Host(region)
	}
	if err != nil {
		return "", refuse(http.StatusBadRequest, CodeGatewayPath, err.Error())
	}
	ha, err := signer.ParseAuthority(host)
	if err != nil {
		return "", refuse(http.StatusBadRequest, CodeGatewayPath, fmt.Sprintf("the alias %s resolves to %q: %v", a.Name, host, err))
	}
	if r := s.authorize(ha); r != nil {
		return "", r.within(fmt.Sprintf("the alias %s resolves to %s", a.Name, ha))
	}
	return ha.String(), nil
}

// notAddressed refuses a gateway target whose first segment is neither an
// alias nor a host, saying which was likely meant.
func (s *Server) notAddressed(g *gatewayTarget) *refusal {
	msg := fmt.Sprintf("%q is neither an OCI host nor a service alias of this gateway (%s)", capEcho(g.seg), strings.Join(s.aliasNames(), ", "))
	switch near := s.nearestAlias(g.name); {
	case strings.EqualFold(g.name, "openai"):
		msg += fmt.Sprintf("; did you mean /genai%s? (OCI Generative AI's OpenAI-compatible API is the genai alias's /openai/v1)", capEcho("/"+g.seg+g.rest))
	case strings.EqualFold(g.name, "v1"):
		msg += fmt.Sprintf("; did you mean /genai/openai%s? (OpenAI SDKs take http://<gateway>/genai/openai/v1 as their base URL)", capEcho("/"+g.seg+g.rest))
	case near != "":
		msg += "; did you mean " + near + "?"
	}
	return refuse(http.StatusForbidden, CodeHostNotAllowed, msg+". Address OCI through this gateway as /<OCI host or service alias>/<path>")
}

// nearestAlias is an alias one or two edits from name, or "".
func (s *Server) nearestAlias(name string) string {
	name = strings.ToLower(name)
	for _, n := range s.aliasNames() {
		if d := text.Distance(n, name); d > 0 && d <= 2 && len(name) > 3 {
			return n
		}
	}
	return ""
}

func (s *Server) aliasNames() []string { return s.aliasList }

// isGenAIInference reports a host of OCI Generative AI's inference API,
// whose requests must name a compartment.
func isGenAIInference(host string) bool {
	return strings.HasPrefix(strings.ToLower(host), "inference.generativeai.")
}
