package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `ocisigner client-config` writes two files and no more: config and the
// private key it names (throwaway_key.pem), both mode 0600, in a folder it
// creates 0700 (writeClientConfig; docs/intercept.md says "both 0600").
// The key is registered nowhere, so it grants nothing by itself, but it
// is still a private key handed to an SDK as its own, and the config
// points at it: neither is for other local users to read. The modes are
// set explicitly (atomicfile chmods the temporary file before it takes the
// name), so they hold whatever the umask, and a second run over files
// someone loosened puts them back to 0600 rather than keeping the old
// mode, as a plain os.WriteFile would.
func TestClientConfigFilesAreOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "workspace", "oci-throwaway")
	write := func() {
		t.Helper()
		code, out, errOut := runCmd(t, nil, "client-config", "--dir", dir, "--region", "us-ashburn-1")
		if code != exitOK || !strings.Contains(out, "region us-ashburn-1") {
			t.Fatalf("client-config: exit %d\n%s%s", code, out, errOut)
		}
	}
	check := func(when string) {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if strings.Join(names, " ") != throwawayConfig+" "+throwawayKeyFile {
			t.Errorf("%s: the folder holds %v, want exactly %s and %s (no temporary file left)", when, names, throwawayConfig, throwawayKeyFile)
		}
		for _, name := range []string{throwawayConfig, throwawayKeyFile} {
			fi, err := os.Lstat(filepath.Join(dir, name))
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %s is %v, want a regular file of mode 0600", when, name, fi.Mode())
			}
		}
	}

	write()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	// MkdirAll's 0700 passes through the umask, which can only take bits
	// away: group or other bits here mean the code asked for them.
	if fi.Mode().Perm()&0o077 != 0 || fi.Mode().Perm()&0o700 != 0o700 {
		t.Errorf("the folder client-config created is %v, want 0700", fi.Mode().Perm())
	}
	check("first run")
	// The key file really is the key the config names, so 0600 is on the
	// file an SDK will read.
	cfg, err := os.ReadFile(filepath.Join(dir, throwawayConfig))
	if err != nil {
		t.Fatal(err)
	}
	if want := "key_file=" + filepath.Join(dir, throwawayKeyFile) + "\n"; !strings.Contains(string(cfg), want) {
		t.Errorf("config does not name the key file it wrote (%q):\n%s", want, cfg)
	}
	key, err := os.ReadFile(filepath.Join(dir, throwawayKeyFile))
	if err != nil || !strings.HasPrefix(string(key), "-----BEGIN PRIVATE KEY-----\n") {
		t.Fatalf("%s is not a PEM private key: %v", throwawayKeyFile, err)
	}

	for _, name := range []string{throwawayConfig, throwawayKeyFile} {
		if err := os.Chmod(filepath.Join(dir, name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write()
	check("a second run over world-readable files")
}
