package credentials_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

func credentialsOf(t *testing.T, configPath, profile string, opts ...credentials.Option) (*signer.Credentials, error) {
	t.Helper()
	cfg, err := openTest(t, configPath, opts...)
	if err != nil {
		return nil, err
	}
	return cfg.Source(profile).Credentials(context.Background())
}

func TestKeyFormatsLoadFromProfile(t *testing.T) {
	key := signertest.Key(t, 1)
	for _, tc := range []struct {
		format     signertest.KeyFormat
		passphrase string
	}{
		{signertest.PKCS1, ""},
		{signertest.PKCS8, ""},
		{signertest.EncryptedPKCS8, "correct horse"},
		{signertest.LegacyPEM, "battery=staple#1;x"}, // '=', '#', ';' must survive the INI parser
	} {
		t.Run(string(tc.format), func(t *testing.T) {
			f := signertest.NewFolder(t)
			f.APIKeyProfile("P", key, "keys/key.pem", tc.format, tc.passphrase)
			// Console-made keys end with an OCI_API_KEY label after the PEM block.
			p := f.Path("keys/key.pem")
			data, _ := os.ReadFile(p)
			f.Write("keys/key.pem", append(data, []byte("OCI_API_KEY\n")...))

			c, err := credentialsOf(t, f.ConfigPath(), "P")
			if err != nil {
				t.Fatal(err)
			}
			if !c.Key.Equal(key) {
				t.Fatal("loaded a different key")
			}
			if want := signertest.APIKeyID("P", &key.PublicKey); c.KeyID != want {
				t.Fatalf("keyId = %s, want %s", c.KeyID, want)
			}
			if c.Kind != signer.KindAPIKey || c.Region != "us-ashburn-1" {
				t.Fatalf("kind %s region %s", c.Kind, c.Region)
			}
		})
	}
}

func TestKeyErrors(t *testing.T) {
	key := signertest.Key(t, 1)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	encPKCS8 := signertest.EncodeKey(t, key, signertest.EncryptedPKCS8, "right")
	legacy := signertest.EncodeKey(t, key, signertest.LegacyPEM, "right")
	for _, tc := range []struct {
		name       string
		data       []byte
		passphrase string
		want       error
	}{
		{"encrypted PKCS#8 without passphrase", encPKCS8, "", signer.ErrPassphraseMissing},
		{"encrypted PKCS#8 with wrong passphrase", encPKCS8, "wrong", signer.ErrPassphraseWrong},
		{"legacy PEM without passphrase", legacy, "", signer.ErrPassphraseMissing},
		{"legacy PEM with wrong passphrase", legacy, "wrong", signer.ErrPassphraseWrong},
		{"EC key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), "", signer.ErrBadKey},
		{"not PEM", []byte("hello"), "", signer.ErrBadKey},
		{"empty file", nil, "", signer.ErrBadKey},
		{"truncated PEM", signertest.EncodeKey(t, key, signertest.PKCS1, "")[:300], "", signer.ErrBadKey},
		{"corrupt DER", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte("garbage")}), "", signer.ErrBadKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := signer.ParsePrivateKey(tc.data, []byte(tc.passphrase))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.passphrase != "" && strings.Contains(err.Error(), tc.passphrase) {
				t.Fatalf("error quotes the passphrase: %v", err)
			}
			// The same error through a profile names the profile and the file.
			f := signertest.NewFolder(t)
			f.Write("k.pem", tc.data)
			f.AppendConfig("P", "user", "ocid1.user.oc1..u", "tenancy", "ocid1.tenancy.oc1..t",
				"fingerprint", signer.Fingerprint(&key.PublicKey), "key_file", f.Path("k.pem"), "pass_phrase", tc.passphrase)
			_, err = credentialsOf(t, f.ConfigPath(), "P")
			if !errors.Is(err, tc.want) {
				t.Fatalf("via profile: err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), "profile P") || !strings.Contains(err.Error(), f.Path("k.pem")) {
				t.Fatalf("error does not name profile and file: %v", err)
			}
		})
	}
}

func TestFingerprintMismatchIsCaughtAtLoad(t *testing.T) {
	f := signertest.NewFolder(t)
	f.APIKeyProfile("P", signertest.Key(t, 1), "k.pem", signertest.PKCS1, "", "fingerprint", "aa:bb")
	// A later key of the same name wins in the INI: the profile now claims aa:bb.
	_, err := credentialsOf(t, f.ConfigPath(), "P")
	if !errors.Is(err, signer.ErrFingerprintMismatch) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "aa:bb") || !strings.Contains(err.Error(), signer.Fingerprint(&signertest.Key(t, 1).PublicKey)) {
		t.Fatalf("message should show both fingerprints: %v", err)
	}
}

