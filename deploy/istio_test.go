package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	istioapi "istio.io/api/networking/v1alpha3"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	istionetv1a3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ocisigner/ocisigner/signer"
)

// The Istio mode's objects, decoded into istio.io/client-go's types, and the
// EnvoyFilter applied to a representative sidecar's outbound configuration
// the way istiod applies it (istio/istio pilot/pkg/networking/core/
// envoyfilter: rc_patch.go patchVirtualHost and routeConfigurationMatch,
// http_filter_patch.go patchHTTPFilters, cluster_patch.go for ADD), each
// patch value converted as pkg/config/xds BuildXDSObjectFromStruct does
// (strictly). The result is validated with go-control-plane.
type istioObjects struct {
	envoyFilters   []*istionetv1a3.EnvoyFilter
	serviceEntries []*istionetv1.ServiceEntry
	destRules      []*istionetv1.DestinationRule
}

func (o *istioObjects) decode(kind string, doc []byte) (bool, error) {
	switch kind {
	case "networking.istio.io/v1alpha3 EnvoyFilter":
		ef := &istionetv1a3.EnvoyFilter{}
		o.envoyFilters = append(o.envoyFilters, ef)
		return true, decodeIstio(doc, &ef.TypeMeta, &ef.ObjectMeta, &ef.Spec)
	case "networking.istio.io/v1 ServiceEntry":
		se := &istionetv1.ServiceEntry{}
		o.serviceEntries = append(o.serviceEntries, se)
		return true, decodeIstio(doc, &se.TypeMeta, &se.ObjectMeta, &se.Spec)
	case "networking.istio.io/v1 DestinationRule":
		dr := &istionetv1.DestinationRule{}
		o.destRules = append(o.destRules, dr)
		return true, decodeIstio(doc, &dr.TypeMeta, &dr.ObjectMeta, &dr.Spec)
	}
	return false, nil
}

// decodeIstio decodes an Istio object strictly. Istio's generated JSON
// decoders accept unknown fields (jsonpb AllowUnknownFields in
// istio.io/api's *_json.gen.go), so the envelope goes through the
// Kubernetes decoder and the spec through protojson, which refuses them.
func decodeIstio(doc []byte, tm *metav1.TypeMeta, om *metav1.ObjectMeta, spec proto.Message) error {
	var env struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        metav1.ObjectMeta `json:"metadata"`
		Spec            json.RawMessage   `json:"spec"`
	}
	if err := kubeDecodeStrict(doc, &env); err != nil {
		return err
	}
	*tm, *om = env.TypeMeta, env.Metadata
	if err := protojson.Unmarshal(env.Spec, spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	return nil
}

// The representative sidecar: what istiod builds for the pod's outbound
// HTTP on port 80. The listener 0.0.0.0_80 runs an HTTP connection manager
// on route configuration "80" whose filters end with the router (Istio's
// own istio.* filters, whose types go-control-plane does not have, are
// left out: the patch refers only to the router). The route configuration
// has a virtual host per service on port 80, named <host>:80
// (pilot/pkg/networking/util DomainName), and allow_any.
const (
	istioRouteName   = "80"
	istioSignerHTTPF = "ocisigner.ext_proc"
)

type istioSidecar struct {
	listener *listenerv3.Listener
	hcm      *hcmv3.HttpConnectionManager
	routes   *routev3.RouteConfiguration
	clusters []*clusterv3.Cluster
	applied  map[int]int // patch index -> how often it applied
}

func newIstioSidecar(ociHosts []string) (*istioSidecar, error) {
	var filters []*hcmv3.HttpFilter
	for _, f := range []struct {
		name string
		cfg  proto.Message
	}{{"envoy.filters.http.fault", &faultv3.HTTPFault{}}, {"envoy.filters.http.cors", &corsv3.Cors{}}, {routerFilterName, &routerv3.Router{}}} {
		a, err := anypb.New(f.cfg)
		if err != nil {
			return nil, err
		}
		filters = append(filters, &hcmv3.HttpFilter{Name: f.name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}})
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "outbound_0.0.0.0_80",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: istioRouteName,
			ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}},
		HttpFilters: filters,
	}
	s := &istioSidecar{hcm: hcm, applied: map[int]int{}, routes: &routev3.RouteConfiguration{Name: istioRouteName}}
	for _, h := range append(slices.Clone(ociHosts), "reviews.apps.svc.cluster.local") {
		s.routes.VirtualHosts = append(s.routes.VirtualHosts, &routev3.VirtualHost{
			Name: h + ":80", Domains: []string{h, h + ":80"},
			Routes: []*routev3.Route{{Name: "default", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "outbound|80||" + h}}}}},
		})
	}
	s.routes.VirtualHosts = append(s.routes.VirtualHosts, &routev3.VirtualHost{Name: "allow_any", Domains: []string{"*"},
		Routes: []*routev3.Route{{Name: "allow_any", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "PassthroughCluster"}}}}}})
	return s, nil
}

