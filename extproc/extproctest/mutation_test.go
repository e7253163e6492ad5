package extproctest_test

import (
	"net/http"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

func answerHeadersWith(m *extprocv3.HeaderMutation) func(*procStream) error {
	return respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if req.GetRequestHeaders() != nil {
			return headersResp(m)
		}
		return nil
	})
}

// A mutation the rules refuse is skipped silently, unless disallow_is_error turns it into
// a failed request (status_on_error) that never goes upstream.
func TestDisallowedMutations(t *testing.T) {
	tests := []struct {
		name            string
		disallowIsError bool
		mutation        *extprocv3.HeaderMutation
		wantCode        int
		wantDetails     string
	}{
		{
			name:     "host ignored",
			mutation: setHeaders("host", "evil.example", "x-signed", "1"),
			wantCode: http.StatusOK,
		},
		{
			name:            "host with disallow_is_error",
			disallowIsError: true,
			mutation:        setHeaders("host", "evil.example", "x-signed", "1"),
			wantCode:        http.StatusInternalServerError,
			wantDetails:     "Invalid_attempt_to_modify_host",
		},
		{
			name:            ":authority with disallow_is_error",
			disallowIsError: true,
			mutation:        setHeaders(":authority", "evil.example"),
			wantCode:        http.StatusInternalServerError,
			wantDetails:     "Invalid_attempt_to_modify_:authority",
		},
		{
			name:            "x-envoy header with disallow_is_error",
			disallowIsError: true,
			mutation:        setHeaders("x-envoy-original-path", "/x"),
			wantCode:        http.StatusInternalServerError,
			wantDetails:     "Invalid_attempt_to_modify_x-envoy-original-path",
		},
		{
			name:            "removing :path with disallow_is_error",
			disallowIsError: true,
			mutation:        &extprocv3.HeaderMutation{RemoveHeaders: []string{":path"}},
			wantCode:        http.StatusInternalServerError,
			wantDetails:     "Invalid_attempt_to_remove_:path",
		},
		{
			name:        "invalid value fails even without disallow_is_error",
			mutation:    setHeaders("x-signed", "a\nb"),
			wantCode:    http.StatusInternalServerError,
			wantDetails: "Invalid_character_in_set_headers_mutation.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, answerHeadersWith(tt.mutation), func(c *extproctest.Config) {
				c.DisallowIsError = tt.disallowIsError
			})
			req := h.newRequest(t, http.MethodGet, "/p", nil)
			req.Host = "orig.example"
			code, _, _ := h.do(t, req)
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d", code, tt.wantCode)
			}
			st := h.envoy.Stats()
			if st.RejectedHeaderMutations != 1 {
				t.Errorf("RejectedHeaderMutations %d", st.RejectedHeaderMutations)
			}
			if tt.wantCode != http.StatusOK {
				if n := len(h.up.requests()); n != 0 {
					t.Errorf("upstream got %d requests", n)
				}
				if st.LocalRepliesMutation != 1 {
					t.Errorf("LocalRepliesMutation %d", st.LocalRepliesMutation)
				}
				if d := h.logs.last(t).ResponseCodeDetails; d != tt.wantDetails {
					t.Errorf("details %q, want %q", d, tt.wantDetails)
				}
				return
			}
			up := h.up.only(t)
			if up.Host != "orig.example" || up.Header.Get("X-Signed") != "1" {
				t.Errorf("upstream Host %q, x-signed %q", up.Host, up.Header.Get("X-Signed"))
			}
		})
	}
}