// The console's fingerprint copied in upper case names the same key.
func TestFingerprintCaseDoesNotMatter(t *testing.T) {
	key := signertest.Key(t, 1)
	f := signertest.NewFolder(t)
	f.APIKeyProfile("P", key, "k.pem", signertest.PKCS1, "", "fingerprint", strings.ToUpper(signer.Fingerprint(&key.PublicKey)))
	c, err := credentialsOf(t, f.ConfigPath(), "P")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(c.KeyID, "/"+signer.Fingerprint(&key.PublicKey)) {
		t.Fatalf("keyId %q: want the lower-case fingerprint OCI lists", c.KeyID)
	}
}

func TestDefaultSectionIsInheritedKeyByKey(t *testing.T) {
	key := signertest.Key(t, 1)
	f := signertest.NewFolder(t)
	f.Write("k.pem", signertest.EncodeKey(t, key, signertest.PKCS1, ""))
	f.AppendConfig("DEFAULT", "tenancy", "ocid1.tenancy.oc1..fromdefault", "region", "us-phoenix-1",
		"key_file", "k.pem", "fingerprint", signer.Fingerprint(&key.PublicKey), "user", "ocid1.user.oc1..default")
	f.AppendConfig("OTHER", "user", "ocid1.user.oc1..other", "region", "eu-frankfurt-1")
	cfg, err := openTest(t, f.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ profile, keyID, region string }{
		{"DEFAULT", "ocid1.tenancy.oc1..fromdefault/ocid1.user.oc1..default/", "us-phoenix-1"},
		{"OTHER", "ocid1.tenancy.oc1..fromdefault/ocid1.user.oc1..other/", "eu-frankfurt-1"},
	} {
		c, err := cfg.Source(tc.profile).Credentials(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if c.KeyID != tc.keyID+signer.Fingerprint(&key.PublicKey) || c.Region != tc.region {
			t.Errorf("%s: keyId %s region %s", tc.profile, c.KeyID, c.Region)
		}
	}
	if got := cfg.Names(); strings.Join(got, ",") != "DEFAULT,OTHER" {
		t.Errorf("names = %v", got)
	}
}

func TestConfigValueParsing(t *testing.T) {
	f := signertest.NewFolder(t)
	f.Write("config", []byte(strings.Join([]string{
		"# comment line",
		"[P]",
		"pass_phrase = a=b=c # not a comment ; nor this",
		"Region=us-ashburn-1",
		`key_file=C:\Users\kali\.oci\key.pem`,
		"[p]",
		"region=lowercase-profile-is-another-profile",
	}, "\n")))
	cfg, err := openTest(t, f.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	p, err := cfg.Profile("P")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Passphrase(); got != "a=b=c # not a comment ; nor this" {
		t.Errorf("pass_phrase = %q", got)
	}
	if got := p.Get("region"); got != "us-ashburn-1" {
		t.Errorf("keys should be case-insensitive: region = %q", got)
	}
	if got := p.Get("key_file"); got != `C:\Users\kali\.oci\key.pem` {
		t.Errorf("backslashes must survive: %q", got)
	}
	if q, err := cfg.Profile("p"); err != nil || q.Get("region") != "lowercase-profile-is-another-profile" {
		t.Errorf("profile names are case-sensitive: %v %v", q, err)
	}
}

func TestConfigAndProfileSelection(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name, flag string
		env        map[string]string
		want       string
	}{
		{"flag wins", "/x/config", map[string]string{"OCI_CLI_CONFIG_FILE": "/y", "OCI_CONFIG_FILE": "/z"}, "/x/config"},
		{"OCI_CLI_CONFIG_FILE next", "", map[string]string{"OCI_CLI_CONFIG_FILE": "/y", "OCI_CONFIG_FILE": "/z"}, "/y"},
		{"OCI_CONFIG_FILE next", "", map[string]string{"OCI_CONFIG_FILE": "/z"}, "/z"},
		{"home default", "", nil, filepath.Join(home, ".oci/config")},
		{"tilde expanded", "~/cfg", nil, filepath.Join(home, "cfg")},
	} {
		if got := credentials.ConfigPath(tc.flag, env(tc.env)); got != tc.want {
			t.Errorf("config path, %s: %s, want %s", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name, flag string
		env        map[string]string
		want       string
	}{
		{"flag wins", "A", map[string]string{"OCI_CLI_PROFILE": "B"}, "A"},
		{"env next", "", map[string]string{"OCI_CLI_PROFILE": "B"}, "B"},
		{"DEFAULT last", "", nil, "DEFAULT"},
	} {
		if got := credentials.ProfileName(tc.flag, env(tc.env)); got != tc.want {
			t.Errorf("profile, %s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestPathsResolve(t *testing.T) {
	key := signertest.Key(t, 1)
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.WriteFile(filepath.Join(home, "home.pem"), signertest.EncodeKey(t, key, signertest.PKCS1, ""), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, keyFile string }{
		{"relative to the config folder", "keys/k.pem"},
		{"tilde", "~/home.pem"},
		{"absolute", ""}, // filled below
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := signertest.NewFolder(t)
			f.Write("keys/k.pem", signertest.EncodeKey(t, key, signertest.PKCS1, ""))
			kf := tc.keyFile
			if kf == "" {
				kf = f.Path("keys/k.pem")
			}
			f.AppendConfig("P", "user", "u", "tenancy", "t", "fingerprint", signer.Fingerprint(&key.PublicKey), "key_file", kf)
			if _, err := credentialsOf(t, f.ConfigPath(), "P"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A config written on a laptop names /home/kali/.oci/...; mounted at another
// folder the files must still be found, and the log must say where.
func TestMountedFolderFindsFilesBelowWrittenRoot(t *testing.T) {
	key := signertest.Key(t, 2)
	is := signertest.NewIssuer(t)
	for _, root := range []string{"/home/kali/.oci", `C:\Users\kali\.oci`, "~/.oci"} {
		t.Run(root, func(t *testing.T) {
			t.Setenv("HOME", t.TempDir()) // ~ must not resolve to a real folder
			f := signertest.NewFolder(t)
			f.WrittenRoot = root
			sess := f.SessionProfile("TEST123", key, is.Mint(t, &key.PublicKey, signertest.TokenOptions{}))
			if strings.HasPrefix(root, "C:") {
				// A Windows-written config uses backslashes throughout.
				data, _ := os.ReadFile(f.ConfigPath())
				fixed := strings.ReplaceAll(string(data), root+"/sessions/TEST123/", root+`\sessions\TEST123\`)
				f.Write("config", []byte(fixed))
			}
			var logs bytes.Buffer
			c, err := credentialsOf(t, f.ConfigPath(), "TEST123", credentials.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			if err != nil {
				t.Fatal(err)
			}
			if c.KeyID != "ST$"+sess.Token {
				t.Fatal("wrong token")
			}
			if !strings.Contains(logs.String(), f.Path(sess.TokenPath)) || !strings.Contains(logs.String(), f.Path(sess.KeyPath)) {
				t.Fatalf("log should name the paths used:\n%s", logs.String())
			}
		})
	}
}

// A file a profile names that is missing is looked for at one place
// below the mounted folder: the same file, never a shorter tail of its
// path, which is another profile's file. These are the two ways a profile
// borrowed [DEFAULT]'s key (oci_api_key.pem at the folder's top).
func TestMissingKeyFileNeverBorrowsAnotherProfilesKey(t *testing.T) {
	defKey, sessKey, prodKey := signertest.Key(t, 1), signertest.Key(t, 2), signertest.Key(t, 3)
	is := signertest.NewIssuer(t)
	for _, tc := range []struct {
		name, profile, root, written, candidate string
	}{
		// sessions/TEST123/oci_api_key.pem deleted: DEFAULT's key was taken
		// and the error blamed a half-done rotation.
		{"session key deleted", "TEST123", "/home/kali/.oci", "/home/kali/.oci/sessions/TEST123/oci_api_key.pem", "sessions/TEST123/oci_api_key.pem"},
		// /home/alice/.oci/prod/oci_api_key.pem absent: DEFAULT's key was
		// taken and the fingerprint mismatch advised adopting it.
		{"api key absent", "PROD", "/home/alice/.oci", "/home/alice/.oci/prod/oci_api_key.pem", "prod/oci_api_key.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := signertest.NewFolder(t)
			f.WrittenRoot = tc.root
			f.APIKeyProfile("DEFAULT", defKey, "oci_api_key.pem", signertest.PKCS1, "")
			switch tc.profile {
			case "TEST123":
				sess := f.SessionProfile("TEST123", sessKey, is.Mint(t, &sessKey.PublicKey, signertest.TokenOptions{}))
				if err := os.Remove(f.Path(sess.KeyPath)); err != nil {
					t.Fatal(err)
				}
			case "PROD":
				f.AppendConfig("PROD", "user", "ocid1.user.oc1..prod", "fingerprint", signer.Fingerprint(&prodKey.PublicKey),
					"key_file", tc.written, "tenancy", "ocid1.tenancy.oc1..test", "region", "us-ashburn-1")
			}
			_, err := credentialsOf(t, f.ConfigPath(), tc.profile)
			if !errors.Is(err, signer.ErrFileMissing) || errors.Is(err, signer.ErrKeyMismatch) || errors.Is(err, signer.ErrFingerprintMismatch) {
				t.Fatalf("err = %v; want the key file not found", err)
			}
			msg := err.Error()
			for _, want := range []string{"profile " + tc.profile, tc.written, f.ConfigPath(), f.Path(tc.candidate)} {
				if !strings.Contains(msg, want) {
					t.Errorf("message lacks %q:\n%s", want, msg)
				}
			}
			for _, never := range []string{f.Path("oci_api_key.pem") + ",", "rotation", "set fingerprint"} {
				if strings.Contains(msg, never) {
					t.Errorf("message says %q:\n%s", never, msg)
				}
			}
			// DEFAULT itself still works.
			if _, err := credentialsOf(t, f.ConfigPath(), "DEFAULT"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A path written elsewhere that says nothing of the folder it was written
// in (no .oci, no sessions/<profile>) is not guessed at; and a place below
// the mounted folder that another path of the config names is never taken
// for one that does not name it.
func TestMountedFolderIsNotGuessedAt(t *testing.T) {
	a := signertest.Key(t, 1)
	f := signertest.NewFolder(t)
	f.WrittenRoot = "/etc/ocicfg"
	f.APIKeyProfile("A", a, "keys/a.pem", signertest.PKCS1, "")
	_, err := credentialsOf(t, f.ConfigPath(), "A")
	if !errors.Is(err, signer.ErrFileMissing) || !strings.Contains(err.Error(), "relative to the config's folder") {
		t.Fatalf("err = %v; want not found, saying what works", err)
	}
	g := signertest.NewFolder(t)
	g.Write("prod.pem", signertest.EncodeKey(t, a, signertest.PKCS1, ""))
	g.AppendConfig("DEFAULT", "user", "ocid1.user.oc1..d", "fingerprint", signer.Fingerprint(&a.PublicKey), "key_file", "prod.pem", "tenancy", "t")
	g.AppendConfig("PROD", "user", "ocid1.user.oc1..p", "fingerprint", signer.Fingerprint(&a.PublicKey), "key_file", "/home/alice/.oci/prod.pem", "tenancy", "t")
	if _, err := credentialsOf(t, g.ConfigPath(), "DEFAULT"); err != nil {
		t.Fatal(err)
	}
	if _, err := credentialsOf(t, g.ConfigPath(), "PROD"); !errors.Is(err, signer.ErrFileMissing) || !strings.Contains(err.Error(), "is where the config's prod.pem lies") {
		t.Fatalf("PROD: err = %v; want not found, naming the path that has that place", err)
	}
}

func TestProfileNotFound(t *testing.T) {
	f := signertest.NewFolder(t)
	f.AppendConfig("A", "user", "u")
	f.AppendConfig("B", "user", "u")
	_, err := credentialsOf(t, f.ConfigPath(), "NOPE")
	if !errors.Is(err, signer.ErrProfileNotFound) {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "A, B") || !strings.Contains(err.Error(), "NOPE") {
		t.Errorf("message should name the profile and the ones that exist: %v", err)
	}
	var e *signer.Error
	if !errors.As(err, &e) || e.Profile != "NOPE" {
		t.Errorf("want *signer.Error for profile NOPE, got %#v", err)
	}
	// A name in the wrong case or one edit off is pointed at the profile
	// meant; anything else is not.
	f.AppendConfig("TEST123", "user", "u")
	for in, want := range map[string]string{"test123": "did you mean TEST123?", "TEST12": "did you mean TEST123?",
		"TEST1234": "did you mean TEST123?", "TESX123": "did you mean TEST123?", "PROD": ""} {
		_, err := credentialsOf(t, f.ConfigPath(), in)
		if got := strings.Contains(err.Error(), "did you mean"); got != (want != "") || want != "" && !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", in, err)
		}
	}
}

func TestIncompleteProfilesSayWhatIsMissing(t *testing.T) {
	f := signertest.NewFolder(t)
	f.AppendConfig("NOUSER", "tenancy", "t", "fingerprint", "f", "key_file", "k")
	f.AppendConfig("NOKEY", "tenancy", "t", "fingerprint", "f", "user", "u")
	cfg, err := openTest(t, f.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Source("NOUSER").Credentials(context.Background())
	// With neither user nor security_token_file it is an API-key profile missing its user.
	if !errors.Is(err, signer.ErrConfig) || !strings.Contains(err.Error(), "user") {
		t.Errorf("NOUSER: %v", err)
	}
	_, err = cfg.Source("NOKEY").Credentials(context.Background())
	if !errors.Is(err, signer.ErrConfig) || !strings.Contains(err.Error(), "key file") {
		t.Errorf("NOKEY: %v", err)
	}
}

// Running as root, a 0600 file is readable anyway; the check then runs in a
// child process as an unprivileged user, so the case is real either way.
func TestPermissionDenied(t *testing.T) {
	if path := os.Getenv("OCISIGNER_TEST_UNREADABLE"); path != "" {
		checkUnreadable(t, path) // the child, as uid 65534
		return
	}
	t.Parallel() // the child's wait overlaps the other parallel tests
	// Not t.TempDir: its parent is 0700, which the unprivileged child cannot enter.
	dir, err := os.MkdirTemp("", "ocisigner-perm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := signertest.Key(t, 1)
	keyPath := filepath.Join(dir, "k.pem")
	cfgPath := filepath.Join(dir, "config")
	if err := os.WriteFile(keyPath, signertest.EncodeKey(t, key, signertest.PKCS1, ""), 0o000); err != nil {
		t.Fatal(err)
	}
	cfgText := "[P]\nuser=u\ntenancy=t\nfingerprint=" + signer.Fingerprint(&key.PublicKey) + "\nkey_file=" + keyPath + "\n"
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		checkUnreadable(t, cfgPath) // this user is already one the key is not readable by
		return
	}
	runAsNobody(t, dir, "TestPermissionDenied", "OCISIGNER_TEST_UNREADABLE="+cfgPath)
}

// checkUnreadable: a key file this process may not read is ErrPermission,
// naming the uid it runs as.
func checkUnreadable(t *testing.T, configPath string) {
	t.Helper()
	_, err := credentialsOf(t, configPath, "P")
	if !errors.Is(err, signer.ErrPermission) || !strings.Contains(err.Error(), "not readable by uid") {
		t.Fatalf("err = %v", err)
	}
}

func TestConcurrentFirstUseLoadsOnce(t *testing.T) {
	key := signertest.Key(t, 1)
	f := signertest.NewFolder(t)
	f.APIKeyProfile("P", key, "k.pem", signertest.PKCS1, "")
	cfg, err := openTest(t, f.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	got := make([]*signer.Credentials, 32)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = cfg.Source("P").Credentials(context.Background())
		}()
	}
	wg.Wait()
	for _, c := range got {
		if c == nil || c != got[0] {
			t.Fatal("concurrent first calls should share one load")
		}
	}
}

// An encrypted key file names its own key-derivation cost; one asking for
// hours of PBKDF2 or gigabytes of scrypt is refused at once.
func TestEncryptedKeyWithUnreasonableKDFCost(t *testing.T) {
	type algo struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue
	}
	raw := func(v any) asn1.RawValue {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return asn1.RawValue{FullBytes: b}
	}
	aes256CBC := algo{asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}, raw(make([]byte, 16))}
	for _, tc := range []struct {
		name string
		kdf  algo
	}{
		{"PBKDF2 with 2^31-1 iterations", algo{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}, raw(struct {
			Salt []byte
			Iter int
		}{make([]byte, 8), 1<<31 - 1})}},
		{"scrypt with N=2^30", algo{asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}, raw(struct {
			Salt    []byte
			N, R, P int
		}{make([]byte, 8), 1 << 30, 8, 1})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pbes2 := algo{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}, raw(struct{ KDF, Scheme algo }{tc.kdf, aes256CBC})}
			der, err := asn1.Marshal(struct {
				Algo algo
				Data []byte
			}{pbes2, make([]byte, 1216)})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = signer.ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), []byte("pw"))
			if !errors.Is(err, signer.ErrBadKey) || !strings.Contains(err.Error(), "key-derivation") {
				t.Fatalf("err = %v", err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("took %v: the derivation ran", d)
			}
		})
	}
}

// openTest opens a config whose loop the test's end closes.
func openTest(t testing.TB, path string, opts ...credentials.Option) (*credentials.ConfigFile, error) {
	t.Helper()
	cfg, err := credentials.OpenConfig(path, opts...)
	if err == nil {
		t.Cleanup(func() { cfg.Close() })
	}
	return cfg, err
}
