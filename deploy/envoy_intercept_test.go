package deploy

import (
	"errors"
	"fmt"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	setfsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/set_filter_state/v3"
	setfilterstatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/set_filter_state/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	internalupstreamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/internal_upstream/v3"
	snimapperv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/cert_mappers/sni/v3"
	ondemandv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/cert_selectors/on_demand_secret/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/intercept"
)

// HTTPS interception in envoy.yaml: the ingress listener terminates CONNECT
// for OCI hosts into an internal listener, whose TLS certificates come from
// the signer on demand and whose connection manager is the ingress one's.

const (
	// connectAuthorityFilterName stores a CONNECT's :authority for the
	// signer (set_filter_state); it runs on the CONNECT route only.
	connectAuthorityFilterName = "ocisigner.connect_authority"
	interceptClusterName       = "intercept"
	internalListenerExt        = "envoy.bootstrap.internal_listener"
)

func init() {
	envoyChecks = append(envoyChecks, interceptChecks...)
	envoyMutations = append(envoyMutations, interceptMutations...)
}

// isConnect reports a route that matches CONNECT requests only.
func isConnect(r *routev3.Route) bool { return r.GetMatch().GetConnectMatcher() != nil }

// internalHCM is the internal listener's connection manager.
func (c *envoyConfig) internalListener() (*listenerv3.Listener, *hcmv3.HttpConnectionManager, error) {
	if len(c.others) != 1 || c.others[0].GetInternalListener() == nil {
		return nil, nil, fmt.Errorf("want one listener after the ingress one, an internal listener; have %d", len(c.others))
	}
	l := c.others[0]
	fcs := l.GetFilterChains()
	if len(fcs) != 1 || len(fcs[0].GetFilters()) != 1 {
		return nil, nil, errors.New("the internal listener: want one filter chain with one network filter")
	}
	hcm, err := unpack(fcs[0].GetFilters()[0].GetTypedConfig(), &hcmv3.HttpConnectionManager{})
	return l, hcm, err
}

// connectAuthorityEnabled reports whether the set_filter_state filter runs
// on route r of vh: FilterConfig{config: {}} enables it, FilterConfig{disabled:
// true} turns it off, the most specific level deciding (per_filter_config.cc).
func connectAuthorityEnabled(vh *routev3.VirtualHost, r *routev3.Route, routes *routev3.RouteConfiguration) (bool, error) {
	for _, m := range []map[string]*anypb.Any{r.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig(), routes.GetTypedPerFilterConfig()} {
		a, ok := m[connectAuthorityFilterName]
		if !ok {
			continue
		}
		fc, err := unpack(a, &routev3.FilterConfig{})
		if err != nil {
			return false, err
		}
		return !fc.GetDisabled() && fc.GetConfig() != nil && fc.GetConfig().GetTypeUrl() == "", nil
	}
	return false, nil
}

