package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	dfpclusterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/dynamic_forward_proxy/v3"
	dfpfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/dynamic_forward_proxy/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/internal/envoyconfig"
	"github.com/ocisigner/ocisigner/signer"

	// Extensions named only by a typed_config "@type" in envoy.yaml: linked in
	// so their Any resolves (an unresolvable Any fails the load).
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
)

const (
	extProcFilterName = "envoy.filters.http.ext_proc" // proxy form
	gatewayFilterName = "ocisigner.ext_proc.gateway"  // gateway form: may set :authority
	observeFilterName = "ocisigner.ext_proc.observe"  // sees OCI's answers, in observability mode
	dfpFilterName     = "envoy.filters.http.dynamic_forward_proxy"
	routerFilterName  = "envoy.filters.http.router"
	httpOptionsKey    = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

	signerClusterName = "signer"
	signerPort        = 50051
	ociClusterName    = "oci"
	listenerPort      = 10000

	// maxSignedBody is the signer's --max-body-bytes default: Envoy must buffer
	// exactly this much for the OCI routes.
	maxSignedBody = 32 << 20

	systemCABundle = "/etc/ssl/certs/ca-certificates.crt"

	// The route pattern operators copy to pin a profile.
	exampleRouteHeader = "x-oci-route"
	exampleRouteValue  = "example"
	profileMetadataKey = "x-oci-profile"
	exampleProfile     = "EXAMPLE"

	// signerMetadataNamespace is the dynamic metadata namespace the signer
	// reports what it signed under.
	signerMetadataNamespace = "ocisigner"
)

// realms is the realm table of shared/docs/oci-signing.md ("Regions, realms,
// the namespace probe"). TestRealmTableMatchesDoc and
// TestGatewayDomainsMatchSigner keep it honest.
var realms = []struct{ realm, domain string }{
	{"oc1", "oraclecloud.com"},
	{"oc2", "oraclegovcloud.com"},
	{"oc3", "oraclegovcloud.com"},
	{"oc4", "oraclegovcloud.uk"},
	{"oc8", "oraclecloud8.com"},
	{"oc9", "oraclecloud9.com"},
	{"oc10", "oraclecloud10.com"},
	{"oc14", "oraclecloud14.com"},
	{"oc15", "oraclecloud15.com"},
	{"oc19", "oraclecloud.eu"},
	{"oc20", "oraclecloud20.com"},
	{"oc21", "oraclecloud21.com"},
	{"oc23", "oraclecloud23.com"},
	{"oc24", "oraclecloud24.com"},
	{"oc26", "oraclecloud26.com"},
	{"oc29", "oraclecloud29.com"},
	{"oc35", "oraclecloud35.com"},
	{"oc42", "oraclecloud42.com"},
	{"oc51", "oraclecloud51.com"},
	{"oc52", "oraclecloud52.com"},
}

// realmDomainSet returns the unique realm domains, sorted.
func realmDomainSet() []string {
	var out []string
	for _, r := range realms {
		if !slices.Contains(out, r.domain) {
			out = append(out, r.domain)
		}
	}
	sort.Strings(out)
	return out
}

// wantOCIDomains is the OCI virtual host's domain list: one suffix wildcard per
// realm domain, which also covers <service>.<region>.oci.<domain>.
func wantOCIDomains() []string {
	var out []string
	for _, d := range realmDomainSet() {
		out = append(out, "*."+d)
	}
	return out
}

// Headers that are (or may be) part of the signature, or that carry it: no
// route may add or remove them after the signer ran.
var signedHeaders = []string{
	"authorization", "date", "x-date", "host", ":authority", ":path", ":method",
	"content-length", "content-type", "x-content-sha256",
	"opc-obo-token", "x-cross-tenancy-request", "x-subscription",
}

func processingMode(requestBody extprocv3.ProcessingMode_BodySendMode) *extprocv3.ProcessingMode {
	return &extprocv3.ProcessingMode{
		RequestHeaderMode:   extprocv3.ProcessingMode_SEND,
		ResponseHeaderMode:  extprocv3.ProcessingMode_SKIP,
		RequestBodyMode:     requestBody,
		ResponseBodyMode:    extprocv3.ProcessingMode_NONE,
		RequestTrailerMode:  extprocv3.ProcessingMode_SKIP,
		ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
	}
}

// envoyConfig is envoy.yaml decoded, validated, and cut into the pieces the
// checks look at.
type envoyConfig struct {
	bs          *bootstrapv3.Bootstrap
	hcm         *hcmv3.HttpConnectionManager
	others      []*listenerv3.Listener // listeners after the first: the internal listener of interception
	filterNames []string
	extProc     *extprocv3.ExternalProcessor // the proxy-form filter
	gatewayProc *extprocv3.ExternalProcessor // the gateway-form filter
	observeProc *extprocv3.ExternalProcessor // the observing filter
	dfpFilter   *dfpfilterv3.FilterConfig
	routes      *routev3.RouteConfiguration
	ociHosts    []*routev3.VirtualHost // every virtual host but the catch-all
	catchAll    *routev3.VirtualHost   // domains ["*"]
	clusters    map[string]*clusterv3.Cluster
}

// parseEnvoy decodes envoy.yaml the strict way (envoyconfig.Load) and cuts
// it into the parts the checks look at.
func parseEnvoy(data string) (*envoyConfig, error) {
	bs, err := envoyconfig.Load([]byte(data))
	if err != nil {
		return nil, err
	}
	return cutEnvoy(bs)
}

// checkTree is envoyconfig's strict walk, for the other deploy tests.
func checkTree(m protoreflect.Message, path string) []error {
	return envoyconfig.CheckTree(m.Interface(), path)
}

func unpack[T proto.Message](a *anypb.Any, into T) (T, error) {
	if a == nil {
		return into, errors.New("typed_config missing")
	}
	if err := a.UnmarshalTo(into); err != nil {
		return into, fmt.Errorf("typed_config %s: %w", a.GetTypeUrl(), err)
	}
	return into, nil
}

func cutEnvoy(bs *bootstrapv3.Bootstrap) (*envoyConfig, error) {
	c := &envoyConfig{bs: bs, clusters: map[string]*clusterv3.Cluster{}}
	for _, cl := range bs.GetStaticResources().GetClusters() {
		c.clusters[cl.GetName()] = cl
	}
	ls := bs.GetStaticResources().GetListeners()
	if len(ls) == 0 {
		return nil, errors.New("no listener")
	}
	c.others = ls[1:]
	fcs := ls[0].GetFilterChains()
	if len(fcs) != 1 || len(fcs[0].GetFilters()) != 1 {
		return nil, errors.New("want one filter chain with one network filter (the HTTP connection manager)")
	}
	hcm, err := unpack(fcs[0].GetFilters()[0].GetTypedConfig(), &hcmv3.HttpConnectionManager{})
	if err != nil {
		return nil, err
	}
	c.hcm = hcm
	for _, f := range hcm.GetHttpFilters() {
		c.filterNames = append(c.filterNames, f.GetName())
		switch f.GetName() {
		case extProcFilterName:
			if c.extProc, err = unpack(f.GetTypedConfig(), &extprocv3.ExternalProcessor{}); err != nil {
				return nil, err
			}
		case gatewayFilterName:
			if c.gatewayProc, err = unpack(f.GetTypedConfig(), &extprocv3.ExternalProcessor{}); err != nil {
				return nil, err
			}
		case observeFilterName:
			if c.observeProc, err = unpack(f.GetTypedConfig(), &extprocv3.ExternalProcessor{}); err != nil {
				return nil, err
			}
		case dfpFilterName:
			if c.dfpFilter, err = unpack(f.GetTypedConfig(), &dfpfilterv3.FilterConfig{}); err != nil {
				return nil, err
			}
		case routerFilterName:
			if _, err = unpack(f.GetTypedConfig(), &routerv3.Router{}); err != nil {
				return nil, err
			}
		}
	}
	if c.extProc == nil || c.gatewayProc == nil || c.observeProc == nil || c.dfpFilter == nil {
		return nil, fmt.Errorf("http filters %v: %s, %s, %s and dynamic_forward_proxy are required",
			c.filterNames, extProcFilterName, gatewayFilterName, observeFilterName)
	}
	c.routes = hcm.GetRouteConfig()
	if c.routes == nil {
		return nil, errors.New("route_config must be inline (no RDS): the test has to see every route")
	}
	for _, vh := range c.routes.GetVirtualHosts() {
		if slices.Equal(vh.GetDomains(), []string{"*"}) {
			if c.catchAll != nil {
				return nil, errors.New("two catch-all virtual hosts")
			}
			c.catchAll = vh
			continue
		}
		c.ociHosts = append(c.ociHosts, vh)
	}
	return c, nil
}

