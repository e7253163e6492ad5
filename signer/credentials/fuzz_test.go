package credentials_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ocisigner/ocisigner/signer/credentials"
)

// FuzzConfig feeds arbitrary files to the config reader: it must never
// panic, and whatever profiles it finds must carry DEFAULT's keys.
func FuzzConfig(f *testing.F) {
	f.Add([]byte("[DEFAULT]\nregion=us-phoenix-1\n[P]\nuser=u\npass_phrase=a=b#c\n"))
	f.Add([]byte("[P]\nkey_file=C:\\x\\\n[Q]\n"))
	f.Add([]byte("\xff\xfe[\x00]\n=\n"))
	f.Add([]byte("[DEFAULT]\n[DEFAULT]\nx=1\n[a.b]\ny=2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "config")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := credentials.OpenConfig(path)
		if err != nil {
			return
		}
		defer cfg.Close()
		def, derr := cfg.Profile("DEFAULT")
		for _, name := range cfg.Names() {
			p, err := cfg.Profile(name)
			if err != nil {
				t.Fatalf("listed profile %q unreadable: %v", name, err)
			}
			if derr == nil {
				for k := range def.Values {
					if _, ok := p.Values[k]; !ok {
						t.Fatalf("profile %q lost DEFAULT key %q", name, k)
					}
				}
			}
			// Using the profile must fail cleanly, never panic.
			_, _ = cfg.Source(name).Credentials(t.Context())
		}
	})
}
