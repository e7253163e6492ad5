package signertest

import (
	"crypto/rsa"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ocisigner/ocisigner/signer"
)

// Folder is an ~/.oci folder written by a test, as `oci setup config` and
// `oci session authenticate` would write it.
type Folder struct {
	t   testing.TB
	Dir string
	// WrittenRoot, when set, is the folder the config's paths name instead
	// of Dir, as when a config written on one machine (/home/kali/.oci) is
	// mounted on another.
	WrittenRoot string
}

// NewFolder makes an empty folder under t.TempDir().
func NewFolder(t testing.TB) *Folder {
	return &Folder{t: t, Dir: t.TempDir()}
}

// ConfigPath is the folder's config file.
func (f *Folder) ConfigPath() string { return filepath.Join(f.Dir, "config") }

// Path returns the absolute path of rel inside the folder.
func (f *Folder) Path(rel string) string { return filepath.Join(f.Dir, filepath.FromSlash(rel)) }

// WrittenPath returns what the config says for rel: under WrittenRoot when set.
func (f *Folder) WrittenPath(rel string) string {
	if f.WrittenRoot != "" {
		return f.WrittenRoot + "/" + rel
	}
	return f.Path(rel)
}

// Write writes data to rel with mode 0600, making folders as needed.
func (f *Folder) Write(rel string, data []byte) string {
	f.t.Helper()
	p := f.Path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

var renameSeq atomic.Int64

// Replace writes data to rel atomically, by writing a temporary file and
// renaming it over the old one, as the OCI CLI does.
func (f *Folder) Replace(rel string, data []byte) {
	f.t.Helper()
	p := f.Path(rel)
	tmp := fmt.Sprintf("%s.tmp%d", p, renameSeq.Add(1))
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		f.t.Fatal(err)
	}
}

// AppendConfig appends a profile section with the given keys, in order.
func (f *Folder) AppendConfig(profile string, kv ...string) {
	f.t.Helper()
	if len(kv)%2 != 0 {
		f.t.Fatal("AppendConfig needs key/value pairs")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]\n", profile)
	for i := 0; i < len(kv); i += 2 {
		fmt.Fprintf(&b, "%s=%s\n", kv[i], kv[i+1])
	}
	b.WriteString("\n")
	fh, err := os.OpenFile(f.ConfigPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		f.t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteString(b.String()); err != nil {
		f.t.Fatal(err)
	}
}

// Session is what SessionProfile wrote.
type Session struct {
	Profile   string
	KeyPath   string // sessions/<profile>/oci_api_key.pem, relative to the folder
	TokenPath string // sessions/<profile>/token
	Token     string
}

// SessionProfile writes a session profile as `oci session authenticate`
// does: the session key and token under sessions/<name>/ and a config
// section naming them. Extra key/value pairs are appended to the section.
func (f *Folder) SessionProfile(name string, key *rsa.PrivateKey, token string, extra ...string) Session {
	f.t.Helper()
	s := Session{Profile: name, KeyPath: "sessions/" + name + "/oci_api_key.pem", TokenPath: "sessions/" + name + "/token", Token: token}
	f.Write(s.KeyPath, EncodeKey(f.t, key, PKCS1, ""))
	f.Write(s.TokenPath, []byte(token+"\n")) // the CLI ends the file with a newline
	kv := []string{
		"fingerprint", signer.Fingerprint(&key.PublicKey),
		"key_file", f.WrittenPath(s.KeyPath),
		"tenancy", "ocid1.tenancy.oc1..test",
		"region", "us-phoenix-1",
		"security_token_file", f.WrittenPath(s.TokenPath),
	}
	f.AppendConfig(name, append(kv, extra...)...)
	return s
}

// APIKeyProfile writes an API-key profile whose key is stored at keyRel in
// format kf (encrypted formats use passphrase, written as pass_phrase).
func (f *Folder) APIKeyProfile(name string, key *rsa.PrivateKey, keyRel string, kf KeyFormat, passphrase string, extra ...string) {
	f.t.Helper()
	f.Write(keyRel, EncodeKey(f.t, key, kf, passphrase))
	kv := []string{
		"user", "ocid1.user.oc1..u" + strings.ToLower(name),
		"fingerprint", signer.Fingerprint(&key.PublicKey),
		"key_file", f.WrittenPath(keyRel),
		"tenancy", "ocid1.tenancy.oc1..test",
		"region", "us-ashburn-1",
	}
	if passphrase != "" {
		kv = append(kv, "pass_phrase", passphrase)
	}
	f.AppendConfig(name, append(kv, extra...)...)
}

// APIKeyID is the keyId an API-key profile written by APIKeyProfile signs with.
func APIKeyID(name string, key *rsa.PublicKey) string {
	return "ocid1.tenancy.oc1..test/ocid1.user.oc1..u" + strings.ToLower(name) + "/" + signer.Fingerprint(key)
}

// LogBuffer collects log output from many goroutines, for tests that read
// what a component logged.
type LogBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Len returns how many bytes were written so far.
func (b *LogBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}
