package credentials

import "testing"

// Outside tests a principal's session key is generated: RSA-2048, its own.
func TestSessionKeysAreGeneratedRSA2048(t *testing.T) {
	a, err := generateSessionKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := generateSessionKey()
	if err != nil {
		t.Fatal(err)
	}
	if a.N.BitLen() != 2048 || a.Validate() != nil || a.N.Cmp(b.N) == 0 {
		t.Fatalf("keys of %d bits, equal moduli %v", a.N.BitLen(), a.N.Cmp(b.N) == 0)
	}
}
