package deploy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ocisigner/ocisigner/extproc"
)

// deploy/shared-gateway/envoy.yaml: envoy.yaml's signing, with the identity
// a shared gateway needs (docs/shared-gateway.md). Its checks say that the
// identities the signer reads can only be ones Envoy verified, and that
// everything else is envoy.yaml's, so envoy.yaml's checks hold for it too.
const sharedGatewayFile = "deploy/shared-gateway/envoy.yaml"

const (
	sharedGatewayPort = 10443
	jwtFilterName     = "envoy.filters.http.jwt_authn"
)

// sharedGateway is the shared-gateway file cut up, and envoy.yaml beside it.
type sharedGateway struct {
	*envoyConfig
	root     *envoyConfig
	listener *listenerv3.Listener
	tls      *tlsv3.DownstreamTlsContext // nil without TLS
	jwt      *jwtauthnv3.JwtAuthentication
	jwtIndex int // its place among the HTTP filters
}

func parseSharedGateway(shared, root string) (*sharedGateway, error) {
	c, err := parseEnvoy(shared)
	if err != nil {
		return nil, err
	}
	r, err := parsedEnvoy(root)
	if err != nil {
		return nil, fmt.Errorf("envoy.yaml: %w", err)
	}
	g := &sharedGateway{envoyConfig: c, root: r, listener: c.bs.GetStaticResources().GetListeners()[0], jwtIndex: -1}
	if ts := g.listener.GetFilterChains()[0].GetTransportSocket(); ts != nil {
		if g.tls, err = unpack(ts.GetTypedConfig(), &tlsv3.DownstreamTlsContext{}); err != nil {
			return nil, err
		}
	}
	for i, f := range c.hcm.GetHttpFilters() {
		if f.GetName() == jwtFilterName {
			if g.jwt, err = unpack(f.GetTypedConfig(), &jwtauthnv3.JwtAuthentication{}); err != nil {
				return nil, err
			}
			g.jwtIndex = i
		}
	}
	return g, nil
}

// peerAttributes are the request attributes that carry the client certificate.
var peerAttributes = []string{extproc.AttrPeerURISAN, extproc.AttrPeerDNSSAN, extproc.AttrPeerSubject}

var sharedGatewayChecks = []namedCheck[*sharedGateway]{
	{"listener requires a client certificate of the workload CA", func(g *sharedGateway) error {
		var p problems
		if port := g.listener.GetAddress().GetSocketAddress().GetPortValue(); port != sharedGatewayPort {
			p.addf("listener on port %d, want %d", port, sharedGatewayPort)
		}
		if len(g.listener.GetFilterChains()) != 1 || g.tls == nil {
			p.addf("want one filter chain, with a DownstreamTlsContext")
			return p.err()
		}
		if !g.tls.GetRequireClientCertificate().GetValue() {
			p.addf("require_client_certificate is off: a client without a certificate gets in")
		}
		cc := g.tls.GetCommonTlsContext()
		if v := cc.GetTlsParams().GetTlsMinimumProtocolVersion(); v != tlsv3.TlsParameters_TLSv1_2 && v != tlsv3.TlsParameters_TLSv1_3 {
			p.addf("tls_minimum_protocol_version %v, want TLSv1_2 or newer", v)
		}
		vc := cc.GetValidationContext()
		switch {
		case vc == nil:
			p.addf("no validation_context: client certificates would not be verified")
		case vc.GetTrustedCa().GetFilename() == "":
			p.addf("validation_context names no trusted_ca file: the workload CA the client certificates must chain to")
		case vc.GetTrustChainVerification() != tlsv3.CertificateValidationContext_VERIFY_TRUST_CHAIN, vc.GetAllowExpiredCertificate(),
			vc.GetCustomValidatorConfig() != nil, vc.GetSystemRootCerts() != nil:
			// Each would let a certificate the workload CA did not vouch for
			// name a caller the signer then believes.
			p.addf("validation_context widens what verifies (trust_chain_verification, allow_expired_certificate, a custom validator or system roots)")
		}
		return p.err()
	}},
	{"no client header names a caller", func(g *sharedGateway) error {
		if d := g.hcm.GetForwardClientCertDetails(); d != hcmv3.HttpConnectionManager_SANITIZE {
			return fmt.Errorf("forward_client_cert_details %v: a client's x-forwarded-client-cert would reach the signer (SANITIZE drops it)", d)
		}
		if g.hcm.GetSetCurrentClientCertDetails() != nil {
			return errors.New("set_current_client_cert_details: nothing reads it here")
		}
		return nil
	}},
	{"jwt_authn verifies tokens before the signer sees them", checkJWTAuthn},
	{"both ext_proc filters get the caller", func(g *sharedGateway) error {
		var p problems
		for _, f := range g.extProcs() {
			for _, a := range peerAttributes {
				if !slices.Contains(f.ep.GetRequestAttributes(), a) {
					p.addf("%s: request_attributes lack %s", f.name, a)
				}
			}
			if !slices.Contains(f.ep.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(), extproc.JWTMetadataNamespace) {
				p.addf("%s: metadata_options.forwarding_namespaces lack %s: a token's caller would not reach the signer", f.name, extproc.JWTMetadataNamespace)
			}
		}
		return p.err()
	}},
	{"the shared gateway signs as envoy.yaml does", func(g *sharedGateway) error {
		got, err := g.withoutIdentity()
		if err != nil {
			return err
		}
		// As JSON: typed configs expanded, map keys in order (the Anys'
		// bytes are not comparable: map fields serialise in any order).
		root, err := withoutInterception(g.root.bs)
		if err != nil {
			return err
		}
		a, errA := protojson.Marshal(got)
		b, errB := protojson.Marshal(root)
		if err := errors.Join(errA, errB); err != nil {
			return err
		}
		if string(a) != string(b) {
			return errors.New("apart from the listener's TLS, jwt_authn, the request attributes and the forwarded JWT namespace, the file differs from envoy.yaml without its HTTPS interception: copy envoy.yaml's change here too")
		}
		return nil
	}},
}

