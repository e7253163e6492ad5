package policy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ParseCaller reads a caller description, the form of ocisigner policy
// check --caller and of Caller.Label: identities separated by spaces,
//
//	spiffe://example.org/ns/team-a/sa/builder   a URI SAN that is a SPIFFE ID
//	uri:URI                                      any other URI SAN
//	dns:build.example.com                        a DNS SAN
//	subject:CN=builder%2CO=Example               the certificate's subject
//	jwt:iss=ISSUER,sub=SUBJECT[,CLAIM=VALUE]...  a verified JWT; a claim
//	                                             given twice is an array;
//	                                             nested claims as a.b=VALUE
//	key:NAME                                     a gateway key, by its name
//	none                                         nobody (alone)
//
// In values, '%XX' stands for the byte of hex XX: write a space as %20, a
// ',' as %2C and a '%' as %25. A key is named, never given: a key on a
// command line would be in the shell's history and in ps.
func ParseCaller(desc string) (*Caller, error) {
	if len(desc) > maxDescription {
		return nil, fmt.Errorf("%w: the caller description is %d bytes long; the limit is %d", ErrInvalidCaller, len(desc), maxDescription)
	}
	fields := strings.Fields(desc)
	switch {
	case len(fields) == 0:
		return nil, fmt.Errorf("%w: the caller description is empty; write none for a caller without identity", ErrInvalidCaller)
	case len(fields) == 1 && fields[0] == "none":
		return &Caller{}, nil
	}
	c, peer := &Caller{}, &Peer{}
	for i, f := range fields {
		if err := describePart(c, peer, f); err != nil {
			return nil, fmt.Errorf("%w: part %d of the caller description: %v", ErrInvalidCaller, i+1, err)
		}
	}
	if len(peer.URIs) > 0 || len(peer.DNSNames) > 0 || peer.Subject != "" {
		c.Peer = peer
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func describePart(c *Caller, peer *Peer, f string) error {
	kind, raw, _ := strings.Cut(f, ":")
	if kind == "spiffe" {
		raw = f
	}
	val, err := unescape(raw)
	if err != nil {
		return err
	}
	once := func(set bool) error {
		if set {
			return fmt.Errorf("%s: is given twice", kind)
		}
		return nil
	}
	switch kind {
	case "spiffe", "uri":
		peer.URIs = append(peer.URIs, val)
	case "dns":
		peer.DNSNames = append(peer.DNSNames, val)
	case "subject":
		err = once(peer.Subject != "")
		peer.Subject = val
	case "key":
		err = once(c.Key != "")
		c.Key = val
	case "jwt":
		if err = once(c.JWT != nil); err == nil {
			c.JWT, err = describeJWT(raw)
		}
	default:
		return fmt.Errorf("%s is none of spiffe://..., uri:, dns:, subject:, jwt:, key: (or none alone)", echo(f))
	}
	return err
}

func describeJWT(s string) (*JWT, error) {
	j := &JWT{Claims: map[string][]string{}}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, errors.New("jwt: wants iss=ISSUER,sub=SUBJECT followed by any CLAIM=VALUE, separated by ','")
		}
		v, err := unescape(v)
		if err != nil {
			return nil, err
		}
		switch {
		case k == "iss" && j.Issuer == "":
			j.Issuer = v
		case k == "sub" && j.Subject == "":
			j.Subject = v
		case k == "iss" || k == "sub":
			return nil, fmt.Errorf("jwt: %s is given twice", k)
		case !claimRE.MatchString(k):
			return nil, fmt.Errorf("jwt: %s is not a claim name", echo(k))
		default:
			j.Claims[k] = append(j.Claims[k], v)
		}
	}
	if j.Issuer == "" || j.Subject == "" {
		return nil, errors.New("jwt: names no iss= or no sub=")
	}
	return j, nil
}

