package signer_test

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"math/big"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// testBackends lists the RSA backends to run a test with: both in a cgo
// build, where the OpenSSL one must sign each of keys itself.
func testBackends(t testing.TB, keys ...*rsa.PrivateKey) []string {
	t.Helper()
	backends := signer.Backends()
	if cgoBuild != slices.Contains(backends, signer.BackendOpenSSL) {
		t.Fatalf("backends %v in a build with cgo = %v", backends, cgoBuild)
	}
	for _, k := range keys {
		requireOpenSSL(t, k)
	}
	return backends
}

func TestSetBackend(t *testing.T) {
	defer func() {
		if err := signer.SetBackend(signer.BackendAuto); err != nil {
			t.Fatal(err)
		}
	}()
	auto := "go"
	if cgoBuild {
		auto = "openssl 3."
	}
	for _, tc := range []struct {
		name    string
		want    string // prefix of Backend() after
		wantErr bool
	}{
		{"go", "go", false},
		{"auto", auto, false},
		{"", auto, false},
		{"openssl", "openssl 3.", !cgoBuild},
		{"OpenSSL", "", true},
		{"boringssl", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := signer.SetBackend(signer.BackendGo); err != nil {
				t.Fatal(err)
			}
			err := signer.SetBackend(tc.name)
			if tc.wantErr {
				if !errors.Is(err, signer.ErrBackend) {
					t.Fatalf("SetBackend(%q) = %v, want ErrBackend", tc.name, err)
				}
				if got := signer.Backend(); got != "go" {
					t.Errorf("a refused SetBackend changed the backend to %q", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("SetBackend(%q): %v", tc.name, err)
			}
			if got := signer.Backend(); !strings.HasPrefix(got, tc.want) {
				t.Errorf("Backend() = %q, want %q…", got, tc.want)
			}
		})
	}
}

// The process-wide choice is what Sign uses.
func TestSignUsesTheChosenBackend(t *testing.T) {
	defer signer.SetBackend(signer.BackendAuto)
	key := signertest.Key(t, 1)
	creds := &signer.Credentials{KeyID: "t/u/f", Key: key}
	req := &signer.Request{Method: "GET", Host: "h", Target: "/", Date: "Thu, 05 Jan 2014 21:31:40 GMT"}
	for _, be := range testBackends(t, key) {
		if err := signer.SetBackend(be); err != nil {
			t.Fatal(err)
		}
		got, err := signer.Sign(req, creds, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		want, err := signer.SignWith(be, req, creds, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got.Get("authorization") != want.Get("authorization") {
			t.Fatalf("%s: Sign and SignWith differ", be)
		}
	}
}

// testPrimes reads testdata/rsa-primes.txt: any two make a key, in far
// less time than generating one.
func testPrimes(t testing.TB) []*big.Int {
	t.Helper()
	f, err := os.Open("testdata/rsa-primes.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*big.Int
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<16)
	for sc.Scan() {
		bits, hex, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(bits, "#") {
			continue
		}
		p, ok := new(big.Int).SetString(hex, 16)
		if !ok || !p.ProbablyPrime(0) || bits != big.NewInt(int64(p.BitLen())).String() {
			t.Fatalf("rsa-primes.txt: bad line %.40q", sc.Text())
		}
		out = append(out, p)
	}
	if len(out) < 10 {
		t.Fatalf("rsa-primes.txt: %d primes", len(out))
	}
	return out
}

var one = big.NewInt(1)

// keyOf makes the RSA key of primes p and q with public exponent e, its
// private exponent the inverse of e modulo λ(n) or φ(n) (both valid), the
// CRT values precomputed or left for the backend to derive. It returns nil
// if e is not invertible.
func keyOf(p, q *big.Int, e int, lambda, precompute bool) *rsa.PrivateKey {
	p1, q1 := new(big.Int).Sub(p, one), new(big.Int).Sub(q, one)
	m := new(big.Int).Mul(p1, q1)
	if lambda {
		m.Div(m, new(big.Int).GCD(nil, nil, p1, q1))
	}
	d := new(big.Int).ModInverse(big.NewInt(int64(e)), m)
	if d == nil {
		return nil
	}
	k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: e}, D: d, Primes: []*big.Int{p, q}}
	if precompute {
		k.Precompute()
	}
	return k
}

var exponents = []int{65537, 3, 5, 17, 257, 65539, 1<<31 - 1}

// FuzzRSABackends signs random digests with random keys through every
// backend: the signatures must be the same bytes (and verify), or the
// errors the same words. Keys come from pairs of stored primes, of 511 to
// 1536 bits, so moduli run from 1022 (under crypto/rsa's minimum) to 3072
// bits, odd lengths included.
func FuzzRSABackends(f *testing.F) {
	primes := testPrimes(f)
	f.Add(uint8(0), uint8(1), uint8(0), false, true, []byte("date: x"))
	f.Add(uint8(8), uint8(11), uint8(1), true, false, []byte{})
	f.Add(uint8(4), uint8(5), uint8(6), true, true, bytes.Repeat([]byte{0xff}, 300))
	f.Fuzz(func(t *testing.T, i, j, e uint8, lambda, precompute bool, msg []byte) {
		p, q := primes[int(i)%len(primes)], primes[int(j)%len(primes)]
		if p.Cmp(q) == 0 {
			return
		}
		key := keyOf(p, q, exponents[int(e)%len(exponents)], lambda, precompute)
		if key == nil {
			return
		}
		digest := sha256.Sum256(msg)
		want, wantErr := signer.SignDigestWith(signer.BackendGo, key, digest)
		for _, be := range signer.Backends() {
			got, err := signer.SignDigestWith(be, key, digest)
			if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
				t.Fatalf("%s backend: error %v, crypto/rsa: %v", be, err, wantErr)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s backend, %d-bit key: signature differs from crypto/rsa's", be, key.N.BitLen())
			}
		}
		if wantErr != nil {
			requireRefused(t, key)
			return
		}
		requireOpenSSL(t, key)
		if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, digest[:], want); err != nil {
			t.Fatal(err)
		}
	})
}

