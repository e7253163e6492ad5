package signer

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrInvalidAuthority is wrapped by ParseAuthority for anything that is not
// a host name (or IP literal) with an optional port.
var ErrInvalidAuthority = errors.New("invalid authority")

// Limits of a host name (RFC 1035 2.3.4).
const (
	maxHostLen  = 253
	maxLabelLen = 63
	// MaxAuthorityLen bounds an authority worth parsing: the longest host
	// name, brackets and a port.
	MaxAuthorityLen = maxHostLen + len("[]:65535")
)

// Authority is a parsed request authority: a host and an optional port.
type Authority struct {
	// Host is the host name in lower case, or an IP literal (an IPv6 one in
	// brackets, as written in a URL).
	Host string
	// Port is the port as written (1 to 65535, digits only), or "".
	Port string
	// IP reports that Host is an IP literal rather than a name.
	IP bool
}

// String renders the authority as it goes on the wire: host[:port].
func (a Authority) String() string {
	if a.Port == "" {
		return a.Host
	}
	return a.Host + ":" + a.Port
}

// ParseAuthority accepts exactly what a signature may be handed to: a host
// name of letters, digits and hyphens in non-empty dot-separated labels
// (lower-cased; no label starting or ending with a hyphen), or an IP
// literal, with an optional port of 1 to 65535. Everything else is refused:
// userinfo ("x@evil.com"), fragments and queries smuggled into the host
// ("evil.com#.oraclecloud.com"), empty labels, wildcards, whitespace, lists,
// a trailing dot, ports out of range or not numeric. A signature and a
// session token (it is in the keyId) handed to whatever such an authority
// resolves to would be a credential leak.
func ParseAuthority(s string) (Authority, error) {
	if s == "" {
		return Authority{}, fmt.Errorf("%w: empty", ErrInvalidAuthority)
	}
	if len(s) > MaxAuthorityLen {
		return Authority{}, fmt.Errorf("%w: %d bytes is longer than any host name", ErrInvalidAuthority, len(s))
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Authority{}, fmt.Errorf("%w: unterminated IPv6 literal", ErrInvalidAuthority)
		}
		host = s[:end+1]
		switch rest := s[end+1:]; {
		case rest == "":
		case rest[0] == ':':
			port = rest[1:]
			if err := checkPort(port); err != nil {
				return Authority{}, err
			}
		default:
			return Authority{}, fmt.Errorf("%w: text after the IPv6 literal", ErrInvalidAuthority)
		}
		addr, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return Authority{}, fmt.Errorf("%w: not an IPv6 address in brackets", ErrInvalidAuthority)
		}
		return Authority{Host: "[" + addr.String() + "]", Port: port, IP: true}, nil
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if err := checkPort(port); err != nil {
			return Authority{}, err
		}
	}
	host = strings.ToLower(host)
	if err := checkHostName(host); err != nil {
		return Authority{}, err
	}
	if addr, err := netip.ParseAddr(host); err == nil && addr.Is4() {
		return Authority{Host: host, Port: port, IP: true}, nil
	}
	return Authority{Host: host, Port: port}, nil
}

// ValidHostName reports whether s is a host name as ParseAuthority accepts
// one, without a port: lower-case letters, digits and hyphens in non-empty
// dot-separated labels.
func ValidHostName(s string) bool {
	return s == strings.ToLower(s) && checkHostName(s) == nil
}

func checkHostName(host string) error {
	if host == "" {
		return fmt.Errorf("%w: no host", ErrInvalidAuthority)
	}
	if len(host) > maxHostLen {
		return fmt.Errorf("%w: the host name is %d characters long; at most %d", ErrInvalidAuthority, len(host), maxHostLen)
	}
	for label := range strings.SplitSeq(host, ".") {
		if err := checkLabel(label); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidAuthority, err)
		}
	}
	return nil
}

// checkLabel accepts one label of a host name: 1 to 63 lower-case letters,
// digits and hyphens, not starting or ending with a hyphen.
func checkLabel(l string) error {
	if l == "" {
		return errors.New("it has an empty label (two dots in a row, or a dot at an end)")
	}
	if len(l) > maxLabelLen {
		return fmt.Errorf("label %q is longer than %d characters", l, maxLabelLen)
	}
	for i := 0; i < len(l); i++ {
		if c := l[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Errorf("label %q may hold only letters, digits and hyphens, not %s", l, describeByte(c))
		}
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("label %q may not start or end with a hyphen", l)
	}
	return nil
}

func checkPort(port string) error {
	if port == "" || len(port) > 5 {
		return fmt.Errorf("%w: port must be 1 to 65535", ErrInvalidAuthority)
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return fmt.Errorf("%w: port is not a number", ErrInvalidAuthority)
		}
	}
	if n, _ := strconv.Atoi(port); n < 1 || n > 65535 {
		return fmt.Errorf("%w: port must be 1 to 65535", ErrInvalidAuthority)
	}
	return nil
}

// describeByte names a byte for an error message without echoing control
// characters into logs.
func describeByte(c byte) string {
	if c > ' ' && c < 0x7f {
		return strconv.Quote(string(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}
