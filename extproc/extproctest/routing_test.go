package extproctest_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// The gateway's shape, as ocisigner's envoy.yaml has it: hosts under .oci.test go to the
// dynamic forward proxy cluster; anything else matches a catch-all whose route is a
// direct_response 403, so a request leaves only if ext_proc re-routed it to an OCI host.
const ociSuffix = ".oci.test"

func gatewayRoutes(rr extproctest.RouteRequest) extproctest.Route {
	if strings.HasSuffix(rr.Authority, ociSuffix) {
		return extproctest.Route{Name: "oci"}
	}
	return extproctest.Route{Name: "gateway", Direct: &extproctest.DirectResponse{
		Status: http.StatusForbidden, Body: `{"code":"NotAllowed"}`,
		Headers: map[string]string{"content-type": "application/json"},
	}}
}

// authorityRules is the narrowest rule that lets a processor set :authority, as
// envoy.yaml's gateway filter has it.
func authorityRules() *mutationrulesv3.HeaderMutationRules { return extproctest.GatewayMutationRules() }

// resolver maps every host under .oci.test to one upstream and records what it was asked.
type resolver struct {
	addr string
	mu   sync.Mutex
	seen []string
}

func (r *resolver) resolve(authority string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, authority)
	if !strings.HasSuffix(authority, ociSuffix) {
		return "", errors.New("resolve_failed")
	}
	return r.addr, nil
}

func (r *resolver) asked() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// rewriteTo answers the request headers by moving the request to authority and path, with
// clear_route_cache as given, and answers a body with an empty mutation.
func rewriteTo(authority, path string, clear bool) func(*procStream) error {
	return respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		switch {
		case req.GetRequestHeaders() != nil:
			resp := headersResp(setHeaders(":authority", authority, ":path", path, "x-signed", "headers"))
			resp.GetRequestHeaders().GetResponse().ClearRouteCache = clear
			return resp
		case req.GetRequestBody() != nil:
			return bodyResp(setHeaders("x-signed-body", "yes"))
		}
		return nil
	})
}

// A processor may set :authority only where mutation_rules allow it. Allowed, the request
// is resolved, routed and sent by the new authority; refused under disallow_is_error, it
// fails; allowing ":authority" does not allow "host", and the value must be a valid
// authority.
func TestAuthorityMutationFollowsTheMutationRules(t *testing.T) {
	tests := []struct {
		name        string
		rules       *mutationrulesv3.HeaderMutationRules
		mutation    *extprocv3.HeaderMutation
		wantCode    int
		wantDetails string
	}{
		{
			name:     "allowed by allow_expression",
			rules:    authorityRules(),
			mutation: setHeaders(":authority", "objectstorage"+ociSuffix, ":path", "/n/"),
			wantCode: http.StatusOK,
		},
		{
			name:        "refused by default rules",
			rules:       extproctest.ProxyMutationRules(),
			mutation:    setHeaders(":authority", "objectstorage"+ociSuffix),
			wantCode:    http.StatusInternalServerError,
			wantDetails: "Invalid_attempt_to_modify_:authority",
		},
		{
			name:        "host is not :authority for the rules",
			rules:       authorityRules(),
			mutation:    setHeaders("host", "objectstorage"+ociSuffix),
			wantCode:    http.StatusInternalServerError,
			wantDetails: "Invalid_attempt_to_modify_host",
		},
		{
			name:        "an invalid authority is refused",
			rules:       authorityRules(),
			mutation:    setHeaders(":authority", "objectstorage"+ociSuffix+"/evil"),
			wantCode:    http.StatusInternalServerError,
			wantDetails: "Invalid_attempt_to_modify_:authority",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := &resolver{}
			answer := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if req.GetRequestHeaders() == nil {
					return nil
				}
				resp := headersResp(tt.mutation)
				resp.GetRequestHeaders().GetResponse().ClearRouteCache = true
				return resp
			})
			h := newHarness(t, answer, func(c *extproctest.Config) {
				res.addr = c.Upstream
				c.Upstream = ""
				c.Resolve = res.resolve
				c.Routes = gatewayRoutes
				c.MutationRules = tt.rules
			})
			req := h.newRequest(t, http.MethodGet, "/objectstorage"+ociSuffix+"/n/", nil)
			req.Host = "localhost"
			code, _, _ := h.do(t, req)
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d", code, tt.wantCode)
			}
			if tt.wantCode != http.StatusOK {
				if d := h.logs.last(t).ResponseCodeDetails; d != tt.wantDetails {
					t.Errorf("details %q, want %q", d, tt.wantDetails)
				}
				if n := len(h.up.requests()); n != 0 || len(res.asked()) != 0 {
					t.Errorf("upstream got %d requests, resolver asked %v", n, res.asked())
				}
				return
			}
			up := h.up.only(t)
			if up.Host != "objectstorage"+ociSuffix || up.RequestURI != "/n/" {
				t.Errorf("upstream got %s for host %s", up.RequestURI, up.Host)
			}
			if got := res.asked(); len(got) != 1 || got[0] != "objectstorage"+ociSuffix {
				t.Errorf("resolver asked %v", got)
			}
		})
	}
}