// buildPatchValue is BuildXDSObjectFromStruct with strict: the Struct as
// JSON, decoded into the type the patch applies to, unknown fields refused.
func buildPatchValue(cp *istioapi.EnvoyFilter_EnvoyConfigObjectPatch) (proto.Message, error) {
	var obj proto.Message
	switch cp.GetApplyTo() {
	case istioapi.EnvoyFilter_CLUSTER:
		obj = &clusterv3.Cluster{}
	case istioapi.EnvoyFilter_HTTP_FILTER:
		obj = &hcmv3.HttpFilter{}
	case istioapi.EnvoyFilter_VIRTUAL_HOST:
		obj = &routev3.VirtualHost{}
	default:
		return nil, fmt.Errorf("applyTo %s is not one this chart uses", cp.GetApplyTo())
	}
	js, err := protojson.Marshal(cp.GetPatch().GetValue())
	if err != nil {
		return nil, err
	}
	if err := protojson.Unmarshal(js, obj); err != nil {
		return nil, fmt.Errorf("%s value: %w", cp.GetApplyTo(), err)
	}
	return obj, nil
}

// apply applies one EnvoyFilter's patches in order, as istiod would for a
// SIDECAR_OUTBOUND proxy.
func (s *istioSidecar) apply(ef *istionetv1a3.EnvoyFilter) error {
	for i, cp := range ef.Spec.GetConfigPatches() {
		if ctx := cp.GetMatch().GetContext(); ctx != istioapi.EnvoyFilter_SIDECAR_OUTBOUND && ctx != istioapi.EnvoyFilter_ANY {
			continue
		}
		val, err := buildPatchValue(cp)
		if err != nil {
			return fmt.Errorf("patch %d: %w", i, err)
		}
		op := cp.GetPatch().GetOperation()
		switch cp.GetApplyTo() {
		case istioapi.EnvoyFilter_CLUSTER:
			if op != istioapi.EnvoyFilter_Patch_ADD {
				return fmt.Errorf("patch %d: CLUSTER %s: only ADD is modelled", i, op)
			}
			s.clusters = append(s.clusters, val.(*clusterv3.Cluster))
			s.applied[i]++
		case istioapi.EnvoyFilter_HTTP_FILTER:
			if err := s.applyHTTPFilter(i, cp, val.(*hcmv3.HttpFilter)); err != nil {
				return err
			}
		case istioapi.EnvoyFilter_VIRTUAL_HOST:
			s.applyVirtualHost(i, cp, val.(*routev3.VirtualHost))
		}
	}
	return nil
}

// applyHTTPFilter: listener 0.0.0.0_80 matches a listener match on port 80
// (or none); INSERT_BEFORE the named sub-filter, or first without one
// (http_filter_patch.go patchHTTPFilters).
func (s *istioSidecar) applyHTTPFilter(i int, cp *istioapi.EnvoyFilter_EnvoyConfigObjectPatch, f *hcmv3.HttpFilter) error {
	lm := cp.GetMatch().GetListener()
	if lm != nil && lm.GetPortNumber() != 0 && lm.GetPortNumber() != 80 {
		return nil
	}
	if fm := lm.GetFilterChain().GetFilter(); fm != nil && fm.GetName() != "envoy.filters.network.http_connection_manager" {
		return nil
	}
	if cp.GetPatch().GetOperation() != istioapi.EnvoyFilter_Patch_INSERT_BEFORE {
		return fmt.Errorf("patch %d: HTTP_FILTER %s: only INSERT_BEFORE is modelled", i, cp.GetPatch().GetOperation())
	}
	ref := lm.GetFilterChain().GetFilter().GetSubFilter().GetName()
	if ref == "" {
		s.hcm.HttpFilters = append([]*hcmv3.HttpFilter{f}, s.hcm.HttpFilters...)
		s.applied[i]++
		return nil
	}
	at := slices.IndexFunc(s.hcm.HttpFilters, func(h *hcmv3.HttpFilter) bool { return h.GetName() == ref })
	if at >= 0 {
		s.hcm.HttpFilters = slices.Insert(s.hcm.HttpFilters, at, f)
		s.applied[i]++
	}
	return nil
}