// ParseRequest is the request ocisigner policy check asks about: a method
// (GET when ""), a URL as a client would send it to the gateway or to OCI,
// and the profile the client would name ("" for none). isAlias says which
// first path segments are service aliases (the gateway's); a URL whose first
// segment is one is an alias request. A URL for a loopback host whose first
// segment is a host name (http://localhost:10000/objectstorage.../n/) is a
// gateway-addressed request for that host; any other URL's host is the host.
func ParseRequest(method, rawURL, profile string, isAlias func(string) bool) (Request, error) {
	if method == "" {
		method = "GET"
	}
	r := Request{Method: strings.ToUpper(method), Profile: profile}
	if !methodRE.MatchString(r.Method) {
		return r, fmt.Errorf("the method %s is not an HTTP method", echo(method))
	}
	if profile != "" && !validProfile(profile) {
		return r, fmt.Errorf("the profile %s is not a profile name", echo(profile))
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return r, fmt.Errorf("%s is not an http or https URL with a host", echo(rawURL))
	}
	seg, _, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	switch {
	case seg != "" && isAlias != nil && isAlias(strings.ToLower(seg)):
		r.Alias = strings.ToLower(seg)
	case isLoopback(u.Hostname()) && strings.Contains(seg, "."):
		r.Host = seg
	default:
		r.Host = u.Host
	}
	return r, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Explanation is what ocisigner policy check prints: what a caller would
// get for a request, and which rule decided.
type Explanation struct {
	Caller   string // the caller's label
	Request  Request
	Decision Decision
	// Skipped are the rules tried before the deciding one, which do not
	// name the caller ("name (line N)"); all rules when none does.
	Skipped []string
	source  string
	noRules bool
}

// Explain says what c would get for r, without signing anything.
func (p *Policy) Explain(c *Caller, r Request) Explanation {
	e := Explanation{Caller: c.Label(), Request: r}
	if p == nil {
		e.Decision = p.Decide(c, r)
		return e
	}
	d, at := p.decide(c, r)
	e.Decision, e.source, e.noRules = d, p.source, len(p.rules) == 0
	tried := at
	if at < 0 && d.Code == CodeNoRule {
		tried = len(p.rules)
	}
	for _, ru := range p.rules[:max(tried, 0)] {
		e.Skipped = append(e.Skipped, fmt.Sprintf("%s (line %d)", ru.name, ru.line))
	}
	return e
}

// ExplainCaller is Explain for a caller description (see ParseCaller).
func (p *Policy) ExplainCaller(desc string, r Request) (Explanation, error) {
	c, err := ParseCaller(desc)
	if err != nil {
		return Explanation{}, err
	}
	return p.Explain(c, r), nil
}

// maxSkippedShown bounds the rules an explanation lists by name.
const maxSkippedShown = 10

func (e Explanation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "caller:  %s\n", e.Caller)
	fmt.Fprintf(&b, "request: %s\n", e.Request.describe())
	d := e.Decision
	if !d.Enforced {
		fmt.Fprintf(&b, "policy:  none: allowed as without a policy, as profile %s\n", orNone(d.Profile))
		return b.String()
	}
	fmt.Fprintf(&b, "policy:  %s\n", e.source)
	if len(e.Skipped) > 0 {
		shown := e.Skipped[:min(len(e.Skipped), maxSkippedShown)]
		more := ""
		if n := len(e.Skipped) - len(shown); n > 0 {
			more = " and " + strconv.Itoa(n) + " more"
		}
		fmt.Fprintf(&b, "not matching the caller: %s%s\n", strings.Join(shown, ", "), more)
	}
	if d.Rule != "" {
		fmt.Fprintf(&b, "decided by: rule %q (line %d)\n", d.Rule, d.Line)
	} else if e.noRules {
		b.WriteString("decided by: no rule (the policy has none)\n")
	} else {
		b.WriteString("decided by: no rule\n")
	}
	if !d.Allowed {
		fmt.Fprintf(&b, "result:  refused, %d %s: %s\n", d.Status, d.Code, d.Message)
		return b.String()
	}
	fmt.Fprintf(&b, "result:  allowed, signed as profile %s\n", d.Profile)
	if d.Compartment != "" {
		fmt.Fprintf(&b, "         Generative AI compartment %s\n", d.Compartment)
	}
	if d.Project != "" {
		fmt.Fprintf(&b, "         Generative AI project %s\n", d.Project)
	}
	return b.String()
}

func (r Request) describe() string {
	s := orNone(r.Method) + " "
	if r.Alias != "" {
		s += "service alias " + echo(r.Alias)
	} else {
		s += "host " + echo(r.Host)
	}
	return s + ", profile " + orNone(echo(r.Profile))
}

func orNone(s string) string {
	if s == "" || s == `""` {
		return "(none named)"
	}
	return s
}
