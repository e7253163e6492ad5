package signer

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
)

// Bounds on the key-derivation work an encrypted PKCS#8 key may ask for.
// The parameters come from the file itself: without a bound a corrupt or
// hostile key file would stall the process (PBKDF2 with 2^31 iterations)
// or exhaust its memory (scrypt with N = 2^30) while it loads. The bounds
// are far above what OpenSSL, the OCI CLI and the console write.
const (
	maxPBKDF2Iterations = 10_000_000
	maxScryptMemory     = 256 << 20 // bytes: 128 * N * r * p
)

var (
	oidPBES2  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
)

// checkKDFCost reads an EncryptedPrivateKeyInfo's key-derivation parameters
// and refuses work beyond the bounds. What it cannot read it leaves to the
// PKCS#8 parser, which reports it.
func checkKDFCost(der []byte) error {
	var info struct {
		Algo pkix.AlgorithmIdentifier
		Data []byte
	}
	if _, err := asn1.Unmarshal(der, &info); err != nil || !info.Algo.Algorithm.Equal(oidPBES2) {
		return nil
	}
	var pbes2 struct {
		KDF    pkix.AlgorithmIdentifier
		Scheme pkix.AlgorithmIdentifier
	}
	if _, err := asn1.Unmarshal(info.Algo.Parameters.FullBytes, &pbes2); err != nil {
		return nil
	}
	switch {
	case pbes2.KDF.Algorithm.Equal(oidPBKDF2):
		var p struct {
			Salt       []byte
			Iterations int
			KeyLength  int                      `asn1:"optional"`
			PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
		}
		if _, err := asn1.Unmarshal(pbes2.KDF.Parameters.FullBytes, &p); err == nil && (p.Iterations < 1 || p.Iterations > maxPBKDF2Iterations) {
			return fmt.Errorf("PBKDF2 iteration count %d is outside 1..%d", p.Iterations, maxPBKDF2Iterations)
		}
	case pbes2.KDF.Algorithm.Equal(oidScrypt):
		var p struct {
			Salt      []byte
			N, R, P   int
			KeyLength int `asn1:"optional"`
		}
		if _, err := asn1.Unmarshal(pbes2.KDF.Parameters.FullBytes, &p); err == nil {
			if p.N < 2 || p.R < 1 || p.P < 1 || int64(p.N) > maxScryptMemory/128/int64(p.R)/int64(p.P) {
				return fmt.Errorf("scrypt parameters N=%d r=%d p=%d ask for more than %d MiB", p.N, p.R, p.P, maxScryptMemory>>20)
			}
		}
	}
	return nil
}
