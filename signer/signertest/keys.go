// Package signertest provides an OCI stand-in for tests: an HTTP server that
// verifies request signatures as OCI does, and the fixtures it takes (keys,
// session tokens minted by a test issuer, ~/.oci folders written to disk).
package signertest

import (
	_ "embed"

	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync"
	"testing"

	"github.com/youmark/pkcs8"
)

// testKeys are RSA-2048 keys generated once, for tests only: generating a
// key costs far more than a test using it (seconds under the race
// detector), and a test needs keys, not fresh ones.
//
//go:embed testkeys.pem
var testKeys []byte

// Where the fixed keys go: Key(t, i) for i below keysForTests, then one
// each for the issuer and the IdP, then the instance leaves, then the
// session keys credentialstest hands the principals. No two uses share a
// key.
const (
	keysForTests  = 16
	issuerKeyAt   = keysForTests
	idpKeyAt      = issuerKeyAt + 1
	leafKeysAt    = idpKeyAt + 1
	leafKeysN     = 6
	sessionKeysAt = leafKeysAt + leafKeysN
)

var (
	keyMu  sync.Mutex
	parsed = map[int]*rsa.PrivateKey{}
)

// fixedDER is the PKCS#1 DER of each key of testKeys.
var fixedDER = sync.OnceValue(func() [][]byte {
	var out [][]byte
	for rest := testKeys; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return out
		}
		out = append(out, b.Bytes)
	}
})

// fixedKey returns the i-th key of testKeys; beyond them, a key generated
// for i the first time it is asked for. Every call for i returns the same
// key.
func fixedKey(i int) (*rsa.PrivateKey, error) {
	fixed := fixedDER()
	keyMu.Lock()
	defer keyMu.Unlock()
	if k, ok := parsed[i]; ok {
		return k, nil
	}
	var k *rsa.PrivateKey
	var err error
	if i < len(fixed) {
		k, err = x509.ParsePKCS1PrivateKey(fixed[i])
	} else {
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		return nil, fmt.Errorf("test key %d: %w", i, err)
	}
	k.Precompute()
	parsed[i] = k
	return k, nil
}

// Key returns the i-th test RSA-2048 key of this process, the same one
// every time it is asked for.
func Key(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	at := i
	if i >= keysForTests {
		at = len(fixedDER()) + i // past the fixed keys: generated
	}
	k, err := fixedKey(at)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// SessionKeys returns a source of RSA-2048 keys for the session keys
// principals make at each federation, in place of generating one: the
// fixed keys past sessionKeysAt in turn, each call a key of its own (parsed
// anew: a principal may hold, prepare and drop it as a generated one), and
// never the same key twice in a row.
func SessionKeys() func() (*rsa.PrivateKey, error) {
	var mu sync.Mutex
	next := 0
	return func() (*rsa.PrivateKey, error) {
		fixed := fixedDER()
		mu.Lock()
		i := sessionKeysAt + next
		next = (next + 1) % (len(fixed) - sessionKeysAt)
		mu.Unlock()
		return x509.ParsePKCS1PrivateKey(fixed[i])
	}
}

// KeyFormat names a PEM encoding of a private key.
type KeyFormat string

// The encodings OCI tooling writes.
const (
	PKCS1          KeyFormat = "pkcs1"
	PKCS8          KeyFormat = "pkcs8"
	EncryptedPKCS8 KeyFormat = "encrypted-pkcs8"
	LegacyPEM      KeyFormat = "legacy-encrypted-pem"
)

// EncodeKey renders key in the given format; the encrypted ones use passphrase.
func EncodeKey(t testing.TB, key *rsa.PrivateKey, f KeyFormat, passphrase string) []byte {
	t.Helper()
	switch f {
	case PKCS1:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	case PKCS8:
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	case EncryptedPKCS8:
		der, err := pkcs8.MarshalPrivateKey(key, []byte(passphrase), &pkcs8.Opts{
			Cipher:  pkcs8.AES256CBC,
			KDFOpts: pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: 2048, HMACHash: cryptoSHA256},
		})
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})
	case LegacyPEM:
		//lint:ignore SA1019 legacy encrypted PEM is a format users still have.
		b, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key), []byte(passphrase), x509.PEMCipherAES128) //nolint:staticcheck
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(b)
	}
	t.Fatalf("unknown key format %q", f)
	return nil
}
