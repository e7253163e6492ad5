//go:build cgo

package signer

// The OpenSSL backend: RSASSA-PKCS1-v1_5 by libcrypto 3 through cgo, about
// a third of crypto/rsa's CPU per signature. Each *rsa.PrivateKey is
// imported once into an EVP_PKEY, kept in a map keyed by a weak pointer to
// the Go key and freed (EVP_PKEY_free, which clears the private numbers)
// by a cleanup when the Go key becomes unreachable: the credentials code
// keeps handing out plain *rsa.PrivateKey values and never has to close
// anything. As crypto/rsa asks (its Precomputed values), a key must not be
// changed once it has signed: the EVP_PKEY keeps the numbers of its first
// signature. A new key's first signature costs one crypto/rsa signature
// more (see load).

/*
#cgo LDFLAGS: -lcrypto
#cgo noescape ocs_sign
#cgo nocallback ocs_sign
#cgo noescape ocs_new_key
#cgo nocallback ocs_new_key
#cgo noescape ocs_sign_ctx
#cgo nocallback ocs_sign_ctx

#include <openssl/opensslv.h>
#if OPENSSL_VERSION_MAJOR < 3
#error "ocisigner's OpenSSL backend needs OpenSSL 3 headers (libssl-dev 3.x); or build with CGO_ENABLED=0 for the Go backend"
#endif
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

// OpenSSL queues errors per thread, and the goroutine that called may run
// on another thread next: every function here empties the queue on entry,
// so that an error some other code left on this thread is not taken for
// its own, and takes its own error out of the queue and empties it before
// returning. ~0 stands for a failure that queued nothing.
static unsigned long ocs_error(void) {
	unsigned long e = ERR_get_error();
	ERR_clear_error();
	return e != 0 ? e : ~0UL;
}

static const char *const ocs_rsa_params[8] = {
	OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E, OSSL_PKEY_PARAM_RSA_D,
	OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2,
	OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2,
	OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
};

// ocs_new_key imports an RSA private key from its eight numbers (n, e, d,
// p, q, dp, dq, qinv), laid end to end in buf as native-endian unsigned
// integers of the lengths in len. EVP_PKEY_fromdata copies them into
// BIGNUMs that RSA_free clears; it keeps no pointer into buf. (Parsing DER
// instead would leave a copy of the whole key in freed memory:
// der2key_decode in providers/implementations/encode_decode/decode_der2key.c
// frees what it read with OPENSSL_free, not OPENSSL_clear_free.)
static EVP_PKEY *ocs_new_key(unsigned char *buf, const size_t *len, unsigned long *err) {
	ERR_clear_error();
	OSSL_PARAM params[9];
	size_t off = 0;
	for (int i = 0; i < 8; i++) {
		params[i] = OSSL_PARAM_construct_BN(ocs_rsa_params[i], buf + off, len[i]);
		off += len[i];
	}
	params[8] = OSSL_PARAM_construct_end();
	EVP_PKEY *pkey = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1
	    || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params) != 1) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
		*err = ocs_error();
	}
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}

// ocs_sign_ctx prepares a context that signs SHA-256 digests with PKCS#1
// v1.5 padding. A context serves one signature at a time and any number in
// turn: preparing one costs about a twentieth of a signature, so they are
// kept and reused.
static EVP_PKEY_CTX *ocs_sign_ctx(EVP_PKEY *pkey, unsigned long *err) {
	ERR_clear_error();
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (ctx != NULL && EVP_PKEY_sign_init(ctx) == 1
	    && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1
	    && EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1)
		return ctx;
	*err = ocs_error();
	EVP_PKEY_CTX_free(ctx);
	return NULL;
}

// ocs_sign signs a SHA-256 digest; it returns 0 or the error.
static unsigned long ocs_sign(EVP_PKEY_CTX *ctx, const unsigned char *digest, unsigned char *sig, size_t *siglen) {
	ERR_clear_error();
	if (EVP_PKEY_sign(ctx, sig, siglen, digest, 32) == 1)
		return 0;
	return ocs_error();
}

// ocs_leave_error and ocs_queue_empty let a test leave an error on this
// thread's queue, as other code linked into the process could, and look
// at the queue afterwards.
static void ocs_leave_error(void) { ERR_raise_data(ERR_LIB_USER, 42, "an error another caller left on this thread"); }
static int ocs_queue_empty(void) { return ERR_peek_error() == 0; }
*/
import "C"

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"
)

// opensslRSA is the backend. One serves the process.
type opensslRSA struct {
	version string
	keys    sync.Map // weak.Pointer[rsa.PrivateKey] → *osslKey
}