// extProcPerRoute returns the per-filter config in m for the filter named filter, if any.
// Envoy looks a filter's per-route config up by its exact name (no fallback to the
// canonical extension name: runtime guard no_downgrade_to_canonical_name).
func extProcPerRoute(m map[string]*anypb.Any, filter string) (*extprocv3.ExtProcPerRoute, error) {
	a, ok := m[filter]
	if !ok {
		return nil, nil
	}
	return unpack(a, &extprocv3.ExtProcPerRoute{})
}

// extProcs are the two ext_proc filters by name, for checks that hold for both.
func (c *envoyConfig) extProcs() []struct {
	name string
	ep   *extprocv3.ExternalProcessor
} {
	return []struct {
		name string
		ep   *extprocv3.ExternalProcessor
	}{{extProcFilterName, c.extProc}, {gatewayFilterName, c.gatewayProc}}
}

// runsOn reports whether the named ext_proc filter runs for route r of virtual host vh:
// the most specific ExtProcPerRoute (route, then virtual host, then route table) decides,
// and with none the filter runs.
func (c *envoyConfig) runsOn(filter string, vh *routev3.VirtualHost, r *routev3.Route) (bool, error) {
	for _, m := range []map[string]*anypb.Any{r.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig(), c.routes.GetTypedPerFilterConfig()} {
		pr, err := extProcPerRoute(m, filter)
		if err != nil {
			return false, err
		}
		if pr != nil {
			return !pr.GetDisabled(), nil
		}
	}
	return true, nil
}

// routerRewrites lists the rewrites a route's router applies, after every filter.
func routerRewrites(r *routev3.Route) []string {
	a := r.GetRoute()
	var out []string
	if a.GetHostRewriteSpecifier() != nil {
		out = append(out, "host rewrite")
	}
	if a.GetPrefixRewrite() != "" {
		out = append(out, "prefix_rewrite")
	}
	if a.GetRegexRewrite() != nil {
		out = append(out, "regex_rewrite")
	}
	if a.GetPathRewrite() != "" {
		out = append(out, "path_rewrite")
	}
	if a.GetPathRewritePolicy() != nil {
		out = append(out, "path_rewrite_policy")
	}
	if a.GetInternalRedirectPolicy() != nil {
		out = append(out, "internal_redirect_policy")
	}
	if _, ok := r.GetTypedPerFilterConfig()[dfpFilterName]; ok {
		out = append(out, "dynamic_forward_proxy host rewrite")
	}
	return out
}

func headerTouches(p *problems, where string, add []*corev3.HeaderValueOption, remove []string) {
	for _, h := range add {
		if slices.Contains(signedHeaders, strings.ToLower(h.GetHeader().GetKey())) {
			p.addf("%s adds signed header %q after signing", where, h.GetHeader().GetKey())
		}
	}
	for _, h := range remove {
		if slices.Contains(signedHeaders, strings.ToLower(h)) {
			p.addf("%s removes signed header %q after signing", where, h)
		}
	}
}

