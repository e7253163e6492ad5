package signer_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

func TestBodySigned(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		want           bool
	}{
		{"GET", "/n/ns/b/bk/o/a", false},
		{"HEAD", "/", false},
		{"DELETE", "/x", false},
		{"OPTIONS", "/x", false},
		{"POST", "/n/ns/b/bk/o/a", true}, // not PutObject: that is PUT
		{"PATCH", "/x", true},
		{"PUT", "/20160918/instances/x", true},
		{"PUT", "/n/ns/b/bk/o/a.txt", false},                               // PutObject
		{"PUT", "/n/ns/b/bk/o/dir/sub/a%2Fb.txt?x=1", false},               // object names keep slashes
		{"PUT", "/n/ns/b/bk/u/big.bin?uploadId=u1&uploadPartNum=3", false}, // UploadPart
		{"PUT", "/n/ns/b/bk/u/big.bin?uploadPartNum=3&uploadId=u1", false}, // any order
		{"PUT", "/n/ns/b/bk/u/big.bin", true},                              // not an UploadPart without its query
		{"PUT", "/n/ns/b/bk/o/", true},                                     // no object name
		{"PUT", "/n/ns/b//o/x", true},                                      // no bucket
		{"PUT", "/n/ns/b/bk/p/x", true},                                    // another resource
		{"PUT", "/n/ns/b/bk/u/x?uploadIdx=1&uploadPartNum=1", true},        // near-miss parameter
		{"put", "/20160918/instances/x", false},                            // methods are case-sensitive, as in the SDK
	} {
		if got := signer.BodySigned(tc.method, tc.target); got != tc.want {
			t.Errorf("BodySigned(%s %s) = %v, want %v", tc.method, tc.target, got, tc.want)
		}
	}
}