// After ext_proc moves a request to another authority, the router only goes there if the
// route cache was cleared; otherwise it keeps the route matched for the original host (here
// the catch-all's 403). An answer with a header mutation clears it when it sets
// clear_route_cache (route_cache_action DEFAULT) or always (CLEAR); never under RETAIN; and
// clear_route_cache without a header mutation is ignored. A body answer clears it too.
func TestRouteCacheClearing(t *testing.T) {
	const to = "genai" + ociSuffix
	bodyClears := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		switch {
		case req.GetRequestHeaders() != nil:
			return headersResp(setHeaders(":authority", to, ":path", "/v1/chat"))
		case req.GetRequestBody() != nil:
			resp := bodyResp(setHeaders("x-signed-body", "yes"))
			resp.GetRequestBody().GetResponse().ClearRouteCache = true
			return resp
		}
		return nil
	})
	clearWithoutMutation := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		switch {
		case req.GetRequestHeaders() != nil:
			return headersResp(setHeaders(":authority", to, ":path", "/v1/chat"))
		case req.GetRequestBody() != nil:
			resp := bodyResp(nil)
			resp.GetRequestBody().GetResponse().ClearRouteCache = true
			return resp
		}
		return nil
	})
	tests := []struct {
		name     string
		action   extprocfilterv3.ExternalProcessor_RouteCacheAction
		handle   func(*procStream) error
		wantCode int
		stat     func(extproctest.Stats) int64
		want     int64
	}{
		{"DEFAULT with clear_route_cache", extprocfilterv3.ExternalProcessor_DEFAULT, rewriteTo(to, "/v1/chat", true), http.StatusOK,
			func(s extproctest.Stats) int64 { return s.RouteCacheCleared }, 1},
		{"DEFAULT without clear_route_cache", extprocfilterv3.ExternalProcessor_DEFAULT, rewriteTo(to, "/v1/chat", false), http.StatusForbidden,
			func(s extproctest.Stats) int64 { return s.LocalRepliesDirect }, 1},
		// Both answers carry a header mutation: both clear.
		{"CLEAR without clear_route_cache", extprocfilterv3.ExternalProcessor_CLEAR, rewriteTo(to, "/v1/chat", false), http.StatusOK,
			func(s extproctest.Stats) int64 { return s.RouteCacheCleared }, 2},
		{"RETAIN with clear_route_cache", extprocfilterv3.ExternalProcessor_RETAIN, rewriteTo(to, "/v1/chat", true), http.StatusForbidden,
			func(s extproctest.Stats) int64 { return s.ClearRouteCacheDisabled }, 1},
		{"cleared by the body answer", extprocfilterv3.ExternalProcessor_DEFAULT, bodyClears, http.StatusOK,
			func(s extproctest.Stats) int64 { return s.RouteCacheCleared }, 1},
		{"clear_route_cache without a header mutation", extprocfilterv3.ExternalProcessor_DEFAULT, clearWithoutMutation, http.StatusForbidden,
			func(s extproctest.Stats) int64 { return s.ClearRouteCacheIgnored }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := &resolver{}
			h := newHarness(t, tt.handle, func(c *extproctest.Config) {
				res.addr = c.Upstream
				c.Resolve = res.resolve
				c.Routes = gatewayRoutes
				c.MutationRules = authorityRules()
				c.RouteCacheAction = tt.action
			})
			req := h.newRequest(t, http.MethodPost, "/genai/v1/chat", strings.NewReader(`{"m":1}`))
			req.Host = "localhost"
			code, hdr, body := h.do(t, req)
			if code != tt.wantCode {
				t.Fatalf("status %d %q, want %d", code, body, tt.wantCode)
			}
			if got := tt.stat(h.envoy.Stats()); got != tt.want {
				t.Errorf("counter %d, want %d", got, tt.want)
			}
			if tt.wantCode == http.StatusForbidden {
				if n := len(h.up.requests()); n != 0 || len(res.asked()) != 0 {
					t.Errorf("upstream got %d requests, resolver asked %v", n, res.asked())
				}
				if hdr.Get("Content-Type") != "application/json" || h.logs.last(t).ResponseCodeDetails != "direct_response" {
					t.Errorf("direct response %v %q", hdr, h.logs.last(t).ResponseCodeDetails)
				}
				return
			}
			if up := h.up.only(t); up.Host != to || up.RequestURI != "/v1/chat" || string(up.Body) != `{"m":1}` {
				t.Errorf("upstream got %s %q for host %s", up.RequestURI, up.Body, up.Host)
			}
		})
	}
}

