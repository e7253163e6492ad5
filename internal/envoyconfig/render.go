package envoyconfig

import (
	"fmt"
	"net"
	"slices"
	"strconv"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Endpoints are the addresses of a test run ("127.0.0.1:port").
type Endpoints struct {
	Listen   string // the listener clients send to
	Admin    string // Envoy's admin interface
	Signer   string // ocisigner's gRPC port
	Upstream string // the OCI stand-in, plain HTTP/1.1
	// Files maps the paths the configuration reads (a DataSource's filename:
	// certificates, keys, a JWKS) to the test's files. Every filename the
	// configuration names must be mapped, so that a test never reads the
	// machine's /etc.
	Files map[string]string
}

// Names the repository's Envoy files give what a test run replaces.
const (
	SignerCluster = "signer"
	OCICluster    = "oci"
	dfpFilterType = "type.googleapis.com/envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig"
)

// ForTest is bs (the repository's envoy.yaml) as a test run gives it to
// Envoy: the listener, the admin interface and the signer cluster on the
// test's loopback addresses, and OCI played by a stand-in: the dynamic
// forward proxy cluster (which resolves every OCI host by DNS) becomes a
// static cluster of that one address, over plain HTTP/1.1, and the dynamic
// forward proxy filter goes with it. Everything that decides what is
// signed (routes, filters, their order and per-route settings) is left as
// it is. The result passes Check.
func ForTest(bs *bootstrapv3.Bootstrap, e Endpoints) (*bootstrapv3.Bootstrap, error) {
	bs = proto.Clone(bs).(*bootstrapv3.Bootstrap)
	ls := bs.GetStaticResources().GetListeners()
	if len(ls) == 0 {
		return nil, fmt.Errorf("no listener")
	}
	la, err := socketAddress(e.Listen)
	if err != nil {
		return nil, err
	}
	ls[0].Address = la
	if bs.GetAdmin() != nil {
		if bs.Admin.Address, err = socketAddress(e.Admin); err != nil {
			return nil, err
		}
	}
	for _, l := range ls {
		// The internal listener of HTTPS interception runs a copy of the
		// ingress listener's connection manager.
		if err := dropForwardProxyFilter(l.GetFilterChains()); err != nil {
			return nil, err
		}
	}
	found := 0
	for i, c := range bs.GetStaticResources().GetClusters() {
		switch c.GetName() {
		case SignerCluster:
			if c.LoadAssignment, err = oneEndpoint(c.GetName(), e.Signer); err != nil {
				return nil, err
			}
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			found++
		case OCICluster:
			if bs.StaticResources.Clusters[i], err = staticHTTP1(OCICluster, e.Upstream, c.GetConnectTimeout()); err != nil {
				return nil, err
			}
			found++
		}
	}
	if found != 2 {
		return nil, fmt.Errorf("want clusters %s and %s", SignerCluster, OCICluster)
	}
	if err := mapFiles(bs.ProtoReflect(), e.Files); err != nil {
		return nil, err
	}
	return bs, Check(bs)
}

// mapFiles replaces every DataSource filename below m by its test file, in
// the typed configs (Any) too. The system CA bundle of the OCI cluster's
// TLS is left: ForTest replaces that cluster.
func mapFiles(m protoreflect.Message, files map[string]string) error {
	if ds, ok := m.Interface().(*corev3.DataSource); ok {
		name := ds.GetFilename()
		if name == "" {
			return nil
		}
		to, ok := files[name]
		if !ok {
			return fmt.Errorf("the configuration reads %s, which Endpoints.Files does not map", name)
		}
		ds.Specifier = &corev3.DataSource_Filename{Filename: to}
		return nil
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		if a.GetTypeUrl() == "" {
			return nil // FilterConfig{config: {}}: enables a filter, holds nothing
		}
		inner, err := a.UnmarshalNew()
		if err != nil {
			return err
		}
		if err := mapFiles(inner.ProtoReflect(), files); err != nil {
			return err
		}
		b, err := anypb.New(inner)
		if err != nil {
			return err
		}
		a.Value = b.Value
		return nil
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() != protoreflect.MessageKind {
			return true
		}
		switch {
		case fd.IsList():
			for i := range v.List().Len() {
				if err = mapFiles(v.List().Get(i).Message(), files); err != nil {
					return false
				}
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					err = mapFiles(mv.Message(), files)
					return err == nil
				})
			}
		default:
			err = mapFiles(v.Message(), files)
		}
		return err == nil
	})
	return err
}

func dropForwardProxyFilter(chains []*listenerv3.FilterChain) error {
	for _, fc := range chains {
		for _, nf := range fc.GetFilters() {
			hcm := &hcmv3.HttpConnectionManager{}
			if err := nf.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				continue
			}
			hcm.HttpFilters = slices.DeleteFunc(hcm.HttpFilters, func(f *hcmv3.HttpFilter) bool {
				return f.GetTypedConfig().GetTypeUrl() == dfpFilterType
			})
			a, err := anypb.New(hcm)
			if err != nil {
				return err
			}
			nf.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
		}
	}
	return nil
}

func staticHTTP1(name, addr string, connectTimeout *durationpb.Duration) (*clusterv3.Cluster, error) {
	la, err := oneEndpoint(name, addr)
	if err != nil {
		return nil, err
	}
	opts, err := anypb.New(&httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
		}}})
	if err != nil {
		return nil, err
	}
	return &clusterv3.Cluster{Name: name, ConnectTimeout: connectTimeout, LoadAssignment: la,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": opts}}, nil
}

func oneEndpoint(cluster, addr string) (*endpointv3.ClusterLoadAssignment, error) {
	sa, err := socketAddress(addr)
	if err != nil {
		return nil, err
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: sa}}}},
	}}}, nil
}

func socketAddress(addr string) (*corev3.Address, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return nil, err
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)}}}}, nil
}
