package extproctest_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

const observeFilter = "observe"

// observeMode sends the response headers alone, as ocisigner's envoy.yaml observes.
func observeMode() *extprocfilterv3.ProcessingMode {
	return &extprocfilterv3.ProcessingMode{
		RequestHeaderMode:   extprocfilterv3.ProcessingMode_SKIP,
		ResponseHeaderMode:  extprocfilterv3.ProcessingMode_SEND,
		RequestBodyMode:     extprocfilterv3.ProcessingMode_NONE,
		ResponseBodyMode:    extprocfilterv3.ProcessingMode_NONE,
		RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
		ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
	}
}

// observed sets up a main filter that signs (and leaves dynamic metadata) and an
// observer after it; observe handles the observer's streams.
func observed(t *testing.T, observe func(*procStream) error, edit func(*extproctest.Config)) *harness {
	t.Helper()
	sign := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if req.GetRequestHeaders() == nil {
			return nil
		}
		resp := headersResp(setHeaders("x-signed", "headers"))
		resp.DynamicMetadata, _ = structpb.NewStruct(map[string]any{"ocisigner": map[string]any{"outcome": "signed", "profile": "P"}})
		return resp
	})
	return newHarness(t, func(s *procStream) error {
		if v := s.md.Get("x-stage"); len(v) == 1 && v[0] == "observe" {
			return observe(s)
		}
		return sign(s)
	}, func(c *extproctest.Config) {
		c.ProcessingMode, c.ReceivingNamespaces = mode(extprocfilterv3.ProcessingMode_NONE), []string{"ocisigner"}
		c.After = []extproctest.Filter{{Name: observeFilter, ObservabilityMode: true, FailureModeAllow: true, ProcessingMode: observeMode(),
			InitialMetadata: map[string]string{"x-stage": "observe"}, ForwardingNamespaces: []string{"ocisigner"}}}
		if edit != nil {
			edit(c)
		}
	})
}

