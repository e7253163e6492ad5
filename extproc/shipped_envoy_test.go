package extproc_test

import (
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/internal/envoyconfig"
)

// shipped is the repository's envoy.yaml, loaded once.
var shipped = sync.OnceValues(func() (*bootstrapv3.Bootstrap, error) {
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "envoy.yaml"))
	if err != nil {
		return nil, err
	}
	return envoyconfig.Load(data)
})

// renderShipped is the repository's envoy.yaml as a test run gives it to
// Envoy (envoyconfig.ForTest): a real Envoy loads it as it is, the stand-in
// reads it with extproctest.FromBootstrap.
func renderShipped(t testing.TB, e envoyconfig.Endpoints) *bootstrapv3.Bootstrap {
	t.Helper()
	bs, err := shipped()
	if err != nil {
		t.Fatal(err)
	}
	r, err := envoyconfig.ForTest(bs, e)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// shippedConfig is the Envoy stand-in configured by the repository's
// envoy.yaml, as a test run renders it: the signer at signer, OCI at
// upstream. Every end-to-end test runs against the routes, filters and
// settings a real Envoy would load.
func shippedConfig(t testing.TB, signer, upstream string) extproctest.Config {
	t.Helper()
	r, err := shippedRendered()
	if err != nil {
		t.Fatal(err)
	}
	c, err := extproctest.FromBootstrap(r, map[string]string{envoyconfig.SignerCluster: signer, envoyconfig.OCICluster: upstream})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// shippedRendered is the shipped envoy.yaml rendered and validated by
// ForTest once for all the stand-in's stacks: the stand-in takes each
// stack's signer and OCI addresses from FromBootstrap's cluster map, not
// from the rendered endpoints, so one rendering serves them all (a real
// Envoy gets its own, with its addresses: renderShipped).
var shippedRendered = sync.OnceValues(func() (*bootstrapv3.Bootstrap, error) {
	bs, err := shipped()
	if err != nil {
		return nil, err
	}
	return envoyconfig.ForTest(bs, envoyconfig.Endpoints{Listen: "127.0.0.1:1", Admin: "127.0.0.1:2", Signer: "127.0.0.1:3", Upstream: "127.0.0.1:4"})
})
