package main

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/internal/envoyconfig"
)

// shippedEnvoyConfig is the Envoy stand-in's configuration read from the
// repository's envoy.yaml, its signer cluster at signer and every OCI host
// at upstream.
func shippedEnvoyConfig(t *testing.T, signer, upstream string) extproctest.Config {
	t.Helper()
	r, err := shippedRendered()
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

// shippedRendered is envoy.yaml loaded, rendered and validated once: the
// stand-in takes each gateway's addresses from FromBootstrap's cluster
// map, not from the rendered endpoints.
var shippedRendered = sync.OnceValues(func() (*bootstrapv3.Bootstrap, error) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "envoy.yaml"))
	if err != nil {
		return nil, err
	}
	bs, err := envoyconfig.Load(data)
	if err != nil {
		return nil, err
	}
	return envoyconfig.ForTest(bs, envoyconfig.Endpoints{Listen: "127.0.0.1:1", Admin: "127.0.0.1:2", Signer: "127.0.0.1:3", Upstream: "127.0.0.1:4"})
})
