package signer

import (
	"crypto/rsa"
	"crypto/sha256"
	"time"
)

// Backends lists the RSA backends this build has, by their SetBackend name.
func Backends() []string {
	if _, err := openSSLBackend(); err != nil {
		return []string{BackendGo}
	}
	return []string{BackendGo, BackendOpenSSL}
}

func backendNamed(name string) rsaBackend {
	if name == BackendOpenSSL {
		b, err := openSSLBackend()
		if err != nil {
			panic(err)
		}
		return b
	}
	return goRSA{}
}

// SignWith is Sign with the named backend, whatever the process uses.
func SignWith(backend string, r *Request, c *Credentials, now time.Time) (*Signed, error) {
	return signWith(backendNamed(backend), r, c, now)
}

// SignDigestWith signs a SHA-256 digest with the named backend.
func SignDigestWith(backend string, key *rsa.PrivateKey, digest [sha256.Size]byte) ([]byte, error) {
	return backendNamed(backend).signSHA256(key, &digest)
}
