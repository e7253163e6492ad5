//go:build cgo

// Package opensslref is the benchmarks' yardstick: what OpenSSL itself
// spends to sign a signing string (SHA-256, then RSASSA-PKCS1-v1_5), with
// nothing of ocisigner or Go around it. Only benchmarks import it.
package opensslref

/*
#cgo LDFLAGS: -lcrypto
#include <stdlib.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

static EVP_PKEY *ref_key(const unsigned char *der, long len) {
	const unsigned char *p = der;
	EVP_PKEY *k = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, len);
	ERR_clear_error();
	return k;
}

static EVP_PKEY_CTX *ref_ctx(EVP_PKEY *k) {
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
	if (c != NULL && EVP_PKEY_sign_init(c) == 1
	    && EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1
	    && EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) == 1)
		return c;
	EVP_PKEY_CTX_free(c);
	ERR_clear_error();
	return NULL;
}

// ref_sign signs msg n times in a row, the way the lean OpenSSL program
// does (openssl speed's loop): the context and digest are prepared once;
// each round hashes body (when blen > 0) and msg, then signs msg's digest.
static int ref_sign(EVP_PKEY_CTX *c, const EVP_MD *md, int n,
                    const unsigned char *body, size_t blen,
                    const unsigned char *msg, size_t mlen,
                    unsigned char *sig, size_t siglen) {
	unsigned char h[EVP_MAX_MD_SIZE], bh[EVP_MAX_MD_SIZE];
	for (int i = 0; i < n; i++) {
		size_t l = siglen;
		if (blen > 0 && EVP_Digest(body, blen, bh, NULL, md, NULL) != 1)
			return 0;
		if (EVP_Digest(msg, mlen, h, NULL, md, NULL) != 1
		    || EVP_PKEY_sign(c, sig, &l, h, 32) != 1)
			return 0;
	}
	return 1;
}
*/
import "C"

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"sync"
	"unsafe"
)

// Available reports whether this build has the reference (it needs cgo).
const Available = true

// Signer signs with one key. It is safe for concurrent use: each caller
// takes a signing context of its own, kept for the next.
type Signer struct {
	pkey *C.EVP_PKEY
	md   *C.EVP_MD
	size int
	mu   sync.Mutex
	idle []*C.EVP_PKEY_CTX
}

// New imports key. Benchmark keys only: the import goes through DER,
// which OpenSSL frees without clearing.
func New(key *rsa.PrivateKey) (*Signer, error) {
	der := x509.MarshalPKCS1PrivateKey(key)
	pkey := C.ref_key((*C.uchar)(&der[0]), C.long(len(der)))
	if pkey == nil {
		return nil, errors.New("opensslref: OpenSSL cannot read the key")
	}
	name := C.CString("SHA256")
	defer C.free(unsafe.Pointer(name))
	md := C.EVP_MD_fetch(nil, name, nil)
	if md == nil {
		C.EVP_PKEY_free(pkey)
		return nil, errors.New("opensslref: no SHA-256 in OpenSSL")
	}
	return &Signer{pkey: pkey, md: md, size: key.Size()}, nil
}

// Sign hashes body (if any) and msg and signs msg's digest, n times in one
// call into C, and returns the last signature.
func (s *Signer) Sign(n int, body, msg []byte) ([]byte, error) {
	s.mu.Lock()
	var c *C.EVP_PKEY_CTX
	if len(s.idle) > 0 {
		c, s.idle = s.idle[len(s.idle)-1], s.idle[:len(s.idle)-1]
	}
	s.mu.Unlock()
	if c == nil {
		if c = C.ref_ctx(s.pkey); c == nil {
			return nil, errors.New("opensslref: cannot prepare a signing context")
		}
	}
	defer func() {
		s.mu.Lock()
		s.idle = append(s.idle, c)
		s.mu.Unlock()
	}()
	if len(msg) == 0 {
		return nil, errors.New("opensslref: nothing to sign")
	}
	sig := make([]byte, s.size)
	var bp *C.uchar
	if len(body) > 0 {
		bp = (*C.uchar)(&body[0])
	}
	if C.ref_sign(c, s.md, C.int(n), bp, C.size_t(len(body)), (*C.uchar)(&msg[0]), C.size_t(len(msg)), (*C.uchar)(&sig[0]), C.size_t(len(sig))) != 1 {
		C.ERR_clear_error()
		return nil, errors.New("opensslref: signing failed")
	}
	return sig, nil
}

// Close frees the key and its contexts.
func (s *Signer) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.idle {
		C.EVP_PKEY_CTX_free(c)
	}
	s.idle = nil
	C.EVP_MD_free(s.md)
	C.EVP_PKEY_free(s.pkey)
}
