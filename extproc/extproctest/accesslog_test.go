package extproctest_test

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// withMetadata attaches dynamic_metadata {namespace: fields} to an answer.
func withMetadata(resp *extprocv3.ProcessingResponse, namespace string, fields map[string]any) *extprocv3.ProcessingResponse {
	s, err := structpb.NewStruct(map[string]any{namespace: fields})
	if err != nil {
		panic(err)
	}
	if resp.DynamicMetadata == nil {
		resp.DynamicMetadata = s
	} else {
		for k, v := range s.GetFields() {
			resp.DynamicMetadata.Fields[k] = v
		}
	}
	return resp
}

func metadataField(e extproctest.AccessLogEntry, namespace, key string) (string, bool) {
	s, ok := e.DynamicMetadata[namespace]
	if !ok {
		return "", false
	}
	v, ok := s.GetFields()[key]
	return v.GetStringValue(), ok
}

// What the processor puts in dynamic_metadata under a receiving namespace becomes the
// request's metadata, merged answer after answer (a later answer replaces the fields it
// names); other namespaces are dropped; with no receiving namespace nothing is kept. An
// ImmediateResponse's metadata is taken too, so a refusal is logged with its reason.
func TestDynamicMetadataFromTheProcessor(t *testing.T) {
	signed := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		switch {
		case req.GetRequestHeaders() != nil:
			resp := withMetadata(headersResp(setHeaders("x-signed", "headers")), "ocisigner",
				map[string]any{"profile": "DEFAULT", "outcome": "pending"})
			return withMetadata(resp, "elsewhere", map[string]any{"x": "y"})
		case req.GetRequestBody() != nil:
			return withMetadata(bodyResp(setHeaders("x-body", "signed")), "ocisigner",
				map[string]any{"outcome": "signed", "upstream": "iaas.oci.test"})
		}
		return nil
	})
	refused := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if req.GetRequestHeaders() == nil {
			return nil
		}
		return withMetadata(immediate(typev3.StatusCode_Forbidden, `{"code":"HostNotAllowed"}`, "HostNotAllowed", nil),
			"ocisigner", map[string]any{"profile": "DEFAULT", "outcome": "HostNotAllowed"})
	})
	tests := []struct {
		name       string
		handle     func(*procStream) error
		namespaces []string
		wantCode   int
		want       map[string]string // ocisigner fields; nil means no ocisigner metadata at all
	}{
		{"merged over both answers", signed, []string{"ocisigner"}, http.StatusOK,
			map[string]string{"profile": "DEFAULT", "outcome": "signed", "upstream": "iaas.oci.test"}},
		{"not a receiving namespace", signed, []string{"other"}, http.StatusOK, nil},
		{"no receiving namespaces", signed, nil, http.StatusOK, nil},
		{"immediate response", refused, []string{"ocisigner"}, http.StatusForbidden,
			map[string]string{"profile": "DEFAULT", "outcome": "HostNotAllowed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.handle, func(c *extproctest.Config) { c.ReceivingNamespaces = tt.namespaces })
			if code, _, _ := h.do(t, h.newRequest(t, http.MethodPost, "/x", strings.NewReader("b"))); code != tt.wantCode {
				t.Fatalf("status %d, want %d", code, tt.wantCode)
			}
			e := h.logs.last(t)
			if _, ok := e.DynamicMetadata["elsewhere"]; ok {
				t.Error("metadata of a namespace not received was kept")
			}
			got := e.DynamicMetadata["ocisigner"]
			if tt.want == nil {
				if got != nil {
					t.Errorf("ocisigner metadata %v, want none", got)
				}
				return
			}
			if len(got.GetFields()) != len(tt.want) {
				t.Errorf("ocisigner metadata %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if g, _ := metadataField(e, "ocisigner", k); g != v {
					t.Errorf("ocisigner:%s = %q, want %q", k, g, v)
				}
			}
		})
	}
}