// An observer that never answers does not hold the response: the client has all of it
// while the observer still sits on its message (if the stand-in waited, the client would
// wait for ever, as the observer is only released once the client is done). The message is
// the response headers with observability_mode set, the signing filter's dynamic metadata
// forwarded, and no protocol_config.
func TestObserverNeverDelaysTheResponse(t *testing.T) {
	got := make(chan *extprocv3.ProcessingRequest, 1)
	release := make(chan struct{})
	h := observed(t, func(s *procStream) error {
		req, err := s.recv()
		if err != nil {
			return err
		}
		got <- req
		<-release
		return nil
	}, nil)
	h.up.setReply(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("opc-request-id", "OPC1")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"code":"NotAuthenticated"}`)
	})
	code, _, body := h.do(t, h.newRequest(t, "GET", "/x", nil))
	if code != http.StatusUnauthorized || !strings.Contains(body, "NotAuthenticated") {
		t.Fatalf("client got %d %q", code, body)
	}
	close(release)
	var req *extprocv3.ProcessingRequest
	select {
	case req = <-got:
	case <-time.After(guard):
		t.Fatal("the observer got nothing")
	}
	rh := req.GetResponseHeaders()
	if !req.GetObservabilityMode() || rh == nil || req.GetProtocolConfig() != nil {
		t.Fatalf("observer got %v", req)
	}
	if st, _ := headerValue(rh, ":status"); st != "401" {
		t.Errorf(":status %q", st)
	}
	if id, _ := headerValue(rh, "opc-request-id"); id != "OPC1" {
		t.Errorf("opc-request-id %q", id)
	}
	if p := req.GetMetadataContext().GetFilterMetadata()["ocisigner"].GetFields()["profile"].GetStringValue(); p != "P" {
		t.Errorf("forwarded metadata %v", req.GetMetadataContext())
	}
	if st := h.envoy.Stats(); st.ObserverStreams != 1 || st.ObserverMessages != 1 || st.StreamsStarted != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Whatever an observer answers is ignored (ext_proc.cc onReceiveMessage returns first
// thing in observability mode): a refusal, a header mutation, an error.
func TestObserverAnswersAreIgnored(t *testing.T) {
	for name, answer := range map[string]func(*procStream) error{
		"immediate response": respond(func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
			return immediate(403, "no", "observer", nil)
		}),
		"header mutation": respond(func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
				ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: setHeaders("x-observed", "1")}}}}
		}),
		"error": func(*procStream) error { return errors.New("observer down") },
	} {
		t.Run(name, func(t *testing.T) {
			h := observed(t, answer, nil)
			code, hdr, body := h.do(t, h.newRequest(t, "GET", "/x", nil))
			if code != http.StatusOK || body != "upstream ok" || hdr.Get("x-observed") != "" {
				t.Fatalf("client got %d %v %q", code, hdr, body)
			}
			if h.up.only(t).Header.Get("x-signed") != "headers" {
				t.Fatal("not signed")
			}
		})
	}
}

// A local reply passes the observer too (its encodeHeaders runs for it and merges the
// per-route config there), with the refusing filter's metadata; on a route that disables
// the observer nothing is sent.
func TestObserverSeesLocalRepliesUnlessDisabled(t *testing.T) {
	got := make(chan *extprocv3.ProcessingRequest, 4)
	h := newHarness(t, func(s *procStream) error {
		if v := s.md.Get("x-stage"); len(v) == 1 && v[0] == "observe" {
			req, err := s.recv()
			if err == nil {
				got <- req
			}
			return nil
		}
		return respond(func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
			resp := immediate(401, `{"code":"CredentialsExpired"}`, "refused", setHeaders("x-refused", "1"))
			resp.DynamicMetadata, _ = structpb.NewStruct(map[string]any{"ocisigner": map[string]any{"outcome": "CredentialsExpired"}})
			return resp
		})(s)
	}, func(c *extproctest.Config) {
		c.ReceivingNamespaces = []string{"ocisigner"}
		c.Routes = func(rr extproctest.RouteRequest) extproctest.Route {
			if rr.Path == "/quiet" {
				return extproctest.Route{Name: "quiet", PerFilter: map[string]extproctest.PerRoute{observeFilter: {Disabled: true}}}
			}
			return extproctest.Route{Name: "observed"}
		}
		c.After = []extproctest.Filter{{Name: observeFilter, ObservabilityMode: true, FailureModeAllow: true, ProcessingMode: observeMode(),
			InitialMetadata: map[string]string{"x-stage": "observe"}, ForwardingNamespaces: []string{"ocisigner"}}}
	})
	if code, _, _ := h.do(t, h.newRequest(t, "GET", "/x", nil)); code != http.StatusUnauthorized {
		t.Fatalf("status %d", code)
	}
	req := <-got
	if st, _ := headerValue(req.GetResponseHeaders(), ":status"); st != "401" {
		t.Errorf(":status %q", st)
	}
	if r, _ := headerValue(req.GetResponseHeaders(), "x-refused"); r != "1" {
		t.Errorf("the local reply's headers did not reach the observer: %v", req.GetResponseHeaders())
	}
	if o := req.GetMetadataContext().GetFilterMetadata()["ocisigner"].GetFields()["outcome"].GetStringValue(); o != "CredentialsExpired" {
		t.Errorf("outcome %q", o)
	}
	if code, _, _ := h.do(t, h.newRequest(t, "GET", "/quiet", nil)); code != http.StatusUnauthorized {
		t.Fatalf("status %d", code)
	}
	if n := h.envoy.Stats().ObserverStreams; n != 1 {
		t.Fatalf("%d observer streams: the disabled route was observed", n)
	}
}

// A stream the processor keeps open is closed by Envoy after deferred_close_timeout.
func TestObserverStreamClosedAfterDeferredTimeout(t *testing.T) {
	var stream *procStream
	seen := make(chan struct{})
	h := observed(t, func(s *procStream) error {
		stream = s
		close(seen)
		for {
			if _, err := s.recv(); err != nil {
				return nil
			}
		}
	}, func(c *extproctest.Config) { c.After[0].DeferredCloseTimeout = 20 * time.Millisecond })
	if code, _, _ := h.do(t, h.newRequest(t, "GET", "/x", nil)); code != http.StatusOK {
		t.Fatal(code)
	}
	<-seen
	if err := stream.waitEnded(t); err == nil {
		t.Fatal("ended without an error")
	}
}

// What the stand-in does not reproduce after the main filter is refused; Envoy's default
// modes (headers sent, no bodies) are reproduced.
func TestObserverRefusesWhatIsNotReproduced(t *testing.T) {
	streamed := observeMode()
	streamed.ResponseBodyMode = extprocfilterv3.ProcessingMode_STREAMED
	newWith := func(f extproctest.Filter) error {
		e, err := extproctest.New(extproctest.Config{Processor: "127.0.0.1:1", Upstream: "127.0.0.1:1", After: []extproctest.Filter{f}})
		if err == nil {
			e.Close()
		}
		return err
	}
	for name, f := range map[string]extproctest.Filter{
		"a filter that waits": {Name: "x", FailureModeAllow: true},
		"fail closed":         {Name: "x", ObservabilityMode: true},
		"a streamed body":     {Name: "x", ObservabilityMode: true, FailureModeAllow: true, ProcessingMode: streamed},
	} {
		if err := newWith(f); !errors.Is(err, extproctest.ErrUnsupported) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if err := newWith(extproctest.Filter{ObservabilityMode: true, FailureModeAllow: true}); !errors.Is(err, extproctest.ErrConfig) {
		t.Errorf("no name: err = %v", err)
	}
	if err := newWith(extproctest.Filter{Name: "x", ObservabilityMode: true, FailureModeAllow: true}); err != nil {
		t.Errorf("default modes: %v", err)
	}
}
