package policy

import (
	"fmt"
	"github.com/ocisigner/ocisigner/internal/text"
	"net"
	"net/http"
	"slices"
	"strings"
)

// Policy is a parsed policy file: rules tried in order. A *Policy is never
// changed once parsed, so any number of goroutines may decide with it, and
// a Watcher swaps whole policies.
//
// A nil *Policy is "no policy": Decide allows every request as it is, so
// that a gateway started without --policy keeps its behaviour. A policy
// with no rules refuses everyone.
type Policy struct {
	source string // the file, for messages
	rules  []*rule
}

// None is the policy of a gateway started without one.
var None *Policy

// rule is one entry of the file's rules.
type rule struct {
	name           string
	line           int
	callers        []selector
	profiles       []string
	defaultProfile string
	anyService     bool
	aliases        []string
	hosts          []pattern
	anyMethod      bool
	methods        []string
	compartment    string
	project        string
}

// selector is one entry of a rule's callers: exactly one kind is set.
type selector struct {
	spiffe *pattern
	dns    *pattern
	key    *pattern
	jwt    *jwtSelector
}

type jwtSelector struct {
	issuer  string
	subject *pattern
	claims  []claimPattern
}

type claimPattern struct {
	name string
	pattern
}

func (s *selector) matches(c *Caller) bool {
	switch {
	case s.spiffe != nil && c.Peer != nil:
		return slices.ContainsFunc(c.Peer.URIs, s.spiffe.match)
	case s.dns != nil && c.Peer != nil:
		return slices.ContainsFunc(c.Peer.DNSNames, func(d string) bool { return s.dns.match(strings.ToLower(d)) })
	case s.key != nil && c.Key != "":
		return s.key.match(c.Key)
	case s.jwt != nil && c.JWT != nil:
		return s.jwt.matches(c.JWT)
	}
	return false
}

func (s *jwtSelector) matches(j *JWT) bool {
	if j.Issuer != s.issuer || (s.subject != nil && !s.subject.match(j.Subject)) {
		return false
	}
	for _, cp := range s.claims {
		if !slices.ContainsFunc(j.Claims[cp.name], cp.match) {
			return false
		}
	}
	return true
}

// Request is what a caller asks for, as the gateway parsed it.
type Request struct {
	// Profile is the profile the client named (header or route pin); ""
	// when it named none.
	Profile string
	// Host is the OCI host the request goes to, with or without a port;
	// "" when it is not known yet (an alias, resolved with the region of
	// the profile the decision picks).
	Host string
	// Alias is the service alias the client addressed (genai), "" when it
	// addressed a host.
	Alias string
	// Method is the HTTP method, as sent.
	Method string
}

// Codes of a denial, in the code field of the OCI-shaped error body. They
// are a closed set, for metric labels.
const (
	CodeUnauthenticated   = "CallerNotAuthenticated" // 401: no identity
	CodeInvalidCaller     = "CallerIdentityInvalid"  // 401: an identity beyond the bounds
	CodeNoRule            = "CallerNotInPolicy"      // 403: no rule names the caller
	CodeProfileNotGranted = "ProfileNotGranted"      // 403
	CodeServiceNotGranted = "ServiceNotGranted"      // 403
	CodeMethodNotGranted  = "MethodNotGranted"       // 403
)

// Codes lists every denial code.
var Codes = []string{CodeUnauthenticated, CodeInvalidCaller, CodeNoRule, CodeProfileNotGranted, CodeServiceNotGranted, CodeMethodNotGranted}

// Metric labels of decisions that no rule made. Rule names start with a
// letter or a digit, so these cannot collide with one.
const (
	LabelNoPolicy        = "_no_policy"
	LabelUnauthenticated = "_unauthenticated"
	LabelNoRule          = "_no_rule"
)

// Decision is what a policy says of a request.
type Decision struct {
	Allowed bool
	// Enforced is false for the nil policy: the request goes on as without
	// a policy, Profile being the one it named.
	Enforced bool
	// Profile is the profile to sign as; set when Allowed.
	Profile string
	// Compartment and Project are what the deciding rule sets for
	// Generative AI requests ("" when it sets none: the gateway's
	// defaults apply). The rule's values replace the client's: a caller
	// must not bill another compartment by sending its own header.
	Compartment, Project string
	// Rule is the name of the rule that decided, and Line its line in the
	// policy file; "" and 0 when none did.
	Rule string
	Line int
	// Status (401 or 403), Code (one of Codes) and Message (for the
	// client: it names the rule to change) are set when not Allowed. The
	// gateway wraps them in OCI's error shape.
	Status  int
	Code    string
	Message string
}

