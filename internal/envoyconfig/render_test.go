package envoyconfig_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ocisigner/ocisigner/internal/envoyconfig"
)

var endpoints = envoyconfig.Endpoints{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Signer: "127.0.0.1:50051", Upstream: "127.0.0.1:8443"}

func loadShipped(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	data, err := os.ReadFile("../../envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bs, err := envoyconfig.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

// hcmOf unpacks the first listener's HTTP connection manager.
func hcmOf(bs *bootstrapv3.Bootstrap) (*hcmv3.HttpConnectionManager, error) {
	hcm := &hcmv3.HttpConnectionManager{}
	ls := bs.GetStaticResources().GetListeners()
	if len(ls) == 0 || len(ls[0].GetFilterChains()) == 0 || len(ls[0].GetFilterChains()[0].GetFilters()) == 0 {
		return nil, fmt.Errorf("no listener with a network filter")
	}
	return hcm, ls[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm)
}

func clusterOf(bs *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	for _, c := range bs.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return proto.Clone(c).(*clusterv3.Cluster)
		}
	}
	return nil
}

func addr(a *corev3.Address) string {
	sa := a.GetSocketAddress()
	return fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
}

const dfpFilter = "envoy.filters.http.dynamic_forward_proxy"

// differences lists, by area, how rendered departs from what ForTest
// promises for shipped rendered at e: every route, filter (but the dynamic
// forward proxy's, in order) and per-route setting as shipped; the
// connection manager, the signer cluster (but its endpoint), the admin
// interface (but its address) and the rest of the bootstrap unchanged;
// the test's addresses; OCI one static plain HTTP/1.1 endpoint.
func differences(shipped, rendered *bootstrapv3.Bootstrap, e envoyconfig.Endpoints) []string {
	var d []string
	sh, errS := hcmOf(shipped)
	rh, errR := hcmOf(rendered)
	if errS != nil || errR != nil {
		return []string{fmt.Sprintf("connection manager: %v %v", errS, errR)}
	}
	if !envoyconfig.Equal(sh.GetRouteConfig(), rh.GetRouteConfig()) {
		d = append(d, "routes: the route configuration differs")
	}
	want := slices.DeleteFunc(slices.Clone(sh.GetHttpFilters()), func(f *hcmv3.HttpFilter) bool { return f.GetName() == dfpFilter })
	if len(want) != len(sh.GetHttpFilters())-1 || len(want) != len(rh.GetHttpFilters()) ||
		!slices.EqualFunc(want, rh.GetHttpFilters(), func(a, b *hcmv3.HttpFilter) bool { return envoyconfig.Equal(a, b) }) {
		d = append(d, "filters: the HTTP filters differ from the shipped ones less the dynamic forward proxy")
	}
	for _, h := range []*hcmv3.HttpConnectionManager{sh, rh} {
		h.RouteSpecifier, h.HttpFilters = nil, nil
	}
	if !envoyconfig.Equal(sh, rh) {
		d = append(d, "connection manager: its settings differ")
	}
	sl, rl := proto.Clone(shipped.GetStaticResources().GetListeners()[0]).(*listenerv3.Listener), proto.Clone(rendered.GetStaticResources().GetListeners()[0]).(*listenerv3.Listener)
	if addr(rl.GetAddress()) != e.Listen {
		d = append(d, "addresses: the listener is not on "+e.Listen)
	}
	for _, l := range []*listenerv3.Listener{sl, rl} {
		l.Address, l.FilterChains[0].Filters[0].ConfigType = nil, nil
	}
	if !envoyconfig.Equal(sl, rl) {
		d = append(d, "listener: its settings differ")
	}
	d = append(d, clusterDifferences(shipped, rendered, e)...)
	sb, rb := proto.Clone(shipped).(*bootstrapv3.Bootstrap), proto.Clone(rendered).(*bootstrapv3.Bootstrap)
	if addr(rb.GetAdmin().GetAddress()) != e.Admin {
		d = append(d, "addresses: the admin interface is not on "+e.Admin)
	}
	for _, b := range []*bootstrapv3.Bootstrap{sb, rb} {
		b.StaticResources, b.Admin.Address = nil, nil
	}
	if !envoyconfig.Equal(sb, rb) {
		d = append(d, "bootstrap: admin, overload manager or another top-level setting differs")
	}
	return d
}

