package extproctest_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

const addressFilter = "address"

// chainRoutes: the catch-all runs only the address filter; OCI hosts run only the main
// filter, and a request to a pinned OCI route (header x-pin) gets the pin as metadata.
func chainRoutes(rr extproctest.RouteRequest) extproctest.Route {
	if strings.HasSuffix(rr.Authority, ociSuffix) {
		r := extproctest.Route{Name: "oci", PerFilter: map[string]extproctest.PerRoute{addressFilter: {Disabled: true}}}
		if rr.Header.Get("x-pin") != "" {
			r.Name, r.Metadata = "pinned", map[string]string{"x-pin": rr.Header.Get("x-pin")}
		}
		return r
	}
	return extproctest.Route{Name: "gateway", ExtProcDisabled: true, Direct: &extproctest.DirectResponse{Status: http.StatusForbidden}}
}

// A chain of two ext_proc filters runs as Envoy runs it: the first (headers only)
// re-addresses the request and clears the route cache; the second reads its per-route
// config from the route matched again, and gets what the first put in the dynamic
// metadata through its forwarding namespaces; the first filter's stream carries its own
// service-wide initial metadata.
func TestChainedFiltersSeeTheRouteTheFirstLeft(t *testing.T) {
	res := &resolver{}
	var first *procStream
	proc := startProcessor(t, func(s *procStream) error {
		if len(s.md.Get("x-stage")) == 0 {
			return errors.New("no stage")
		}
		if s.md.Get("x-stage")[0] == "address" {
			first = s
			return respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				resp := headersResp(setHeaders(":authority", "objectstorage"+ociSuffix, ":path", "/n/"))
				resp.DynamicMetadata, _ = structpb.NewStruct(map[string]any{"ocisigner": map[string]any{"via": "address"}})
				return resp
			})(s)
		}
		return signer()(s)
	})
	up := startUpstream(t, nil)
	res.addr = up.addr()
	h := newHarness(t, nil, func(c *extproctest.Config) {
		c.Processor, c.Routes, c.Resolve = proc.addr, chainRoutes, res.resolve
		c.InitialMetadata = map[string]string{"x-stage": "sign"}
		c.ReceivingNamespaces, c.ForwardingNamespaces = []string{"ocisigner"}, []string{"ocisigner"}
		c.Before = []extproctest.Filter{{Name: addressFilter, InitialMetadata: map[string]string{"x-stage": "address"},
			MutationRules: authorityRules(), RouteCacheAction: extprocfilterv3.ExternalProcessor_CLEAR, ReceivingNamespaces: []string{"ocisigner"}}}
	})
	req := h.newRequest(t, "POST", "/objectstorage/n/", strings.NewReader("body"))
	req.Host = "localhost"
	req.Header.Set("x-pin", "PINNED")
	code, _, body := h.do(t, req)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	streams := proc.allStreams()
	if len(streams) != 2 || first == nil {
		t.Fatalf("%d streams, want the address filter's and the signer's", len(streams))
	}
	// The first filter: headers only, then done.
	if msgs := first.messages(); len(msgs) != 1 || msgs[0].GetRequestHeaders() == nil {
		t.Fatalf("the address filter got %d messages: %v", len(msgs), msgs)
	}
	second := streams[1]
	if second == first {
		second = streams[0]
	}
	// The second filter: its route is the pinned one, matched against the new authority.
	if got := second.md.Get("x-pin"); len(got) != 1 || got[0] != "PINNED" {
		t.Fatalf("the signing filter's stream carried x-pin %q: it did not read the re-matched route's config", got)
	}
	msgs := second.messages()
	if len(msgs) != 2 || msgs[1].GetRequestBody() == nil {
		t.Fatalf("the signing filter got %d messages", len(msgs))
	}
	for i, m := range msgs {
		if v := m.GetMetadataContext().GetFilterMetadata()["ocisigner"].GetFields()["via"].GetStringValue(); v != "address" {
			t.Errorf("message %d lacks the forwarded metadata: %v", i, m.GetMetadataContext())
		}
	}
	if a, _ := headerValue(msgs[0].GetRequestHeaders(), ":authority"); a != "objectstorage"+ociSuffix {
		t.Errorf("the signing filter saw :authority %q", a)
	}
	if got := up.only(t); got.Header.Get("x-signed") != "headers" || got.Host != "objectstorage"+ociSuffix {
		t.Errorf("upstream got host %q, x-signed %q", got.Host, got.Header.Get("x-signed"))
	}
}

// A refusal by the first filter ends the chain: the second never opens a stream, and
// nothing goes upstream.
func TestChainEndsAtTheFirstFiltersRefusal(t *testing.T) {
	proc := startProcessor(t, respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		return immediate(403, `{"code":"No"}`, "refused", nil)
	}))
	h := newHarness(t, nil, func(c *extproctest.Config) {
		c.Processor, c.Routes = proc.addr, chainRoutes
		c.Before = []extproctest.Filter{{Name: addressFilter, MutationRules: authorityRules()}}
	})
	req := h.newRequest(t, "GET", "/x", nil)
	req.Host = "localhost"
	if code, _, body := h.do(t, req); code != http.StatusForbidden || body != `{"code":"No"}` {
		t.Fatalf("status %d %q", code, body)
	}
	if n := len(proc.allStreams()); n != 1 {
		t.Fatalf("%d streams: the second filter ran after the first refused", n)
	}
	if len(h.up.requests()) != 0 {
		t.Fatal("a refused request went upstream")
	}
}

// Only a first filter that processes the request headers alone is reproduced.
func TestChainRefusesAFirstFilterThatBuffers(t *testing.T) {
	_, err := extproctest.New(extproctest.Config{Processor: "127.0.0.1:1", Upstream: "127.0.0.1:1",
		Before: []extproctest.Filter{{Name: "x", ProcessingMode: mode(extprocfilterv3.ProcessingMode_BUFFERED)}}})
	if !errors.Is(err, extproctest.ErrUnsupported) {
		t.Fatalf("err = %v", err)
	}
	_, err = extproctest.New(extproctest.Config{Processor: "127.0.0.1:1", Upstream: "127.0.0.1:1", Before: []extproctest.Filter{{}}})
	if !errors.Is(err, extproctest.ErrConfig) {
		t.Fatalf("a nameless filter: err = %v", err)
	}
}