var interceptChecks = []namedCheck[*envoyConfig]{
	{"CONNECT is terminated only for OCI hosts", func(c *envoyConfig) error {
		var p problems
		ups := c.hcm.GetUpgradeConfigs()
		if len(ups) != 1 || ups[0].GetUpgradeType() != "CONNECT" || len(ups[0].GetFilters()) > 0 || ups[0].GetEnabled() != nil {
			p.addf("upgrade_configs = %v, want CONNECT alone: interception starts with a CONNECT", ups)
		}
		if !c.hcm.GetHttpProtocolOptions().GetAcceptHttp_10() {
			p.addf("http_protocol_options.accept_http_10 must be true: Python before 3.12 sends CONNECT as HTTP/1.0, which Envoy otherwise answers 426")
		}
		for _, vh := range c.routes.GetVirtualHosts() {
			var connects []*routev3.Route
			for _, r := range vh.GetRoutes() {
				on, err := connectAuthorityEnabled(vh, r, c.routes)
				if err != nil {
					p.addf("route %s: %v", r.GetName(), err)
				}
				if on != (isConnect(r) && vh != c.catchAll) {
					p.addf("route %s/%s: %s runs %v; it must run on the OCI CONNECT route and nowhere else", vh.GetName(), r.GetName(), connectAuthorityFilterName, on)
				}
				if isConnect(r) {
					connects = append(connects, r)
				}
			}
			if len(connects) != 1 {
				p.addf("virtual host %s: %d CONNECT routes, want 1", vh.GetName(), len(connects))
				continue
			}
			r := connects[0]
			for _, f := range []string{extProcFilterName, gatewayFilterName} {
				if on, err := c.runsOn(f, vh, r); on || err != nil {
					p.addf("route %s: %s runs on the CONNECT itself (%v): it would see the tunnel, not the requests", r.GetName(), f, err)
				}
			}
			if vh == c.catchAll {
				if r.GetDirectResponse().GetStatus() != 403 {
					p.addf("route %s: CONNECT to other hosts must get 403", r.GetName())
				}
				continue
			}
			a := r.GetRoute()
			ucs := a.GetUpgradeConfigs()
			switch {
			case a.GetCluster() != interceptClusterName:
				p.addf("route %s: CONNECT goes to cluster %q, want %s (the internal listener)", r.GetName(), a.GetCluster(), interceptClusterName)
			case len(ucs) != 1 || ucs[0].GetUpgradeType() != "CONNECT" || ucs[0].GetConnectConfig() == nil || !proto.Equal(ucs[0].GetConnectConfig(), &routev3.RouteAction_UpgradeConfig_ConnectConfig{}):
				p.addf("route %s: upgrade_configs must be CONNECT with an empty connect_config (terminate the CONNECT)", r.GetName())
			case a.GetTimeout() == nil || a.GetTimeout().AsDuration() != 0:
				p.addf("route %s: timeout must be 0s: a route timeout would end the tunnel", r.GetName())
			}
		}
		cl := c.clusters[interceptClusterName]
		var names []string
		for _, e := range cl.GetLoadAssignment().GetEndpoints() {
			for _, lb := range e.GetLbEndpoints() {
				names = append(names, lb.GetEndpoint().GetAddress().GetEnvoyInternalAddress().GetServerListenerName())
			}
		}
		if l, _, err := c.internalListener(); err != nil || !slices.Equal(names, []string{l.GetName()}) {
			p.addf("cluster %s reaches %v, want the internal listener alone (%v)", interceptClusterName, names, err)
		}
		return p.err()
	}},
	{"the CONNECT host and SNI reach the signer", func(c *envoyConfig) error {
		var p problems
		i := slices.IndexFunc(c.hcm.GetHttpFilters(), func(f *hcmv3.HttpFilter) bool { return f.GetName() == connectAuthorityFilterName })
		if i < 0 {
			return fmt.Errorf("no %s filter", connectAuthorityFilterName)
		}
		f := c.hcm.GetHttpFilters()[i]
		if !f.GetDisabled() {
			p.addf("%s must be disabled by default: on a plain request its filter state would look like a CONNECT host", f.GetName())
		}
		cfg, err := unpack(f.GetTypedConfig(), &setfilterstatev3.Config{})
		if err != nil {
			return err
		}
		want := &setfilterstatev3.Config{OnRequestHeaders: []*setfsv3.FilterStateValue{{
			Key:        &setfsv3.FilterStateValue_ObjectKey{ObjectKey: extproc.ConnectAuthorityKey},
			FactoryKey: "envoy.string",
			Value: &setfsv3.FilterStateValue_FormatString{FormatString: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormatSource{
				TextFormatSource: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "%REQ(:AUTHORITY)%"}}}}},
			SharedWithUpstream: setfsv3.FilterStateValue_ONCE,
		}}}
		if !proto.Equal(cfg, want) {
			p.addf("%s = {%v}, want {%v}: the CONNECT's :authority as %s, shared with the internal connection", f.GetName(), cfg, want, extproc.ConnectAuthorityKey)
		}
		for _, a := range []string{extproc.AttrSNI, extproc.AttrConnectHost} {
			if !slices.Contains(c.extProc.GetRequestAttributes(), a) {
				p.addf("%s: request_attributes lacks %s: the signer could not tell an intercepted request", extProcFilterName, a)
			}
		}
		if len(c.gatewayProc.GetRequestAttributes()) > 0 {
			p.addf("%s: request_attributes are the signing filter's", gatewayFilterName)
		}
		ts := c.clusters[interceptClusterName].GetTransportSocket()
		iu, err := unpack(ts.GetTypedConfig(), &internalupstreamv3.InternalUpstreamTransport{})
		if ts.GetName() != "envoy.transport_sockets.internal_upstream" || err != nil || iu.GetTransportSocket().GetName() != "envoy.transport_sockets.raw_buffer" {
			p.addf("cluster %s: transport_socket must be internal_upstream over raw_buffer, or the CONNECT host stays behind (%v)", interceptClusterName, err)
		}
		if l, _, err := c.internalListener(); err != nil {
			p.addf("%v", err)
		} else if lf := l.GetListenerFilters(); len(lf) != 1 || lf[0].GetName() != "envoy.filters.listener.tls_inspector" {
			p.addf("the internal listener's listener_filters must be tls_inspector alone: only it sets the SNI ext_proc sees")
		}
		return p.err()
	}},
	{"internal listener serves certificates on demand", func(c *envoyConfig) error {
		var p problems
		if !slices.ContainsFunc(c.bs.GetBootstrapExtensions(), func(e *corev3.TypedExtensionConfig) bool { return e.GetName() == internalListenerExt }) {
			p.addf("bootstrap_extensions lacks %s: Envoy refuses an internal listener without it", internalListenerExt)
		}
		l, _, err := c.internalListener()
		if err != nil {
			return errors.Join(p.err(), err)
		}
		fc := l.GetFilterChains()[0]
		if d := fc.GetTransportSocketConnectTimeout().AsDuration(); d <= 0 || d > 10*time.Second {
			p.addf("transport_socket_connect_timeout %v: a handshake SDS does not answer must fail within seconds, not hang", d)
		}
		dtc, err := unpack(fc.GetTransportSocket().GetTypedConfig(), &tlsv3.DownstreamTlsContext{})
		if err != nil {
			return errors.Join(p.err(), err)
		}
		if !dtc.GetDisableStatelessSessionResumption() || !dtc.GetDisableStatefulSessionResumption() {
			p.addf("both kinds of session resumption must be off: the on-demand selector refuses the context otherwise")
		}
		ctc := dtc.GetCommonTlsContext()
		if !slices.Equal(ctc.GetAlpnProtocols(), []string{"h2", "http/1.1"}) {
			p.addf("alpn_protocols = %v, want [h2 http/1.1]", ctc.GetAlpnProtocols())
		}
		if ctc.GetTlsParams().GetTlsMinimumProtocolVersion() != tlsv3.TlsParameters_TLSv1_2 {
			p.addf("tls_minimum_protocol_version must be TLSv1_2")
		}
		if len(ctc.GetTlsCertificates()) > 0 || len(ctc.GetTlsCertificateSdsSecretConfigs()) > 0 {
			p.addf("a fixed certificate beside the on-demand selector")
		}
		sel := ctc.GetCustomTlsCertificateSelector()
		od, err := unpack(sel.GetTypedConfig(), &ondemandv3.Config{})
		if sel.GetName() != "envoy.tls.certificate_selectors.on_demand_secret" || err != nil {
			return errors.Join(p.err(), fmt.Errorf("custom_tls_certificate_selector must be the on-demand secret selector (%v)", err))
		}
		ac := od.GetConfigSource().GetApiConfigSource()
		gs := ac.GetGrpcServices()
		if ac.GetApiType() != corev3.ApiConfigSource_DELTA_GRPC || len(gs) != 1 || gs[0].GetEnvoyGrpc().GetClusterName() != signerClusterName ||
			ac.GetTransportApiVersion() != corev3.ApiVersion_V3 || od.GetConfigSource().GetResourceApiVersion() != corev3.ApiVersion_V3 {
			p.addf("config_source must be DELTA_GRPC (v3) to the %s cluster: the signer serves delta SDS only, and only delta can refuse a name", signerClusterName)
		}
		sni, err := unpack(od.GetCertificateMapper().GetTypedConfig(), &snimapperv3.SNI{})
		if od.GetCertificateMapper().GetName() != "envoy.tls.certificate_mappers.sni" || err != nil || sni.GetDefaultValue() != intercept.NoSNIName {
			p.addf("certificate_mapper must be sni with default_value %s, a name never served (%v)", intercept.NoSNIName, err)
		}
		if len(od.GetPrefetchSecretNames()) > 0 {
			p.addf("prefetch_secret_names: every name is asked for when a client needs it")
		}
		return p.err()
	}},
	{"the internal listener signs as the ingress listener does", func(c *envoyConfig) error {
		_, inner, err := c.internalListener()
		if err != nil {
			return err
		}
		if own := extproctest.StripConnect(inner); !proto.Equal(own, func() *hcmv3.HttpConnectionManager {
			x := proto.Clone(inner).(*hcmv3.HttpConnectionManager)
			x.StatPrefix = ""
			return x
		}()) {
			return errors.New("the internal listener's connection manager accepts CONNECT (upgrade_configs, CONNECT routes or the set_filter_state filter): a tunnel inside a tunnel")
		}
		if !proto.Equal(extproctest.StripConnect(inner), extproctest.StripConnect(c.hcm)) {
			return errors.New("the internal listener's connection manager differs from the ingress listener's in more than CONNECT and stat_prefix: intercepted requests must be signed as proxy-form ones are")
		}
		if inner.GetStatPrefix() == c.hcm.GetStatPrefix() {
			return errors.New("the two connection managers need distinct stat_prefix values")
		}
		return nil
	}},
}

