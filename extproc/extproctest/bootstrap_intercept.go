package extproctest

import (
	"fmt"
	"slices"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	setfsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/set_filter_state/v3"
	setfilterstatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/set_filter_state/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	internalupstreamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/internal_upstream/v3"
	snimapperv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/cert_mappers/sni/v3"
	ondemandv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/cert_selectors/on_demand_secret/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// This file is FromBootstrap's part for HTTPS interception: the connection manager's
// upgrade_configs, the set_filter_state filter that stores a CONNECT's :authority, CONNECT
// routes that terminate into an internal listener, the internal cluster and its
// internal_upstream transport socket, and the internal listener (tls_inspector, the
// DownstreamTlsContext with the on-demand certificate selector and the sni mapper, the
// transport_socket_connect_timeout). The stand-in runs one connection manager for both
// listeners (tlsterm.go), so the internal listener's must be the ingress listener's
// without CONNECT (StripConnect): anything else is refused with ErrUnsupported.

// Type and extension names read here.
const (
	setFilterStateType    = "envoy.extensions.filters.http.set_filter_state.v3.Config"
	routeFilterConfigType = "envoy.config.route.v3.FilterConfig"
	onDemandSelectorName  = "envoy.tls.certificate_selectors.on_demand_secret"
	sniMapperName         = "envoy.tls.certificate_mappers.sni"
	tlsInspectorName      = "envoy.filters.listener.tls_inspector"
	internalListenerExt   = "envoy.bootstrap.internal_listener"
	internalUpstreamName  = "envoy.transport_sockets.internal_upstream"
	rawBufferName         = "envoy.transport_sockets.raw_buffer"
	authorityFormat       = "%REQ(:AUTHORITY)%"
)

// authorityFilter is a set_filter_state filter as the stand-in reproduces it: one value,
// the request's :authority as an envoy.string object, shared with the upstream connection.
type authorityFilter struct {
	name            string // the filter's name: its key in typed_per_filter_config
	key             string // object_key
	shared          bool   // shared_with_upstream ONCE or TRANSITIVE
	disabledDefault bool   // HttpFilter.disabled
}

func readAuthorityFilter(f *hcmv3.HttpFilter) (*authorityFilter, error) {
	cfg := &setfilterstatev3.Config{}
	if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
		return nil, err
	}
	if err := supportedFields(cfg, "on_request_headers"); err != nil {
		return nil, fmt.Errorf("filter %s: %w", f.GetName(), err)
	}
	vs := cfg.GetOnRequestHeaders()
	if len(vs) != 1 {
		return nil, fmt.Errorf("%w: filter %s: one on_request_headers value, not %d", ErrUnsupported, f.GetName(), len(vs))
	}
	v := vs[0]
	if err := supportedFields(v, "object_key", "factory_key", "format_string", "shared_with_upstream"); err != nil {
		return nil, fmt.Errorf("filter %s: %w", f.GetName(), err)
	}
	// An envoy.string object serialises to its value, which is what
	// filter_state['KEY'] gives ext_proc (attributes.go).
	if v.GetFactoryKey() != "envoy.string" || v.GetFormatString().GetTextFormatSource().GetInlineString() != authorityFormat ||
		len(v.GetFormatString().GetTextFormatSource().GetInlineString()) == 0 {
		return nil, fmt.Errorf("%w: filter %s: only factory_key envoy.string with the format %s is reproduced", ErrUnsupported, f.GetName(), authorityFormat)
	}
	shared := v.GetSharedWithUpstream() != setfsv3.FilterStateValue_NONE
	return &authorityFilter{name: f.GetName(), key: v.GetObjectKey(), shared: shared, disabledDefault: f.GetDisabled()}, nil
}

