package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ocisigner/ocisigner/internal/text"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bounds on an identity. An identity comes from what Envoy verified, but
// its values were chosen by whoever obtained the certificate or the token:
// hostile input like any other.
const (
	MaxIdentityLen = 1024 // a SAN, a subject, an issuer, a claim's value
	MaxSANs        = 16   // URI SANs, and DNS SANs, of one certificate
	MaxClaims      = 128  // claims of one JWT, nested ones flattened
	MaxClaimValues = 64   // values of one claim that is an array
	maxClaimDepth  = 4    // objects nested deeper are not read
	maxDescription = 8 << 10
)

// ErrInvalidCaller is returned (wrapped) for an identity that breaks the
// bounds above or is not well formed; the request it came with must be
// refused before anything is signed.
var ErrInvalidCaller = errors.New("invalid caller identity")

// Caller is who is asking, as Envoy verified it (an mTLS peer, a JWT) or as
// ocisigner verified it (a gateway key). Any of the three may be present;
// none present is an anonymous caller, which a policy refuses with 401.
// Nothing here is a secret: the raw token and the key never enter a Caller.
type Caller struct {
	Peer *Peer
	JWT  *JWT
	// Key is the name of the gateway key the caller presented, as Keys.Lookup
	// found it; "" when it presented none.
	Key string
}

// Peer is the client certificate Envoy validated.
type Peer struct {
	URIs     []string // URI SANs, such as spiffe://example.org/ns/team-a/sa/builder
	DNSNames []string // DNS SANs
	Subject  string   // the subject's distinguished name, for the audit label
}

// JWT is a token Envoy's jwt_authn filter verified.
type JWT struct {
	Issuer  string
	Subject string
	// Claims are the payload's other claims as strings: a string as it is,
	// a number or a boolean as JSON writes it, an array as its scalar
	// elements; an object's members under "object.member".
	Claims map[string][]string
}

// NewPeer is the identity of a verified client certificate. Empty values
// are skipped (Envoy sends "" for an attribute the certificate lacks); it
// returns nil, nil when none is left.
func NewPeer(uris, dnsNames []string, subject string) (*Peer, error) {
	p := &Peer{URIs: nonEmpty(uris), DNSNames: nonEmpty(dnsNames), Subject: subject}
	if len(p.URIs) == 0 && len(p.DNSNames) == 0 && p.Subject == "" {
		return nil, nil
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return p, nil
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// NewJWT is the identity of a verified JWT's payload, as jwt_authn forwards
// it (decoded JSON: strings, float64 or json.Number, bool, []any,
// map[string]any). A payload beyond the bounds is an error, not cut short:
// with first-match rules, a dropped claim could let a later, broader rule
// match a caller an earlier rule was written for.
func NewJWT(payload map[string]any) (*JWT, error) {
	iss, _ := payload["iss"].(string)
	sub, _ := payload["sub"].(string)
	if iss == "" || sub == "" {
		return nil, fmt.Errorf("%w: the verified JWT has no iss or no sub string claim", ErrInvalidCaller)
	}
	j := &JWT{Issuer: iss, Subject: sub, Claims: map[string][]string{}}
	if err := flattenClaims(j.Claims, "", payload, 1); err != nil {
		return nil, err
	}
	delete(j.Claims, "iss")
	delete(j.Claims, "sub")
	if err := j.validate(); err != nil {
		return nil, err
	}
	return j, nil
}

func flattenClaims(out map[string][]string, prefix string, obj map[string]any, depth int) error {
	for k, v := range obj {
		name := prefix + k
		if o, ok := v.(map[string]any); ok {
			if depth < maxClaimDepth {
				if err := flattenClaims(out, name+".", o, depth+1); err != nil {
					return err
				}
			}
			continue
		}
		vals := claimValues(v)
		if len(vals) == 0 {
			continue
		}
		if len(out) >= MaxClaims {
			return fmt.Errorf("%w: the JWT has more than %d claims", ErrInvalidCaller, MaxClaims)
		}
		out[name] = vals
	}
	return nil
}

// claimValues turns a claim into the strings patterns match; nil for what
// no pattern can name (null, objects inside arrays).
func claimValues(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case bool:
		return []string{strconv.FormatBool(x)}
	case float64:
		return []string{strconv.FormatFloat(x, 'f', -1, 64)}
	case json.Number:
		return []string{x.String()}
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, claimValues(e)...)
		}
		return out
	}
	return nil
}

