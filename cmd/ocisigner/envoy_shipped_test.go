package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/internal/envoyconfig"
)

// shippedEnvoyConfig is the Envoy stand-in's configuration read from the
// repository's envoy.yaml, its signer cluster at signer and every OCI host
// at upstream.
func shippedEnvoyConfig(t *testing.T, signer, upstream string) extproctest.Config {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bs, err := envoyconfig.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	r, err := envoyconfig.ForTest(bs, envoyconfig.Endpoints{Listen: "127.0.0.1:1", Admin: "127.0.0.1:2", Signer: signer, Upstream: upstream})
	if err != nil {
		t.Fatal(err)
	}
	c, err := extproctest.FromBootstrap(r, map[string]string{envoyconfig.SignerCluster: signer, envoyconfig.OCICluster: upstream})
	if err != nil {
		t.Fatal(err)
	}
	if c.Intercept == nil {
		t.Fatal("envoy.yaml intercepts nothing")
	}
	return c
}