// enabledOn reports whether the filter runs for a route: the most specific of the route's
// and the virtual host's typed_per_filter_config decides, else HttpFilter.disabled
// (per_filter_config.cc PerFilterConfigs: FilterConfig.disabled, or an empty config that
// enables; FilterManager::createFilterChain).
func (af *authorityFilter) enabledOn(levels ...map[string]*anypb.Any) (bool, error) {
	enabled := !af.disabledDefault
	for _, level := range levels {
		a, ok := level[af.name]
		if !ok {
			continue
		}
		if typeName(a) != routeFilterConfigType {
			return false, fmt.Errorf("%w: typed_per_filter_config %s other than a FilterConfig", ErrUnsupported, af.name)
		}
		fc := &routev3.FilterConfig{}
		if err := a.UnmarshalTo(fc); err != nil {
			return false, err
		}
		switch {
		case fc.GetDisabled():
			enabled = false
		case fc.GetConfig() == nil:
			return false, fmt.Errorf("%w: Empty route/virtual host per filter configuration for %s filter", ErrConfig, af.name)
		case fc.GetConfig().GetTypeUrl() != "":
			return false, fmt.Errorf("%w: a route config for %s", ErrUnsupported, af.name)
		default:
			enabled = true
		}
	}
	return enabled, nil
}

// authorityOn reports whether the set_filter_state filter runs on route r of vh, and
// returns the route's per-filter configs without its entries (what mergePerFilter reads).
func (t *routeTable) authorityOn(vh *routev3.VirtualHost, r *routev3.Route) (bool, []map[string]*anypb.Any, error) {
	levels := []map[string]*anypb.Any{vh.GetTypedPerFilterConfig(), r.GetTypedPerFilterConfig()}
	af := t.authority
	if af == nil {
		return false, levels, nil
	}
	on, err := af.enabledOn(levels...)
	if err != nil {
		return false, nil, err
	}
	if on && r.GetMatch().GetConnectMatcher() == nil {
		// ext_proc would see the filter state on a plain request; not reproduced.
		return false, nil, fmt.Errorf("%w: set_filter_state filter %s on a route other than CONNECT", ErrUnsupported, af.name)
	}
	return on, []map[string]*anypb.Any{withoutFilter(levels[0], af.name), withoutFilter(levels[1], af.name)}, nil
}

// withoutFilter returns the per-filter config map without name's entry.
func withoutFilter(m map[string]*anypb.Any, name string) map[string]*anypb.Any {
	if _, ok := m[name]; !ok {
		return m
	}
	out := make(map[string]*anypb.Any, len(m))
	for k, v := range m {
		if k != name {
			out[k] = v
		}
	}
	return out
}

// readUpgrades reads upgrade_configs: none, or CONNECT alone (HCM
// ConnectionManagerConfig::createUpgradeFilterChain allows what is listed).
func readUpgrades(hcm *hcmv3.HttpConnectionManager) (connect bool, err error) {
	for _, u := range hcm.GetUpgradeConfigs() {
		if !strings.EqualFold(u.GetUpgradeType(), "CONNECT") || len(u.GetFilters()) > 0 || (u.GetEnabled() != nil && !u.GetEnabled().GetValue()) {
			return false, fmt.Errorf("%w: upgrade_configs other than CONNECT enabled with the default filters", ErrUnsupported)
		}
		connect = true
	}
	return connect, nil
}

// readConnectRoute reads a connect_matcher route's action: connect_config on an internal
// cluster terminates the CONNECT (router.cc, with the upstream a TCP connection to the
// internal listener). Anything else would forward the CONNECT, which is not reproduced.
func (t *routeTable) readConnectRoute(ra *routev3.RouteAction) error {
	ucs := ra.GetUpgradeConfigs()
	if len(ucs) != 1 || !strings.EqualFold(ucs[0].GetUpgradeType(), "CONNECT") || ucs[0].GetConnectConfig() == nil ||
		(ucs[0].GetEnabled() != nil && !ucs[0].GetEnabled().GetValue()) {
		return fmt.Errorf("%w: a CONNECT route without upgrade_configs CONNECT with connect_config (the CONNECT would be forwarded)", ErrUnsupported)
	}
	if err := supportedFields(ucs[0].GetConnectConfig()); err != nil {
		return err
	}
	if _, ok := t.internal[ra.GetCluster()]; !ok {
		return fmt.Errorf("%w: a CONNECT terminated into cluster %q, which is not an internal listener's", ErrUnsupported, ra.GetCluster())
	}
	// The stand-in's tunnel has no route timeout: it must be off, as Envoy's
	// would otherwise end the tunnel.
	if ra.GetTimeout() == nil || ra.GetTimeout().AsDuration() != 0 {
		return fmt.Errorf("%w: a CONNECT route with a route timeout", ErrUnsupported)
	}
	return nil
}