// Keys the OpenSSL backend leaves to crypto/rsa (invalid, undersized, not
// of two primes) sign as crypto/rsa signs them, refusals word for word:
// OpenSSL would sign some that crypto/rsa refuses.
func TestKeysOpenSSLDoesNotTakeSignAsGoSigns(t *testing.T) {
	primes := testPrimes(t)
	small := func() []*big.Int {
		var ps []*big.Int
		for range 3 {
			p, err := rand.Prime(rand.Reader, 256)
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p)
		}
		return ps
	}()
	good := func() *rsa.PrivateKey { return keyOf(primes[8], primes[9], 65537, false, true) }
	for _, tc := range []struct {
		name string
		key  func() *rsa.PrivateKey
	}{
		{"512-bit modulus", func() *rsa.PrivateKey { return keyOf(small[0], small[1], 65537, false, true) }},
		{"wrong private exponent", func() *rsa.PrivateKey {
			k := good()
			k.D.Add(k.D, big.NewInt(2))
			k.Precomputed = rsa.PrecomputedValues{}
			return k
		}},
		{"wrong CRT exponent", func() *rsa.PrivateKey {
			k := good()
			k.Precomputed = rsa.PrecomputedValues{Dp: new(big.Int).Add(k.Precomputed.Dp, one), Dq: k.Precomputed.Dq, Qinv: k.Precomputed.Qinv}
			return k
		}},
		{"modulus not the product of the primes", func() *rsa.PrivateKey {
			k := good()
			k.N = new(big.Int).Add(k.N, big.NewInt(2))
			k.Precomputed = rsa.PrecomputedValues{}
			return k
		}},
		{"one prime", func() *rsa.PrivateKey {
			k := good()
			k.Primes = k.Primes[:1]
			k.Precomputed = rsa.PrecomputedValues{}
			return k
		}},
		{"three primes", func() *rsa.PrivateKey {
			p := new(big.Int).Mul(primes[8], primes[9])
			n := new(big.Int).Mul(p, small[2])
			phi := new(big.Int).Mul(new(big.Int).Sub(primes[8], one), new(big.Int).Sub(primes[9], one))
			phi.Mul(phi, new(big.Int).Sub(small[2], one))
			d := new(big.Int).ModInverse(big.NewInt(65537), phi)
			return &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: 65537}, D: d, Primes: []*big.Int{primes[8], primes[9], small[2]}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key()
			digest := sha256.Sum256([]byte(tc.name))
			want, wantErr := signer.SignDigestWith(signer.BackendGo, key, digest)
			for _, be := range testBackends(t) {
				got, err := signer.SignDigestWith(be, key, digest)
				if !bytes.Equal(got, want) || (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
					t.Fatalf("%s backend: (%x, %v), crypto/rsa: (%x, %v)", be, got, err, want, wantErr)
				}
			}
			requireRefused(t, key)
		})
	}
}

// Prepare does a key's one-time work without signing anything a caller
// sees, and says when a key cannot sign.
func TestPrepare(t *testing.T) {
	if err := signer.Prepare(signertest.Key(t, 4)); err != nil {
		t.Fatal(err)
	}
	if err := signer.Prepare(&rsa.PrivateKey{PublicKey: rsa.PublicKey{N: big.NewInt(15), E: 3}, D: big.NewInt(3)}); err == nil {
		t.Fatal("a 4-bit key was prepared")
	}
}
