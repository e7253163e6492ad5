package signer_test

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/ocisigner/ocisigner/signer"
)

func TestParseAuthority(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want signer.Authority
	}{
		{"objectstorage.us-ashburn-1.oraclecloud.com", signer.Authority{Host: "objectstorage.us-ashburn-1.oraclecloud.com"}},
		{"IAAS.US-PHOENIX-1.ORACLECLOUD.COM:443", signer.Authority{Host: "iaas.us-phoenix-1.oraclecloud.com", Port: "443"}},
		{"localhost:10000", signer.Authority{Host: "localhost", Port: "10000"}},
		{"127.0.0.1:8443", signer.Authority{Host: "127.0.0.1", Port: "8443", IP: true}},
		{"[::1]", signer.Authority{Host: "[::1]", IP: true}},
		{"[0:0:0:0:0:0:0:1]:1", signer.Authority{Host: "[::1]", Port: "1", IP: true}},
		{"x:65535", signer.Authority{Host: "x", Port: "65535"}},
		{"1-a.b-2", signer.Authority{Host: "1-a.b-2"}},
	} {
		got, err := signer.ParseAuthority(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseAuthority(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", ":443", "a..b", ".a", "a.", "-a", "a-", "a_b", "a b", "a@b", "a#b", "a?b", "a/b", "a,b", "*.a",
		"a:0", "a:65536", "a:abc", "a:", "a:1:2", "[::1", "[::1]x", "[fe80::1%eth0]", "[1.2.3.4]", "::1", "é.com",
		strings.Repeat("a", 64), strings.Repeat("a.", 127) + "aa", strings.Repeat("a", signer.MaxAuthorityLen+1)} {
		if a, err := signer.ParseAuthority(in); !errors.Is(err, signer.ErrInvalidAuthority) {
			t.Errorf("ParseAuthority(%q) = %+v, %v; want ErrInvalidAuthority", in, a, err)
		}
	}
}

// FuzzParseAuthority: whatever the parser accepts is a plain host name or
// IP literal with a numeric port, renders back to itself, and parses the
// same way in net.SplitHostPort; nothing that could steer a connection
// elsewhere (userinfo, a path, a fragment, whitespace) survives.
func FuzzParseAuthority(f *testing.F) {
	for _, s := range []string{"objectstorage.us-ashburn-1.oraclecloud.com", "x.oraclecloud.com:443@evil.com", "evil.com#.oraclecloud.com",
		"[::1]:443", "127.0.0.1", "a..b", "a:65536", "A.B:0443", "[::ffff:1.2.3.4]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		a, err := signer.ParseAuthority(in)
		if err != nil {
			if !errors.Is(err, signer.ErrInvalidAuthority) {
				t.Fatalf("error %v does not wrap ErrInvalidAuthority", err)
			}
			return
		}
		out := a.String()
		if strings.ContainsAny(out, "@#?/\\ \t\r\n,;%*") || strings.ToLower(out) != out {
			t.Fatalf("%q parsed to %q", in, out)
		}
		again, err := signer.ParseAuthority(out)
		if err != nil || again != a {
			t.Fatalf("%q → %+v renders %q → %+v, %v", in, a, out, again, err)
		}
		if a.Port != "" {
			host, port, err := net.SplitHostPort(out)
			if err != nil || port != a.Port || (host != a.Host && "["+host+"]" != a.Host) {
				t.Fatalf("%q: net.SplitHostPort(%q) = %q %q %v", in, out, host, port, err)
			}
		}
		if !a.IP && !signer.ValidHostName(a.Host) {
			t.Fatalf("%q: host %q is not a valid host name", in, a.Host)
		}
		if signer.IsRealmHost(in) && a.IP {
			t.Fatalf("%q: an IP literal is a realm host", in)
		}
	})
}
