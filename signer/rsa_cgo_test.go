//go:build cgo

package signer_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

const cgoBuild = true

// requireOpenSSL fails unless the OpenSSL backend signs key with OpenSSL
// itself, not crypto/rsa: a comparison of the backends on that key would
// otherwise compare crypto/rsa with itself.
func requireOpenSSL(t testing.TB, key *rsa.PrivateKey) {
	t.Helper()
	if err := signer.OpenSSLRefusal(key); err != nil {
		t.Fatalf("the OpenSSL backend signs this key with crypto/rsa: %v", err)
	}
}

// requireRefused fails unless the OpenSSL backend leaves key to crypto/rsa.
func requireRefused(t testing.TB, key *rsa.PrivateKey) {
	t.Helper()
	if err := signer.OpenSSLRefusal(key); err == nil {
		t.Fatal("the OpenSSL backend signs this key itself")
	}
}

// When the last reference to a Go key goes, its EVP_PKEY and signing
// contexts are freed: no key material stays in C memory.
func TestOpenSSLStateIsFreedWithTheGoKey(t *testing.T) {
	primes := testPrimes(t)
	keys0, ctxs0 := signer.OpenSSLLive()
	const n = 6
	var freed []func() bool
	func() {
		var wg sync.WaitGroup
		for i := range n {
			// Fresh structs: the backend knows a key by its pointer.
			key := keyOf(primes[i], primes[i+1], 65537, false, i%2 == 0)
			freed = append(freed, signer.OpenSSLFreed(key))
			requireOpenSSL(t, key)
			// Two at once, so the key has more than one context.
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := signer.SignDigestWith(signer.BackendOpenSSL, key, sha256.Sum256(nil)); err != nil {
						t.Error(err)
					}
				}()
			}
		}
		wg.Wait()
	}()
	if keys, ctxs := signer.OpenSSLLive(); keys < keys0+n || ctxs < ctxs0+n {
		t.Fatalf("live keys %d→%d, contexts %d→%d: want at least %d more of each", keys0, keys, ctxs0, ctxs, n)
	}
	for i, f := range freed {
		if f() {
			t.Fatalf("key %d freed while reachable", i)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC() // the cleanups run after the cycle that finds the keys unreachable
		left := 0
		for _, f := range freed {
			if !f() {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d keys' OpenSSL state still allocated after their Go keys went", left, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if keys, ctxs := signer.OpenSSLLive(); keys > keys0 || ctxs > ctxs0 {
		t.Fatalf("live keys %d→%d, contexts %d→%d after the keys went", keys0, keys, ctxs0, ctxs)
	}
}

// Signatures made at once with one key are each right; run with -race.
func TestOpenSSLConcurrentSigning(t *testing.T) {
	primes := testPrimes(t)
	keys := []*rsa.PrivateKey{keyOf(primes[0], primes[1], 65537, false, true), keyOf(primes[2], primes[3], 65537, true, false)}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				key := keys[(w+i)%len(keys)]
				d := sha256.Sum256([]byte{byte(w), byte(i)})
				sig, err := signer.SignDigestWith(signer.BackendOpenSSL, key, d)
				if err != nil {
					t.Error(err)
					return
				}
				if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, d[:], sig); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, k := range keys {
		requireOpenSSL(t, k)
	}
}

// An error that other code left on the thread's OpenSSL queue is neither
// taken for a later call's own error nor left behind by a successful sign:
// each call empties the queue on entry.
func TestOpenSSLErrorQueueIsClearedOnEntry(t *testing.T) {
	key := signertest.Key(t, 1)
	requireOpenSSL(t, key)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	signer.LeaveOpenSSLError()
	if signer.OpenSSLQueueEmpty() {
		t.Fatal("the test could not leave an error on the queue")
	}
	if _, err := signer.SignDigestWith(signer.BackendOpenSSL, key, sha256.Sum256([]byte("x"))); err != nil {
		t.Fatalf("a sign after a stale error: %v", err)
	}
	if !signer.OpenSSLQueueEmpty() {
		t.Fatal("a successful sign left the stale error on the queue")
	}

	signer.LeaveOpenSSLError()
	err := signer.OpenSSLSignShort(key)
	if err == nil || strings.Contains(err.Error(), "another caller left") {
		t.Fatalf("a failed sign reported %v: the stale error, not its own", err)
	}
	t.Logf("its own error: %v", err)
}

// Prepare says why a key stays on crypto/rsa, and refuses no key at all.
func TestPrepareSaysWhyAKeyFallsBack(t *testing.T) {
	t.Cleanup(func() { _ = signer.SetBackend(signer.BackendAuto) })
	if err := signer.SetBackend(signer.BackendOpenSSL); err != nil {
		t.Fatal(err)
	}
	if err := signer.Prepare(signertest.Key(t, 1)); err != nil {
		t.Fatalf("an ordinary key: %v", err)
	}
	primes := testPrimes(t)
	odd := keyOf(primes[0], primes[1], 65537, true, false)
	odd.Primes = odd.Primes[:1] // a key OpenSSL does not import
	if err := signer.Prepare(odd); err == nil || !strings.Contains(err.Error(), "crypto/rsa") {
		t.Fatalf("a key OpenSSL leaves to crypto/rsa: Prepare = %v", err)
	}
	if err := signer.Prepare(nil); err == nil {
		t.Fatal("Prepare(nil) = nil")
	}
	if _, err := signer.SignDigestWith(signer.BackendOpenSSL, nil, sha256.Sum256(nil)); err == nil {
		t.Fatal("OpenSSL signed with no key")
	}
	if _, err := signer.SignDigestWith(signer.BackendGo, nil, sha256.Sum256(nil)); err == nil {
		t.Fatal("crypto/rsa signed with no key")
	}
}
