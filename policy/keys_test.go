package policy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The form secret scanners are given: see KeyPrefix.
var keyForm = regexp.MustCompile(`^ocisk_[A-Za-z0-9_-]{43}$`)

func TestGenerateKey(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		k, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if !keyForm.MatchString(k.Reveal()) || !k.wellFormed() {
			t.Fatalf("%d bytes, not of the form", len(k.Reveal()))
		}
		if seen[k.Reveal()] {
			t.Fatal("a key came twice")
		}
		seen[k.Reveal()] = true
	}
}

func TestAddLookupRevoke(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	a, err := AddKey(path, "team-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := AddKey(path, "ci")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keys file mode %v, %v; want 0600", fi.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	h := sha256.Sum256([]byte(a.Reveal()))
	if !strings.Contains(string(data), "team-a sha256:"+hex.EncodeToString(h[:])+"\n") || strings.Contains(string(data), KeyPrefix) {
		t.Fatalf("the file holds the hash and never a key? %q", data)
	}
	ks, err := LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	for want, k := range map[string]Key{"team-a": a, "ci": b} {
		if name, err := ks.Lookup(k); name != want || err != nil {
			t.Errorf("got %q, %v; want %q", name, err, want)
		}
	}
	other, _ := GenerateKey()
	changed := []byte(a.Reveal())
	changed[len(changed)-1] = map[bool]byte{true: 'B', false: 'A'}[changed[len(changed)-1] == 'A']
	for name, k := range map[string]Key{"another key": other, "the key with its last character changed": NewKey(string(changed))} {
		if n, err := ks.Lookup(k); !errors.Is(err, ErrUnknownKey) || n != "" {
			t.Errorf("%s: %q, %v", name, n, err)
		}
	}
	for _, bad := range []string{"", "Bearer x", a.Reveal() + "x", a.Reveal()[:len(a.Reveal())-1], "OCISK_" + a.Reveal()[6:], strings.Replace(a.Reveal(), a.Reveal()[10:11], "!", 1)} {
		if _, err := ks.Lookup(NewKey(bad)); !errors.Is(err, ErrMalformedKey) {
			t.Errorf("%d bytes: %v", len(bad), err)
		}
	}
	if _, err := AddKey(path, "team-a"); !errors.Is(err, ErrDuplicateName) {
		t.Fatalf("a duplicate name: %v", err)
	}
	if err := RevokeKey(path, "team-a"); err != nil {
		t.Fatal(err)
	}
	if err := RevokeKey(path, "team-a"); !errors.Is(err, ErrKeyNameMissing) {
		t.Fatalf("revoked twice: %v", err)
	}
	ks, err = LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Lookup(a); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("a revoked key: %v", err)
	}
	if name, err := ks.Lookup(b); name != "ci" || err != nil {
		t.Fatalf("the other key after a revocation: %q %v", name, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v after a revocation", fi.Mode())
	}
	if c, err := ks.Caller(b); err != nil || c.Key != "ci" || c.Label() != "key:ci" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestAddKeyLeavesABadFileAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	bad := "a sha256:nothex\n"
	os.WriteFile(path, []byte(bad), 0o600)
	if _, err := AddKey(path, "b"); !errors.Is(err, ErrInvalidKeys) {
		t.Fatalf("got %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != bad {
		t.Fatalf("the file was changed: %q", data)
	}
	if _, err := AddKey(filepath.Join(t.TempDir(), "k"), "bad name"); err == nil {
		t.Fatal("a bad name added")
	}
	if _, err := AddKey(filepath.Join(t.TempDir(), "no", "such", "dir"), "a"); err == nil {
		t.Fatal("written into a folder that does not exist")
	}
}

func TestParseKeys(t *testing.T) {
	h1 := "sha256:" + strings.Repeat("a", 64)
	h2 := "sha256:" + strings.Repeat("b", 64)
	ks, err := ParseKeys([]byte("# c\r\n\n  a "+h1+"  \r\nb\t"+h2), "k")
	if err != nil || strings.Join(ks.Names(), ",") != "a,b" {
		t.Fatalf("%v %v", ks.Names(), err)
	}
	tests := []struct{ name, src, msg string }{
		{"one field", "a\n", "k:1: expected NAME sha256:HEX (two fields), found 1"},
		{"three fields", "a " + h1 + " x\n", "found 3 fields"},
		{"a bad hash", "# c\na sha256:" + strings.Repeat("A", 64) + "\n", "k:2: the second field is not sha256:"},
		{"a short hash", "a sha256:abc\n", "not sha256:"},
		{"a bad name", "-a " + h1 + "\n", "k:1: the name \"-a\" is not"},
		{"a name twice", "a " + h1 + "\na " + h2 + "\n", "k:2: the name a is used on line 1"},
		{"a hash twice", "a " + h1 + "\nb " + h1 + "\n", "k:2: the hash is the same as line 1's"},
		{"a key instead of its hash", "a ocisk_" + strings.Repeat("k", 43) + "\n", "k:1: the line holds a gateway key itself"},
		{"a key in a comment", "# ocisk_" + strings.Repeat("k", 43) + "\n", "k:1: the line holds a gateway key itself"},
		{"too large", strings.Repeat("#\n", MaxKeysBytes), "the limit is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKeys([]byte(tt.src), "k")
			if !errors.Is(err, ErrInvalidKeys) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v; want %q", err, tt.msg)
			}
		})
	}
	var lots strings.Builder
	for i := range MaxKeys + 1 {
		h := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		lots.WriteString("k" + hex.EncodeToString(h[:4]) + " sha256:" + hex.EncodeToString(h[:]) + "\n")
	}
	if _, err := ParseKeys([]byte(lots.String()), "k"); !errors.Is(err, ErrInvalidKeys) || !strings.Contains(err.Error(), "more than 10000 keys") {
		t.Fatalf("%d keys: %v", MaxKeys+1, err)
	}
}