var theOpenSSL = sync.OnceValue(func() *opensslRSA {
	return &opensslRSA{version: C.GoString(C.OpenSSL_version(C.OPENSSL_VERSION_STRING))}
})

func openSSLBackend() (rsaBackend, error) { return theOpenSSL(), nil }

// name is "openssl" and the version of the libcrypto loaded at run time,
// which may be newer than the headers it was built with.
func (o *opensslRSA) name() string { return BackendOpenSSL + " " + o.version }

func (o *opensslRSA) signSHA256(key *rsa.PrivateKey, digest *[sha256.Size]byte) ([]byte, error) {
	if key == nil {
		return nil, errNilKey
	}
	k := o.key(key)
	if k.pkey == nil {
		return goRSA{}.signSHA256(key, digest)
	}
	sig, err := k.sign(digest)
	// The cleanup that frees k's EVP_PKEY runs once key is unreachable:
	// key must stay reachable until OpenSSL is done with it.
	runtime.KeepAlive(key)
	return sig, err
}

// prepare loads key and says why it stays on crypto/rsa, if it does.
func (o *opensslRSA) prepare(key *rsa.PrivateKey) error {
	if key == nil {
		return errNilKey
	}
	if why := o.key(key).why; why != nil {
		return fmt.Errorf("OpenSSL leaves this key to crypto/rsa: %w", why)
	}
	return nil
}

// key returns the OpenSSL state of a Go key, made on its first use.
func (o *opensslRSA) key(key *rsa.PrivateKey) *osslKey {
	wp := weak.Make(key)
	v, ok := o.keys.Load(wp)
	if !ok {
		var loaded bool
		v, loaded = o.keys.LoadOrStore(wp, &osslKey{})
		if !loaded {
			// A weak pointer, unlike the key's address, is never equal
			// to one made for a later key at the same address, so a
			// new key cannot find a dead key's entry before the cleanup
			// has removed it.
			runtime.AddCleanup(key, o.drop, dropArg{wp, v.(*osslKey)})
		}
	}
	k := v.(*osslKey)
	k.once.Do(func() { k.load(key) })
	return k
}

type dropArg struct {
	wp weak.Pointer[rsa.PrivateKey]
	k  *osslKey
}

// drop forgets a key that is gone and frees its OpenSSL state.
func (o *opensslRSA) drop(a dropArg) {
	o.keys.Delete(a.wp)
	a.k.free()
}

// osslKey is one key's OpenSSL state.
type osslKey struct {
	once sync.Once
	// mu orders free after the signatures (sign holds it shared), so the
	// race detector sees what the cleanup's timing already guarantees.
	mu   sync.RWMutex
	pkey *C.EVP_PKEY
	size int
	idle chan *C.EVP_PKEY_CTX // contexts between signatures
	// why is the reason this key signs with crypto/rsa (pkey == nil).
	why error
}

// Live OpenSSL objects: keys imported and signing contexts made, less
// those freed. Tests read them to show nothing outlives its Go key.
var liveKeys, liveCtxs atomic.Int64

// selfCheck is the digest every key signs once with both backends.
var selfCheck = sha256.Sum256([]byte("ocisigner: OpenSSL must sign as crypto/rsa does"))

// load imports key into OpenSSL, unless crypto/rsa refuses it or OpenSSL
// signs it differently. The first signature of every key is made by both
// backends: RSASSA-PKCS1-v1_5 is deterministic, so OpenSSL is used only for
// keys on which it gives crypto/rsa's bytes; for the others (invalid,
// multi-prime, under crypto/rsa's minimum size, beyond OpenSSL's maximum)
// every signature is crypto/rsa's, errors included.
func (k *osslKey) load(key *rsa.PrivateKey) {
	want, err := goRSA{}.signSHA256(key, &selfCheck)
	if err != nil {
		k.why = fmt.Errorf("crypto/rsa refuses the key: %w", err)
		return
	}
	pkey, err := importKey(key)
	if err != nil {
		k.why = err
		return
	}
	liveKeys.Add(1)
	k.pkey, k.size = pkey, key.Size()
	k.idle = make(chan *C.EVP_PKEY_CTX, max(4, 2*runtime.GOMAXPROCS(0)))
	got, err := k.sign(&selfCheck)
	if err == nil && !bytes.Equal(got, want) {
		err = errors.New("OpenSSL's signature differs from crypto/rsa's")
	}
	if err != nil {
		k.free()
		k.why = err
	}
}