// envoyChecks are the assertions over envoy.yaml, by name. The mutation test
// below proves each of them fails when the file regresses.
var envoyChecks = []namedCheck[*envoyConfig]{
	{"listener", func(c *envoyConfig) error {
		var p problems
		sa := c.bs.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress()
		if sa.GetAddress() != "0.0.0.0" || sa.GetPortValue() != listenerPort {
			p.addf("listener on %s:%d, want 0.0.0.0:%d", sa.GetAddress(), sa.GetPortValue(), listenerPort)
		}
		return p.err()
	}},
	{"connection manager keeps host and path as signed", func(c *envoyConfig) error {
		var p problems
		if !c.hcm.GetStripAnyHostPort() {
			p.addf("strip_any_host_port must be true: the signed host is the one forwarded")
		}
		if np := c.hcm.GetNormalizePath(); np == nil || np.GetValue() {
			p.addf("normalize_path must be explicitly false")
		}
		if c.hcm.GetMergeSlashes() {
			p.addf("merge_slashes must be false")
		}
		if a := c.hcm.GetPathWithEscapedSlashesAction(); a != hcmv3.HttpConnectionManager_KEEP_UNCHANGED {
			p.addf("path_with_escaped_slashes_action = %v, want KEEP_UNCHANGED", a)
		}
		return p.err()
	}},
	{"100-continue comes from OCI", func(c *envoyConfig) error {
		// Envoy's own 100 would start an upload before the signer answered its
		// headers, racing ext_proc's buffer limit (413).
		if !c.hcm.GetProxy_100Continue() {
			return errors.New("proxy_100_continue must be true: only OCI's 100 may start an upload")
		}
		return nil
	}},
	{"http filter order", func(c *envoyConfig) error {
		// The gateway filter addresses; the signing filter after it signs on the
		// route matched again; the observing filter sees the responses.
		want := []string{gatewayFilterName, extProcFilterName, observeFilterName, connectAuthorityFilterName, dfpFilterName, routerFilterName}
		if !slices.Equal(c.filterNames, want) {
			return fmt.Errorf("http_filters = %v, want %v", c.filterNames, want)
		}
		return nil
	}},
	{"ext_proc fails closed", func(c *envoyConfig) error {
		var p problems
		for _, f := range c.extProcs() {
			p = append(p, extProcFailsClosed(f.name, f.ep)...)
		}
		return p.err()
	}},
	{"ext_proc processing mode", func(c *envoyConfig) error {
		var p problems
		// The signing filter: request headers and the buffered body, no
		// response processing.
		if got, want := c.extProc.GetProcessingMode(), processingMode(extprocv3.ProcessingMode_BUFFERED); !proto.Equal(got, want) {
			p.addf("%s: processing_mode = {%v}, want {%v} (request headers + buffered body, no response processing)", extProcFilterName, got, want)
		}
		// The gateway filter: the request headers alone. A body buffered
		// there would be buffered before the request is on its final route.
		if got, want := c.gatewayProc.GetProcessingMode(), extproctest.HeadersOnlyMode(); !proto.Equal(got, want) {
			p.addf("%s: processing_mode = {%v}, want {%v} (request headers only)", gatewayFilterName, got, want)
		}
		if c.gatewayProc.GetAllowModeOverride() || len(c.gatewayProc.GetAllowedOverrideModes()) > 0 {
			p.addf("%s: a mode override has nothing to do on a headers-only filter", gatewayFilterName)
		}
		return p.err()
	}},
	{"ext_proc mode override", func(c *envoyConfig) error {
		var p problems
		// The NONE entry must be exactly what the signer sends, or Envoy
		// ignores the override and buffers uploads.
		want := []*extprocv3.ProcessingMode{
			processingMode(extprocv3.ProcessingMode_BUFFERED),
			extproc.StreamedUploadMode,
		}
		if !c.extProc.GetAllowModeOverride() {
			p.addf("%s: allow_mode_override must be true (Object Storage uploads stream)", extProcFilterName)
		}
		got := c.extProc.GetAllowedOverrideModes()
		if len(got) != len(want) {
			p.addf("%s: allowed_override_modes has %d entries, want %d", extProcFilterName, len(got), len(want))
		}
		for _, w := range want {
			if !slices.ContainsFunc(got, func(g *extprocv3.ProcessingMode) bool { return proto.Equal(g, w) }) {
				p.addf("%s: allowed_override_modes lacks the fully explicit mode {%v}", extProcFilterName, w)
			}
		}
		return p.err()
	}},
	{"ext_proc timeouts", func(c *envoyConfig) error {
		var p problems
		for _, f := range c.extProcs() {
			msg := f.ep.GetMessageTimeout().AsDuration() // nil-safe: 0 when unset
			if msg < time.Second {
				p.addf("%s: message_timeout = %v, want >= 1s (RSA signature plus credential refresh)", f.name, msg)
			}
			if m := f.ep.GetMaxMessageTimeout(); m != nil && m.AsDuration() < msg {
				p.addf("%s: max_message_timeout %v < message_timeout %v", f.name, m.AsDuration(), msg)
			}
			// ext_proc never passes grpc_service.timeout to its stream (ext_proc.cc
			// Filter::openStream): a value there would only mislead the reader.
			if f.ep.GetGrpcService().GetTimeout() != nil {
				p.addf("%s: grpc_service.timeout is ignored by ext_proc: remove it", f.name)
			}
		}
		return p.err()
	}},
	{"the gateway filter addresses and the signing filter signs", func(c *envoyConfig) error {
		var p problems
		// Same signer, same failure mode and timeouts.
		for _, f := range []func(*extprocv3.ExternalProcessor) any{
			func(ep *extprocv3.ExternalProcessor) any { return ep.GetGrpcService().GetEnvoyGrpc().GetClusterName() },
			func(ep *extprocv3.ExternalProcessor) any { return ep.GetStatusOnError().GetCode() },
			func(ep *extprocv3.ExternalProcessor) any { return ep.GetMessageTimeout().AsDuration() },
			func(ep *extprocv3.ExternalProcessor) any { return ep.GetMaxMessageTimeout().AsDuration() },
		} {
			if a, b := f(c.extProc), f(c.gatewayProc); a != b {
				p.addf("the two ext_proc filters differ: %v and %v", a, b)
			}
		}
		// The gateway filter's streams are the address stage's, and only its.
		stage := func(ep *extprocv3.ExternalProcessor) string {
			for _, hv := range ep.GetGrpcService().GetInitialMetadata() {
				if hv.GetKey() == extproc.StageKey {
					return hv.GetValue()
				}
			}
			return ""
		}
		if stage(c.gatewayProc) != extproc.StageAddress {
			p.addf("%s: grpc_service.initial_metadata must carry %s: %s, or the signer signs on the catch-all's route", gatewayFilterName, extproc.StageKey, extproc.StageAddress)
		}
		if stage(c.extProc) != "" {
			p.addf("%s: grpc_service.initial_metadata carries %s: its streams would not sign", extProcFilterName, extproc.StageKey)
		}
		// What the gateway filter left (the alias, its region) reaches the signing filter.
		if !slices.Contains(c.extProc.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(), extproc.MetadataNamespace) {
			p.addf("%s: metadata_options.forwarding_namespaces must hold %s: a pinned profile of another region would sign for the alias's host", extProcFilterName, extproc.MetadataNamespace)
		}
		if c.extProc.GetStatPrefix() == c.gatewayProc.GetStatPrefix() {
			p.addf("the two ext_proc filters need distinct stat_prefix values to tell their stats apart")
		}
		return p.err()
	}},
	{"narrowest mutation rules", func(c *envoyConfig) error {
		var p problems
		// Proxy form never changes the host: Envoy's defaults, which refuse
		// host, :authority, :method, :scheme and x-envoy-*.
		wantProxy := extproctest.ProxyMutationRules()
		if got := c.extProc.GetMutationRules(); !proto.Equal(got, wantProxy) {
			p.addf("%s: mutation_rules = {%v}, want {%v}", extProcFilterName, got, wantProxy)
		}
		// Gateway form may set :authority and nothing else the defaults refuse.
		wantGateway := extproctest.GatewayMutationRules()
		if got := c.gatewayProc.GetMutationRules(); !proto.Equal(got, wantGateway) {
			p.addf("%s: mutation_rules = {%v}, want {%v}", gatewayFilterName, got, wantGateway)
		}
		// And what the expression lets through, as Envoy matches it (RE2
		// FullMatch, common/regex.h CompiledGoogleReMatcher::match).
		if re, err := regexp.Compile(`^(?:` + c.gatewayProc.GetMutationRules().GetAllowExpression().GetRegex() + `)$`); err != nil {
			p.addf("%s: allow_expression: %v", gatewayFilterName, err)
		} else {
			if !re.MatchString(":authority") {
				p.addf("%s: allow_expression does not open :authority", gatewayFilterName)
			}
			for _, h := range []string{"host", ":method", ":scheme", "x-envoy-original-path", "x-envoy-upstream-rq-timeout-ms"} {
				if re.MatchString(h) {
					p.addf("%s: allow_expression opens %s", gatewayFilterName, h)
				}
			}
		}
		return p.err()
	}},
	{"only the gateway filter re-routes", func(c *envoyConfig) error {
		var p problems
		// The gateway filter clears the route cache on every answer with a header
		// mutation (processor_state.cc DecodingProcessorState::clearRouteCache),
		// so the router matches the host the signer set.
		if a := c.gatewayProc.GetRouteCacheAction(); a != extprocv3.ExternalProcessor_CLEAR {
			p.addf("%s: route_cache_action = %v, want CLEAR", gatewayFilterName, a)
		}
		if a := c.extProc.GetRouteCacheAction(); a != extprocv3.ExternalProcessor_RETAIN {
			p.addf("%s: route_cache_action = %v, want RETAIN", extProcFilterName, a)
		}
		if c.extProc.GetDisableClearRouteCache() || c.gatewayProc.GetDisableClearRouteCache() {
			p.addf("disable_clear_route_cache is deprecated: use route_cache_action")
		}
		return p.err()
	}},
	{"every rewriting route goes through the signer", func(c *envoyConfig) error {
		// A request's host or path changes either in the router (forbidden:
		// after signing) or through the gateway filter (that is the signer).
		// Every route runs exactly one of the two signing filters; a route
		// that forwards runs the proxy-form one on an OCI host; a route where
		// the gateway filter may move the request forwards nothing itself.
		var p problems
		for _, vh := range c.routes.GetVirtualHosts() {
			oci := vh != c.catchAll
			for _, r := range vh.GetRoutes() {
				where := fmt.Sprintf("route %s/%s", vh.GetName(), r.GetName())
				if rw := routerRewrites(r); len(rw) > 0 {
					p.addf("%s: %v run after ext_proc and change what was signed", where, rw)
				}
				if isConnect(r) {
					continue // a tunnel, no request to sign: "CONNECT is terminated only for OCI hosts"
				}
				proxy, err1 := c.runsOn(extProcFilterName, vh, r)
				gateway, err2 := c.runsOn(gatewayFilterName, vh, r)
				if err := errors.Join(err1, err2); err != nil {
					p.addf("%s: %v", where, err)
					continue
				}
				if proxy == gateway {
					p.addf("%s: %s runs %v, %s runs %v: exactly one must", where, extProcFilterName, proxy, gatewayFilterName, gateway)
				}
				if r.GetRoute() != nil && (!oci || !proxy || gateway) {
					p.addf("%s forwards: it must be on an OCI host with only %s", where, extProcFilterName)
				}
				if gateway && r.GetDirectResponse() == nil {
					p.addf("%s: %s may move requests here, so the route itself must only refuse (direct_response)", where, gatewayFilterName)
				}
			}
		}
		return p.err()
	}},
	{"OCI virtual host domains", func(c *envoyConfig) error {
		if len(c.ociHosts) != 1 {
			return fmt.Errorf("want one OCI virtual host besides the catch-all, have %d", len(c.ociHosts))
		}
		got := slices.Clone(c.ociHosts[0].GetDomains())
		sort.Strings(got)
		if want := wantOCIDomains(); !slices.Equal(got, want) {
			return fmt.Errorf("OCI domains = %v, want %v", got, want)
		}
		return nil
	}},
	{"OCI routes go to the signing path unmodified", func(c *envoyConfig) error {
		var p problems
		headerTouches(&p, "route_config", c.routes.GetRequestHeadersToAdd(), c.routes.GetRequestHeadersToRemove())
		for _, vh := range c.ociHosts {
			headerTouches(&p, "virtual host "+vh.GetName(), vh.GetRequestHeadersToAdd(), vh.GetRequestHeadersToRemove())
			if pr, err := extProcPerRoute(vh.GetTypedPerFilterConfig(), extProcFilterName); err != nil || pr.GetDisabled() {
				p.addf("virtual host %s: ext_proc disabled or unreadable (%v)", vh.GetName(), err)
			}
			if _, ok := vh.GetTypedPerFilterConfig()[dfpFilterName]; ok {
				p.addf("virtual host %s: dynamic_forward_proxy per-route config (host rewrite) not allowed", vh.GetName())
			}
			if len(vh.GetRoutes()) == 0 {
				p.addf("virtual host %s has no routes", vh.GetName())
			}
			for _, r := range vh.GetRoutes() {
				where := fmt.Sprintf("route %s/%s", vh.GetName(), r.GetName())
				a := r.GetRoute()
				if isConnect(r) {
					continue // "CONNECT is terminated only for OCI hosts"
				}
				if a == nil {
					p.addf("%s: not a forwarding route (redirect/direct_response)", where)
					continue
				}
				if a.GetCluster() != ociClusterName {
					p.addf("%s: cluster %q, want %q", where, a.GetCluster(), ociClusterName)
				}
				if rw := routerRewrites(r); len(rw) > 0 {
					p.addf("%s: %v run after ext_proc and break the signature", where, rw)
				}
				headerTouches(&p, where, r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove())
				if pr, err := extProcPerRoute(r.GetTypedPerFilterConfig(), extProcFilterName); err != nil || pr.GetDisabled() {
					p.addf("%s: ext_proc disabled or unreadable (%v)", where, err)
				}
			}
		}
		return p.err()
	}},
	{"OCI body buffer limit", func(c *envoyConfig) error {
		var p problems
		// The catch-all too: a gateway-form body is buffered for signing
		// under it, before the signer names the OCI host.
		for _, vh := range append(slices.Clone(c.ociHosts), c.catchAll) {
			if got := vh.GetRequestBodyBufferLimit().GetValue(); got != maxSignedBody {
				p.addf("virtual host %s: request_body_buffer_limit = %d, want %d (32 MiB)", vh.GetName(), got, maxSignedBody)
			}
			for _, r := range vh.GetRoutes() {
				if l := r.GetRequestBodyBufferLimit(); l != nil && l.GetValue() != maxSignedBody {
					p.addf("route %s: request_body_buffer_limit = %d, want %d", r.GetName(), l.GetValue(), maxSignedBody)
				}
			}
		}
		return p.err()
	}},
	{"example route pins a profile", func(c *envoyConfig) error {
		var p problems
		if len(c.ociHosts) == 0 {
			return errors.New("no OCI virtual host")
		}
		routes := c.ociHosts[0].GetRoutes()
		example := slices.IndexFunc(routes, func(r *routev3.Route) bool {
			return slices.ContainsFunc(r.GetMatch().GetHeaders(), func(h *routev3.HeaderMatcher) bool {
				return h.GetName() == exampleRouteHeader && h.GetStringMatch().GetExact() == exampleRouteValue
			})
		})
		if example < 0 {
			return fmt.Errorf("no route matching header %s: %s", exampleRouteHeader, exampleRouteValue)
		}
		if example == len(routes)-1 {
			p.addf("the example route must come before the general route")
		}
		pr, err := extProcPerRoute(routes[example].GetTypedPerFilterConfig(), extProcFilterName)
		switch {
		case err != nil:
			p.addf("example route: %v", err)
		case pr == nil:
			p.addf("example route has no %s typed_per_filter_config", extProcFilterName)
		case pr.GetDisabled():
			p.addf("example route disables ext_proc")
		case !slices.ContainsFunc(pr.GetOverrides().GetGrpcInitialMetadata(), func(h *corev3.HeaderValue) bool {
			return h.GetKey() == profileMetadataKey && h.GetValue() == exampleProfile
		}):
			p.addf("example route: overrides.grpc_initial_metadata lacks %s: %s", profileMetadataKey, exampleProfile)
		}
		last := routes[len(routes)-1]
		if last.GetMatch().GetPrefix() != "/" || len(last.GetMatch().GetHeaders()) > 0 {
			p.addf("the last OCI route must be the general one (prefix \"/\", no header match)")
		}
		return p.err()
	}},
	{"catch-all refuses other hosts", func(c *envoyConfig) error {
		var p problems
		vh := c.catchAll
		if vh == nil {
			return errors.New(`no virtual host with domains ["*"]`)
		}
		if len(vh.GetRoutes()) == 0 {
			p.addf("catch-all has no routes")
		}
		for _, r := range vh.GetRoutes() {
			dr := r.GetDirectResponse()
			if dr == nil || r.GetRoute() != nil {
				p.addf("catch-all route %q must be a direct_response, never forwarded", r.GetName())
				continue
			}
			if dr.GetStatus() != 403 {
				p.addf("catch-all status = %d, want 403", dr.GetStatus())
			}
			var body struct{ Code, Message string }
			if err := json.Unmarshal([]byte(dr.GetBody().GetInlineString()), &body); err != nil || body.Code == "" || body.Message == "" {
				p.addf("catch-all body %q is not OCI's {code, message} JSON (%v)", dr.GetBody().GetInlineString(), err)
			}
			hdrs := append(slices.Clone(r.GetResponseHeadersToAdd()), vh.GetResponseHeadersToAdd()...)
			if !slices.ContainsFunc(hdrs, func(h *corev3.HeaderValueOption) bool {
				return strings.EqualFold(h.GetHeader().GetKey(), "content-type") && h.GetHeader().GetValue() == "application/json"
			}) {
				p.addf("catch-all reply lacks content-type: application/json")
			}
			proxy, err1 := c.runsOn(extProcFilterName, vh, r)
			gateway, err2 := c.runsOn(gatewayFilterName, vh, r)
			if proxy || err1 != nil {
				p.addf("%s must be disabled for the catch-all (ExtProcPerRoute{disabled: true})", extProcFilterName)
			}
			if isConnect(r) {
				continue // no gateway form for a tunnel: "CONNECT is terminated only for OCI hosts"
			}
			if !gateway || err2 != nil {
				p.addf("%s must run for the catch-all: it is how a gateway-form request reaches OCI", gatewayFilterName)
			}
		}
		return p.err()
	}},
	{"signer cluster", func(c *envoyConfig) error {
		var p problems
		cl := c.clusters[signerClusterName]
		if cl == nil {
			return fmt.Errorf("no cluster %q", signerClusterName)
		}
		if cl.GetType() != clusterv3.Cluster_STRICT_DNS {
			p.addf("type = %v, want STRICT_DNS", cl.GetType())
		}
		var addrs []string
		for _, e := range cl.GetLoadAssignment().GetEndpoints() {
			for _, lb := range e.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				addrs = append(addrs, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
			}
		}
		if want := []string{fmt.Sprintf("signer:%d", signerPort)}; !slices.Equal(addrs, want) {
			p.addf("endpoints = %v, want %v", addrs, want)
		}
		if cl.GetTransportSocket() != nil {
			p.addf("the signer serves plaintext HTTP/2: no transport_socket")
		}
		opts, err := unpack(cl.GetTypedExtensionProtocolOptions()[httpOptionsKey], &httpv3.HttpProtocolOptions{})
		if err != nil {
			p.addf("%s: %v", httpOptionsKey, err)
		} else {
			h2 := opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions()
			if h2 == nil {
				p.addf("explicit_http_config.http2_protocol_options missing: gRPC needs HTTP/2")
			}
			if ka := h2.GetConnectionKeepalive(); ka.GetInterval().AsDuration() <= 0 || ka.GetTimeout().AsDuration() <= 0 {
				p.addf("http2 connection_keepalive interval and timeout must be set")
			} else if ka.GetInterval().AsDuration() < extproc.DefaultMinPingInterval {
				p.addf("http2 connection_keepalive interval %s is shorter than the signer's minimum %s: it would send GOAWAY too_many_pings",
					ka.GetInterval().AsDuration(), extproc.DefaultMinPingInterval)
			}
		}
		if !slices.ContainsFunc(cl.GetHealthChecks(), func(h *corev3.HealthCheck) bool { return h.GetGrpcHealthCheck() != nil }) {
			p.addf("no grpc_health_check")
		}
		const raised = 10000 // Envoy's default is 1024
		i := slices.IndexFunc(cl.GetCircuitBreakers().GetThresholds(), func(t *clusterv3.CircuitBreakers_Thresholds) bool {
			return t.GetPriority() == corev3.RoutingPriority_DEFAULT
		})
		if i < 0 {
			p.addf("no DEFAULT circuit breaker thresholds")
		} else {
			t := cl.GetCircuitBreakers().GetThresholds()[i]
			if t.GetMaxRequests().GetValue() < raised || t.GetMaxPendingRequests().GetValue() < raised {
				p.addf("circuit breakers max_requests=%d max_pending_requests=%d, want >= %d",
					t.GetMaxRequests().GetValue(), t.GetMaxPendingRequests().GetValue(), raised)
			}
		}
		return p.err()
	}},
	{"OCI cluster verifies TLS", func(c *envoyConfig) error {
		var p problems
		cl := c.clusters[ociClusterName]
		if cl == nil {
			return fmt.Errorf("no cluster %q", ociClusterName)
		}
		if cl.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
			p.addf("lb_policy = %v, want CLUSTER_PROVIDED", cl.GetLbPolicy())
		}
		ct := cl.GetClusterType()
		if ct.GetName() != "envoy.clusters.dynamic_forward_proxy" {
			p.addf("cluster_type = %q, want envoy.clusters.dynamic_forward_proxy", ct.GetName())
		}
		if cc, err := unpack(ct.GetTypedConfig(), &dfpclusterv3.ClusterConfig{}); err != nil {
			p.addf("cluster_type: %v", err)
		} else {
			if cc.GetAllowInsecureClusterOptions() {
				p.addf("allow_insecure_cluster_options must be false")
			}
			if cc.GetDnsCacheConfig().GetName() == "" || !proto.Equal(cc.GetDnsCacheConfig(), c.dfpFilter.GetDnsCacheConfig()) {
				p.addf("cluster and filter dns_cache_config differ: {%v} vs {%v}", cc.GetDnsCacheConfig(), c.dfpFilter.GetDnsCacheConfig())
			}
		}
		ts := cl.GetTransportSocket()
		if tls, err := unpack(ts.GetTypedConfig(), &tlsv3.UpstreamTlsContext{}); err != nil {
			p.addf("transport_socket must be UpstreamTlsContext: %v", err)
		} else {
			vc := tls.GetCommonTlsContext().GetValidationContext()
			if got := vc.GetTrustedCa().GetFilename(); got != systemCABundle {
				p.addf("trusted_ca = %q, want %s: without it Envoy does not verify OCI's certificate", got, systemCABundle)
			}
			if vc.GetTrustChainVerification() != tlsv3.CertificateValidationContext_VERIFY_TRUST_CHAIN {
				p.addf("trust_chain_verification must be VERIFY_TRUST_CHAIN")
			}
			if tls.GetSni() != "" {
				p.addf("a fixed sni %q would break auto_sni", tls.GetSni())
			}
		}
		opts, err := unpack(cl.GetTypedExtensionProtocolOptions()[httpOptionsKey], &httpv3.HttpProtocolOptions{})
		if err != nil {
			p.addf("%s: %v", httpOptionsKey, err)
		} else if u := opts.GetUpstreamHttpProtocolOptions(); !u.GetAutoSni() || !u.GetAutoSanValidation() {
			p.addf("upstream_http_protocol_options auto_sni=%v auto_san_validation=%v, want both true", u.GetAutoSni(), u.GetAutoSanValidation())
		}
		return p.err()
	}},
	{"long responses stream", func(c *envoyConfig) error {
		// Streamed answers (downloads, text/event-stream from generative AI)
		// flow as they come: no filter processes or buffers responses (see the
		// processing mode), no route timeout ends them, and the stream idle
		// timeout, reset by every byte either way, is at least its default.
		var p problems
		if d := c.hcm.GetStreamIdleTimeout(); d != nil && d.AsDuration() < 5*time.Minute {
			p.addf("stream_idle_timeout %v would cut a quiet stream: leave the 5m default or raise it", d.AsDuration())
		}
		for _, vh := range c.ociHosts {
			for _, r := range vh.GetRoutes() {
				a := r.GetRoute()
				if a == nil {
					continue
				}
				where := fmt.Sprintf("route %s/%s", vh.GetName(), r.GetName())
				if t := a.GetTimeout(); t == nil || t.AsDuration() != 0 {
					p.addf("%s: timeout must be 0s (none): the 15s default cuts long answers", where)
				}
				if t := a.GetIdleTimeout(); t != nil && t.AsDuration() != 0 && t.AsDuration() < 5*time.Minute {
					p.addf("%s: idle_timeout %v would cut a quiet stream", where, t.AsDuration())
				}
				if a.GetMaxStreamDuration() != nil {
					p.addf("%s: max_stream_duration would cut long streams", where)
				}
			}
		}
		return p.err()
	}},
	{"signer metadata reaches the access log", func(c *envoyConfig) error {
		var p problems
		for _, f := range c.extProcs() {
			if got := f.ep.GetMetadataOptions().GetReceivingNamespaces().GetUntyped(); !slices.Equal(got, []string{signerMetadataNamespace}) {
				p.addf("%s: metadata_options.receiving_namespaces.untyped = %q, want [%s]", f.name, got, signerMetadataNamespace)
			}
		}
		// Exactly the format the stand-in renders (and the lead's end-to-end
		// tests assert), with no option that changes how values print.
		want := &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormatSource{
			TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: extproctest.AccessLogFormat}},
		}}
		var formats []*corev3.SubstitutionFormatString
		for _, al := range c.hcm.GetAccessLog() {
			if out, err := unpack(al.GetTypedConfig(), &streamv3.StdoutAccessLog{}); err == nil {
				formats = append(formats, out.GetLogFormat())
			}
		}
		if len(formats) != 1 || !proto.Equal(formats[0], want) {
			p.addf("want one stdout access log whose log_format is {%v}, have %v", want, formats)
		}
		return p.err()
	}},
	{"the observing filter never holds a response", checkObserver},
	{"the observing filter runs on the OCI routes only", func(c *envoyConfig) error {
		var p problems
		for _, vh := range c.routes.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				// A CONNECT route carries a tunnel, not a request to observe:
				// the requests inside it are observed on the internal listener.
				runs, err := c.runsOn(observeFilterName, vh, r)
				if err != nil {
					p.addf("route %s/%s: %v", vh.GetName(), r.GetName(), err)
				} else if oci := vh != c.catchAll && r.GetMatch().GetConnectMatcher() == nil; runs != oci {
					p.addf("route %s/%s: %s runs %v; want it on the OCI routes but CONNECT's, and only there", vh.GetName(), r.GetName(), observeFilterName, runs)
				}
			}
		}
		return p.err()
	}},
	{"admin on loopback", func(c *envoyConfig) error {
		sa := c.bs.GetAdmin().GetAddress().GetSocketAddress()
		ip, err := netip.ParseAddr(sa.GetAddress())
		if err != nil || !ip.IsLoopback() {
			return fmt.Errorf("admin address %q must be a loopback IP", sa.GetAddress())
		}
		return nil
	}},
}

