package main

import (
	"errors"
	"slices"
	"testing"

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