func checkJWTAuthn(g *sharedGateway) error {
	var p problems
	if g.jwt == nil {
		return errors.New("no jwt_authn filter")
	}
	for _, f := range g.extProcs() {
		if i := slices.Index(g.filterNames, f.name); i < g.jwtIndex {
			p.addf("jwt_authn runs after %s, which would see the token unverified", f.name)
		}
	}
	for name, pr := range g.jwt.GetProviders() {
		switch {
		case pr.GetIssuer() == "" || len(pr.GetAudiences()) == 0:
			p.addf("provider %s: an issuer and audiences, so a token minted for another service is not taken", name)
		case pr.GetLocalJwks() == nil && pr.GetRemoteJwks() == nil:
			p.addf("provider %s: no JWKS", name)
		case pr.GetForward():
			p.addf("provider %s: forward: true keeps the token in the request", name)
		case pr.GetPayloadInMetadata() == "":
			p.addf("provider %s: no payload_in_metadata: the signer never sees the caller", name)
		case len(pr.GetFromHeaders()) == 0 || len(pr.GetFromParams()) > 0 || len(pr.GetFromCookies()) > 0:
			// The default locations include the access_token query parameter,
			// which would be signed and sent to OCI.
			p.addf("provider %s: tokens from headers only", name)
		case pr.GetForwardPayloadHeader() != "" || len(pr.GetClaimToHeaders()) > 0 || pr.GetHeaderInMetadata() != "" || pr.GetFailedStatusInMetadata() != "":
			p.addf("provider %s: writes more than the verified payload (headers, or more metadata beside it)", name)
		}
	}
	var walk func(r *jwtauthnv3.JwtRequirement)
	walk = func(r *jwtauthnv3.JwtRequirement) {
		if r.GetExtractOnlyWithoutValidation() != nil {
			p.addf("a requirement extracts claims without validation: their payload would be taken for verified")
		}
		for _, x := range r.GetRequiresAny().GetRequirements() {
			walk(x)
		}
		for _, x := range r.GetRequiresAll().GetRequirements() {
			walk(x)
		}
	}
	for _, r := range g.jwt.GetRules() {
		walk(r.GetRequires())
	}
	for _, r := range g.jwt.GetRequirementMap() {
		walk(r)
	}
	return p.err()
}