func loadEnvoy(t *testing.T) *envoyConfig {
	t.Helper()
	c, err := parseEnvoy(readRepoFile(t, "envoy.yaml"))
	if err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	return c
}

// TestEnvoyConfig decodes and validates envoy.yaml and runs every check.
func TestEnvoyConfig(t *testing.T) {
	t.Parallel()
	runChecks(t, envoyChecks, loadEnvoy(t), true)
}

// TestEnvoyConfigValidatesEveryTypedConfig makes sure the recursive walk
// really reached the typed configs, so "validated" means something.
func TestEnvoyConfigValidatesEveryTypedConfig(t *testing.T) {
	t.Parallel()
	c := loadEnvoy(t)
	seen := map[string]bool{}
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			visit := func(v protoreflect.Value) {
				if fd.Kind() != protoreflect.MessageKind {
					return
				}
				msg := v.Message()
				if a, ok := msg.Interface().(*anypb.Any); ok {
					if a.GetTypeUrl() == "" {
						return // FilterConfig's "config: {}": enables a filter (envoyconfig checkValue)
					}
					inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
					if err != nil {
						t.Fatal(err)
					}
					seen[string(inner.ProtoReflect().Descriptor().FullName())] = true
					walk(inner.ProtoReflect())
					return
				}
				walk(msg)
			}
			switch {
			case fd.IsList():
				for i := range v.List().Len() {
					visit(v.List().Get(i))
				}
			case fd.IsMap():
				fd = fd.MapValue()
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { visit(mv); return true })
			default:
				visit(v)
			}
			return true
		})
	}
	walk(c.bs.ProtoReflect())
	for _, want := range []string{
		"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
		"envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
		"envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig",
		"envoy.extensions.filters.http.router.v3.Router",
		"envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig",
		"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
		"envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
		// HTTPS interception
		"envoy.extensions.filters.http.set_filter_state.v3.Config",
		"envoy.config.route.v3.FilterConfig",
		"envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
		"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
		"envoy.extensions.transport_sockets.tls.cert_selectors.on_demand_secret.v3.Config",
		"envoy.extensions.transport_sockets.tls.cert_mappers.sni.v3.SNI",
		"envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
		"envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
		"envoy.extensions.bootstrap.internal_listener.v3.InternalListener",
	} {
		if !seen[want] {
			t.Errorf("typed config %s not reached by the walk (seen %v)", want, seen)
		}
	}
}

