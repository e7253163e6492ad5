package extproctest

import (
	"net/http"
	"strings"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// This file is the part of routing that ext_proc can change: the connection manager's
// cached route (ActiveStream::refreshCachedRoute and clearRouteCache in conn_manager_impl.cc),
// ext_proc's route cache action (DecodingProcessorState::clearRouteCache, processor_state.cc),
// and what the dynamic forward proxy filter and the router then do with the route
// (proxy_filter.cc ProxyFilter::decodeHeaders, router.cc Filter::decodeHeaders).

// RouteRequest is what Envoy's route table matches on: the request headers as they are when
// the route is (re)computed.
type RouteRequest struct {
	Authority, Path, Method string
	// Header holds the other request headers, under canonical names.
	Header http.Header
}

// Route is the route Envoy's route table picks for a request, reduced to what the stand-in
// acts on.
type Route struct {
	// Name is the route's name.
	Name string
	// Direct is the route's direct_response: the router answers with it and nothing goes
	// upstream.
	Direct *DirectResponse
	// ExtProcDisabled is the route's ExtProcPerRoute.disabled for Config's filter.
	ExtProcDisabled bool
	// Metadata is the route's ExtProcPerRoute.overrides.grpc_initial_metadata for Config's
	// filter.
	Metadata map[string]string
	// PerFilter is the route's typed_per_filter_config of ext_proc filters by filter name
	// (Config.Name, Filter.Name): what ExtProcDisabled and Metadata say for Config's
	// filter, for any filter of the chain. Keys are exact filter names (Envoy no longer
	// falls back to the canonical name: runtime guard no_downgrade_to_canonical_name).
	PerFilter map[string]PerRoute
	// Rewrite is the router's own rewrite for the route (host_rewrite_literal,
	// prefix_rewrite, regex_rewrite, path_rewrite...): given :authority and :path as the
	// filters left them, it returns what goes upstream. The router applies it in
	// finalizeRequestHeaders, after ext_proc (so after any signature) and after the upstream
	// host was chosen from the unrewritten :authority. Nil rewrites nothing.
	Rewrite func(authority, path string) (string, string)
	// RemoveHeaders is the route's request_headers_to_remove: the router removes them in
	// finalizeRequestHeaders (router.cc), after every filter, so after any signature.
	RemoveHeaders []string
	// TerminateConnect makes the route a CONNECT terminator: a connect_matcher route whose
	// upgrade_configs entry for CONNECT carries connect_config, and whose cluster is the
	// internal listener of Config.Intercept (an envoy_internal_address endpoint). Envoy
	// answers the CONNECT with 200 and the tunnelled bytes become a connection to that
	// listener. A CONNECT request has no :path (RouteRequest.Path is empty), so only a
	// connect_matcher route matches it in Envoy; Routes must model that.
	TerminateConnect bool
}

// PerRoute is an ExtProcPerRoute: disabled, and overrides.grpc_initial_metadata.
type PerRoute struct {
	Disabled bool
	Metadata map[string]string
}

// DirectResponse is a route's direct_response.
type DirectResponse struct {
	Status int
	Body   string
	// Headers are the route's response_headers_to_add, set on the reply.
	Headers map[string]string
}

// matchRoute computes the route for the current request headers (refreshCachedRoute).
func (f *filter) matchRoute() Route {
	if f.cfg.Routes == nil {
		return Route{}
	}
	rr := RouteRequest{Header: http.Header{}}
	for _, kv := range f.reqHeaders.kv {
		switch kv.key {
		case ":authority":
			rr.Authority = kv.value
		case ":path":
			rr.Path = kv.value
		case ":method":
			rr.Method = kv.value
		default:
			if !strings.HasPrefix(kv.key, ":") {
				rr.Header.Add(kv.key, kv.value)
			}
		}
	}
	return f.cfg.Routes(rr)
}

// clearRouteCache is DecodingProcessorState::clearRouteCache, called after a request headers
// or request body answer was applied: only an answer that carries a header mutation can
// clear the route, and route_cache_action decides how. The next filter that asks for the
// route (the dynamic forward proxy filter, then the router) gets it matched again against
// the mutated headers. Filters that already read their per-route config do not read it
// again: ext_proc merges its ExtProcPerRoute once (Filter::mergePerRouteConfig).
func (f *filter) clearRouteCache(common *extprocv3.CommonResponse) {
	bit := common.GetClearRouteCache()
	if common.GetHeaderMutation() == nil {
		if bit {
			f.e.stats.clearRouteCacheIgnored.Add(1)
		}
		return
	}
	switch f.cfg.RouteCacheAction {
	case extprocfilterv3.ExternalProcessor_DEFAULT:
		if !bit {
			return
		}
	case extprocfilterv3.ExternalProcessor_CLEAR:
	case extprocfilterv3.ExternalProcessor_RETAIN:
		if bit {
			f.e.stats.clearRouteCacheDisabled.Add(1)
		}
		return
	}
	f.routeCleared = true
	f.e.stats.routeCacheCleared.Add(1)
}
