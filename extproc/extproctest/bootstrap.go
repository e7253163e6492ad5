package extproctest

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// FromBootstrap reads the Config of an Envoy bootstrap: its first listener's HTTP connection
// manager, route table and HTTP filters, as the stand-in reproduces them, so that a test runs
// against the very configuration a real Envoy would load. clusters gives the address of each
// cluster the configuration names (a gRPC target for the ext_proc filters' cluster, a
// "host:port" for the routes'); a dynamic forward proxy cluster is one address for every
// host, unless the caller sets Resolve.
//
// What the stand-in does not reproduce is refused with ErrUnsupported, naming the field:
// a configuration that reads differently here than in Envoy must not pass. The route table
// supports what ocisigner's configurations use: virtual hosts by exact, "*.suffix" and "*"
// domains; routes by prefix, exact path and exact or present header matchers, or CONNECT
// (connect_matcher); route and direct_response actions; typed_per_filter_config of
// ExtProcPerRoute (disabled, overrides.grpc_initial_metadata) on virtual hosts and routes;
// request_headers_to_remove and response_headers_to_add. For a shared gateway it reads the
// listener's DownstreamTlsContext (certificates, a trusted_ca, require_client_certificate:
// Config.DownstreamTLS), forward_client_cert_details SANITIZE, and a jwt_authn filter ahead
// of the ext_proc filters (Config.JWTAuthn); DataSource files are read as Envoy would.
// HTTPS interception is read as bootstrap_intercept.go says: CONNECT in upgrade_configs,
// CONNECT routes terminating into an internal listener, whose TLS and connection manager
// become Config.Intercept; the internal listener is the only other listener allowed.
func FromBootstrap(b *bootstrapv3.Bootstrap, clusters map[string]string) (Config, error) {
	var c Config
	ls := b.GetStaticResources().GetListeners()
	if len(ls) == 0 || len(ls[0].GetFilterChains()) != 1 || len(ls[0].GetFilterChains()[0].GetFilters()) != 1 {
		return c, fmt.Errorf("%w: want a first listener with one filter chain of one network filter", ErrUnsupported)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := ls[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		return c, fmt.Errorf("%w: the listener's filter is not an HTTP connection manager: %v", ErrUnsupported, err)
	}
	if hcm.GetNormalizePath().GetValue() || hcm.GetMergeSlashes() ||
		hcm.GetPathWithEscapedSlashesAction() > hcmv3.HttpConnectionManager_KEEP_UNCHANGED {
		return c, fmt.Errorf("%w: path normalisation", ErrUnsupported)
	}
	if err := supportedFields(hcm, "stat_prefix", "codec_type", "strip_any_host_port", "normalize_path", "merge_slashes",
		"path_with_escaped_slashes_action", "proxy_100_continue", "access_log", "route_config", "http_filters", "upgrade_configs",
		"http_protocol_options", "forward_client_cert_details"); err != nil {
		return c, err
	}
	if hcm.GetForwardClientCertDetails() != hcmv3.HttpConnectionManager_SANITIZE {
		return c, fmt.Errorf("%w: forward_client_cert_details %v (SANITIZE is reproduced)", ErrUnsupported, hcm.GetForwardClientCertDetails())
	}
	var err error
	if c.DownstreamTLS, err = readDownstreamTLS(ls[0].GetFilterChains()[0]); err != nil {
		return c, err
	}
	if err := supportedFields(hcm.GetHttpProtocolOptions(), "accept_http_10"); err != nil {
		return c, err
	}
	c.AcceptHTTP10 = hcm.GetHttpProtocolOptions().GetAcceptHttp_10()
	c.StripAnyHostPort, c.Proxy100Continue = hcm.GetStripAnyHostPort(), hcm.GetProxy_100Continue()
	connect, err := readUpgrades(hcm)
	if err != nil {
		return c, err
	}
	procCluster, authority, err := c.readFilters(hcm.GetHttpFilters(), clusters)
	if err != nil {
		return c, err
	}
	for _, cl := range b.GetStaticResources().GetClusters() {
		if cl.GetName() == procCluster {
			c.ConnectTimeout = cl.GetConnectTimeout().AsDuration()
		}
	}
	rt := &routeTable{bufferLimit: -1, authority: authority}
	if rt.internal, rt.internalUp, err = internalClusters(b); err != nil {
		return c, err
	}
	if err := rt.read(hcm.GetRouteConfig(), clusters); err != nil {
		return c, err
	}
	c.Routes, c.BodyBufferLimit, c.RouteTimeout, c.Upstream = rt.match, rt.bufferLimit, rt.timeout, rt.upstream
	if connect != (len(rt.terminators) > 0) {
		// Without upgrade_configs a CONNECT route is reached only through its own
		// upgrade_configs, and any other CONNECT gets 403; with them but no
		// terminating route, CONNECT is routed to direct responses alone. The
		// stand-in models neither.
		return c, fmt.Errorf("%w: upgrade_configs CONNECT without a CONNECT route terminating into an internal listener, or the reverse", ErrUnsupported)
	}
	if err := c.readIntercept(b, hcm, rt, clusters); err != nil {
		return c, err
	}
	return c, checkListeners(ls, c.Intercept, rt)
}

// checkListeners refuses listeners beyond the first and the internal listener a CONNECT
// route terminates into: the stand-in has no others.
func checkListeners(ls []*listenerv3.Listener, ic *Intercept, rt *routeTable) error {
	for _, l := range ls[1:] {
		if ic == nil || l.GetInternalListener() == nil || !slices.Contains(slices.Collect(maps.Values(rt.internal)), l.GetName()) {
			return fmt.Errorf("%w: listener %s", ErrUnsupported, l.GetName())
		}
	}
	return nil
}

// readFilters reads the HTTP filter chain: jwt_authn, ext_proc filters (readProcs), then
// optionally set_filter_state and the dynamic forward proxy, then the router.
func (c *Config) readFilters(filters []*hcmv3.HttpFilter, clusters map[string]string) (cluster string, authority *authorityFilter, err error) {
	var procs []*hcmv3.HttpFilter
	for i, f := range filters {
		if f.GetDisabled() && typeName(f.GetTypedConfig()) != setFilterStateType {
			return "", nil, fmt.Errorf("%w: HTTP filter %s disabled by default", ErrUnsupported, f.GetName())
		}
		switch typeName(f.GetTypedConfig()) {
		case "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor":
			procs = append(procs, f)
		case "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication":
			if err := c.readJWTFilter(f, len(procs) > 0); err != nil {
				return "", nil, err
			}
		case "envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig":
		case setFilterStateType:
			// Only where it runs for a CONNECT: bootstrap_intercept.go.
			if authority != nil {
				return "", nil, fmt.Errorf("%w: two set_filter_state filters", ErrUnsupported)
			}
			if authority, err = readAuthorityFilter(f); err != nil {
				return "", nil, err
			}
		case "envoy.extensions.filters.http.router.v3.Router":
			if i != len(filters)-1 {
				return "", nil, fmt.Errorf("%w: the router is not the last HTTP filter", ErrUnsupported)
			}
			r := &routerv3.Router{}
			if err := f.GetTypedConfig().UnmarshalTo(r); err != nil {
				return "", nil, err
			}
			c.SuppressEnvoyHeaders = r.GetSuppressEnvoyHeaders()
		default:
			return "", nil, fmt.Errorf("%w: HTTP filter %s (%s)", ErrUnsupported, f.GetName(), typeName(f.GetTypedConfig()))
		}
	}
	if len(procs) == 0 {
		return "", nil, fmt.Errorf("%w: no ext_proc filter", ErrUnsupported)
	}
	cluster, err = c.readProcs(procs, clusters)
	return cluster, authority, err
}

// readJWTFilter reads a jwt_authn filter: ahead of every ext_proc filter, once, as the
// stand-in runs it first.
func (c *Config) readJWTFilter(f *hcmv3.HttpFilter, afterProc bool) (err error) {
	if afterProc || c.JWTAuthn != nil {
		return fmt.Errorf("%w: jwt_authn after an ext_proc filter, or twice", ErrUnsupported)
	}
	ja := &jwtauthnv3.JwtAuthentication{}
	if err := f.GetTypedConfig().UnmarshalTo(ja); err != nil {
		return err
	}
	if c.JWTAuthn, err = readJWTAuthn(ja); err != nil {
		return fmt.Errorf("filter %s: %w", f.GetName(), err)
	}
	return nil
}

// readProcs reads the ext_proc filters: the last that waits for its answers is Config's,
// the others before it Before, those in observability_mode after it After.
func (c *Config) readProcs(procs []*hcmv3.HttpFilter, clusters map[string]string) (cluster string, err error) {
	eps, last, err := decodeProcs(procs)
	if err != nil {
		return "", err
	}
	for i, f := range procs {
		ep := eps[i]
		if err := supportedFields(ep, "grpc_service", "failure_mode_allow", "status_on_error", "message_timeout", "max_message_timeout",
			"processing_mode", "allow_mode_override", "allowed_override_modes", "metadata_options", "mutation_rules",
			"route_cache_action", "request_attributes", "stat_prefix", "observability_mode", "deferred_close_timeout"); err != nil {
			return "", fmt.Errorf("filter %s: %w", f.GetName(), err)
		}
		name := ep.GetGrpcService().GetEnvoyGrpc().GetClusterName()
		proc, ok := clusters[name]
		switch {
		case !ok:
			return "", fmt.Errorf("%w: filter %s: no address for cluster %q", ErrConfig, f.GetName(), name)
		case cluster != "" && cluster != name:
			return "", fmt.Errorf("%w: ext_proc filters on different clusters", ErrUnsupported)
		}
		c.Processor, cluster = proc, name
		md := map[string]string{}
		for _, hv := range ep.GetGrpcService().GetInitialMetadata() {
			md[hv.GetKey()] = hv.GetValue()
		}
		mo := ep.GetMetadataOptions()
		if i > last {
			if len(ep.GetRequestAttributes()) > 0 || ep.GetAllowModeOverride() {
				return "", fmt.Errorf("%w: filter %s in observability mode with request_attributes or allow_mode_override", ErrUnsupported, f.GetName())
			}
			c.After = append(c.After, Filter{Name: f.GetName(), ProcessingMode: ep.GetProcessingMode(), InitialMetadata: md,
				FailureModeAllow: ep.GetFailureModeAllow(), ForwardingNamespaces: mo.GetForwardingNamespaces().GetUntyped(),
				ReceivingNamespaces: mo.GetReceivingNamespaces().GetUntyped(), ObservabilityMode: true,
				DeferredCloseTimeout: ep.GetDeferredCloseTimeout().AsDuration()})
			continue
		}
		if i < last {
			c.Before = append(c.Before, Filter{Name: f.GetName(), ProcessingMode: ep.GetProcessingMode(), InitialMetadata: md,
				MutationRules: ep.GetMutationRules(), RouteCacheAction: ep.GetRouteCacheAction(), MessageTimeout: ep.GetMessageTimeout().AsDuration(),
				StatusOnError: int(ep.GetStatusOnError().GetCode()), FailureModeAllow: ep.GetFailureModeAllow(),
				ReceivingNamespaces: mo.GetReceivingNamespaces().GetUntyped(), ForwardingNamespaces: mo.GetForwardingNamespaces().GetUntyped(),
				RequestAttributes: ep.GetRequestAttributes()})
			continue
		}
		c.Name, c.ProcessingMode, c.InitialMetadata = f.GetName(), ep.GetProcessingMode(), md
		c.AllowModeOverride, c.AllowedOverrideModes = ep.GetAllowModeOverride(), ep.GetAllowedOverrideModes()
		c.MessageTimeout, c.MaxMessageTimeout = ep.GetMessageTimeout().AsDuration(), ep.GetMaxMessageTimeout().AsDuration()
		c.StatusOnError, c.FailureModeAllow = int(ep.GetStatusOnError().GetCode()), ep.GetFailureModeAllow()
		c.MutationRules, c.RouteCacheAction, c.RequestAttributes = ep.GetMutationRules(), ep.GetRouteCacheAction(), ep.GetRequestAttributes()
		c.ReceivingNamespaces, c.ForwardingNamespaces = mo.GetReceivingNamespaces().GetUntyped(), mo.GetForwardingNamespaces().GetUntyped()
	}
	return cluster, nil
}

// decodeProcs decodes the ext_proc filters and finds Config's: the last that
// waits for its answers, after which only filters in observability mode
// may come.
func decodeProcs(procs []*hcmv3.HttpFilter) (eps []*extprocfilterv3.ExternalProcessor, last int, err error) {
	eps, last = make([]*extprocfilterv3.ExternalProcessor, len(procs)), -1
	for i, f := range procs {
		eps[i] = &extprocfilterv3.ExternalProcessor{}
		if err := f.GetTypedConfig().UnmarshalTo(eps[i]); err != nil {
			return nil, 0, err
		}
		if !eps[i].GetObservabilityMode() {
			if last != i-1 {
				return nil, 0, fmt.Errorf("%w: filter %s after a filter in observability mode", ErrUnsupported, f.GetName())
			}
			last = i
		}
	}
	if last < 0 {
		return nil, 0, fmt.Errorf("%w: no ext_proc filter that waits for its answers", ErrUnsupported)
	}
	return eps, last, nil
}

// routeTable is a route_config as the stand-in matches it.
type routeTable struct {
	vhosts      []vhost
	bufferLimit int64
	timeout     time.Duration
	upstream    string

	// HTTPS interception (bootstrap_intercept.go).
	internal    map[string]string // internal cluster → the listener it reaches
	internalUp  map[string]bool   // internal cluster → its transport socket is internal_upstream
	authority   *authorityFilter  // the set_filter_state filter, if any
	terminators []terminator      // the CONNECT routes that terminate
}

// terminator is a CONNECT route that terminates into an internal listener.
type terminator struct {
	cluster       string
	setsAuthority bool // the set_filter_state filter runs on it
}

type vhost struct {
	domains []string
	routes  []route
}

type route struct {
	prefix, path string
	connect      bool
	headers      []*routev3.HeaderMatcher
	r            Route
}

func (t *routeTable) read(rc *routev3.RouteConfiguration, clusters map[string]string) error {
	if err := supportedFields(rc, "name", "virtual_hosts"); err != nil {
		return err
	}
	for _, vh := range rc.GetVirtualHosts() {
		if err := supportedFields(vh, "name", "domains", "routes", "typed_per_filter_config", "request_body_buffer_limit"); err != nil {
			return fmt.Errorf("virtual host %s: %w", vh.GetName(), err)
		}
		// Envoy 1.37+ applies a virtual host's limit at route match; the stand-in has one.
		limit := int64(vh.GetRequestBodyBufferLimit().GetValue())
		if t.bufferLimit >= 0 && limit != t.bufferLimit {
			return fmt.Errorf("%w: virtual hosts with different request_body_buffer_limit", ErrUnsupported)
		}
		t.bufferLimit = limit
		v := vhost{domains: vh.GetDomains()}
		for _, r := range vh.GetRoutes() {
			rr, err := t.readRoute(vh, r, clusters)
			if err != nil {
				return fmt.Errorf("route %s: %w", r.GetName(), err)
			}
			v.routes = append(v.routes, rr)
		}
		t.vhosts = append(t.vhosts, v)
	}
	return nil
}

func (t *routeTable) readRoute(vh *routev3.VirtualHost, r *routev3.Route, clusters map[string]string) (route, error) {
	if err := supportedFields(r, "name", "match", "route", "direct_response", "typed_per_filter_config",
		"request_headers_to_remove", "response_headers_to_add"); err != nil {
		return route{}, err
	}
	setsAuthority, levels, err := t.authorityOn(vh, r)
	if err != nil {
		return route{}, err
	}
	m := r.GetMatch()
	if err := supportedFields(m, "prefix", "path", "connect_matcher", "headers"); err != nil {
		return route{}, err
	}
	for _, h := range m.GetHeaders() {
		if err := supportedFields(h, "name", "string_match", "present_match"); err != nil {
			return route{}, err
		}
		if sm := h.GetStringMatch(); sm != nil && (sm.GetExact() == "" || sm.GetIgnoreCase()) {
			return route{}, fmt.Errorf("%w: header matcher other than an exact string", ErrUnsupported)
		}
	}
	out := route{prefix: m.GetPrefix(), path: m.GetPath(), connect: m.GetConnectMatcher() != nil, headers: m.GetHeaders(),
		r: Route{Name: r.GetName(), RemoveHeaders: r.GetRequestHeadersToRemove()}}
	perFilter, err := mergePerFilter(levels...)
	if err != nil {
		return route{}, err
	}
	out.r.PerFilter = perFilter
	switch {
	case r.GetDirectResponse() != nil:
		d := r.GetDirectResponse()
		out.r.Direct = &DirectResponse{Status: int(d.GetStatus()), Body: d.GetBody().GetInlineString(), Headers: map[string]string{}}
		for _, h := range r.GetResponseHeadersToAdd() {
			out.r.Direct.Headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
	case r.GetRoute() != nil:
		ra := r.GetRoute()
		if err := supportedFields(ra, "cluster", "timeout", "upgrade_configs"); err != nil {
			return route{}, err
		}
		if out.connect {
			if err := t.readConnectRoute(ra); err != nil {
				return route{}, err
			}
			out.r.TerminateConnect = true
			t.terminators = append(t.terminators, terminator{cluster: ra.GetCluster(), setsAuthority: setsAuthority})
			return out, nil
		}
		if len(ra.GetUpgradeConfigs()) > 0 {
			return route{}, fmt.Errorf("%w: upgrade_configs on a route that is not CONNECT's", ErrUnsupported)
		}
		addr, ok := clusters[ra.GetCluster()]
		if !ok {
			return route{}, fmt.Errorf("%w: no address for cluster %q", ErrConfig, ra.GetCluster())
		}
		if t.upstream != "" && t.upstream != addr {
			return route{}, fmt.Errorf("%w: routes to different clusters", ErrUnsupported)
		}
		t.upstream = addr
		// "timeout: 0s" is no route timeout; the stand-in has one for every route.
		to := ra.GetTimeout().AsDuration()
		if ra.GetTimeout() == nil {
			to = defaultRouteTimeout
		} else if to == 0 {
			to = -1
		}
		if t.timeout != 0 && t.timeout != to {
			return route{}, fmt.Errorf("%w: routes with different timeouts", ErrUnsupported)
		}
		t.timeout = to
	default:
		return route{}, fmt.Errorf("%w: a route with neither route nor direct_response", ErrUnsupported)
	}
	return out, nil
}

// mergePerFilter is the route's ExtProcPerRoute for each filter, the virtual host's
// merged with the route's, the more specific winning (ext_proc.cc FilterConfigPerRoute's
// merging constructor: disabled from the more specific, grpc_initial_metadata merged key by
// key).
func mergePerFilter(levels ...map[string]*anypb.Any) (map[string]PerRoute, error) {
	out := map[string]PerRoute{}
	for _, level := range levels {
		for name, a := range level {
			pr := &extprocfilterv3.ExtProcPerRoute{}
			if err := a.UnmarshalTo(pr); err != nil {
				return nil, fmt.Errorf("%w: typed_per_filter_config %s is not an ExtProcPerRoute", ErrUnsupported, name)
			}
			if o := pr.GetOverrides(); o != nil {
				if err := supportedFields(o, "grpc_initial_metadata"); err != nil {
					return nil, fmt.Errorf("typed_per_filter_config %s: %w", name, err)
				}
			}
			cur := out[name]
			cur.Disabled = pr.GetDisabled()
			for _, hv := range pr.GetOverrides().GetGrpcInitialMetadata() {
				if cur.Metadata == nil {
					cur.Metadata = map[string]string{}
				}
				cur.Metadata[hv.GetKey()] = hv.GetValue()
			}
			out[name] = cur
		}
	}
	return out, nil
}

// match is the route table's lookup: the virtual host by domain (config_impl.cc
// RouteMatcher::findVirtualHost: exact, then the longest "*.suffix", then "*"), then the
// first of its routes that matches.
func (t *routeTable) match(rr RouteRequest) Route {
	host := strings.ToLower(rr.Authority)
	var best *vhost
	bestLen := -1
	for i := range t.vhosts {
		for _, d := range t.vhosts[i].domains {
			switch {
			case d == host:
				return t.vhosts[i].pick(rr)
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1 && len(d) > bestLen:
				best, bestLen = &t.vhosts[i], len(d)
			}
		}
	}
	if best == nil {
		return Route{Direct: &DirectResponse{Status: http.StatusNotFound}, Name: "(no virtual host)"}
	}
	return best.pick(rr)
}

// pick is the first route that matches (RouteEntryImplBase::matchRoute): a CONNECT only a
// connect_matcher route, anything else by path prefix or exact path and every header
// matcher.
func (v *vhost) pick(rr RouteRequest) Route {
	for _, r := range v.routes {
		if r.connect != (rr.Method == http.MethodConnect) {
			continue
		}
		if !r.connect && !(r.prefix != "" && strings.HasPrefix(rr.Path, r.prefix) || r.path != "" && rr.Path == r.path) {
			continue
		}
		if slices.ContainsFunc(r.headers, func(h *routev3.HeaderMatcher) bool { return !headerMatches(h, rr.Header) }) {
			continue
		}
		return r.r
	}
	return Route{Direct: &DirectResponse{Status: http.StatusNotFound}, Name: "(no route)"}
}

func headerMatches(h *routev3.HeaderMatcher, hdr http.Header) bool {
	vs := hdr.Values(h.GetName())
	ok := len(vs) > 0
	if sm := h.GetStringMatch(); sm != nil {
		ok = len(vs) > 0 && strings.Join(vs, ",") == sm.GetExact()
	} else if h.GetPresentMatch() {
		ok = len(vs) > 0
	}
	return ok != h.GetInvertMatch()
}

// supportedFields refuses a message that sets a field outside names.
func supportedFields(m proto.Message, names ...string) error {
	var err error
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(names, string(fd.Name())) {
			err = fmt.Errorf("%w: %s.%s", ErrUnsupported, m.ProtoReflect().Descriptor().Name(), fd.Name())
			return false
		}
		return true
	})
	return err
}

func typeName(a *anypb.Any) string {
	_, name, _ := strings.Cut(a.GetTypeUrl(), "/")
	return name
}