// withoutIdentity is the file with what it adds to envoy.yaml taken out.
func (g *sharedGateway) withoutIdentity() (*bootstrapv3.Bootstrap, error) {
	bs := proto.Clone(g.bs).(*bootstrapv3.Bootstrap)
	ls, root := bs.GetStaticResources().GetListeners()[0], g.root.bs.GetStaticResources().GetListeners()[0]
	ls.Name, ls.Address = root.GetName(), proto.Clone(root.GetAddress()).(*corev3.Address)
	ls.GetFilterChains()[0].TransportSocket = nil
	hcm := proto.Clone(g.hcm).(*hcmv3.HttpConnectionManager)
	hcm.StatPrefix, hcm.ForwardClientCertDetails = g.root.hcm.GetStatPrefix(), hcmv3.HttpConnectionManager_SANITIZE
	hcm.HttpFilters = slices.DeleteFunc(hcm.HttpFilters, func(f *hcmv3.HttpFilter) bool { return f.GetName() == jwtFilterName })
	for _, f := range hcm.GetHttpFilters() {
		ep := &extprocv3.ExternalProcessor{}
		if f.GetTypedConfig().UnmarshalTo(ep) != nil {
			continue
		}
		ep.RequestAttributes = slices.DeleteFunc(ep.RequestAttributes, func(a string) bool { return slices.Contains(peerAttributes, a) })
		if fw := ep.GetMetadataOptions().GetForwardingNamespaces(); fw != nil {
			fw.Untyped = slices.DeleteFunc(fw.Untyped, func(ns string) bool { return ns == extproc.JWTMetadataNamespace })
			if len(fw.GetUntyped()) == 0 && len(fw.GetTyped()) == 0 {
				ep.MetadataOptions.ForwardingNamespaces = nil
			}
		}
		a, err := anypb.New(ep)
		if err != nil {
			return nil, err
		}
		f.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}
	}
	a, err := anypb.New(hcm)
	if err != nil {
		return nil, err
	}
	ls.GetFilterChains()[0].GetFilters()[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	return bs, nil
}

// interceptionAttributes are what the signing filter learns of a tunnel.
var interceptionAttributes = []string{extproc.AttrSNI, extproc.AttrConnectHost}

// withoutInterception is envoy.yaml without its HTTPS interception, which
// the shared gateway does not offer (its callers name themselves by their
// certificate, a token or a key to the gateway's own address): no CONNECT
// (upgrade, routes, HTTP/1.0 for Python's CONNECT), no set_filter_state
// filter and tunnel attributes, no internal listener and its cluster.
func withoutInterception(root *bootstrapv3.Bootstrap) (*bootstrapv3.Bootstrap, error) {
	bs := proto.Clone(root).(*bootstrapv3.Bootstrap)
	sr := bs.GetStaticResources()
	sr.Listeners = sr.Listeners[:1]
	sr.Clusters = slices.DeleteFunc(sr.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == "intercept" })
	bs.BootstrapExtensions = slices.DeleteFunc(bs.BootstrapExtensions, func(e *corev3.TypedExtensionConfig) bool {
		return e.GetName() == "envoy.bootstrap.internal_listener"
	})
	f := sr.Listeners[0].GetFilterChains()[0].GetFilters()[0]
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		return nil, err
	}
	hcm.UpgradeConfigs, hcm.HttpProtocolOptions = nil, nil
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		vh.Routes = slices.DeleteFunc(vh.Routes, func(r *routev3.Route) bool { return r.GetMatch().GetConnectMatcher() != nil })
	}
	hcm.HttpFilters = slices.DeleteFunc(hcm.HttpFilters, func(f *hcmv3.HttpFilter) bool { return f.GetName() == connectAuthorityFilterName })
	for _, hf := range hcm.GetHttpFilters() {
		ep := &extprocv3.ExternalProcessor{}
		if hf.GetTypedConfig().UnmarshalTo(ep) != nil {
			continue
		}
		ep.RequestAttributes = slices.DeleteFunc(ep.RequestAttributes, func(a string) bool { return slices.Contains(interceptionAttributes, a) })
		a, err := anypb.New(ep)
		if err != nil {
			return nil, err
		}
		hf.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}
	}
	a, err := anypb.New(hcm)
	if err != nil {
		return nil, err
	}
	f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	return bs, nil
}