// Allowed mutations reach the upstream: set overwrites, :path rewrites the target, remove
// drops, append adds, and a value given in `value` instead of `raw_value` arrives empty.
func TestAllowedMutationsReachUpstream(t *testing.T) {
	m := setHeaders("authorization", "Signature sig", ":path", "/rewritten?q=1", "x-overwrite", "new")
	m.RemoveHeaders = []string{"x-oci-route"}
	m.SetHeaders = append(m.SetHeaders,
		//lint:ignore SA1019 the field ext_proc reads (see mutation.go).
		&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-list", RawValue: []byte("b")}, Append: boolValue(true)},
		&corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-value-only", Value: "lost"}},
	)
	h := newHarness(t, answerHeadersWith(m), nil)
	req := h.newRequest(t, http.MethodGet, "/original", nil)
	req.Header.Set("X-Oci-Route", "example")
	req.Header.Set("X-Overwrite", "old")
	req.Header.Set("X-List", "a")
	if code, _, _ := h.do(t, req); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	up := h.up.only(t)
	if up.RequestURI != "/rewritten?q=1" {
		t.Errorf("upstream target %q", up.RequestURI)
	}
	checks := map[string][]string{
		"Authorization": {"Signature sig"},
		"X-Overwrite":   {"new"},
		"X-List":        {"a", "b"},
		"X-Value-Only":  {""},
		"X-Oci-Route":   nil,
	}
	for k, want := range checks {
		got := up.Header.Values(k)
		if len(got) != len(want) {
			t.Errorf("%s = %q, want %q", k, got, want)
			continue
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
	}
}

// An ImmediateResponse becomes the client's reply (status, headers, body; details in the
// access log) and nothing goes upstream.
func TestImmediateResponseIsRelayed(t *testing.T) {
	tests := []struct {
		name     string
		code     typev3.StatusCode
		wantCode int
	}{
		{"with a status", typev3.StatusCode_Forbidden, http.StatusForbidden},
		{"without a valid status", typev3.StatusCode_Empty, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if req.GetRequestHeaders() == nil {
					return nil
				}
				return immediate(tt.code, `{"code":"NotAuthorized"}`, "signer refused",
					setHeaders("content-type", "application/json", "x-reason", "no credentials"))
			})
			h := newHarness(t, answer, nil)
			code, hdr, body := h.do(t, h.newRequest(t, http.MethodPost, "/x", nil))
			if code != tt.wantCode || body != `{"code":"NotAuthorized"}` {
				t.Fatalf("got %d %q", code, body)
			}
			if hdr.Get("Content-Type") != "application/json" || hdr.Get("X-Reason") != "no credentials" || hdr.Get("Server") != "envoy" {
				t.Errorf("headers %v", hdr)
			}
			if n := len(h.up.requests()); n != 0 {
				t.Errorf("upstream got %d requests", n)
			}
			if d := h.logs.last(t).ResponseCodeDetails; d != "signer_refused" {
				t.Errorf("details %q", d)
			}
			if st := h.envoy.Stats(); st.ImmediateResponses != 1 {
				t.Errorf("ImmediateResponses %d", st.ImmediateResponses)
			}
		})
	}
}

// With response_header_mode SEND the processor sees the upstream response headers and may
// change them.
func TestResponseHeadersAreProcessedWhenSent(t *testing.T) {
	answer := respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		switch {
		case req.GetRequestHeaders() != nil:
			return headersResp(nil)
		case req.GetResponseHeaders() != nil:
			if v, _ := headerValue(req.GetResponseHeaders(), ":status"); v != "200" {
				return nil
			}
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
				ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
					HeaderMutation: setHeaders("x-from-processor", "yes")}}}}
		}
		return nil
	})
	h := newHarness(t, answer, func(c *extproctest.Config) {
		m := mode(0)
		m.ResponseHeaderMode = 1 // SEND
		c.ProcessingMode = m
	})
	code, hdr, body := h.do(t, h.newRequest(t, http.MethodGet, "/", nil))
	if code != http.StatusOK || hdr.Get("X-From-Processor") != "yes" || body != "upstream ok" {
		t.Fatalf("got %d %v %q", code, hdr, body)
	}
	msgs := h.proc.only(t).messages()
	if len(msgs) != 2 || msgs[1].GetResponseHeaders() == nil {
		t.Fatalf("messages %v", msgs)
	}
}
