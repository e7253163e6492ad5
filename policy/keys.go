package policy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// KeyPrefix starts every gateway key, so that secret scanners can match
// one (ocisk_ followed by 43 base64url characters) and a key pasted where
// a name belongs can be recognised and refused without being echoed.
const KeyPrefix = "ocisk_"

const (
	keyRandomBytes = 32 // 256 bits
	keyLen         = len(KeyPrefix) + 43
	// Bounds on a keys file.
	MaxKeysBytes = 1 << 20
	MaxKeys      = 10000
)

// Sentinels of key lookups and key file edits. None of their messages
// holds a key.
var (
	ErrUnknownKey     = errors.New("the gateway key is not one this gateway knows (unknown or revoked)")
	ErrMalformedKey   = errors.New("the gateway key is not one: a gateway key is " + KeyPrefix + " followed by 43 characters")
	ErrDuplicateName  = errors.New("a key of that name is in the keys file already")
	ErrKeyNameMissing = errors.New("no key of that name is in the keys file")
)

// Key is a gateway key a client presented, or one GenerateKey made. Its
// text is reachable only by Reveal: printing, logging or marshalling a Key
// in any way shows a mask, so that a key cannot end up in a log or an
// error by a %v. The text is held by a closure, which fmt prints as an
// address even where it reads a Key by reflection without asking it (an
// unexported struct field), and which encoding/json cannot marshal. Keys
// are not comparable with ==: compare what Lookup returns.
type Key struct{ t func() string }

// NewKey wraps a value a client presented (the api-key header's value).
func NewKey(presented string) Key { return Key{func() string { return presented }} }

func (k Key) text() string {
	if k.t == nil {
		return ""
	}
	return k.t()
}

// KeyFromAuthorization reads a gateway key from an Authorization header's
// value: "Bearer ocisk_...". ok is false for anything else (another scheme,
// a bearer token that is not a gateway key, such as a JWT).
func KeyFromAuthorization(v string) (k Key, ok bool) {
	scheme, rest, found := strings.Cut(v, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return Key{}, false
	}
	rest = strings.TrimLeft(rest, " ")
	if !strings.HasPrefix(rest, KeyPrefix) {
		return Key{}, false
	}
	return NewKey(rest), true
}

// GenerateKey makes a new gateway key: KeyPrefix and 256 random bits,
// base64url-encoded.
func GenerateKey() (Key, error) {
	b := make([]byte, keyRandomBytes)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return Key{}, fmt.Errorf("cannot make a gateway key: %w", err)
	}
	return NewKey(KeyPrefix + base64.RawURLEncoding.EncodeToString(b)), nil
}

// Reveal returns the key's text: for the one place that must show it
// (ocisigner keys add, once) and nothing else.
func (k Key) Reveal() string { return k.text() }

// IsZero reports whether there is no key.
func (k Key) IsZero() bool { return k.text() == "" }

const keyMask = KeyPrefix + "[redacted]"

// String masks the key.
func (k Key) String() string {
	if k.text() == "" {
		return "(no key)"
	}
	return keyMask
}

// GoString masks the key for %#v.
func (k Key) GoString() string { return "policy.Key(" + k.String() + ")" }

// Format masks the key for every verb, %x and %q included.
func (k Key) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, k.GoString())
		return
	}
	io.WriteString(f, k.String())
}

