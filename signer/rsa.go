package signer

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync/atomic"
)

// Names of the RSA backends, for SetBackend.
const (
	// BackendAuto is OpenSSL's libcrypto when the binary was built with cgo,
	// else Go's crypto/rsa.
	BackendAuto = "auto"
	// BackendOpenSSL is libcrypto 3 through cgo: about 3x less CPU per
	// signature than crypto/rsa.
	BackendOpenSSL = "openssl"
	// BackendGo is crypto/rsa.
	BackendGo = "go"
)

// ErrBackend is returned by SetBackend for a backend this build does not
// have, or a name it does not know.
var ErrBackend = errors.New("RSA backend unavailable")

// rsaBackend computes RSASSA-PKCS1-v1_5 signatures over SHA-256 digests.
// Every backend gives the same bytes for the same key and digest (the
// scheme is deterministic), and the same errors as crypto/rsa for keys it
// cannot use. Implementations are safe for concurrent use.
type rsaBackend interface {
	// name is what Backend reports: "go", "openssl 3.0.19".
	name() string
	// signSHA256 is rsa.SignPKCS1v15(rand, key, crypto.SHA256, digest).
	signSHA256(key *rsa.PrivateKey, digest *[sha256.Size]byte) ([]byte, error)
	// prepare does the backend's one-time work for key and returns why it
	// signs key with crypto/rsa rather than itself, if it does.
	prepare(key *rsa.PrivateKey) error
}

// errNilKey is what a backend answers for no key at all.
var errNilKey = errors.New("no private key to sign with")

// goRSA is crypto/rsa.
type goRSA struct{}

func (goRSA) name() string { return BackendGo }

func (goRSA) signSHA256(key *rsa.PrivateKey, digest *[sha256.Size]byte) ([]byte, error) {
	if key == nil {
		return nil, errNilKey
	}
	return rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
}

// prepare checks the key as crypto/rsa will when it signs (a key that
// fails here fails every signature).
func (goRSA) prepare(key *rsa.PrivateKey) error {
	if key == nil {
		return errNilKey
	}
	return key.Validate()
}

// active is the backend Sign uses; a process-wide choice, like GODEBUG.
var active atomic.Pointer[rsaBackend]

func init() {
	b := autoBackend()
	active.Store(&b)
}

// autoBackend is OpenSSL when this build has it, else Go.
func autoBackend() rsaBackend {
	if b, err := openSSLBackend(); err == nil {
		return b
	}
	return goRSA{}
}

func activeBackend() rsaBackend { return *active.Load() }

// Backend names the RSA implementation Sign uses now, with its version
// where it has one: "openssl 3.0.19" or "go". It is for the version line,
// the start-up log and a metric label.
func Backend() string { return activeBackend().name() }

// SetBackend chooses the RSA implementation for every signature the
// process makes from now on: BackendAuto (also ""), BackendOpenSSL or
// BackendGo. Asking for OpenSSL in a build without cgo is an error, not a
// silent fallback, so an operator who forces it learns at start-up.
func SetBackend(name string) error {
	var b rsaBackend
	switch name {
	case BackendAuto, "":
		b = autoBackend()
	case BackendGo:
		b = goRSA{}
	case BackendOpenSSL:
		var err error
		if b, err = openSSLBackend(); err != nil {
			return fmt.Errorf("%w: %w", ErrBackend, err)
		}
	default:
		return fmt.Errorf("%w: unknown RSA backend %q: want %s, %s or %s", ErrBackend, name, BackendAuto, BackendOpenSSL, BackendGo)
	}
	active.Store(&b)
	return nil
}

// Prepare makes key ready to sign with: the backend's one-time work for a
// key (OpenSSL imports it and checks its first signature against
// crypto/rsa's) done now, off any request's path. Credentials sources call
// it for the session keys they make in the background, and serve for every
// profile at start. It returns why the backend signs key with crypto/rsa
// instead of itself (a key OpenSSL refuses or signs differently), which the
// operator should see, or nil. The key still signs either way; a nil key is
// an error.
func Prepare(key *rsa.PrivateKey) error { return activeBackend().prepare(key) }