// applyVirtualHost: a sidecar's route configuration name is its port
// (routeConfigurationMatch); the virtual host matches by name; MERGE is
// istio's merge.Merge, which for these fields (a scalar, a map of Any keyed
// by filter name) is proto.Merge.
func (s *istioSidecar) applyVirtualHost(i int, cp *istioapi.EnvoyFilter_EnvoyConfigObjectPatch, vh *routev3.VirtualHost) {
	rm := cp.GetMatch().GetRouteConfiguration()
	if n := rm.GetPortNumber(); n != 0 && strconv.Itoa(int(n)) != s.routes.GetName() {
		return
	}
	if rm.GetName() != "" && rm.GetName() != s.routes.GetName() {
		return
	}
	for _, v := range s.routes.VirtualHosts {
		if name := rm.GetVhost().GetName(); name == "" || name == v.GetName() {
			if cp.GetPatch().GetOperation() == istioapi.EnvoyFilter_Patch_MERGE {
				proto.Merge(v, vh)
				s.applied[i]++
			}
		}
	}
}

// validate runs go-control-plane's validation over the patched listener,
// route configuration and clusters, Any by Any (checkTree).
func (s *istioSidecar) validate() error {
	hcmAny, err := anypb.New(s.hcm)
	if err != nil {
		return err
	}
	s.listener = &listenerv3.Listener{
		Name: "0.0.0.0_80",
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 80}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny}}}}},
	}
	var errs []error
	for _, m := range []interface {
		proto.Message
		ValidateAll() error
	}{s.listener, s.routes} {
		errs = append(errs, m.ValidateAll())
		errs = append(errs, checkTree(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().Name()))...)
	}
	for _, c := range s.clusters {
		errs = append(errs, c.ValidateAll())
		errs = append(errs, checkTree(c.ProtoReflect(), "cluster "+c.GetName())...)
	}
	return errors.Join(errs...)
}

// patchedSidecar applies the release's EnvoyFilter to the representative
// sidecar and validates the result, once per render.
func (r *chartRender) patchedSidecar() (*istioSidecar, *istionetv1a3.EnvoyFilter, error) {
	if r.sidecar == nil {
		s, ef, err := r.patchSidecar()
		r.sidecar = &patched{s, ef, err}
	}
	return r.sidecar.s, r.sidecar.ef, r.sidecar.err
}

type patched struct {
	s   *istioSidecar
	ef  *istionetv1a3.EnvoyFilter
	err error
}

func (r *chartRender) patchSidecar() (*istioSidecar, *istionetv1a3.EnvoyFilter, error) {
	if len(r.istio.envoyFilters) != 1 {
		return nil, nil, fmt.Errorf("%d EnvoyFilters, want 1", len(r.istio.envoyFilters))
	}
	ef := r.istio.envoyFilters[0]
	s, err := newIstioSidecar(r.istioHosts())
	if err != nil {
		return nil, nil, err
	}
	if err := s.apply(ef); err != nil {
		return nil, nil, err
	}
	if err := s.validate(); err != nil {
		return nil, nil, fmt.Errorf("the patched sidecar does not validate: %w", err)
	}
	return s, ef, nil
}

// istioHosts are the hosts of the release's ServiceEntry.
func (r *chartRender) istioHosts() []string {
	var out []string
	for _, se := range r.istio.serviceEntries {
		out = append(out, se.Spec.GetHosts()...)
	}
	return out
}

