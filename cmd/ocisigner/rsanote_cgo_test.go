//go:build cgo

package main

import (
	"crypto/rand"
	"crypto/rsa"
	"log/slog"
	"strings"
	"testing"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// A real key that OpenSSL does not take (a three-prime key, which
// crypto/rsa still signs with) makes the start-up line and the log say
// that the profile signs with crypto/rsa, and why: an operator who chose
// OpenSSL for its speed learns which profile does not get it.
func TestStartupLineSaysWhyARealKeyFallsBack(t *testing.T) {
	if got := signer.Backend(); !strings.HasPrefix(got, signer.BackendOpenSSL) {
		t.Fatalf("a cgo build signs with %q by default, want %q", got, signer.BackendOpenSSL)
	}
	//lint:ignore SA1019 a multi-prime key is the case under test: OpenSSL is given two-prime keys only
	key, err := rsa.GenerateMultiPrimeKey(rand.Reader, 3, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var logs signertest.LogBuffer
	s := &service{log: slog.New(slog.NewTextHandler(&logs, nil))}
	note := s.rsaNote("MULTI", &signer.Credentials{Key: key})
	for what, got := range map[string]string{"start-up note": note, "log": logs.String()} {
		for _, want := range []string{"crypto/rsa", "3-prime"} {
			if !strings.Contains(got, want) {
				t.Errorf("%s lacks %q: %q", what, want, got)
			}
		}
	}
	if !strings.Contains(logs.String(), "profile=MULTI") {
		t.Errorf("the log does not name the profile:\n%s", logs.String())
	}
}