func clusterDifferences(shipped, rendered *bootstrapv3.Bootstrap, e envoyconfig.Endpoints) []string {
	var d []string
	if n, m := len(shipped.GetStaticResources().GetClusters()), len(rendered.GetStaticResources().GetClusters()); n != m {
		d = append(d, fmt.Sprintf("clusters: %d, shipped %d", m, n))
	}
	ss, rs := clusterOf(shipped, envoyconfig.SignerCluster), clusterOf(rendered, envoyconfig.SignerCluster)
	if ss == nil || rs == nil {
		return append(d, "signer cluster: missing")
	}
	if got := addr(rs.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress()); got != e.Signer || len(rs.GetLoadAssignment().GetEndpoints()) != 1 {
		d = append(d, "addresses: the signer is not at "+e.Signer)
	}
	for _, c := range []*clusterv3.Cluster{ss, rs} {
		c.LoadAssignment, c.ClusterDiscoveryType = nil, nil
	}
	if !envoyconfig.Equal(ss, rs) {
		d = append(d, "signer cluster: health checks, circuit breakers, protocol options or timeouts differ")
	}
	so, ro := clusterOf(shipped, envoyconfig.OCICluster), clusterOf(rendered, envoyconfig.OCICluster)
	if so == nil || ro == nil {
		return append(d, "oci cluster: missing")
	}
	var opts httpv3.HttpProtocolOptions
	err := ro.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(&opts)
	if ro.GetType() != clusterv3.Cluster_STATIC || ro.GetTransportSocket() != nil || err != nil || opts.GetExplicitHttpConfig().GetHttpProtocolOptions() == nil ||
		len(ro.GetLoadAssignment().GetEndpoints()) != 1 || addr(ro.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress()) != e.Upstream ||
		!proto.Equal(ro.GetConnectTimeout(), so.GetConnectTimeout()) {
		d = append(d, "oci cluster: not one static plain HTTP/1.1 endpoint at "+e.Upstream+" with the shipped connect timeout")
	}
	return d
}

// The configuration a test run gives Envoy passes go-control-plane's
// validation (envoyconfig.Check, ValidateAll on every typed config) and
// differs from the shipped envoy.yaml only where ForTest says: addresses,
// and OCI played by a plain HTTP stand-in (its cluster and the dynamic
// forward proxy filter). Every route, filter and per-route setting is the
// shipped one. The JSON a runner writes for Envoy loads back as the same
// configuration.
func TestForTestKeepsWhatDecidesSigning(t *testing.T) {
	shipped := loadShipped(t)
	rendered, err := envoyconfig.ForTest(shipped, endpoints)
	if err != nil {
		t.Fatal(err)
	}
	if err := envoyconfig.Check(rendered); err != nil {
		t.Fatalf("the rendered configuration does not validate: %v", err)
	}
	if d := differences(shipped, rendered, endpoints); len(d) > 0 {
		t.Fatalf("the rendered configuration departs from the shipped one:\n%s", strings.Join(d, "\n"))
	}
	js, err := protojson.Marshal(rendered)
	if err != nil {
		t.Fatal(err)
	}
	back, err := envoyconfig.Load(js)
	if err != nil {
		t.Fatalf("the JSON a runner writes does not load: %v", err)
	}
	if !envoyconfig.Equal(back, rendered) {
		t.Fatal("the JSON a runner writes loads as another configuration")
	}
	if h, _ := hcmOf(rendered); slices.ContainsFunc(h.GetHttpFilters(), func(f *hcmv3.HttpFilter) bool { return f.GetName() == dfpFilter }) {
		t.Fatal("the dynamic forward proxy filter is left without its cluster")
	}
}

// editHCM changes the rendered connection manager.
func editHCM(edit func(*hcmv3.HttpConnectionManager)) func(*bootstrapv3.Bootstrap) {
	return func(bs *bootstrapv3.Bootstrap) {
		h, err := hcmOf(bs)
		if err != nil {
			panic(err)
		}
		edit(h)
		a, err := anypb.New(h)
		if err != nil {
			panic(err)
		}
		bs.StaticResources.Listeners[0].FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	}
}

// editSigningFilter changes the signing ext_proc filter's config.
func editSigningFilter(edit func(*extprocv3.ExternalProcessor)) func(*bootstrapv3.Bootstrap) {
	return editHCM(func(h *hcmv3.HttpConnectionManager) {
		for _, f := range h.HttpFilters {
			if f.GetName() == "envoy.filters.http.ext_proc" {
				ep := &extprocv3.ExternalProcessor{}
				if err := f.GetTypedConfig().UnmarshalTo(ep); err != nil {
					panic(err)
				}
				edit(ep)
				a, _ := anypb.New(ep)
				f.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}
			}
		}
	})
}