// internalClusters maps each cluster whose one endpoint is an envoy_internal_address to
// the listener it names, and reads its transport socket: internal_upstream (over
// raw_buffer) or none.
func internalClusters(b *bootstrapv3.Bootstrap) (map[string]string, map[string]bool, error) {
	listeners, upstream := map[string]string{}, map[string]bool{}
	for _, cl := range b.GetStaticResources().GetClusters() {
		eps := cl.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			continue
		}
		ia := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetEnvoyInternalAddress()
		if ia == nil {
			continue
		}
		if err := supportedFields(cl, "name", "connect_timeout", "load_assignment", "transport_socket"); err != nil {
			return nil, nil, fmt.Errorf("cluster %s: %w", cl.GetName(), err)
		}
		if ia.GetEndpointId() != "" || ia.GetServerListenerName() == "" {
			return nil, nil, fmt.Errorf("%w: cluster %s: an internal address other than a server_listener_name", ErrUnsupported, cl.GetName())
		}
		listeners[cl.GetName()] = ia.GetServerListenerName()
		ok, err := readInternalUpstream(cl)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster %s: %w", cl.GetName(), err)
		}
		upstream[cl.GetName()] = ok
	}
	return listeners, upstream, nil
}

func readInternalUpstream(cl *clusterv3.Cluster) (bool, error) {
	ts := cl.GetTransportSocket()
	switch ts.GetName() {
	case "":
		return false, nil
	case rawBufferName:
		return false, nil
	case internalUpstreamName:
	default:
		return false, fmt.Errorf("%w: transport socket %s on an internal cluster", ErrUnsupported, ts.GetName())
	}
	iu := &internalupstreamv3.InternalUpstreamTransport{}
	if err := ts.GetTypedConfig().UnmarshalTo(iu); err != nil {
		return false, err
	}
	// Passthrough metadata is not reproduced; filter state crosses on its own.
	if err := supportedFields(iu, "transport_socket"); err != nil {
		return false, err
	}
	if iu.GetTransportSocket().GetName() != rawBufferName {
		return false, fmt.Errorf("%w: internal_upstream over %s", ErrUnsupported, iu.GetTransportSocket().GetName())
	}
	return true, nil
}

// readIntercept fills c.Intercept from the terminating routes' internal listener.
func (c *Config) readIntercept(b *bootstrapv3.Bootstrap, ingress *hcmv3.HttpConnectionManager, rt *routeTable, clusters map[string]string) error {
	if len(rt.terminators) == 0 {
		return nil
	}
	cluster := rt.terminators[0].cluster
	for _, tr := range rt.terminators[1:] {
		if tr.cluster != cluster || tr.setsAuthority != rt.terminators[0].setsAuthority {
			return fmt.Errorf("%w: CONNECT routes that differ in their internal listener or filter state", ErrUnsupported)
		}
	}
	if !slices.ContainsFunc(b.GetBootstrapExtensions(), func(e *corev3.TypedExtensionConfig) bool { return e.GetName() == internalListenerExt }) {
		return fmt.Errorf("%w: an internal listener without the bootstrap extension %s", ErrConfig, internalListenerExt)
	}
	name := rt.internal[cluster]
	var l *listenerv3.Listener
	for _, cand := range b.GetStaticResources().GetListeners() {
		if cand.GetName() == name && cand.GetInternalListener() != nil {
			l = cand
		}
	}
	if l == nil {
		return fmt.Errorf("%w: cluster %s names internal listener %q, which is not there", ErrConfig, cluster, name)
	}
	ic := &Intercept{InternalUpstream: rt.internalUp[cluster]}
	if rt.terminators[0].setsAuthority && rt.authority != nil && rt.authority.shared {
		ic.AuthorityFilterState = rt.authority.key
	}
	if err := ic.readListener(l, ingress, clusters); err != nil {
		return fmt.Errorf("listener %s: %w", name, err)
	}
	c.Intercept = ic
	return nil
}