func TestSharedGatewayEnvoyConfig(t *testing.T) {
	t.Parallel()
	g, err := parseSharedGateway(readRepoFile(t, sharedGatewayFile), readRepoFile(t, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	runChecks(t, sharedGatewayChecks, g, true)
}

var sharedGatewayMutations = []mutation{
	{"unknown jwt_authn field", replaceFirst("payload_in_metadata: kubernetes", "payload_in_metadatas: kubernetes"), ""},

	{"another port", replaceFirst("port_value: 10443", "port_value: 10000"), "listener requires a client certificate of the workload CA"},
	{"client certificate optional", replaceFirst("require_client_certificate: true", "require_client_certificate: false"), "listener requires a client certificate of the workload CA"},
	{"unverified chains accepted", replaceFirst("trusted_ca: { filename: /etc/envoy/tls/ca.crt }", "trusted_ca: { filename: /etc/envoy/tls/ca.crt }\n                  trust_chain_verification: ACCEPT_UNTRUSTED"), "listener requires a client certificate of the workload CA"},
	{"expired certificates accepted", replaceFirst("trusted_ca: { filename: /etc/envoy/tls/ca.crt }", "trusted_ca: { filename: /etc/envoy/tls/ca.crt }\n                  allow_expired_certificate: true"), "listener requires a client certificate of the workload CA"},
	{"no validation context", replaceFirst("                validation_context:\n                  trusted_ca: { filename: /etc/envoy/tls/ca.crt }\n", ""), "listener requires a client certificate of the workload CA"},
	{"TLS 1.1", replaceFirst("tls_minimum_protocol_version: TLSv1_2", "tls_minimum_protocol_version: TLSv1_1"), "listener requires a client certificate of the workload CA"},
	{"plain listener", dropTransportSocket, "listener requires a client certificate of the workload CA"},
	{"client XFCC forwarded", replaceFirst("forward_client_cert_details: SANITIZE", "forward_client_cert_details: APPEND_FORWARD"), "no client header names a caller"},
	{"token forwarded", replaceFirst("forward: false", "forward: true"), "jwt_authn verifies tokens before the signer sees them"},
	{"any audience", replaceFirst("                          audiences: [ocisigner]\n", ""), "jwt_authn verifies tokens before the signer sees them"},
	{"token from the query", replaceFirst("                          from_headers:\n                            - name: authorization\n                              value_prefix: \"Bearer \"\n", ""), "jwt_authn verifies tokens before the signer sees them"},
	{"payload not in metadata", replaceFirst("payload_in_metadata: kubernetes", "forward_payload_header: x-jwt-payload"), "jwt_authn verifies tokens before the signer sees them"},
	{"claims unverified", replaceFirst("- allow_missing_or_failed: {}", "- extract_only_without_validation: {}"), "jwt_authn verifies tokens before the signer sees them"},
	{"jwt_authn after the signer", moveJWTFilterLast, "jwt_authn verifies tokens before the signer sees them"},
	{"gateway filter blind to the certificate", replaceFirst("                        - connection.uri_san_peer_certificate\n", ""), "both ext_proc filters get the caller"},
	{"signing filter blind to the token", replaceLast("untyped: [ocisigner, envoy.filters.http.jwt_authn]", "untyped: [ocisigner]"), "both ext_proc filters get the caller"},
	{"signing fails open", replaceNth("failure_mode_allow: false", "failure_mode_allow: true", 2), "the shared gateway signs as envoy.yaml does"},
	{"a route rewrites", replaceLast("cluster: oci\n", "cluster: oci\n                            prefix_rewrite: /v2/\n"), "the shared gateway signs as envoy.yaml does"},
	{"access log without the caller", replaceFirst("caller=%DYNAMIC_METADATA(ocisigner:caller)%", "caller=-"), "the shared gateway signs as envoy.yaml does"},
}

// moveJWTFilterLast moves the jwt_authn filter after the router.
func moveJWTFilterLast(s string) (string, error) {
	const indent = "                  - name: "
	a := indexOf(s, indent+jwtFilterName+"\n")
	b := indexOf(s, indent+gatewayFilterName+"\n")
	c := indexOf(s, "\n  clusters:")
	if a < 0 || b < a || c < b {
		return "", errors.New("filter blocks not found")
	}
	// The comment block above jwt_authn stays where it is; the filter goes
	// to the end of the filter list.
	return s[:a] + s[b:c] + "\n" + s[a:b] + s[c:], nil
}

func indexOf(s, sub string) int { return strings.Index(s, sub) }

// dropTransportSocket makes the listener plain.
func dropTransportSocket(s string) (string, error) {
	a := strings.Index(s, "        - transport_socket:\n")
	b := strings.Index(s, "          filters:\n")
	if a < 0 || b < a {
		return "", errors.New("transport socket block not found")
	}
	return s[:a] + "        - filters:\n" + s[b+len("          filters:\n"):], nil
}

// TestSharedGatewayChecksCatchRegressions proves each check of the shared
// gateway by a regression of the file it catches.
func TestSharedGatewayChecksCatchRegressions(t *testing.T) {
	t.Parallel()
	root := readRepoFile(t, "envoy.yaml")
	mutationProof{
		files:     map[string]string{sharedGatewayFile: readRepoFile(t, sharedGatewayFile)},
		mutations: inFile(sharedGatewayFile, sharedGatewayMutations),
		known:     checkNamesUnique(t, sharedGatewayChecks),
		load: func(t *testing.T, f map[string]string) (map[string]error, error) {
			g, err := parseSharedGateway(f[sharedGatewayFile], root)
			if err != nil {
				return nil, err
			}
			return runChecks(t, sharedGatewayChecks, g, false), nil
		},
	}.run(t)
}