func TestSignOutputs(t *testing.T) {
	key := signertest.Key(t, 1)
	c := &signer.Credentials{KeyID: "t/u/f", Key: key}
	now := time.Date(2026, 11, 28, 12, 4, 5, 0, time.FixedZone("X", 3600))
	t.Run("date from the clock, in GMT", func(t *testing.T) {
		s, err := signer.Sign(&signer.Request{Method: "GET", Host: "h", Target: "/"}, c, now)
		if err != nil {
			t.Fatal(err)
		}
		if s.Get("date") != "Sat, 28 Nov 2026 11:04:05 GMT" || len(s.Headers) != 2 {
			t.Fatalf("%+v", s.Headers)
		}
	})
	t.Run("missing content-type is set and signed", func(t *testing.T) {
		s, err := signer.Sign(&signer.Request{Method: "POST", Host: "h", Target: "/"}, c, now)
		if err != nil {
			t.Fatal(err)
		}
		if s.Get("content-type") != "application/json" || !strings.Contains(s.SigningString, "content-type: application/json") {
			t.Fatalf("%+v", s)
		}
		if s.Get("content-length") != "0" || s.Get("x-content-sha256") != "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" {
			t.Fatalf("empty body: %+v", s.Headers)
		}
	})
	t.Run("present content-type is signed, not set", func(t *testing.T) {
		s, _ := signer.Sign(&signer.Request{Method: "PUT", Host: "h", Target: "/x", Header: signer.HTTPHeader(http.Header{"Content-Type": {"text/plain"}})}, c, now)
		if s.Get("content-type") != "" || !strings.Contains(s.SigningString, "content-type: text/plain") {
			t.Fatalf("%+v", s)
		}
	})
	t.Run("digest stands for the body", func(t *testing.T) {
		body := []byte("hello world")
		d := signer.DigestOf(body)
		a, _ := signer.Sign(&signer.Request{Method: "POST", Host: "h", Target: "/", Body: body}, c, now)
		b, _ := signer.Sign(&signer.Request{Method: "POST", Host: "h", Target: "/", Digest: &d}, c, now)
		if a.Get("authorization") != b.Get("authorization") || a.Get("content-length") != "11" {
			t.Fatal("digest and body sign differently")
		}
	})
	t.Run("a delegation token of the credentials is sent and signed in place of the client's", func(t *testing.T) {
		obo := &signer.Credentials{KeyID: "t/u/f", Key: key, OBOToken: "profile-obo"}
		s, err := signer.Sign(&signer.Request{Method: "GET", Host: "h", Target: "/", Header: signer.HTTPHeader(http.Header{"Opc-Obo-Token": {"client-obo"}})}, obo, now)
		if err != nil {
			t.Fatal(err)
		}
		if s.Get("opc-obo-token") != "profile-obo" || !strings.HasSuffix(s.SigningString, "\nopc-obo-token: profile-obo") ||
			!strings.Contains(s.SignedHeaders, "opc-obo-token") || strings.Contains(s.SigningString, "client-obo") {
			t.Fatalf("%+v", s)
		}
	})
	t.Run("optional headers signed after the required ones", func(t *testing.T) {
		h := http.Header{"Opc-Obo-Token": {"obo-secret-token-value"}, "X-Subscription": {"sub"}, "X-Cross-Tenancy-Request": {"ten"}}
		s, _ := signer.Sign(&signer.Request{Method: "GET", Host: "h", Target: "/", Header: signer.HTTPHeader(h)}, c, now)
		if s.SignedHeaders != "date (request-target) host x-cross-tenancy-request x-subscription opc-obo-token" {
			t.Fatalf("headers = %q", s.SignedHeaders)
		}
		if m := signer.MaskSigningString(s.SigningString); strings.Contains(m, "obo-secret-token-value") || !strings.Contains(m, "x-subscription: sub") {
			t.Fatalf("mask: %q", m)
		}
	})
	for _, bad := range []signer.Request{
		{Method: "", Host: "h", Target: "/"},
		{Method: "GET", Host: "", Target: "/"},
		{Method: "GET", Host: "h", Target: ""},
		{Method: "GET", Host: "h", Target: "/a b"},
		{Method: "GET", Host: "h", Target: "/a\nb"},
		{Method: "G ET", Host: "h", Target: "/"},
		{Method: "GET", Host: "h/x", Target: "/"},
		// A line break in a signed value would add a line to the signing
		// string (found by FuzzSign).
		{Method: "PUT", Host: "h", Target: "/", Header: signer.HTTPHeader{"Content-Type": {"\n"}}},
		{Method: "POST", Host: "h", Target: "/", Header: signer.HTTPHeader{"Content-Type": {"a\r\nx-date: forged"}}},
		{Method: "GET", Host: "h", Target: "/", Header: signer.HTTPHeader{"X-Subscription": {"a\x00b"}}},
		{Method: "GET", Host: "h", Target: "/", Date: "Sat, 28 Nov 2026 12:00:00 GMT\nhost: evil"},
	} {
		if _, err := signer.Sign(&bad, c, now); !errors.Is(err, signer.ErrInvalidRequest) {
			t.Errorf("%+v: err = %v", bad, err)
		}
	}
	if _, err := signer.Sign(&signer.Request{Method: "GET", Host: "h", Target: "/"}, nil, now); !errors.Is(err, signer.ErrInvalidRequest) {
		t.Errorf("nil credentials: %v", err)
	}
}

func TestMaskKeyID(t *testing.T) {
	tok := strings.Repeat("x", 40) + "SECRETMIDDLE" + strings.Repeat("y", 40)
	if m := signer.MaskKeyID("ST$" + tok); strings.Contains(m, "SECRETMIDDLE") || !strings.HasPrefix(m, "ST$") {
		t.Errorf("session keyId mask: %s", m)
	}
	m := signer.MaskKeyID("ocid1.tenancy.oc1..aaaaaaaabbbbbb/ocid1.user.oc1..ccccccccdddddd/20:3b:97")
	if strings.Contains(m, "aaaaaaaa") || !strings.HasSuffix(m, "/20:3b:97") {
		t.Errorf("api keyId mask: %s", m)
	}
}