// swapFilters moves the dynamic_forward_proxy filter before the signing
// filter.
func swapFilters(s string) (string, error) {
	const indent = "                  - name: "
	a := strings.Index(s, indent+extProcFilterName+"\n")
	b := strings.Index(s, indent+dfpFilterName+"\n")
	c := strings.Index(s, indent+routerFilterName+"\n")
	if a < 0 || b < a || c < b {
		return "", errors.New("http filter blocks not found in the expected order")
	}
	return s[:a] + s[b:c] + s[a:b] + s[c:], nil
}

var envoyMutations = []mutation{
	// The file must not load at all.
	{"unknown field", replaceFirst("suppress_envoy_headers: true", "suppress_envoy_header: true"), ""},
	{"unresolvable typed_config", replaceFirst("http.router.v3.Router", "http.router.v3.Routr"), ""},
	{"validation rule in the bootstrap", replaceFirst("connect_timeout: 1s", "connect_timeout: 0s"), ""},
	{"validation rule inside nested Anys", replaceFirst("message_timeout: 5s", "message_timeout: 7200s"), ""},
	{"validation rule inside a per-route Any", replaceFirst("- key: x-oci-profile", "- key: \"\""), ""},
	{"deprecated field", replaceFirst("      type: STRICT_DNS\n", "      type: STRICT_DNS\n      dns_refresh_rate: 5s\n"), ""},
	{"YAML syntax", replaceFirst("static_resources:", "static_resources: ["), ""},

	{"listener port", replaceFirst("port_value: 10000", "port_value: 10001"), "listener"},
	{"host port kept", replaceFirst("strip_any_host_port: true", "strip_matching_host_port: true"), "connection manager keeps host and path as signed"},
	{"slashes merged", replaceFirst("merge_slashes: false", "merge_slashes: true"), "connection manager keeps host and path as signed"},
	{"path normalised", replaceFirst("normalize_path: false", "normalize_path: true"), "connection manager keeps host and path as signed"},
	{"escaped slashes unescaped", replaceFirst("KEEP_UNCHANGED", "UNESCAPE_AND_FORWARD"), "connection manager keeps host and path as signed"},
	{"Envoy answers 100-continue", replaceFirst("proxy_100_continue: true", "proxy_100_continue: false"), "100-continue comes from OCI"},
	{"filter order", swapFilters, "http filter order"},
	{"fail open", replaceNth("failure_mode_allow: false", "failure_mode_allow: true", 2), "ext_proc fails closed"},
	{"status_on_error", replaceFirst("code: InternalServerError", "code: OK"), "ext_proc fails closed"},
	{"disallowed mutation ignored", replaceFirst("disallow_is_error: true", "disallow_is_error: false"), "ext_proc fails closed"},
	{"wrong ext_proc cluster", replaceNth("cluster_name: signer", "cluster_name: oci", 2), "ext_proc fails closed"},
	{"streamed body", replaceFirst("request_body_mode: BUFFERED", "request_body_mode: STREAMED"), "ext_proc processing mode"},
	{"response headers sent", replaceFirst("response_header_mode: SKIP", "response_header_mode: SEND"), "ext_proc processing mode"},
	{"response body sent", replaceFirst("response_body_mode: NONE", "response_body_mode: BUFFERED"), "ext_proc processing mode"},
	{"trailer mode left DEFAULT", replaceFirst("request_trailer_mode: SKIP", "request_trailer_mode: DEFAULT"), "ext_proc processing mode"},
	{"no mode override", replaceFirst("allow_mode_override: true", "allow_mode_override: false"), "ext_proc mode override"},
	{"NONE override missing", replaceNth("request_body_mode: NONE", "request_body_mode: STREAMED", 2), "ext_proc mode override"},
	{"gateway filter buffers", replaceFirst("request_body_mode: NONE", "request_body_mode: BUFFERED"), "ext_proc processing mode"},
	{"gateway filter may override", replaceFirst("                      metadata_options:\n", "                      allow_mode_override: true\n                      metadata_options:\n"), "ext_proc processing mode"},
	{"override not fully explicit", replaceNth("                          response_trailer_mode: SKIP\n", "", 2), "ext_proc mode override"},
	{"message timeout too short", replaceFirst("message_timeout: 5s", "message_timeout: 0.2s"), "ext_proc timeouts"},
	{"grpc timeout that does nothing", replaceFirst("                          cluster_name: signer\n", "                          cluster_name: signer\n                        timeout: 300s\n"), "ext_proc timeouts"},
	{"realm missing", replaceFirst("- \"*.oraclecloud52.com\"", "- \"oraclecloud52.com\""), "OCI virtual host domains"},
	{"extra domain", replaceFirst("- \"*.oraclecloud.eu\"       # oc19\n", "- \"*.oraclecloud.eu\"\n                        - \"*.example.com\"\n"), "OCI virtual host domains"},
	{"prefix rewrite", replaceNth("cluster: oci\n", "cluster: oci\n                            prefix_rewrite: /v2/\n", 2), "OCI routes go to the signing path unmodified"},
	{"host rewrite", replaceNth("cluster: oci\n", "cluster: oci\n                            host_rewrite_literal: example.com\n", 2), "OCI routes go to the signing path unmodified"},
	{"signed header removed after signing", replaceFirst("request_headers_to_remove: [x-oci-route]", "request_headers_to_remove: [x-content-sha256]"), "OCI routes go to the signing path unmodified"},
	{"route to the signer", replaceNth("cluster: oci\n", "cluster: signer\n", 2), "OCI routes go to the signing path unmodified"},
	{"buffer limit", replaceFirst("request_body_buffer_limit: 33554432", "request_body_buffer_limit: 1048576"), "OCI body buffer limit"},
	{"example profile key", replaceFirst("- key: x-oci-profile", "- key: x-profile"), "example route pins a profile"},
	{"example route last", replaceFirst("                        - name: oci\n                          match: { prefix: \"/\" }", "                        - name: oci\n                          match: { prefix: \"/x\" }"), "example route pins a profile"},
	{"example matcher", replaceFirst("string_match: { exact: example }", "string_match: { exact: sample }"), "example route pins a profile"},
	{"catch-all allows", replaceFirst("status: 403", "status: 200"), "catch-all refuses other hosts"},
	{"catch-all signs", replaceNth("disabled: true", "overrides: { grpc_initial_metadata: [{ key: x-oci-profile, value: DEFAULT }] }", 4), "catch-all refuses other hosts"},
	{"catch-all disabled: false", replaceNth("disabled: true", "disabled: false", 4), ""},
	{"catch-all without the gateway filter", replaceFirst("overrides: {}", "disabled: true"), "catch-all refuses other hosts"},
	{"catch-all forwards", replaceFirst(`                          direct_response:
                            status: 403
                            body:
                              inline_string: '{"code":"NotAllowed","message":"ocisigner gateway: host is not an OCI API endpoint"}'
`, "                          route: { cluster: oci, timeout: 0s }\n"), "every rewriting route goes through the signer"},
	{"gateway filter on OCI routes", replaceFirst("disabled: true", "overrides: {}"), "every rewriting route goes through the signer"},
	{"both filters on the catch-all", replaceNth("disabled: true", "overrides: {}", 4), "every rewriting route goes through the signer"},
	{"gateway filter may set host", replaceFirst(`allow_expression: { regex: ":authority" }`, `allow_expression: { regex: ":authority|host" }`), "narrowest mutation rules"},
	{"gateway filter may set any routing header", replaceFirst(`allow_expression: { regex: ":authority" }`, `allow_expression: { regex: ":authority" }`+"\n                        allow_all_routing: true"), "narrowest mutation rules"},
	{"proxy filter may set :authority", replaceFirst("                      mutation_rules:\n                        disallow_is_error: true\n",
		"                      mutation_rules:\n                        allow_expression: { regex: \":authority\" }\n                        disallow_is_error: true\n"), "narrowest mutation rules"},
	{"gateway filter keeps the stale route", replaceFirst("route_cache_action: CLEAR", "route_cache_action: DEFAULT"), "only the gateway filter re-routes"},
	{"proxy filter re-routes", replaceFirst("route_cache_action: RETAIN", "route_cache_action: CLEAR"), "only the gateway filter re-routes"},
	{"gateway filter fails open", replaceFirst("failure_mode_allow: false", "failure_mode_allow: true"), "ext_proc fails closed"},
	{"gateway filter signs elsewhere", replaceFirst("cluster_name: signer", "cluster_name: oci"), "ext_proc fails closed"},
	{"gateway filter drifts", replaceNth("message_timeout: 5s", "message_timeout: 6s", 2), "the gateway filter addresses and the signing filter signs"},
	{"one stat prefix for both", replaceFirst("                      stat_prefix: gateway\n", ""), "the gateway filter addresses and the signing filter signs"},
	{"gateway filter signs", replaceFirst("value: address", "value: sign"), "the gateway filter addresses and the signing filter signs"},
	{"signing filter addresses", replaceNth("                          cluster_name: signer\n", "                          cluster_name: signer\n                        initial_metadata: [{ key: x-ocisigner-stage, value: address }]\n", 2), "the gateway filter addresses and the signing filter signs"},
	{"address not forwarded", replaceNth("untyped: [ocisigner]", "untyped: []", 3), "the gateway filter addresses and the signing filter signs"},
	{"gateway buffer limit", replaceNth("request_body_buffer_limit: 33554432", "request_body_buffer_limit: 1048576", 2), "OCI body buffer limit"},
	{"path rewrite", replaceNth("cluster: oci\n", "cluster: oci\n                            path_rewrite: /v2/x\n", 2), "OCI routes go to the signing path unmodified"},
	{"route timeout", replaceNth("timeout: 0s", "timeout: 60s", 3), "long responses stream"},
	{"stream idle timeout short", replaceFirst("                proxy_100_continue: true\n", "                proxy_100_continue: true\n                stream_idle_timeout: 30s\n"), "long responses stream"},
	{"catch-all body", replaceFirst(`'{"code":"NotAllowed","message":"ocisigner gateway: host is not an OCI API endpoint"}'`, `forbidden`), "catch-all refuses other hosts"},
	{"catch-all content type", replaceFirst("value: application/json", "value: text/plain"), "catch-all refuses other hosts"},
	{"no catch-all", replaceFirst(`domains: ["*"]`, `domains: ["*.example.com"]`), "catch-all refuses other hosts"},
	{"signer port", replaceFirst("port_value: 50051", "port_value: 50052"), "signer cluster"},
	{"signer protocol not explicit", replaceFirst("explicit_http_config:\n            http2_protocol_options:", "use_downstream_protocol_config:\n            http2_protocol_options:"), "signer cluster"},
	{"signer keepalive", replaceFirst("                interval: 30s\n", ""), "signer cluster"},
	{"signer keepalive faster than the signer allows", replaceFirst("                interval: 30s\n", "                interval: 1s\n"), "signer cluster"},
	{"signer health check", replaceFirst("grpc_health_check: {}", "tcp_health_check: {}"), "signer cluster"},
	{"signer circuit breakers", replaceFirst("max_requests: 16384", "max_requests: 1024"), "signer cluster"},
	{"dns cache mismatch", replaceLast("name: oci_dns_cache", "name: other_cache"), "OCI cluster verifies TLS"},
	{"no trusted CA", replaceFirst("trusted_ca:", "crl:"), "OCI cluster verifies TLS"},
	{"untrusted chain accepted", replaceFirst("              trusted_ca:\n", "              trust_chain_verification: ACCEPT_UNTRUSTED\n              trusted_ca:\n"), "OCI cluster verifies TLS"},
	{"auto_san_validation off", replaceFirst("auto_san_validation: true", "auto_san_validation: false"), "OCI cluster verifies TLS"},
	{"auto_sni off", replaceFirst("auto_sni: true", "auto_sni: false"), "OCI cluster verifies TLS"},
	{"lb policy", replaceFirst("lb_policy: CLUSTER_PROVIDED", "lb_policy: ROUND_ROBIN"), "OCI cluster verifies TLS"},
	{"metadata namespace not received", replaceNth("untyped: [ocisigner]", "untyped: [signer]", 2), "signer metadata reaches the access log"},
	{"gateway metadata not received", replaceFirst("untyped: [ocisigner]", "untyped: []"), "signer metadata reaches the access log"},
	{"access log without the profile", replaceFirst("profile=%DYNAMIC_METADATA(ocisigner:profile)%", "profile=%REQ(x-oci-profile)%"), "signer metadata reaches the access log"},
	{"default access log format", replaceFirst(`                      log_format:
                        text_format_source:
`, `                      log_format:
                        omit_empty_values: true
                        text_format_source:
`), "signer metadata reaches the access log"},
	{"admin exposed", replaceFirst("address: 127.0.0.1, port_value: 9901", "address: 0.0.0.0, port_value: 9901"), "admin on loopback"},
	{"observer waits", replaceFirst("observability_mode: true", "observability_mode: false"), "the observing filter never holds a response"},
	{"observer fails closed", replaceFirst("failure_mode_allow: true", "failure_mode_allow: false"), "the observing filter never holds a response"},
	{"observer sends the request", replaceFirst("request_header_mode: SKIP", "request_header_mode: SEND"), "the observing filter never holds a response"},
	{"observer sends the body", replaceNth("response_body_mode: NONE", "response_body_mode: STREAMED", 5), "the observing filter never holds a response"},
	{"observer without the signer's metadata", replaceNth("untyped: [ocisigner]", "untyped: []", 4), "the observing filter never holds a response"},
	{"observer's streams are signing streams", replaceFirst("value: observe", "value: sign"), "the observing filter never holds a response"},
	{"observer stream kept long", replaceFirst("deferred_close_timeout: 1s", "deferred_close_timeout: 60s"), "the observing filter never holds a response"},
	{"observer elsewhere", replaceNth("                          cluster_name: signer\n", "                          cluster_name: oci\n", 3), "the observing filter never holds a response"},
	{"observer on the CONNECT route", replaceFirst(`                            ocisigner.ext_proc.observe:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute
                              disabled: true
                            ocisigner.connect_authority:`, `                            ocisigner.connect_authority:`), "the observing filter runs on the OCI routes only"},
	{"observer on the catch-all", replaceNth("disabled: true", "overrides: {}", 5), "the observing filter runs on the OCI routes only"},
	{"observer off on the OCI routes", replaceFirst(`                        ocisigner.ext_proc.gateway:
                          "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute
                          disabled: true
`, `                        ocisigner.ext_proc.gateway:
                          "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute
                          disabled: true
                        ocisigner.ext_proc.observe:
                          "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute
                          disabled: true
`), "the observing filter runs on the OCI routes only"},
}