// readListener reads the internal listener: its listener filters, its one filter chain's
// TLS context and timeout, and its connection manager.
func (ic *Intercept) readListener(l *listenerv3.Listener, ingress *hcmv3.HttpConnectionManager, clusters map[string]string) error {
	if err := supportedFields(l, "name", "internal_listener", "listener_filters", "filter_chains"); err != nil {
		return err
	}
	if err := supportedFields(l.GetInternalListener()); err != nil {
		return err
	}
	for _, lf := range l.GetListenerFilters() {
		if lf.GetName() != tlsInspectorName {
			return fmt.Errorf("%w: listener filter %s", ErrUnsupported, lf.GetName())
		}
		ti := &tlsinspectorv3.TlsInspector{}
		if err := lf.GetTypedConfig().UnmarshalTo(ti); err != nil {
			return err
		}
		if err := supportedFields(ti); err != nil {
			return err
		}
		ic.TLSInspector = true
	}
	fcs := l.GetFilterChains()
	if len(fcs) != 1 || len(fcs[0].GetFilters()) != 1 {
		return fmt.Errorf("%w: want one filter chain of one network filter", ErrUnsupported)
	}
	fc := fcs[0]
	if err := supportedFields(fc, "transport_socket_connect_timeout", "transport_socket", "filters"); err != nil {
		return err
	}
	ic.TransportSocketConnectTimeout = fc.GetTransportSocketConnectTimeout().AsDuration()
	if err := ic.readTLS(fc.GetTransportSocket(), clusters); err != nil {
		return err
	}
	inner := &hcmv3.HttpConnectionManager{}
	if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(inner); err != nil {
		return fmt.Errorf("%w: the filter is not an HTTP connection manager: %v", ErrUnsupported, err)
	}
	stripped := StripConnect(inner)
	stripped.StatPrefix = inner.GetStatPrefix()
	if !proto.Equal(stripped, inner) {
		return fmt.Errorf("%w: its connection manager accepts CONNECT (upgrade_configs, CONNECT routes, set_filter_state)", ErrUnsupported)
	}
	if !proto.Equal(StripConnect(inner), StripConnect(ingress)) {
		return fmt.Errorf("%w: its connection manager differs from the ingress listener's in more than CONNECT and stat_prefix; the stand-in runs one", ErrUnsupported)
	}
	return nil
}

