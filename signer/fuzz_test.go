package signer_test

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// FuzzPrivateKey: arbitrary key files and passphrases never panic, and a
// key that parses is a valid RSA key.
func FuzzPrivateKey(f *testing.F) {
	k := signertest.Key(f, 1)
	for _, kf := range []signertest.KeyFormat{signertest.PKCS1, signertest.PKCS8, signertest.EncryptedPKCS8, signertest.LegacyPEM} {
		f.Add(signertest.EncodeKey(f, k, kf, "pw"), []byte("pw"))
	}
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"), []byte(""))
	f.Fuzz(func(t *testing.T, data, pass []byte) {
		key, err := signer.ParsePrivateKey(data, pass)
		if err != nil {
			return
		}
		if err := key.Validate(); err != nil {
			t.Fatalf("accepted an invalid key: %v", err)
		}
	})
}

var (
	fuzzKeyOnce sync.Once
	fuzzCreds   *signer.Credentials
)

// FuzzSign: for any request Sign accepts, the signature verifies over the
// signing string it reports, that string has one line per signed header,
// and the Authorization header equals oci-go-sdk's for the same request.
func FuzzSign(f *testing.F) {
	fuzzKeyOnce.Do(func() {
		vf := loadVectors(f)
		key, err := signer.ParsePrivateKey([]byte(vf.PrivateKeyPEM), nil) // 1024-bit: fast enough to fuzz
		if err != nil {
			f.Fatal(err)
		}
		fuzzCreds = &signer.Credentials{KeyID: vf.KeyID, Key: key}
	})
	f.Add("GET", "iaas.us-phoenix-1.oraclecloud.com", "/20160918/instances?a=1&b=%20", []byte(nil), "")
	f.Add("POST", "h:8443", "/x", []byte("{}"), "text/plain")
	f.Add("PUT", "objectstorage.us-ashburn-1.oraclecloud.com", "/n/ns/b/b/o/ü", []byte("data"), "")
	f.Add("patch", "h", "/a%2Fb?x=%E6%97%A5", []byte{0, 1, 2}, "application/json")
	f.Fuzz(func(t *testing.T, method, host, target string, body []byte, ctype string) {
		h := http.Header{}
		if ctype != "" {
			h.Set("Content-Type", ctype)
		}
		now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
		s, err := signer.Sign(&signer.Request{Method: method, Host: host, Target: target, Header: signer.HTTPHeader(h), Body: body}, fuzzCreds, now)
		if err != nil {
			return
		}
		lines := strings.Split(s.SigningString, "\n")
		if len(lines) != len(strings.Fields(s.SignedHeaders)) {
			t.Fatalf("%d lines for headers %q", len(lines), s.SignedHeaders)
		}
		params, err := signertest.ParseAuthorization(s.Get("authorization"))
		if err != nil {
			t.Fatal(err)
		}
		sig, err := base64.StdEncoding.DecodeString(params["signature"])
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(s.SigningString))
		if err := rsa.VerifyPKCS1v15(&fuzzCreds.Key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
			t.Fatal("signature does not verify")
		}
		// Compare with the SDK where net/http can carry the request as is.
		if !validForSDK(method, host, target, ctype) {
			return
		}
		path, query, _ := strings.Cut(target, "?")
		u := &url.URL{Scheme: "https", Host: host, Opaque: path, RawQuery: query, ForceQuery: strings.Contains(target, "?") && query == ""}
		req := &http.Request{Method: method, URL: u, Header: h.Clone(), Host: host}
		if body != nil {
			req.Body = readCloser{bytes.NewReader(body)}
		}
		if ct := s.Get("content-type"); ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		req.Header.Set("Date", signer.FormatDate(now))
		if req.URL.RequestURI() != target {
			return
		}
		if got, want := s.Get("authorization"), sdkSign(t, req, fuzzCreds); got != want {
			t.Fatalf("differs from SDK\n ours %s\n sdk  %s", got, want)
		}
	})
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func validForSDK(method, host, target, ctype string) bool {
	if !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "//") || method == "" {
		return false
	}
	for _, s := range []string{method, host, target, ctype} {
		for _, r := range s {
			if r < 0x21 && r != ' ' || r == 0x7f {
				return false
			}
		}
	}
	return !strings.ContainsAny(method, " ()<>@,;:\\\"/[]?={}") && strings.TrimSpace(ctype) == ctype
}