// sign signs with a context from the idle ones, or a new one.
func (k *osslKey) sign(digest *[sha256.Size]byte) ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var ctx *C.EVP_PKEY_CTX
	select {
	case ctx = <-k.idle:
	default:
		var e C.ulong
		if ctx = C.ocs_sign_ctx(k.pkey, &e); ctx == nil {
			return nil, opensslError("preparing to sign", e)
		}
		liveCtxs.Add(1)
	}
	sig := make([]byte, k.size)
	if err := signInto(ctx, digest, sig); err != nil {
		freeCtx(ctx) // in whatever state the failure left it
		return nil, err
	}
	select {
	case k.idle <- ctx:
	default:
		freeCtx(ctx)
	}
	return sig, nil
}

// signInto signs digest into sig, which must be the modulus' size.
func signInto(ctx *C.EVP_PKEY_CTX, digest *[sha256.Size]byte, sig []byte) error {
	n := C.size_t(len(sig))
	if e := C.ocs_sign(ctx, (*C.uchar)(&digest[0]), (*C.uchar)(&sig[0]), &n); e != 0 {
		return opensslError("signing", e)
	}
	if int(n) != len(sig) {
		return fmt.Errorf("openssl: a %d-byte signature for a %d-byte buffer", n, len(sig))
	}
	return nil
}

func freeCtx(ctx *C.EVP_PKEY_CTX) {
	C.EVP_PKEY_CTX_free(ctx)
	liveCtxs.Add(-1)
}

// free releases the key's contexts, then the key: EVP_PKEY_free ends in
// RSA_free, which clears d, p, q and the CRT numbers (BN_clear_free) and
// the Montgomery forms of p and q.
func (k *osslKey) free() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pkey == nil {
		return
	}
	for {
		select {
		case ctx := <-k.idle:
			freeCtx(ctx)
			continue
		default:
		}
		break
	}
	C.EVP_PKEY_free(k.pkey)
	k.pkey = nil
	liveKeys.Add(-1)
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// importKey copies key's numbers into an EVP_PKEY. The buffer that carries
// them to C is cleared before it returns.
func importKey(key *rsa.PrivateKey) (*C.EVP_PKEY, error) {
	if len(key.Primes) != 2 {
		return nil, fmt.Errorf("a %d-prime key", len(key.Primes))
	}
	pre := key.Precomputed
	if pre.Dp == nil || pre.Dq == nil || pre.Qinv == nil {
		// A copy, so the caller's key is not written to while others read it.
		cp := *key
		cp.Precompute()
		pre = cp.Precomputed
	}
	nums := [8]*big.Int{key.N, big.NewInt(int64(key.E)), key.D, key.Primes[0], key.Primes[1], pre.Dp, pre.Dq, pre.Qinv}
	var lens [8]C.size_t
	total := 0
	for i, x := range nums {
		if x == nil || x.Sign() <= 0 {
			return nil, errors.New("a key with a missing or non-positive number")
		}
		lens[i] = C.size_t((x.BitLen() + 7) / 8)
		total += int(lens[i])
	}
	buf := make([]byte, total)
	defer clear(buf)
	off := 0
	for i, x := range nums {
		b := buf[off : off+int(lens[i])]
		x.FillBytes(b)
		if littleEndian {
			slices.Reverse(b)
		}
		off += len(b)
	}
	var e C.ulong
	pkey := C.ocs_new_key((*C.uchar)(&buf[0]), &lens[0], &e)
	if pkey == nil {
		return nil, opensslError("importing the key", e)
	}
	return pkey, nil
}

// opensslError renders an error code from ocs_error.
func opensslError(what string, e C.ulong) error {
	if e == ^C.ulong(0) {
		return fmt.Errorf("openssl: %s failed without a reason", what)
	}
	var buf [256]C.char
	C.ERR_error_string_n(e, &buf[0], C.size_t(len(buf)))
	return fmt.Errorf("openssl: %s: %s", what, C.GoString((*C.char)(unsafe.Pointer(&buf[0]))))
}

// For the tests of the error queue (export_openssl_test.go): cgo is not
// allowed in test files.

func leaveOpenSSLError()      { C.ocs_leave_error() }
func openSSLQueueEmpty() bool { return C.ocs_queue_empty() == 1 }

// signShort fails a signature on purpose (a buffer one byte short) and
// returns OpenSSL's error.
func signShort(k *osslKey) error {
	var e C.ulong
	ctx := C.ocs_sign_ctx(k.pkey, &e)
	if ctx == nil {
		return opensslError("preparing to sign", e)
	}
	defer C.EVP_PKEY_CTX_free(ctx)
	var digest [sha256.Size]byte
	return signInto(ctx, &digest, make([]byte, k.size-1))
}
