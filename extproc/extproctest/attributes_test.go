package extproctest_test

import (
	"net/http"
	"strings"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// attributes returns what the processor got under ext_proc's key on a message, or nil.
func attributes(m *extprocv3.ProcessingRequest) *structpb.Struct {
	return m.GetAttributes()["envoy.filters.http.ext_proc"]
}

// On the plain listener the attributes come from the request as it is when the headers
// message is built (port stripped), the requested server name is present and empty, and
// what has no value (no TLS, no filter state) is left out. The body message carries none.
func TestRequestAttributesOnPlainListener(t *testing.T) {
	const host = "objectstorage.us-phoenix-1.oraclecloud.com"
	h := newHarness(t, signer(), func(c *extproctest.Config) {
		c.StripAnyHostPort = true
		c.RequestAttributes = []string{"connection.requested_server_name", "request.host", "request.method",
			"filter_state['ocisigner.connect_authority']", "connection.mtls", "connection.tls_version",
			"request.protocol", "request.host"}
	})
	req := h.newRequest(t, http.MethodPost, "/n/", strings.NewReader("body"))
	req.Host = host + ":443"
	if status, _, _ := h.do(t, req); status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	msgs := h.proc.only(t).messages()
	want, _ := structpb.NewStruct(map[string]any{
		"connection.requested_server_name": "", "request.host": host, "request.method": "POST",
		"connection.mtls": false, "request.protocol": "HTTP/1.1",
	})
	if got := attributes(msgs[0]); !proto.Equal(got, want) {
		t.Errorf("attributes %v, want %v", got, want)
	}
	if len(msgs) != 2 || msgs[1].GetAttributes() != nil {
		t.Errorf("the body message carries attributes: %v", msgs)
	}
}

// ext_proc adds attributes only to a headers message: with request_header_mode SKIP the
// processor never gets them.
func TestRequestAttributesNotSentWithoutHeadersMessage(t *testing.T) {
	h := newHarness(t, signer(), func(c *extproctest.Config) {
		m := mode(extprocfilterv3.ProcessingMode_BUFFERED)
		m.RequestHeaderMode = extprocfilterv3.ProcessingMode_SKIP
		c.ProcessingMode = m
		c.RequestAttributes = []string{"request.method"}
	})
	if status, _, _ := h.do(t, h.newRequest(t, http.MethodPut, "/o", strings.NewReader("body"))); status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	msgs := h.proc.only(t).messages()
	if len(msgs) != 1 || msgs[0].GetRequestBody() == nil || msgs[0].GetAttributes() != nil {
		t.Errorf("processor got %v", msgs)
	}
}