// MetricLabel is the decision's bounded label for metrics: the deciding
// rule's name, or LabelNoPolicy, LabelUnauthenticated, LabelNoRule. Its
// values are at most the policy's rules plus three, whoever calls.
func (d Decision) MetricLabel() string {
	switch {
	case !d.Enforced:
		return LabelNoPolicy
	case d.Rule != "":
		return d.Rule
	case d.Code == CodeNoRule:
		return LabelNoRule
	}
	return LabelUnauthenticated
}

// Decide says what caller c may do with request r. The first rule one of
// whose callers matches c decides: later rules are not tried, so a caller's
// grant is always one rule, the one the message names. Decide does no I/O
// and never blocks.
func (p *Policy) Decide(c *Caller, r Request) Decision {
	if p == nil {
		return Decision{Allowed: true, Profile: r.Profile}
	}
	d, _ := p.decide(c, r)
	return d
}

// decide is Decide that also returns the index of the deciding rule (-1).
func (p *Policy) decide(c *Caller, r Request) (Decision, int) {
	d := Decision{Enforced: true}
	if err := c.Validate(); err != nil {
		return deny(d, http.StatusUnauthorized, CodeInvalidCaller,
			"the caller's identity was refused before anything was signed: "+strings.TrimPrefix(err.Error(), ErrInvalidCaller.Error()+": ")), -1
	}
	if !c.Identified() {
		return deny(d, http.StatusUnauthorized, CodeUnauthenticated,
			"this gateway signs only for callers it can identify: present a client certificate, a token it verifies, or a gateway key (Authorization: Bearer "+KeyPrefix+"...)"), -1
	}
	i := p.match(c)
	if i < 0 {
		return deny(d, http.StatusForbidden, CodeNoRule, fmt.Sprintf(
			"no rule of the gateway's policy names caller %s; ask its operator to add one whose callers match it", text.CutCounted(c.Label(), maxEcho))), -1
	}
	ru := p.rules[i]
	d.Rule, d.Line = ru.name, ru.line
	return ru.grant(d, r), i
}

func (p *Policy) match(c *Caller) int {
	for i, ru := range p.rules {
		for j := range ru.callers {
			if ru.callers[j].matches(c) {
				return i
			}
		}
	}
	return -1
}

func deny(d Decision, status int, code, message string) Decision {
	d.Allowed, d.Status, d.Code, d.Message = false, status, code, message
	return d
}

// grant applies a matched rule to the request.
func (ru *rule) grant(d Decision, r Request) Decision {
	switch {
	case !ru.grantsService(r):
		what := "host " + echo(r.Host)
		if r.Alias != "" {
			what = "service alias " + echo(r.Alias)
		}
		return deny(d, http.StatusForbidden, CodeServiceNotGranted, fmt.Sprintf(
			"rule %q of the gateway's policy does not grant %s; add it to the rule's services", ru.name, what))
	case !ru.anyMethod && !slices.Contains(ru.methods, r.Method):
		return deny(d, http.StatusForbidden, CodeMethodNotGranted, fmt.Sprintf(
			"rule %q of the gateway's policy does not grant method %s (it grants %s); add it to the rule's methods",
			ru.name, echo(r.Method), strings.Join(ru.methods, ", ")))
	}
	profile := r.Profile
	if profile == "" {
		if ru.defaultProfile == "" {
			return deny(d, http.StatusForbidden, CodeProfileNotGranted, fmt.Sprintf(
				"the request names no profile and rule %q of the gateway's policy has no default_profile; name one of %s",
				ru.name, strings.Join(ru.profiles, ", ")))
		}
		profile = ru.defaultProfile
	} else if !slices.Contains(ru.profiles, profile) {
		return deny(d, http.StatusForbidden, CodeProfileNotGranted, fmt.Sprintf(
			"rule %q of the gateway's policy does not grant profile %s (it grants %s); name one of those, or add it to the rule's profiles",
			ru.name, echo(profile), strings.Join(ru.profiles, ", ")))
	}
	d.Allowed, d.Profile, d.Compartment, d.Project = true, profile, ru.compartment, ru.project
	return d
}

// grantsService: an alias entry grants the alias the client addressed; a
// host pattern grants the host the request goes to. A request naming both
// (an alias already resolved) is granted by either.
func (ru *rule) grantsService(r Request) bool {
	if ru.anyService {
		return true
	}
	if r.Alias != "" && slices.Contains(ru.aliases, strings.ToLower(r.Alias)) {
		return true
	}
	if h := hostName(r.Host); h != "" {
		return slices.ContainsFunc(ru.hosts, func(p pattern) bool { return p.match(h) })
	}
	return false
}

// hostName is the lower-case host of host[:port], without a trailing dot;
// "" for what is not a host name.
func hostName(host string) string {
	if len(host) > 2*MaxPatternLen {
		return ""
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || strings.IndexFunc(host, isControl) >= 0 {
		return ""
	}
	return host
}
