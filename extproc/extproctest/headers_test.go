package extproctest_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// The request headers message carries every header lowercased, bytes in raw_value only,
// the pseudo-headers with the request target exactly as sent, the connection manager's
// additions, and none of the hop-by-hop or internal headers it strips.
func TestRequestHeadersMessageIsWhatEnvoySends(t *testing.T) {
	h := newHarness(t, signer(), nil)
	target := "/n/ns/b/my%2Fbucket//o/a%20b?x=1&y=%41"
	req := "GET " + target + " HTTP/1.1\r\n" +
		"Host: objectstorage.example.com:8443\r\n" +
		"User-Agent: test-agent\r\n" +
		"X-Mixed-Case: Value\r\n" +
		"X-Multi: one\r\n" +
		"X-Multi: two\r\n" +
		"Connection: keep-alive\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"Proxy-Connection: keep-alive\r\n" +
		"TE: gzip\r\n" +
		"X-Envoy-Retry-On: 5xx\r\n" +
		"X-Envoy-Decorator-Operation: kept\r\n" +
		"\r\n"
	resp, _ := raw(t, h.envoy.Addr(), req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}

	msgs := h.proc.only(t).messages()
	if len(msgs) != 1 || msgs[0].GetRequestHeaders() == nil {
		t.Fatalf("want exactly one request_headers message, got %v", msgs)
	}
	m := msgs[0]
	hh := m.GetRequestHeaders()
	if !hh.GetEndOfStream() {
		t.Error("end_of_stream false for a GET without body")
	}
	for _, hv := range hh.GetHeaders().GetHeaders() {
		if hv.GetKey() != strings.ToLower(hv.GetKey()) {
			t.Errorf("header %q not lowercase", hv.GetKey())
		}
		if hv.GetValue() != "" {
			t.Errorf("header %q has value %q; Envoy sends raw_value only", hv.GetKey(), hv.GetValue())
		}
	}
	want := map[string]string{
		":method":                     "GET",
		":path":                       target,
		":authority":                  "objectstorage.example.com:8443",
		":scheme":                     "http",
		"user-agent":                  "test-agent",
		"x-mixed-case":                "Value",
		"x-forwarded-proto":           "http",
		"x-envoy-decorator-operation": "kept",
	}
	for k, v := range want {
		if got, ok := headerValue(hh, k); !ok || got != v {
			t.Errorf("%s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	for _, k := range []string{"host", "connection", "keep-alive", "proxy-connection", "te", "x-envoy-retry-on", "transfer-encoding"} {
		if v, ok := headerValue(hh, k); ok {
			t.Errorf("%s present (%q); Envoy strips it before filters", k, v)
		}
	}
	if id, _ := headerValue(hh, "x-request-id"); !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Errorf("x-request-id %q is not a generated UUID", id)
	}
	var multi []string
	for _, hv := range hh.GetHeaders().GetHeaders() {
		if hv.GetKey() == "x-multi" {
			multi = append(multi, string(hv.GetRawValue()))
		}
	}
	if strings.Join(multi, "|") != "one|two" {
		t.Errorf("x-multi entries %q, want one entry per line", multi)
	}
	if keys := hh.GetHeaders().GetHeaders(); !strings.HasPrefix(keys[0].GetKey(), ":") {
		t.Errorf("pseudo-headers do not come first: %v", keys[0].GetKey())
	}
	if m.GetMetadataContext() == nil {
		t.Error("metadata_context missing; Envoy always sets it")
	}
	if pc := m.GetProtocolConfig(); pc.GetRequestBodyMode() != extprocfilterv3.ProcessingMode_BUFFERED ||
		pc.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_NONE {
		t.Errorf("protocol_config %v", pc)
	}

	up := h.up.only(t)
	if up.RequestURI != target || up.Host != "objectstorage.example.com:8443" {
		t.Errorf("upstream got %s with Host %s", up.RequestURI, up.Host)
	}
	if up.Header.Get("X-Signed") != "headers" {
		t.Error("upstream lacks the processor's header")
	}
}

// end_of_stream on the headers follows Envoy's HTTP/1 codec: Content-Length: 0 means no body,
// a chunked request always has one (even empty) and gets a body message.
func TestEndOfStreamFollowsTheCodec(t *testing.T) {
	tests := []struct {
		name        string
		request     string
		wantEOS     bool
		wantBodyMsg bool
	}{
		{"GET without body", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", true, false},
		{"POST with Content-Length 0", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", true, false},
		{"POST with a body", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", false, true},
		{"chunked empty body", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, signer(), nil)
			if resp, _ := raw(t, h.envoy.Addr(), tt.request); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			msgs := h.proc.only(t).messages()
			if got := msgs[0].GetRequestHeaders().GetEndOfStream(); got != tt.wantEOS {
				t.Errorf("end_of_stream %v, want %v", got, tt.wantEOS)
			}
			gotBody := len(msgs) == 2 && msgs[1].GetRequestBody() != nil
			if gotBody != tt.wantBodyMsg || len(msgs) > 2 {
				t.Fatalf("messages %v, want body message %v", msgs, tt.wantBodyMsg)
			}
			if gotBody && !msgs[1].GetRequestBody().GetEndOfStream() {
				t.Error("body message without end_of_stream")
			}
		})
	}
}

// strip_any_host_port runs before filters: the processor and the upstream see the same
// port-less host.
func TestStripAnyHostPort(t *testing.T) {
	h := newHarness(t, signer(), func(c *extproctest.Config) { c.StripAnyHostPort = true })
	req := h.newRequest(t, http.MethodGet, "/x", nil)
	req.Host = "iaas.example.com:443"
	if code, _, _ := h.do(t, req); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if got, _ := headerValue(h.proc.only(t).messages()[0].GetRequestHeaders(), ":authority"); got != "iaas.example.com" {
		t.Errorf(":authority %q", got)
	}
	if got := h.up.only(t).Host; got != "iaas.example.com" {
		t.Errorf("upstream Host %q", got)
	}
}

// Envoy answers Expect: 100-continue itself and drops the header; a client waiting for the
// 100 is not left hanging while the body is needed for BUFFERED processing.
func TestExpectContinueIsAnsweredByEnvoy(t *testing.T) {
	h := newHarness(t, signer(), nil)
	h.client.Transport.(*http.Transport).ExpectContinueTimeout = 10 * guard // a missing 100 would hit the client's guard
	req := h.newRequest(t, http.MethodPut, "/o", strings.NewReader("payload"))
	req.Header.Set("Expect", "100-continue")
	if code, _, _ := h.do(t, req); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if _, ok := headerValue(h.proc.only(t).messages()[0].GetRequestHeaders(), "expect"); ok {
		t.Error("expect header reached the processor")
	}
	if got := string(h.up.only(t).Body); got != "payload" {
		t.Errorf("upstream body %q", got)
	}
}

// The request goes upstream as Envoy's HTTP/1 codec writes it: host first, lowercase names,
// the router's timeout header, and framing decided from the header map.
func TestUpstreamWireFormat(t *testing.T) {
	tests := []struct {
		name     string
		request  string
		suppress bool
		want     []string // lines that must be present
		wantNot  []string
	}{
		{
			name:    "GET without body has no length",
			request: "GET /p?q=1 HTTP/1.1\r\nHost: h.example\r\nX-Custom: v\r\n\r\n",
			want:    []string{"GET /p?q=1 HTTP/1.1\r\nhost: h.example\r\n", "x-custom: v\r\n", "x-signed: headers\r\n", "x-envoy-expected-rq-timeout-ms: "},
			wantNot: []string{"content-length", "transfer-encoding", "user-agent", "accept-encoding"},
		},
		{
			name:     "POST without body gets content-length 0",
			request:  "POST /p HTTP/1.1\r\nHost: h.example\r\nContent-Length: 0\r\n\r\n",
			suppress: true,
			want:     []string{"content-length: 0\r\n"},
			wantNot:  []string{"x-envoy-expected-rq-timeout-ms", "transfer-encoding"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ru := startRawUpstream(t)
			h := newHarness(t, signer(), func(c *extproctest.Config) {
				c.Upstream = ru.ln.Addr().String()
				c.SuppressEnvoyHeaders = tt.suppress
			})
			if resp, _ := raw(t, h.envoy.Addr(), tt.request); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			checkUpstream(t, ru.next(t), tt.want, tt.wantNot)
		})
	}
}

// An absolute-form request target (a client using the gateway as an HTTP proxy) is split by
// the codec into :authority and :path, both as sent.
func TestAbsoluteFormRequestTarget(t *testing.T) {
	h := newHarness(t, signer(), nil)
	req := "GET http://objectstorage.example.com/n/a%2Fb?x=1 HTTP/1.1\r\nHost: ignored.example\r\n\r\n"
	if resp, _ := raw(t, h.envoy.Addr(), req); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	hh := h.proc.only(t).messages()[0].GetRequestHeaders()
	for k, want := range map[string]string{":authority": "objectstorage.example.com", ":path": "/n/a%2Fb?x=1", ":scheme": "http"} {
		if got, _ := headerValue(hh, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if up := h.up.only(t); up.Host != "objectstorage.example.com" || up.RequestURI != "/n/a%2Fb?x=1" {
		t.Errorf("upstream got %s for host %s", up.RequestURI, up.Host)
	}
}