// readTLS reads the DownstreamTlsContext of the on-demand selector.
func (ic *Intercept) readTLS(ts *corev3.TransportSocket, clusters map[string]string) error {
	dtc := &tlsv3.DownstreamTlsContext{}
	if ts.GetName() != "envoy.transport_sockets.tls" || ts.GetTypedConfig().UnmarshalTo(dtc) != nil {
		return fmt.Errorf("%w: the filter chain's transport socket is not a DownstreamTlsContext", ErrUnsupported)
	}
	if err := supportedFields(dtc, "common_tls_context", "disable_stateless_session_resumption", "disable_stateful_session_resumption"); err != nil {
		return err
	}
	ic.DisableStatelessSessionResumption = dtc.GetDisableStatelessSessionResumption()
	ic.DisableStatefulSessionResumption = dtc.GetDisableStatefulSessionResumption()
	ctc := dtc.GetCommonTlsContext()
	if err := supportedFields(ctc, "tls_params", "alpn_protocols", "custom_tls_certificate_selector"); err != nil {
		return err
	}
	// The stand-in serves TLS 1.2 and 1.3, Envoy's server defaults.
	if err := supportedFields(ctc.GetTlsParams(), "tls_minimum_protocol_version"); err != nil {
		return err
	}
	if v := ctc.GetTlsParams().GetTlsMinimumProtocolVersion(); v != tlsv3.TlsParameters_TLS_AUTO && v != tlsv3.TlsParameters_TLSv1_2 {
		return fmt.Errorf("%w: tls_minimum_protocol_version %v", ErrUnsupported, v)
	}
	ic.ALPN = ctc.GetAlpnProtocols()
	sel := ctc.GetCustomTlsCertificateSelector()
	if sel.GetName() != onDemandSelectorName {
		return fmt.Errorf("%w: certificates other than from %s", ErrUnsupported, onDemandSelectorName)
	}
	od := &ondemandv3.Config{}
	if err := sel.GetTypedConfig().UnmarshalTo(od); err != nil {
		return err
	}
	if err := supportedFields(od, "config_source", "certificate_mapper"); err != nil {
		return err
	}
	sds, err := readSDSSource(od.GetConfigSource(), clusters)
	if err != nil {
		return err
	}
	ic.SDS = sds
	m := od.GetCertificateMapper()
	sni := &snimapperv3.SNI{}
	if m.GetName() != sniMapperName || m.GetTypedConfig().UnmarshalTo(sni) != nil {
		return fmt.Errorf("%w: certificate mappers other than %s", ErrUnsupported, sniMapperName)
	}
	ic.DefaultSNI = sni.GetDefaultValue()
	return nil
}

// readSDSSource reads the selector's config_source: delta gRPC to one cluster.
// State-of-the-world SDS is not reproduced (sds.go).
func readSDSSource(cs *corev3.ConfigSource, clusters map[string]string) (string, error) {
	if err := supportedFields(cs, "resource_api_version", "api_config_source"); err != nil {
		return "", err
	}
	ac := cs.GetApiConfigSource()
	if err := supportedFields(ac, "api_type", "transport_api_version", "grpc_services"); err != nil {
		return "", err
	}
	if ac.GetApiType() != corev3.ApiConfigSource_DELTA_GRPC || len(ac.GetGrpcServices()) != 1 {
		return "", fmt.Errorf("%w: an SDS config source other than DELTA_GRPC to one gRPC service", ErrUnsupported)
	}
	gs := ac.GetGrpcServices()[0]
	if err := supportedFields(gs, "envoy_grpc"); err != nil {
		return "", err
	}
	if err := supportedFields(gs.GetEnvoyGrpc(), "cluster_name"); err != nil {
		return "", err
	}
	addr, ok := clusters[gs.GetEnvoyGrpc().GetClusterName()]
	if !ok {
		return "", fmt.Errorf("%w: no address for SDS cluster %q", ErrConfig, gs.GetEnvoyGrpc().GetClusterName())
	}
	return addr, nil
}

// StripConnect returns hcm without what accepts CONNECT: its upgrade_configs, the routes
// with a connect_matcher, the set_filter_state filters, and its stat_prefix. The
// stand-in's internal listener runs the ingress listener's connection manager, so
// FromBootstrap requires the internal listener's to be this of the ingress one's (and
// deploy/envoy_test.go checks envoy.yaml the same way).
func StripConnect(hcm *hcmv3.HttpConnectionManager) *hcmv3.HttpConnectionManager {
	out := proto.Clone(hcm).(*hcmv3.HttpConnectionManager)
	out.UpgradeConfigs, out.StatPrefix = nil, ""
	out.HttpFilters = slices.DeleteFunc(out.HttpFilters, func(f *hcmv3.HttpFilter) bool {
		return typeName(f.GetTypedConfig()) == setFilterStateType
	})
	for _, vh := range out.GetRouteConfig().GetVirtualHosts() {
		vh.Routes = slices.DeleteFunc(vh.Routes, func(r *routev3.Route) bool { return r.GetMatch().GetConnectMatcher() != nil })
	}
	return out
}