// checkObserver: the observing filter runs in observability mode, fails
// open, sends the response headers alone with the signer's dynamic
// metadata, on streams of the observe stage, and keeps no stream long.
func checkObserver(c *envoyConfig) error {
	var p problems
	ep := c.observeProc
	// ext_proc.cc: only observability mode sends without waiting
	// (sendHeadersInObservabilityMode); fail-closed turns a stream error
	// into a local reply (onGrpcError).
	if !ep.GetObservabilityMode() {
		p.addf("%s: observability_mode must be true, or every response waits for the signer", observeFilterName)
	}
	if !ep.GetFailureModeAllow() {
		p.addf("%s: failure_mode_allow must be true: a signer out of reach must not fail OCI's answers", observeFilterName)
	}
	want := &extprocv3.ProcessingMode{RequestHeaderMode: extprocv3.ProcessingMode_SKIP, ResponseHeaderMode: extprocv3.ProcessingMode_SEND,
		RequestBodyMode: extprocv3.ProcessingMode_NONE, ResponseBodyMode: extprocv3.ProcessingMode_NONE,
		RequestTrailerMode: extprocv3.ProcessingMode_SKIP, ResponseTrailerMode: extprocv3.ProcessingMode_SKIP}
	if got := ep.GetProcessingMode(); !proto.Equal(got, want) {
		p.addf("%s: processing_mode = {%v}, want {%v} (the response headers alone)", observeFilterName, got, want)
	}
	if got := ep.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != signerClusterName {
		p.addf("%s: cluster %q, want %q", observeFilterName, got, signerClusterName)
	}
	stage := ""
	for _, hv := range ep.GetGrpcService().GetInitialMetadata() {
		if hv.GetKey() == extproc.StageKey {
			stage = hv.GetValue()
		}
	}
	if stage != extproc.StageObserve {
		p.addf("%s: grpc_service.initial_metadata must carry %s: %s, or the signer reads its streams as requests to sign", observeFilterName, extproc.StageKey, extproc.StageObserve)
	}
	if !slices.Contains(ep.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(), extproc.MetadataNamespace) {
		p.addf("%s: metadata_options.forwarding_namespaces must hold %s: the profile a refusal is for", observeFilterName, extproc.MetadataNamespace)
	}
	if d := ep.GetDeferredCloseTimeout(); d == nil || d.AsDuration() > 5*time.Second {
		p.addf("%s: deferred_close_timeout %v: set it, at most Envoy's 5s default (each response holds a stream that long)", observeFilterName, d.AsDuration())
	}
	if ep.GetAllowModeOverride() || len(ep.GetRequestAttributes()) > 0 || len(ep.GetResponseAttributes()) > 0 {
		p.addf("%s: mode overrides and attributes have nothing to do here", observeFilterName)
	}
	if sp := ep.GetStatPrefix(); sp == "" || sp == c.extProc.GetStatPrefix() || sp == c.gatewayProc.GetStatPrefix() {
		p.addf("%s: stat_prefix %q must be its own", observeFilterName, sp)
	}
	return p.err()
}