// LogValue masks the key in log/slog.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalText masks the key in JSON, YAML and any encoding that uses it.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// wellFormed depends on the presented key alone, never on a stored one.
func (k Key) wellFormed() bool {
	v := k.text()
	if len(v) != keyLen || !strings.HasPrefix(v, KeyPrefix) {
		return false
	}
	for i := len(KeyPrefix); i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// hash is what the keys file stores. SHA-256 without salt or stretching is
// enough for a key of 256 random bits: stretching protects guessable
// secrets (passwords) when the hashes leak, and no guess of a 256-bit
// value is feasible however fast the hash; no salt is needed because no
// two keys are alike and there is no dictionary to precompute.
func (k Key) hash() [sha256.Size]byte { return sha256.Sum256([]byte(k.text())) }

// compareHashes is subtle.ConstantTimeCompare; a variable so that a test
// can count the comparisons a lookup makes.
var compareHashes = subtle.ConstantTimeCompare

// Keys is a parsed keys file: names and the hashes of their keys. It is
// never changed once parsed; a Watcher swaps whole sets.
type Keys struct {
	source string
	names  []string
	hashes [][sha256.Size]byte
}

// Lookup returns the name of the key k. It compares k's hash with every
// stored hash in constant time and goes through all of them whatever
// matched, so that its time depends on the number of keys only.
func (ks *Keys) Lookup(k Key) (string, error) {
	if !k.wellFormed() {
		return "", ErrMalformedKey
	}
	if ks == nil {
		return "", ErrUnknownKey
	}
	h := k.hash()
	found, at := 0, 0
	for i := range ks.hashes {
		eq := compareHashes(h[:], ks.hashes[i][:])
		at = subtle.ConstantTimeSelect(eq, i, at)
		found |= eq
	}
	if found == 0 {
		return "", ErrUnknownKey
	}
	return ks.names[at], nil
}

// Caller is the identity of a caller that presented k.
func (ks *Keys) Caller(k Key) (*Caller, error) {
	name, err := ks.Lookup(k)
	if err != nil {
		return nil, err
	}
	return &Caller{Key: name}, nil
}

// Names returns the key names, in the file's order.
func (ks *Keys) Names() []string {
	if ks == nil {
		return nil
	}
	return append([]string(nil), ks.names...)
}

// ParseKeys reads a keys file's content; source names it in errors, which
// are *ParseError with the line. A line is "NAME sha256:HEX"; blank lines
// and lines starting with # are skipped. No error echoes a hash or a key.
func ParseKeys(data []byte, source string) (*Keys, error) {
	fail := func(line int, format string, args ...any) error {
		return &ParseError{File: source, Line: line, Msg: fmt.Sprintf(format, args...), kind: ErrInvalidKeys}
	}
	if len(data) > MaxKeysBytes {
		return nil, fail(0, "the file is %d bytes long; the limit is %d", len(data), MaxKeysBytes)
	}
	ks := &Keys{source: source}
	lineOf := map[string]int{}
	hashLine := map[[sha256.Size]byte]int{}
	for i, line := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		s := strings.TrimSpace(string(bytes.TrimSuffix(line, []byte("\r"))))
		if strings.Contains(s, KeyPrefix) {
			// A key pasted here, even in a comment, is a key at rest in
			// a file meant to hold none.
			return nil, fail(n, "the line holds a gateway key itself; the file holds only hashes: remove the line, and make a new key with ocisigner keys add NAME")
		}
		if s == "" || s[0] == '#' {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 2 {
			return nil, fail(n, "expected NAME sha256:HEX (two fields), found %d fields", len(f))
		}
		if !validName(f[0]) {
			return nil, fail(n, "the name %s is not %s", echo(f[0]), nameRule)
		}
		h, ok := parseHash(f[1])
		if !ok {
			return nil, fail(n, "the second field is not sha256: followed by 64 lower-case hex digits")
		}
		if first, dup := lineOf[f[0]]; dup {
			return nil, fail(n, "the name %s is used on line %d already; names are unique", f[0], first)
		}
		if first, dup := hashLine[h]; dup {
			return nil, fail(n, "the hash is the same as line %d's: one key under two names", first)
		}
		if len(ks.names) == MaxKeys {
			return nil, fail(n, "more than %d keys", MaxKeys)
		}
		lineOf[f[0]], hashLine[h] = n, n
		ks.names = append(ks.names, f[0])
		ks.hashes = append(ks.hashes, h)
	}
	return ks, nil
}

func parseHash(s string) ([sha256.Size]byte, bool) {
	var h [sha256.Size]byte
	x, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(x) != 2*sha256.Size || strings.ToLower(x) != x {
		return h, false
	}
	if _, err := hex.Decode(h[:], []byte(x)); err != nil {
		return h, false
	}
	return h, true
}

func hashLine(name string, k Key) string {
	h := k.hash()
	return name + " sha256:" + hex.EncodeToString(h[:]) + "\n"
}
