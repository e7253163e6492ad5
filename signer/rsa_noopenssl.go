//go:build !cgo

package signer

import "errors"

// openSSLBackend: a CGO_ENABLED=0 build has no libcrypto.
func openSSLBackend() (rsaBackend, error) {
	return nil, errors.New("this ocisigner was built with CGO_ENABLED=0 and has no OpenSSL; rebuild it with cgo and libssl-dev, or use --rsa-backend go")
}
