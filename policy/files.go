package policy

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/ocisigner/ocisigner/internal/atomicfile"
)

// Load reads and parses a policy file.
func Load(path string) (*Policy, error) {
	data, err := readBounded(path, MaxPolicyBytes, "policy file")
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// LoadKeys reads and parses a keys file.
func LoadKeys(path string) (*Keys, error) {
	data, err := readBounded(path, MaxKeysBytes, "keys file")
	if err != nil {
		return nil, err
	}
	return ParseKeys(data, path)
}

// readBounded reads at most limit+1 bytes of a regular file, so that a
// file that is too large (or /dev/zero) is refused without being read
// whole; the parsers then say it is too large.
func readBounded(path string, limit int, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(path, what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileError(path, what, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s is not a regular file", what, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fileError(path, what, err)
	}
	return data, nil
}

func fileError(path, what string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s %s does not exist: %w", what, path, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s %s is not readable by uid %d: %w", what, path, os.Getuid(), err)
	}
	return fmt.Errorf("cannot read %s %s: %w", what, path, err)
}

const keysHeader = `# ocisigner gateway keys: one "NAME sha256:HEX" a line, the SHA-256 of each key,
# never the key. Add one with: ocisigner keys add NAME. Revoke one by removing its line.
`

// AddKey makes a new gateway key named name, appends its hash to the keys
// file at path (made if missing) and returns the key: the only time it is
// seen. The file is replaced atomically, with mode 0600. A file that does
// not parse, or has the name already, is left as it is.
//
// Two AddKey (or RevokeKey) at once on one file may lose one of the
// edits: run them one at a time (the CLI is run by an operator).
func AddKey(path, name string) (Key, error) {
	if !validName(name) {
		return Key{}, fmt.Errorf("the key name %s is not %s", echo(name), nameRule)
	}
	data, err := readBounded(path, MaxKeysBytes, "keys file")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		data = []byte(keysHeader)
	case err != nil:
		return Key{}, err
	}
	ks, err := ParseKeys(data, path)
	if err != nil {
		return Key{}, fmt.Errorf("the keys file must be fixed before a key is added: %w", err)
	}
	if containsStr(ks.names, name) {
		return Key{}, fmt.Errorf("%w: %s in %s; revoke it first, or choose another name", ErrDuplicateName, name, path)
	}
	k, err := GenerateKey()
	if err != nil {
		return Key{}, err
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = append(data, hashLine(name, k)...)
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return Key{}, fmt.Errorf("cannot write keys file %s: %w", path, err)
	}
	return k, nil
}

// RevokeKey removes the key named name from the keys file at path: a
// gateway watching the file refuses the key from its next reload on.
func RevokeKey(path, name string) error {
	data, err := readBounded(path, MaxKeysBytes, "keys file")
	if err != nil {
		return err
	}
	if _, err := ParseKeys(data, path); err != nil {
		return fmt.Errorf("the keys file must be fixed before a key is revoked: %w", err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	kept := lines[:0]
	found := false
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name && !strings.HasPrefix(f[0], "#") {
			found = true
			continue
		}
		kept = append(kept, l)
	}
	if !found {
		return fmt.Errorf("%w: %s in %s", ErrKeyNameMissing, echo(name), path)
	}
	if err := atomicfile.Write(path, []byte(strings.Join(kept, "")), 0o600); err != nil {
		return fmt.Errorf("cannot write keys file %s: %w", path, err)
	}
	return nil
}