// FormatAccessLog follows Envoy's text formatter: a missing value prints "-", REQ falls back
// to its alternative header, :N truncates, a metadata string prints as is and anything else
// as JSON, RESPONSE_CODE is 0 without a response; a command it does not know is an error.
func TestFormatAccessLog(t *testing.T) {
	md, _ := structpb.NewStruct(map[string]any{"profile": "PROD", "n": 3, "nested": map[string]any{"a": "b"}})
	e := extproctest.AccessLogEntry{
		Status: http.StatusOK, ResponseCodeDetails: "via_upstream",
		StartTime:       time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.FixedZone("X", 3600)),
		Duration:        1500 * time.Millisecond,
		RequestHeaders:  http.Header{":path": {"/n/"}, ":method": {"GET"}, "X-Oci-Profile": {"a", "b"}},
		ResponseHeaders: http.Header{"Opc-Request-Id": {"req-1"}},
		DynamicMetadata: map[string]*structpb.Struct{"ocisigner": md},
		UpstreamHost:    "10.0.0.1:443",
	}
	tests := []struct{ format, want string }{
		{"%REQ(:METHOD)% %REQ(:PATH)%", "GET /n/"},
		{"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "/n/"},
		{"%REQ(x-oci-profile)%", "a"},
		{"%REQ(x-missing)%|%RESP(x-missing)%", "-|-"},
		{"%RESP(OPC-REQUEST-ID)%", "req-1"},
		{"%REQ(:PATH):2%", "/n"},
		{"%DYNAMIC_METADATA(ocisigner:profile)%", "PROD"},
		{"%DYNAMIC_METADATA(ocisigner:n)%", "3"},
		{"%DYNAMIC_METADATA(ocisigner:nested)%", `{"a":"b"}`},
		{"%DYNAMIC_METADATA(ocisigner:nested:a)%", "b"},
		{"%DYNAMIC_METADATA(ocisigner:missing)% %DYNAMIC_METADATA(other:x)%", "- -"},
		{"%RESPONSE_CODE% %RESPONSE_CODE_DETAILS% %PROTOCOL% %DURATION%", "200 via_upstream HTTP/1.1 1500"},
		{"[%START_TIME%]", "[2026-01-02T02:04:05.678Z]"},
		{"%UPSTREAM_HOST% %ROUTE_NAME%", "10.0.0.1:443 -"},
	}
	for _, tt := range tests {
		got, err := extproctest.FormatAccessLog(tt.format, e)
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.format, got, err, tt.want)
		}
	}
	if got, _ := extproctest.FormatAccessLog("%RESPONSE_CODE% %RESPONSE_CODE_DETAILS%", extproctest.AccessLogEntry{}); got != "0 -" {
		t.Errorf("no response: %q, want %q", got, "0 -")
	}
	for _, bad := range []string{"%BYTES_SENT%", "100% done", "%REQ()%", "%DURATION(x)%"} {
		if _, err := extproctest.FormatAccessLog(bad, e); !errors.Is(err, extproctest.ErrAccessLogFormat) {
			t.Errorf("%q: err %v, want ErrAccessLogFormat", bad, err)
		}
	}
}

// The access log line of ocisigner's envoy.yaml for a gateway-form request the signer moved
// and signed: one line says what went where, signed by whom, and what OCI answered.
func TestAccessLogFormatSaysWhichProfileGotWhichAnswer(t *testing.T) {
	const to = "objectstorage" + ociSuffix
	answer := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if req.GetRequestHeaders() == nil {
			return nil
		}
		resp := headersResp(setHeaders(":authority", to, ":path", "/n/", "authorization", "Signature x"))
		resp.GetRequestHeaders().GetResponse().ClearRouteCache = true
		return withMetadata(resp, "ocisigner", map[string]any{
			"profile": "PROD", "principal": "api_key", "key_id": "ocid1.tenancy.oc1..aaa/…/c1:f2",
			"outcome": "signed", "upstream": to, "project": "route",
		})
	})
	res := &resolver{}
	h := newHarness(t, answer, func(c *extproctest.Config) {
		res.addr = c.Upstream
		c.Resolve = res.resolve
		c.Routes = gatewayRoutes
		c.MutationRules = authorityRules()
		c.ReceivingNamespaces = []string{"ocisigner"}
	})
	h.up.setReply(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("opc-request-id", "req-42")
		w.WriteHeader(http.StatusNotFound)
	})
	req := h.newRequest(t, http.MethodGet, "/"+to+"/n/", nil)
	req.Host = "localhost"
	if code, _, _ := h.do(t, req); code != http.StatusNotFound {
		t.Fatalf("status %d", code)
	}
	line, err := extproctest.FormatAccessLog(extproctest.AccessLogFormat, h.logs.last(t))
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /n/ HTTP/1\.1" 404 via_upstream \d+ms ` +
		`host=objectstorage\.oci\.test upstream=objectstorage\.oci\.test profile=PROD principal=api_key ` +
		`key_id=ocid1\.tenancy\.oc1\.\.aaa/…/c1:f2 outcome=signed project=route opc-request-id=req-42 rule=- caller=-\n$`)
	if !want.MatchString(line) {
		t.Errorf("access log line\n%q\ndoes not match\n%s", line, want)
	}
}