var interceptMutations = []mutation{
	{"CONNECT not accepted", replaceFirst("                upgrade_configs:\n                  - upgrade_type: CONNECT\n", ""), "CONNECT is terminated only for OCI hosts"},
	{"HTTP/1.0 CONNECT refused", replaceFirst("                  accept_http_10: true\n", "                  accept_http_10: false\n"), "CONNECT is terminated only for OCI hosts"},
	{"tunnel to OCI", replaceFirst("cluster: intercept\n", "cluster: oci\n"), "CONNECT is terminated only for OCI hosts"},
	{"signing filter on the tunnel", replaceNth("disabled: true", "overrides: {}", 2), "CONNECT is terminated only for OCI hosts"},
	{"CONNECT forwarded, not terminated", replaceFirst("                                connect_config: {}\n", ""), "CONNECT is terminated only for OCI hosts"},
	{"tunnel with a route timeout", replaceFirst("timeout: 0s", "timeout: 15s"), "CONNECT is terminated only for OCI hosts"},
	{"no CONNECT route on the catch-all", replaceFirst("- name: connect-not-oci\n                          match: { connect_matcher: {} }",
		"- name: connect-not-oci\n                          match: { prefix: \"/connect\" }"), "CONNECT is terminated only for OCI hosts"},
	{"CONNECT host stored on the catch-all", replaceFirst("                            ocisigner.ext_proc.gateway:\n                              \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute\n                              disabled: true\n",
		"                            ocisigner.ext_proc.gateway:\n                              \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute\n                              disabled: true\n                            ocisigner.connect_authority:\n                              \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n                              config: {}\n"), "CONNECT is terminated only for OCI hosts"},
	{"tunnel to another listener", replaceFirst("server_listener_name: intercept", "server_listener_name: elsewhere"), "CONNECT is terminated only for OCI hosts"},

	{"CONNECT host stored on every request", replaceFirst("                  - name: ocisigner.connect_authority\n                    disabled: true\n", "                  - name: ocisigner.connect_authority\n"), "the CONNECT host and SNI reach the signer"},
	{"filter state key", replaceFirst("- object_key: ocisigner.connect_authority", "- object_key: ocisigner.connect_host"), "the CONNECT host and SNI reach the signer"},
	{"filter state not shared", replaceFirst("shared_with_upstream: ONCE", "shared_with_upstream: NONE"), "the CONNECT host and SNI reach the signer"},
	{"filter state of the Host header", replaceFirst(`inline_string: "%REQ(:AUTHORITY)%"`, `inline_string: "%REQ(HOST)%"`), "the CONNECT host and SNI reach the signer"},
	{"CONNECT host not asked for", replaceFirst("                        - \"filter_state['ocisigner.connect_authority']\"\n", ""), "the CONNECT host and SNI reach the signer"},
	{"SNI not asked for", replaceFirst("                        - connection.requested_server_name\n", ""), "the CONNECT host and SNI reach the signer"},
	{"filter state left behind", replaceFirst(`        name: envoy.transport_sockets.internal_upstream
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport
          transport_socket:
            name: envoy.transport_sockets.raw_buffer
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer
`, `        name: envoy.transport_sockets.raw_buffer
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer
`), "the CONNECT host and SNI reach the signer"},
	{"no tls_inspector", replaceFirst(`        - name: envoy.filters.listener.tls_inspector
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector
`, ""), "the CONNECT host and SNI reach the signer"},

	{"no internal listener extension", replaceFirst("  - name: envoy.bootstrap.internal_listener\n", "  - name: envoy.bootstrap.other_listener\n"), "internal listener serves certificates on demand"},
	{"state-of-the-world SDS", replaceFirst("api_type: DELTA_GRPC", "api_type: GRPC"), "internal listener serves certificates on demand"},
	{"SDS from another cluster", replaceFirst("                          - envoy_grpc:\n                              cluster_name: signer\n", "                          - envoy_grpc:\n                              cluster_name: oci\n"), "internal listener serves certificates on demand"},
	{"stateful resumption on", replaceFirst("disable_stateful_session_resumption: true", "disable_stateful_session_resumption: false"), "internal listener serves certificates on demand"},
	{"stateless resumption on", replaceFirst("disable_stateless_session_resumption: true", "disable_stateless_session_resumption: false"), "internal listener serves certificates on demand"},
	{"a handshake may hang", replaceFirst("        - transport_socket_connect_timeout: 5s\n          transport_socket:", "        - transport_socket:"), "internal listener serves certificates on demand"},
	{"HTTP/2 only", replaceFirst("alpn_protocols: [h2, http/1.1]", "alpn_protocols: [h2]"), "internal listener serves certificates on demand"},
	{"no SNI served", replaceFirst("default_value: no-sni.ocisigner.invalid", "default_value: identity.us-phoenix-1.oraclecloud.com"), "internal listener serves certificates on demand"},
	{"TLS 1.0", replaceFirst("tls_minimum_protocol_version: TLSv1_2", "tls_minimum_protocol_version: TLSv1_0"), "internal listener serves certificates on demand"},
	{"names fetched ahead", replaceFirst("                    certificate_mapper:\n", "                    prefetch_secret_names: [objectstorage.us-ashburn-1.oraclecloud.com]\n                    certificate_mapper:\n"), "internal listener serves certificates on demand"},

	{"internal listener's route drifts", replaceLast("timeout: 0s", "timeout: 60s"), "the internal listener signs as the ingress listener does"},
	{"internal listener's filter drifts", replaceLast("disallow_is_error: true", "disallow_is_error: false"), "the internal listener signs as the ingress listener does"},
	{"CONNECT inside the tunnel", replaceFirst("                stat_prefix: intercept_http\n", "                stat_prefix: intercept_http\n                upgrade_configs:\n                  - upgrade_type: CONNECT\n"), "the internal listener signs as the ingress listener does"},
	{"one stat prefix for both listeners", replaceFirst("stat_prefix: intercept_http", "stat_prefix: ingress_http"), "the internal listener signs as the ingress listener does"},
}