// The route is matched again after the cache was cleared, but ext_proc does not read its
// per-route config again (Filter::mergePerRouteConfig runs once): a request moved onto a
// route that disables ext_proc still has its body processed.
func TestPerRouteExtProcConfigIsNotReadAgain(t *testing.T) {
	const to = "objectstorage" + ociSuffix
	h := newHarness(t, rewriteTo(to, "/n/", true), func(c *extproctest.Config) {
		c.Routes = func(rr extproctest.RouteRequest) extproctest.Route {
			r := gatewayRoutes(rr)
			r.ExtProcDisabled = r.Direct == nil
			return r
		}
		c.MutationRules = authorityRules()
	})
	req := h.newRequest(t, http.MethodPost, "/"+to+"/n/", strings.NewReader("b"))
	req.Host = "localhost"
	if code, _, _ := h.do(t, req); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if up := h.up.only(t); up.Header.Get("X-Signed-Body") != "yes" || up.Host != to {
		t.Errorf("upstream got host %s, headers %v", up.Host, up.Header)
	}
}

// The router's own rewrites (host_rewrite_literal, prefix_rewrite, regex_rewrite) run after
// ext_proc: what the processor saw and signed is not what goes upstream. The upstream host
// was already chosen from the :authority the filters left (the forward proxy's look-up),
// and the rewritten host and path are what that upstream receives.
func TestRouterRewriteRunsAfterExtProc(t *testing.T) {
	res := &resolver{}
	h := newHarness(t, signer(), func(c *extproctest.Config) {
		res.addr = c.Upstream
		c.Resolve = res.resolve
		c.Routes = func(rr extproctest.RouteRequest) extproctest.Route {
			return extproctest.Route{Rewrite: func(authority, path string) (string, string) {
				return "other" + ociSuffix, "/rewritten" + path
			}}
		}
	})
	req := h.newRequest(t, http.MethodGet, "/n/", nil)
	req.Host = "objectstorage" + ociSuffix
	if code, _, _ := h.do(t, req); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	seen := h.proc.only(t).messages()[0].GetRequestHeaders()
	if a, _ := headerValue(seen, ":authority"); a != "objectstorage"+ociSuffix {
		t.Errorf("processor saw :authority %q", a)
	}
	up := h.up.only(t)
	if up.Host != "other"+ociSuffix || up.RequestURI != "/rewritten/n/" || up.Header.Get("X-Signed") != "headers" {
		t.Errorf("upstream got %s for host %s, headers %v", up.RequestURI, up.Host, up.Header)
	}
	if got := res.asked(); len(got) != 1 || got[0] != "objectstorage"+ociSuffix {
		t.Errorf("resolver asked %v, want the unrewritten host", got)
	}
}

// An authority the forward proxy cannot resolve fails with 503 and nothing is sent.
func TestUnresolvableAuthorityGets503(t *testing.T) {
	res := &resolver{}
	h := newHarness(t, signer(), func(c *extproctest.Config) {
		res.addr = c.Upstream
		c.Resolve = res.resolve
	})
	req := h.newRequest(t, http.MethodGet, "/", nil)
	req.Host = "nowhere.example"
	code, _, body := h.do(t, req)
	if code != http.StatusServiceUnavailable || body != "DNS resolution failure" {
		t.Fatalf("got %d %q", code, body)
	}
	if d := h.logs.last(t).ResponseCodeDetails; d != "dns_resolution_failure{resolve_failed}" {
		t.Errorf("details %q", d)
	}
	if n := len(h.up.requests()); n != 0 || h.envoy.Stats().LocalRepliesDNS != 1 {
		t.Errorf("upstream got %d requests", n)
	}
}
