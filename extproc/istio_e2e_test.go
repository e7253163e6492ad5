package extproc_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// istioSidecar configures the Envoy stand-in as the chart's Istio mode makes
// istio-proxy (deploy/helm/ocisigner/templates/istio.yaml, checked by
// deploy/istio_test.go): the outbound listener for port 80 with the proxy
// form's ext_proc filter, disabled but for the ServiceEntry's hosts, whose
// virtual hosts enable it; Istio's own defaults otherwise (no host port
// stripping, x-envoy-* headers kept, no route timeout). Any other host meets
// REGISTRY_ONLY's BlackHoleCluster (502) without reaching the signer. The
// cluster of an OCI host is the DestinationRule's: TLS with SNI and subject
// alt name the host, checked against the CA bundle, to port 443 (here the
// TLS OCI stand-in).
func istioSidecar(oci *signertest.Server, ociHosts ...string) func(*extproctest.Config) {
	return func(c *extproctest.Config) {
		c.Before = nil // one ext_proc filter: istio-proxy has no gateway filter
		c.MutationRules = extproctest.ProxyMutationRules()
		c.RouteCacheAction = extprocfilterv3.ExternalProcessor_RETAIN
		c.ReceivingNamespaces = []string{extproc.MetadataNamespace}
		c.StripAnyHostPort = false
		c.SuppressEnvoyHeaders = false
		c.Routes = func(r extproctest.RouteRequest) extproctest.Route {
			for _, h := range ociHosts {
				if r.Authority == h || r.Authority == h+":80" {
					return extproctest.Route{Name: h + ":80"}
				}
			}
			return extproctest.Route{Name: "block_all", ExtProcDisabled: true,
				Direct: &extproctest.DirectResponse{Status: http.StatusBadGateway}}
		}
		c.Resolve = func(string) (string, error) { return oci.Addr, nil }
		c.UpstreamTLS = &extproctest.UpstreamTLS{TrustedCA: oci.CertPool(), SNI: ociHosts[0], SubjectAltNames: []string{ociHosts[0]}}
	}
}

// capturedClient is an app in the pod: it sends plain HTTP to the OCI
// endpoint's own URL, and the pod's iptables (here its dialer) hand every
// connection to the sidecar.
func capturedClient(t *testing.T, sidecar string) *http.Client {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, sidecar)
	}}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// An app in an Istio mesh calls http://objectstorage.../ with no proxy, no
// credentials and no SDK setting: the sidecar captures it, ocisigner signs
// it, and it reaches OCI over TLS whose server name is the host that was
// signed; the OCI stand-in verifies signature, body digest and host.
func TestIstioShapeSignsPlainHTTPAndOriginatesTLS(t *testing.T) {
	t.Parallel()
	oci := signertest.NewTLSServer(t, osHost)
	s := newStack(t, stackOptions{oci: oci, envoy: istioSidecar(oci, osHost)})
	app := capturedClient(t, s.envoy.Addr())

	resp, err := app.Get("http://" + osHost + "/n/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rec := s.lastRecord()
	if resp.StatusCode != http.StatusOK || !rec.OK || rec.Host != osHost || rec.KeyID != s.apiKeyID {
		t.Fatalf("status %d; OCI received %s %s as %q (ok %v: %s)", resp.StatusCode, rec.Host, rec.RequestURI, rec.KeyID, rec.OK, rec.Reason)
	}
	if rec.TLSServerName != osHost {
		t.Fatalf("TLS server name %q, want %s: the request was not sent over the DestinationRule's TLS", rec.TLSServerName, osHost)
	}

	resp, err = app.Post("http://"+osHost+"/n/ns/b/bucket/actions/copyObject", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if rec := s.lastRecord(); resp.StatusCode != http.StatusOK || !rec.OK || !strings.Contains(strings.Join(rec.SignedHeaders, " "), "x-content-sha256") {
		t.Fatalf("POST: status %d, OCI ok %v (%s), signed %v", resp.StatusCode, rec.OK, rec.Reason, rec.SignedHeaders)
	}

	// A host outside the ServiceEntry never reaches the signer, nor OCI.
	before, sent := s.envoy.Stats().StreamsStarted, len(oci.Requests())
	resp, err = app.Get("http://example.com/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || s.envoy.Stats().StreamsStarted != before || len(oci.Requests()) != sent {
		t.Fatalf("a host outside the ServiceEntry: status %d, streams %d -> %d, OCI requests %d -> %d",
			resp.StatusCode, before, s.envoy.Stats().StreamsStarted, sent, len(oci.Requests()))
	}
}

// The signed request goes only to an endpoint that proves it is the host
// that was signed: a certificate for another host, or from a CA the proxy
// does not trust, fails the handshake (503) and nothing reaches OCI.
func TestIstioShapeSendsNothingToAnEndpointItCannotVerify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		certs []string // the names in the endpoint's certificate
		trust bool     // the proxy's CA bundle has the endpoint's CA
	}{
		{"certificate for another host", []string{iaasHost}, true},
		{"untrusted CA", []string{osHost}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			oci := signertest.NewTLSServer(t, tc.certs...)
			s := newStack(t, stackOptions{oci: oci, envoy: func(c *extproctest.Config) {
				istioSidecar(oci, osHost)(c)
				if !tc.trust {
					c.UpstreamTLS.TrustedCA = signertest.NewTLSServer(t, osHost).CertPool()
				}
			}})
			resp, err := capturedClient(t, s.envoy.Addr()).Get("http://" + osHost + "/n/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || len(oci.Requests()) != 0 {
				t.Fatalf("status %d, OCI received %d requests; want 503 and none", resp.StatusCode, len(oci.Requests()))
			}
		})
	}
}

// envoy.yaml's oci cluster (and Envoy Gateway's DynamicResolver Backend):
// a dynamic forward proxy cluster whose SNI and certificate name are each
// request's host (auto_sni, auto_san_validation), so one cluster serves
// every OCI endpoint and each signed request reaches only its own.
func TestDynamicForwardProxyTLSNamesEachSignedHost(t *testing.T) {
	t.Parallel()
	oci := signertest.NewTLSServer(t, osHost, iaasHost)
	s := newStack(t, stackOptions{oci: oci, envoy: func(c *extproctest.Config) {
		c.Resolve = func(string) (string, error) { return oci.Addr, nil }
		c.UpstreamTLS = &extproctest.UpstreamTLS{TrustedCA: oci.CertPool(), AutoSNI: true, AutoSANValidation: true}
	}})
	for _, host := range []string{osHost, iaasHost, osHost} {
		a := s.do(s.request("GET", host, "/n/", nil))
		rec := s.lastRecord()
		if a.status != http.StatusOK || !rec.OK || rec.Host != host || rec.TLSServerName != host {
			t.Fatalf("%s: status %d, OCI got host %s over SNI %q (ok %v: %s)", host, a.status, rec.Host, rec.TLSServerName, rec.OK, rec.Reason)
		}
	}
	before := len(oci.Requests())
	if a := s.do(s.request("GET", "objectstorage.eu-frankfurt-1.oraclecloud.com", "/n/", nil)); a.status != http.StatusServiceUnavailable || len(oci.Requests()) != before {
		t.Fatalf("a host the certificate does not name: status %d, OCI requests %d -> %d", a.status, before, len(oci.Requests()))
	}
}