// TestEnvoyChecksCatchRegressions applies each mutation to envoy.yaml and
// requires the named check (or, for want == "", the load itself) to fail.
// Every check must be proved by at least one mutation.
func TestEnvoyChecksCatchRegressions(t *testing.T) {
	t.Parallel()
	const file = "envoy.yaml"
	mutationProof{
		files:     map[string]string{file: readRepoFile(t, file)},
		mutations: inFile(file, envoyMutations),
		known:     checkNamesUnique(t, envoyChecks),
		load: func(t *testing.T, f map[string]string) (map[string]error, error) {
			c, err := parseEnvoy(f[file])
			if err != nil {
				return nil, err
			}
			return runChecks(t, envoyChecks, c, false), nil
		},
	}.run(t)
}

// envoyHostMatches reports whether Envoy would select a virtual host with
// these domains for host, for the forms used here: exact names and suffix
// wildcards ("*.example.com" needs at least one character before the suffix).
func envoyHostMatches(domains []string, host string) bool {
	host = strings.ToLower(host)
	for _, d := range domains {
		if suffix, ok := strings.CutPrefix(d, "*"); ok {
			if len(host) > len(suffix) && strings.HasSuffix(host, suffix) {
				return true
			}
		} else if host == d {
			return true
		}
	}
	return false
}

