package main

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

func staticCreds(t *testing.T) signer.Source {
	k := signertest.Key(t, 1)
	return signer.StaticSource{C: &signer.Credentials{KeyID: "t/u/" + signer.Fingerprint(&k.PublicKey), Key: k, Kind: signer.KindAPIKey, Region: "us-phoenix-1"}}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// refusingClient fails every request without touching the network.
func refusingClient() *http.Client {
	return &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("refused by the test transport")
	})}
}

func readProfileToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// mapEnv is an environment holding only m.
func mapEnv(m map[string]string) environ {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}
