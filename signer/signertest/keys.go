// Package signertest provides an OCI stand-in for tests: an HTTP server that
// verifies request signatures as OCI does, and the fixtures it takes (keys,
// session tokens minted by a test issuer, ~/.oci folders written to disk).
package signertest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"

	"github.com/youmark/pkcs8"
)

var (
	keyMu   sync.Mutex
	keyPool []*rsa.PrivateKey
)

// Key returns the i-th test RSA-2048 key of this process. Keys are generated
// once and shared, because generating one costs far more than a test using it.
func Key(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	for len(keyPool) <= i {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		k.Precompute()
		keyPool = append(keyPool, k)
	}
	return keyPool[i]
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