// TestGatewayDomainsMatchSigner: the hosts Envoy sends to the signer are
// exactly the hosts the signer accepts as OCI endpoints, for every realm.
func TestGatewayDomainsMatchSigner(t *testing.T) {
	t.Parallel()
	if got, want := signer.RealmDomains(), realmDomainSet(); !slices.Equal(got, want) {
		t.Errorf("signer.RealmDomains() = %v, test realm table = %v", got, want)
	}
	c := loadEnvoy(t)
	if len(c.ociHosts) != 1 {
		t.Fatalf("want one OCI virtual host, have %d", len(c.ociHosts))
	}
	domains := c.ociHosts[0].GetDomains()
	type hostCase struct {
		host string
		want bool
	}
	cases := []hostCase{{"example.com", false}, {"oraclecloud.com.example.com", false}, {"localhost", false}}
	for _, r := range realms {
		cases = append(cases,
			hostCase{"objectstorage.us-phoenix-1." + r.domain, true},
			hostCase{"generativeai.us-chicago-1.oci." + r.domain, true},
			hostCase{"AUTH.US-ASHBURN-1." + strings.ToUpper(r.domain), true},
			hostCase{r.domain, false},
			hostCase{"evil" + r.domain, false},
			hostCase{r.domain + ".evil.example", false},
		)
	}
	for _, tc := range cases {
		if got := envoyHostMatches(domains, tc.host); got != tc.want {
			t.Errorf("envoy OCI virtual host matches %q = %v, want %v", tc.host, got, tc.want)
		}
		if got := signer.IsRealmHost(tc.host); got != tc.want {
			t.Errorf("signer.IsRealmHost(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}

// TestRealmTableMatchesDoc cross-checks the realm table above with the shared
// doc it was copied from, when the doc is there (it sits outside the repo).
func TestRealmTableMatchesDoc(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join(repoRoot, "..", "shared", "docs", "oci-signing.md"))
	if err != nil {
		t.Skipf("shared/docs/oci-signing.md not beside the repo: %v", err)
	}
	text := strings.Join(strings.Fields(string(doc)), " ")
	_, after, ok := strings.Cut(text, "Realm domains:")
	if !ok {
		t.Fatal(`doc has no "Realm domains:" paragraph`)
	}
	para, _, _ := strings.Cut(after, ". ")
	entry := regexp.MustCompile(`^((?:oc\d+,? )+)([a-z0-9.-]+\.[a-z]+)$`)
	got := map[string]string{}
	for _, e := range strings.Split(para, ";") {
		m := entry.FindStringSubmatch(strings.TrimSpace(e))
		if m == nil {
			t.Fatalf("cannot read realm entry %q", e)
		}
		for _, realm := range strings.Fields(strings.ReplaceAll(m[1], ",", " ")) {
			got[realm] = m[2]
		}
	}
	want := map[string]string{}
	for _, r := range realms {
		want[r.realm] = r.domain
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("doc realms %v\ntest realms %v", got, want)
	}
}

// extProcFailsClosed lists what would let one ext_proc filter forward a request unsigned.
func extProcFailsClosed(name string, ep *extprocv3.ExternalProcessor) problems {
	var p problems
	if got := ep.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != signerClusterName {
		p.addf("%s: grpc_service.envoy_grpc.cluster_name = %q, want %q", name, got, signerClusterName)
	}
	if ep.GetHttpService() != nil {
		p.addf("%s: http_service must not be set", name)
	}
	if ep.GetFailureModeAllow() {
		p.addf("%s: failure_mode_allow must be false: an unsigned request must not go upstream", name)
	}
	if got := ep.GetStatusOnError().GetCode(); got != typev3.StatusCode_InternalServerError {
		p.addf("%s: status_on_error = %v (%d), want 500", name, got, got)
	}
	if !ep.GetMutationRules().GetDisallowIsError().GetValue() {
		p.addf("%s: mutation_rules.disallow_is_error must be true", name)
	}
	if ep.GetObservabilityMode() {
		p.addf("%s: observability_mode ignores the signer's answers", name)
	}
	if ep.GetDisableImmediateResponse() {
		p.addf("%s: disable_immediate_response would drop the signer's error replies", name)
	}
	if ep.GetSendBodyWithoutWaitingForHeaderResponse() {
		p.addf("%s: send_body_without_waiting_for_header_response disables mode overrides", name)
	}
	return p
}