// Identified reports whether the caller carries any identity.
func (c *Caller) Identified() bool {
	return c != nil && (c.Peer != nil || c.JWT != nil || c.Key != "")
}

// Validate checks the caller against the bounds; Decide calls it too, so a
// Caller built by hand cannot bypass them.
func (c *Caller) Validate() error {
	if c == nil {
		return nil
	}
	if c.Peer != nil {
		if err := c.Peer.validate(); err != nil {
			return err
		}
	}
	if c.JWT != nil {
		if err := c.JWT.validate(); err != nil {
			return err
		}
	}
	if c.Key != "" && !validName(c.Key) {
		return fmt.Errorf("%w: gateway key name %s is not a name (%s)", ErrInvalidCaller, echo(c.Key), nameRule)
	}
	return nil
}

func (p *Peer) validate() error {
	if len(p.URIs) > MaxSANs || len(p.DNSNames) > MaxSANs {
		return fmt.Errorf("%w: the certificate has more than %d URI or DNS SANs", ErrInvalidCaller, MaxSANs)
	}
	for _, v := range p.URIs {
		if err := checkValue("a URI SAN", v); err != nil {
			return err
		}
	}
	for _, v := range p.DNSNames {
		if err := checkValue("a DNS SAN", v); err != nil {
			return err
		}
	}
	if p.Subject != "" {
		return checkValue("the certificate subject", p.Subject)
	}
	return nil
}

func (j *JWT) validate() error {
	if err := checkValue("the JWT issuer", j.Issuer); err != nil {
		return err
	}
	if err := checkValue("the JWT subject", j.Subject); err != nil {
		return err
	}
	if len(j.Claims) > MaxClaims {
		return fmt.Errorf("%w: the JWT has more than %d claims", ErrInvalidCaller, MaxClaims)
	}
	for name, vals := range j.Claims {
		if len(vals) > MaxClaimValues {
			return fmt.Errorf("%w: JWT claim %s has more than %d values", ErrInvalidCaller, echo(name), MaxClaimValues)
		}
		if err := checkValue("a JWT claim's name", name); err != nil {
			return err
		}
		for _, v := range vals {
			if err := checkValue("JWT claim "+echo(name), v); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkValue refuses what could not have come from a well-formed identity
// or would be unsafe to write to a log. The value itself is not echoed.
func checkValue(what, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalidCaller, what)
	case len(v) > MaxIdentityLen:
		return fmt.Errorf("%w: %s is %d bytes long; the limit is %d", ErrInvalidCaller, what, len(v), MaxIdentityLen)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidCaller, what)
	case strings.IndexFunc(v, isControl) >= 0:
		return fmt.Errorf("%w: %s holds a control character", ErrInvalidCaller, what)
	}
	return nil
}

// Label caps.
const (
	maxLabelPart = 160
	maxLabel     = 512
)

// Label is the caller for an audit log line and the dynamic metadata: its
// identities in the caller-description syntax (see ParseCaller), separated
// by spaces, each part capped and the whole at 512 bytes, with anything
// that looks like a key or a token redacted. It holds the JWT's issuer and
// subject, never its claims or the token. It is not a metric label: its
// values are as many as the callers; use Decision.MetricLabel. An anonymous
// caller is "none".
func (c *Caller) Label() string {
	if !c.Identified() {
		return "none"
	}
	var parts []string
	add := func(s string) { parts = append(parts, text.CutCounted(redact(s), maxLabelPart)) }
	if p := c.Peer; p != nil {
		for _, u := range p.URIs {
			if strings.HasPrefix(u, "spiffe://") {
				add(escape(u))
			} else {
				add("uri:" + escape(u))
			}
		}
		for _, d := range p.DNSNames {
			add("dns:" + escape(d))
		}
		if p.Subject != "" {
			add("subject:" + escape(p.Subject))
		}
	}
	if j := c.JWT; j != nil {
		add("jwt:iss=" + escape(j.Issuer) + ",sub=" + escape(j.Subject))
	}
	if c.Key != "" {
		add("key:" + escape(c.Key))
	}
	return text.CutCounted(strings.Join(parts, " "), maxLabel)
}

// escape percent-encodes what would break the description syntax or a log
// line: spaces and control characters, '%', ',', and every non-ASCII byte.
func escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '%' || c == ',' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// unescape reverses escape, strictly: '%' must be followed by two hex digits.
func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("'%' is not followed by two hex digits")
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", errors.New("'%' is not followed by two hex digits")
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), nil
}
