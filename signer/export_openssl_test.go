//go:build cgo

package signer

import "crypto/rsa"

// OpenSSLRefusal is why the OpenSSL backend signs key with crypto/rsa, or
// nil if OpenSSL signs it. It loads the key into the backend if need be.
func OpenSSLRefusal(key *rsa.PrivateKey) error {
	return theOpenSSL().key(key).why
}

// OpenSSLLive counts the EVP_PKEYs and signing contexts not yet freed.
func OpenSSLLive() (keys, ctxs int64) { return liveKeys.Load(), liveCtxs.Load() }

// OpenSSLFreed returns a function that reports whether the OpenSSL state
// of key has been freed; it does not keep key alive.
func OpenSSLFreed(key *rsa.PrivateKey) func() bool {
	k := theOpenSSL().key(key)
	return func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.pkey == nil
	}
}

// LeaveOpenSSLError leaves an error on the calling thread's OpenSSL queue,
// as other code in the process could; OpenSSLQueueEmpty looks at it. The
// caller locks its goroutine to its thread around both and what it tests.
func LeaveOpenSSLError()      { leaveOpenSSLError() }
func OpenSSLQueueEmpty() bool { return openSSLQueueEmpty() }

// OpenSSLSignShort makes OpenSSL fail a signature of key and returns its error.
func OpenSSLSignShort(key *rsa.PrivateKey) error { return signShort(theOpenSSL().key(key)) }