// signerFilter is the inserted ext_proc filter and its position.
func (s *istioSidecar) signerFilter() (*extprocv3.ExternalProcessor, *hcmv3.HttpFilter, int, error) {
	i := slices.IndexFunc(s.hcm.HttpFilters, func(h *hcmv3.HttpFilter) bool { return h.GetName() == istioSignerHTTPF })
	if i < 0 {
		return nil, nil, -1, fmt.Errorf("no HTTP filter %s in the patched listener", istioSignerHTTPF)
	}
	f := s.hcm.HttpFilters[i]
	ep, err := unpack(f.GetTypedConfig(), &extprocv3.ExternalProcessor{})
	return ep, f, i, err
}

var istioChecks = []modeCheck{
	{[]string{modeIstio}, namedCheck[*chartRender]{"istio: every patch applies to the sidecar and validates", func(r *chartRender) error {
		s, ef, err := r.patchedSidecar()
		if err != nil {
			return err
		}
		var p problems
		for i := range ef.Spec.GetConfigPatches() {
			if s.applied[i] != 1 {
				p.addf("patch %d applied %d times, want once: istiod skips a patch that matches nothing, silently", i, s.applied[i])
			}
		}
		sel := ef.Spec.GetWorkloadSelector().GetLabels()
		if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(labels.Set(r.deploy.Spec.Template.Labels)) {
			p.addf("workloadSelector %v does not select this release's pods alone (empty: every workload of the namespace)", sel)
		}
		return p.err()
	}}},
	{[]string{modeIstio}, namedCheck[*chartRender]{"istio: signs only the OCI hosts", func(r *chartRender) error {
		s, _, err := r.patchedSidecar()
		if err != nil {
			return err
		}
		var p problems
		_, f, at, err := s.signerFilter()
		if err != nil {
			return err
		}
		if router := slices.IndexFunc(s.hcm.HttpFilters, func(h *hcmv3.HttpFilter) bool { return h.GetName() == routerFilterName }); at > router {
			p.addf("the signer runs after the router")
		}
		// A filter disabled by default runs only where a route or virtual
		// host carries its per-filter config (source/common/router/
		// per_filter_config.cc: "If a filter is explicitly configured we treat
		// it as enabled").
		if !f.GetDisabled() {
			p.addf("the signer is enabled for every port-80 host of the pod, not only OCI's")
		}
		hosts := r.istioHosts()
		for _, vh := range s.routes.GetVirtualHosts() {
			pr, err := extProcPerRoute(vh.GetTypedPerFilterConfig(), istioSignerHTTPF)
			if err != nil {
				return err
			}
			runs := pr != nil && !pr.GetDisabled()
			host, _, _ := cutPort(vh.GetName())
			oci := slices.Contains(hosts, host) && signer.IsRealmHost(host)
			switch {
			case runs && !oci:
				p.addf("virtual host %s (not an OCI host) goes through the signer", vh.GetName())
			case !runs && slices.Contains(hosts, host):
				p.addf("virtual host %s is an OCI host the app calls, but it is not signed", vh.GetName())
			case runs && pr.GetOverrides() != nil && pr.GetOverrides().GetProcessingMode() != nil:
				p.addf("virtual host %s overrides the processing mode", vh.GetName())
			case oci && vh.GetRequestBodyBufferLimit().GetValue() != maxSignedBody:
				p.addf("virtual host %s buffers %d bytes, want the signer's %d (Istio's listeners buffer 32 KiB)", vh.GetName(),
					vh.GetRequestBodyBufferLimit().GetValue(), maxSignedBody)
			}
		}
		for _, h := range hosts {
			if !signer.IsRealmHost(h) {
				p.addf("ServiceEntry host %s is not an OCI API endpoint", h)
			}
		}
		return p.err()
	}}},
	{[]string{modeIstio}, namedCheck[*chartRender]{"istio: ext_proc is envoy.yaml's proxy-form filter", func(r *chartRender) error {
		s, _, err := r.patchedSidecar()
		if err != nil {
			return err
		}
		ep, _, _, err := s.signerFilter()
		if err != nil {
			return err
		}
		root, err := parsedEnvoy(r.refs.rootEnvoy)
		if err != nil {
			return err
		}
		got, want := proto.Clone(ep).(*extprocv3.ExternalProcessor), proto.Clone(root.extProc).(*extprocv3.ExternalProcessor)
		got.GrpcService, want.GrpcService = nil, nil
		// envoy.yaml's request attributes are for HTTPS interception, which
		// the Istio shape does not offer; without them every request is plain.
		want.RequestAttributes = nil
		if !proto.Equal(got, want) {
			return fmt.Errorf("the signer filter differs from envoy.yaml's %s beyond its cluster and interception's attributes:\n got %v\nwant %v", extProcFilterName, got, want)
		}
		return nil
	}}},
	{[]string{modeIstio}, namedCheck[*chartRender]{"istio: the cluster reaches the signer in the pod", func(r *chartRender) error {
		s, _, err := r.patchedSidecar()
		if err != nil {
			return err
		}
		ep, _, _, err := s.signerFilter()
		if err != nil {
			return err
		}
		name := ep.GetGrpcService().GetEnvoyGrpc().GetClusterName()
		i := slices.IndexFunc(s.clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == name })
		if i < 0 {
			return fmt.Errorf("ext_proc names cluster %q, which no patch adds", name)
		}
		cl := s.clusters[i]
		c, err := r.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		listen, _ := kubeEnv(c, "OCISIGNER_LISTEN")
		var p problems
		eps := cl.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			return fmt.Errorf("cluster %s: want one endpoint, the signer", name)
		}
		sa := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		addr, err := netip.ParseAddr(sa.GetAddress())
		if err != nil || !addr.IsLoopback() || cl.GetType() != clusterv3.Cluster_STATIC ||
			netip.AddrPortFrom(addr, uint16(sa.GetPortValue())).String() != listen {
			p.addf("cluster %s reaches %s:%d (%v), but the signer listens on %q", name, sa.GetAddress(), sa.GetPortValue(), cl.GetType(), listen)
		}
		if _, ok := cl.GetTypedExtensionProtocolOptions()[httpOptionsKey]; !ok {
			p.addf("cluster %s has no HTTP/2 protocol options: gRPC needs HTTP/2", name)
		}
		return p.err()
	}}},
	{[]string{modeIstio}, namedCheck[*chartRender]{"istio: TLS to the host that was signed", func(r *chartRender) error {
		var p problems
		hosts := r.istioHosts()
		if len(r.istio.serviceEntries) != 1 || len(hosts) == 0 {
			return fmt.Errorf("%d ServiceEntries with %d hosts, want one with the OCI hosts", len(r.istio.serviceEntries), len(hosts))
		}
		se := &r.istio.serviceEntries[0].Spec
		if se.GetResolution().String() != "DNS" || se.GetLocation().String() != "MESH_EXTERNAL" || !slices.Equal(se.GetExportTo(), []string{"."}) {
			p.addf("ServiceEntry: resolution %s, location %s, exportTo %v; want DNS, MESH_EXTERNAL, [.]", se.GetResolution(), se.GetLocation(), se.GetExportTo())
		}
		if ports := se.GetPorts(); len(ports) != 1 || ports[0].GetNumber() != 80 || ports[0].GetProtocol() != "HTTP" || ports[0].GetTargetPort() != 443 {
			p.addf("ServiceEntry ports %v: want HTTP on 80, sent to 443", ports)
		}
		byHost := map[string]int{}
		for _, dr := range r.istio.destRules {
			h := dr.Spec.GetHost()
			byHost[h]++
			pls := dr.Spec.GetTrafficPolicy().GetPortLevelSettings()
			if dr.Spec.GetTrafficPolicy().GetTls() != nil || len(pls) != 1 || pls[0].GetPort().GetNumber() != 80 {
				p.addf("DestinationRule %s: want TLS settings for port 80 alone", dr.Name)
				continue
			}
			tls := pls[0].GetTls()
			if tls.GetMode().String() != "SIMPLE" || tls.GetSni() != h || !slices.Equal(tls.GetSubjectAltNames(), []string{h}) ||
				tls.GetCaCertificates() == "" || tls.GetInsecureSkipVerify().GetValue() || tls.GetCredentialName() != "" {
				p.addf("DestinationRule %s: TLS %v; want SIMPLE, SNI and subjectAltNames %s, a CA bundle, verification on", dr.Name, tls, h)
			}
		}
		for _, h := range hosts {
			if byHost[h] != 1 {
				p.addf("%d DestinationRules for %s, want 1: without it the signed request would go out in clear", byHost[h], h)
			}
		}
		return p.err()
	}}},
}

// cutPort splits "host:port" (a virtual host's name).
func cutPort(s string) (string, string, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
