package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/intercept"
)

// The SDS mints for what looks like an OCI API endpoint, or what an
// --allow-host pattern names for port 443, and nothing else: not a realm
// name that is no API host, whatever the host policy says of realm hosts.
func TestInterceptAllowComposesHostPolicy(t *testing.T) {
	hosts, err := extproc.NewHostPolicy([]string{"*.corp.example", "10.0.0.5", "test.internal:8443", "exact.example:443"})
	if err != nil {
		t.Fatal(err)
	}
	allow := allowFor(hosts)
	for name, want := range map[string]bool{
		"objectstorage.us-ashburn-1.oraclecloud.com": true,
		"api.corp.example":                           true,
		"exact.example":                              true,
		"www.oraclecloud.com":                        false,
		"oraclecloud.com":                            false,
		"test.internal":                              false, // allowed on 8443 only
		"example.com":                                false,
		intercept.NoSNIName:                          false,
	} {
		err := allow(name)
		if (err == nil) != want {
			t.Errorf("%s: %v, want allowed %v", name, err, want)
		}
		if err != nil && !errors.Is(err, intercept.ErrNotOCIEndpoint) {
			t.Errorf("%s: %v does not wrap ErrNotOCIEndpoint", name, err)
		}
	}
	if got := interceptPatterns([]string{"*.corp.example", "10.0.0.5", "[::1]:8443", "test.internal:8443"}); !slices.Equal(got, []string{"*.corp.example", "test.internal:8443"}) {
		t.Errorf("CA patterns %v: IP addresses cannot be in a name-constrained CA", got)
	}
}

// An --allow-host IP (for the proxy form) does not stop interception from
// starting, and the CA covers the names allowed.
func TestInterceptStartsWithAllowedHosts(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API"}
	svc := startService(t, env, serveOptions{allowHosts: stringList{"10.0.0.5", "*.corp.example"},
		icpt: interceptOptions{enabled: true, ca: caFlags{stateDir: t.TempDir()}}}, nil)
	if err := svc.icpt.ca.Covers([]string{"*.corp.example"}); err != nil {
		t.Error(err)
	}
}

// Half a CA is a usage error; a CA that cannot be used is a configuration
// error (exit 3), not a failure.
func TestInterceptCAFlagErrors(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API", "OCISIGNER_LISTEN": "127.0.0.1:0", "OCISIGNER_ADMIN": ""}
	if code, _, errOut := runCmd(t, env, "serve", "--intercept", "--ca-cert", "x.pem"); code != exitUsage {
		t.Errorf("--ca-cert alone: exit %d %s", code, errOut)
	}
	missing := t.TempDir() + "/none.pem"
	if code, _, errOut := runCmd(t, env, "serve", "--intercept", "--ca-cert", missing, "--ca-key", missing); code != exitConfig {
		t.Errorf("unreadable CA: exit %d %s", code, errOut)
	}
	if code, _, errOut := runCmd(t, env, "ca", "--state-dir", t.TempDir()); code != exitConfig {
		t.Errorf("ca without a CA: exit %d %s", code, errOut)
	}
}

// ca --init makes the CA serve --intercept would make on its first start,
// without credentials or a server: the pair serve --ca-cert/--ca-key
// loads, the key 0600 and never printed, and the bundle for clients. A
// second run keeps it; the constraints cover --allow-host; --init with
// --ca-cert is a usage error.
func TestCAInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ocisigner-ca")
	env := map[string]string{"OCISIGNER_SYSTEM_ROOTS": testSystemRoots(t)}
	code, out, errOut := runCmd(t, env, "ca", "--init", "--state-dir", dir, "--allow-host", "*.corp.example")
	if code != exitOK {
		t.Fatalf("ca --init: exit %d %s", code, errOut)
	}
	ca, err := intercept.Load(filepath.Join(dir, intercept.CertFileName), filepath.Join(dir, intercept.KeyFileName))
	if err != nil {
		t.Fatalf("the pair ca --init wrote does not load as --ca-cert/--ca-key: %v", err)
	}
	if string(ca.CertPEM()) != out {
		t.Errorf("ca --init printed another certificate than the one it wrote")
	}
	if err := ca.Covers([]string{"*.corp.example"}); err != nil {
		t.Error(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, intercept.KeyFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the key file: %v, %v; want mode 0600", fi, err)
	}
	key, _ := os.ReadFile(filepath.Join(dir, intercept.KeyFileName))
	if strings.Contains(out+errOut, "PRIVATE KEY") || strings.Contains(out+errOut, strings.Split(string(key), "\n")[1]) {
		t.Errorf("ca --init printed the key:\n%s%s", out, errOut)
	}
	if code, again, errOut := runCmd(t, env, "ca", "--init", "--state-dir", dir); code != exitOK || again != out {
		t.Errorf("a second ca --init: exit %d %s; same certificate %v", code, errOut, again == out)
	}
	if code, _, errOut := runCmd(t, env, "ca", "--init", "--state-dir", dir, "--allow-host", "*.other.example"); code != exitConfig {
		t.Errorf("ca --init for a host the CA does not cover: exit %d %s, want %d", code, errOut, exitConfig)
	}
	if code, _, errOut := runCmd(t, env, "ca", "--init", "--ca-cert", filepath.Join(dir, intercept.CertFileName)); code != exitUsage {
		t.Errorf("ca --init --ca-cert: exit %d %s, want %d", code, errOut, exitUsage)
	}
}

// testSystemRoots writes a stand-in for the system roots a bundle starts
// from, so that no test depends on the machine's.
func testSystemRoots(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test system root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
