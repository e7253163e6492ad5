package extproc

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// requestHeaders is a read-only view of the headers Envoy sent, pseudo-
// headers split out. Envoy puts values in raw_value; value is read only when
// raw_value is empty, for processors driven by older Envoys.
type requestHeaders struct {
	method, path, authority string
	list                    []*corev3.HeaderValue
}

func parseHeaders(m *corev3.HeaderMap) requestHeaders {
	h := requestHeaders{list: m.GetHeaders()}
	for _, hv := range h.list {
		switch hv.GetKey() {
		case ":method":
			h.method = headerValue(hv)
		case ":path":
			h.path = headerValue(hv)
		case ":authority":
			h.authority = headerValue(hv)
		}
	}
	return h
}

func headerValue(hv *corev3.HeaderValue) string {
	if len(hv.RawValue) > 0 {
		return string(hv.RawValue)
	}
	return hv.Value
}

// Get implements signer.Header. Envoy sends names lower-case.
func (h requestHeaders) Get(name string) (string, bool) {
	for _, hv := range h.list {
		if hv.GetKey() == name {
			return headerValue(hv), true
		}
	}
	return "", false
}

func (h requestHeaders) has(name string) bool {
	_, ok := h.Get(name)
	return ok
}

// count is how many times the request carries name.
func (h requestHeaders) count(name string) int {
	n := 0
	for _, hv := range h.list {
		if hv.GetKey() == name {
			n++
		}
	}
	return n
}

// logPath is the path with query values elided: query values can carry
// identifiers an operator's logs need not keep, the names say enough.
func logPath(target string) string {
	path, query, ok := strings.Cut(target, "?")
	if !ok {
		return path
	}
	var b strings.Builder
	b.WriteString(path)
	b.WriteByte('?')
	for i, kv := range strings.Split(query, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		k, _, hasValue := strings.Cut(kv, "=")
		b.WriteString(k)
		if hasValue {
			b.WriteString("=…")
		}
	}
	return b.String()
}