func TestKeyFromAuthorization(t *testing.T) {
	k, _ := GenerateKey()
	for v, ok := range map[string]bool{
		"Bearer " + k.Reveal():  true,
		"bearer  " + k.Reveal(): true,
		"Basic " + k.Reveal():   false,
		"Bearer eyJhbGciOi.x.y": false,
		k.Reveal():              false,
		"Bearer":                false,
	} {
		got, gotOK := KeyFromAuthorization(v)
		if gotOK != ok || (ok && got.Reveal() != k.Reveal()) {
			t.Errorf("%.12q: ok %v", v, gotOK)
		}
	}
	var nilKeys *Keys
	if _, err := nilKeys.Lookup(k); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("no keys file: %v", err)
	}
}

// Lookup goes through every stored hash whichever matches, or none: no
// early exit whose timing would tell how far a key got.
func TestLookupComparesEveryHash(t *testing.T) {
	var b strings.Builder
	keys := make([]Key, 50)
	for i := range keys {
		keys[i], _ = GenerateKey()
		b.WriteString(hashLine("k"+strconv.Itoa(i), keys[i]))
	}
	ks, err := ParseKeys([]byte(b.String()), "k")
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	compareHashes = func(x, y []byte) int {
		calls++
		return subtle.ConstantTimeCompare(x, y)
	}
	t.Cleanup(func() { compareHashes = subtle.ConstantTimeCompare })
	other, _ := GenerateKey()
	for _, k := range []Key{keys[0], keys[25], keys[49], other} {
		calls = 0
		ks.Lookup(k)
		if calls != len(keys) {
			t.Errorf("%d comparisons for %d keys", calls, len(keys))
		}
	}
}

// The three should take the same time: read, not gated.
func BenchmarkLookup(b *testing.B) {
	var sb strings.Builder
	keys := make([]Key, 1000)
	for i := range keys {
		keys[i], _ = GenerateKey()
		sb.WriteString(hashLine("k"+strconv.Itoa(i), keys[i]))
	}
	ks, err := ParseKeys([]byte(sb.String()), "k")
	if err != nil {
		b.Fatal(err)
	}
	other, _ := GenerateKey()
	for name, k := range map[string]Key{"first": keys[0], "last": keys[999], "unknown": other} {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				ks.Lookup(k)
			}
		})
	}
}