// Each regression of the rendering, applied to the rendered configuration,
// is reported in the area it touches: the comparison has teeth.
func TestForTestComparisonCatchesRegressions(t *testing.T) {
	shipped := loadShipped(t)
	for _, m := range []struct {
		name, area string
		edit       func(*bootstrapv3.Bootstrap)
	}{
		{"a route dropped", "routes", editHCM(func(h *hcmv3.HttpConnectionManager) {
			vh := h.GetRouteConfig().VirtualHosts[0]
			vh.Routes = vh.Routes[1:]
		})},
		{"the route pin changed", "routes", editHCM(func(h *hcmv3.HttpConnectionManager) {
			pinned := exampleRoute(h)
			per := pinned.TypedPerFilterConfig["envoy.filters.http.ext_proc"]
			ep := &extprocv3.ExtProcPerRoute{}
			if err := per.UnmarshalTo(ep); err != nil {
				panic(err)
			}
			ep.GetOverrides().GetGrpcInitialMetadata()[0].Value = "OTHER"
			a, _ := anypb.New(ep)
			pinned.TypedPerFilterConfig["envoy.filters.http.ext_proc"] = a
		})},
		{"the gateway filter enabled on the OCI routes", "routes", editHCM(func(h *hcmv3.HttpConnectionManager) {
			delete(h.GetRouteConfig().VirtualHosts[0].TypedPerFilterConfig, "ocisigner.ext_proc.gateway")
		})},
		{"the route's buffer limit dropped", "routes", editHCM(func(h *hcmv3.HttpConnectionManager) {
			h.GetRouteConfig().VirtualHosts[0].RequestBodyBufferLimit = nil
		})},
		{"the filters swapped", "filters", editHCM(func(h *hcmv3.HttpConnectionManager) {
			h.HttpFilters[0], h.HttpFilters[1] = h.HttpFilters[1], h.HttpFilters[0]
		})},
		{"the signing filter dropped", "filters", editHCM(func(h *hcmv3.HttpConnectionManager) { h.HttpFilters = slices.Delete(h.HttpFilters, 1, 2) })},
		{"the signing filter fails open", "filters", editSigningFilter(func(ep *extprocv3.ExternalProcessor) { ep.FailureModeAllow = true })},
		{"the body no longer buffered", "filters", editSigningFilter(func(ep *extprocv3.ExternalProcessor) {
			ep.ProcessingMode.RequestBodyMode = extprocv3.ProcessingMode_NONE
		})},
		{"the host port kept", "connection manager", editHCM(func(h *hcmv3.HttpConnectionManager) { h.StripPortMode = nil })},
		{"paths normalised", "connection manager", editHCM(func(h *hcmv3.HttpConnectionManager) { h.MergeSlashes = true })},
		{"the signer's health check dropped", "signer cluster", func(bs *bootstrapv3.Bootstrap) {
			for _, c := range bs.StaticResources.Clusters {
				if c.Name == envoyconfig.SignerCluster {
					c.HealthChecks = nil
				}
			}
		}},
		{"the signer elsewhere", "addresses", func(bs *bootstrapv3.Bootstrap) {
			for _, c := range bs.StaticResources.Clusters {
				if c.Name == envoyconfig.SignerCluster {
					c.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 1}
				}
			}
		}},
		{"OCI over TLS", "oci cluster", func(bs *bootstrapv3.Bootstrap) {
			for _, c := range bs.StaticResources.Clusters {
				if c.Name == envoyconfig.OCICluster {
					c.TransportSocket = clusterOf(shipped, envoyconfig.OCICluster).TransportSocket
				}
			}
		}},
		{"the listener on another interface", "addresses", func(bs *bootstrapv3.Bootstrap) {
			bs.StaticResources.Listeners[0].Address.GetSocketAddress().Address = "0.0.0.0"
		}},
		{"the overload manager dropped", "bootstrap", func(bs *bootstrapv3.Bootstrap) { bs.OverloadManager = nil }},
	} {
		t.Run(m.name, func(t *testing.T) {
			rendered, err := envoyconfig.ForTest(shipped, endpoints)
			if err != nil {
				t.Fatal(err)
			}
			m.edit(rendered)
			d := differences(shipped, rendered, endpoints)
			if !slices.ContainsFunc(d, func(s string) bool { return strings.HasPrefix(s, m.area+":") }) {
				t.Fatalf("not reported in %s: %q", m.area, d)
			}
		})
	}
}

// exampleRoute is envoy.yaml's route that pins a profile.
func exampleRoute(h *hcmv3.HttpConnectionManager) *routev3.Route {
	for _, r := range h.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		if r.GetName() == "example-profile" {
			return r
		}
	}
	panic("envoy.yaml has no example-profile route")
}
