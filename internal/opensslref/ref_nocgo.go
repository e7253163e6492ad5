//go:build !cgo

package opensslref

import (
	"crypto/rsa"
	"errors"
)

// Available reports whether this build has the reference (it needs cgo).
const Available = false

var errNoCgo = errors.New("opensslref: built with CGO_ENABLED=0, no OpenSSL")

// Signer is absent from builds without cgo.
type Signer struct{}

// New fails without cgo.
func New(*rsa.PrivateKey) (*Signer, error) { return nil, errNoCgo }

// Sign fails without cgo.
func (*Signer) Sign(int, []byte, []byte) ([]byte, error) { return nil, errNoCgo }

// Close does nothing.
func (*Signer) Close() {}
