package extproctest

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// headerList is Envoy's HeaderMapImpl reduced to what ext_proc observes: an ordered list of
// lowercase names and values in which pseudo-headers come first, a set replaces the first
// occurrence only, and adding to an "inline" header appends to its value with a comma
// (source/common/http/header_map_impl.cc).
type headerList struct {
	kv []headerKV
}

type headerKV struct {
	key, value string
}

// inlineHeaders are the O(1) headers of Envoy's request and response header maps
// (INLINE_REQ_*, INLINE_REQ_RESP_* and INLINE_RESP_* in source/common/http/headers.h).
// Duplicates of these are coalesced into one comma-joined value; all other names keep one
// entry per occurrence.
var inlineHeaders = map[string]bool{
	// request
	"x-client-trace-id": true, "x-envoy-downstream-service-cluster": true,
	"x-envoy-downstream-service-node": true, "x-envoy-external-address": true,
	"x-envoy-force-trace": true, "x-envoy-hedge-on-per-try-timeout": true,
	"x-envoy-internal": true, "x-envoy-ip-tags": true, "x-envoy-retry-on": true,
	"x-envoy-retry-grpc-on": true, "x-envoy-retriable-status-codes": true,
	"x-envoy-retriable-header-names": true, "x-envoy-original-path": true,
	"x-envoy-original-url": true, "x-envoy-upstream-alt-stat-name": true,
	"x-envoy-upstream-rq-timeout-alt-response": true, "expect": true,
	"x-forwarded-client-cert": true, "x-forwarded-for": true, "x-forwarded-host": true,
	"x-forwarded-proto": true, "grpc-timeout": true, ":authority": true, ":method": true,
	":path": true, ":protocol": true, ":scheme": true, "te": true, "user-agent": true,
	"x-envoy-expected-rq-timeout-ms": true, "x-envoy-max-retries": true,
	"x-envoy-upstream-rq-timeout-ms": true, "x-envoy-upstream-rq-per-try-timeout-ms": true,
	"x-envoy-upstream-stream-duration-ms": true,
	// request and response
	"connection": true, "content-type": true, "x-envoy-decorator-operation": true,
	"keep-alive": true, "proxy-connection": true, "proxy-status": true, "x-request-id": true,
	"transfer-encoding": true, "upgrade": true, "via": true, "content-length": true,
	"x-envoy-attempt-count": true,
	// response
	"date": true, "x-envoy-degraded": true, "x-envoy-immediate-health-check-fail": true,
	"x-envoy-ratelimited": true, "x-envoy-upstream-canary": true,
	"x-envoy-upstream-healthchecked-cluster": true, "location": true, "server": true,
	"x-envoy-upstream-service-time": true, ":status": true,
}

func (h *headerList) get(key string) (string, bool) {
	for _, kv := range h.kv {
		if kv.key == key {
			return kv.value, true
		}
	}
	return "", false
}

func (h *headerList) has(key string) bool {
	_, ok := h.get(key)
	return ok
}

// set is HeaderMapImpl::setCopy: replace the first occurrence, or add.
func (h *headerList) set(key, value string) {
	for i := range h.kv {
		if h.kv[i].key == key {
			h.kv[i].value = value
			return
		}
	}
	h.insert(key, value)
}

// add is HeaderMapImpl::addCopy: an inline header that exists gets ",value" appended, any
// other name gets a new entry.
func (h *headerList) add(key, value string) {
	if inlineHeaders[key] {
		for i := range h.kv {
			if h.kv[i].key == key {
				h.kv[i].value += "," + value
				return
			}
		}
	}
	h.insert(key, value)
}

// insert appends, keeping pseudo-headers ahead of the others as Envoy does.
func (h *headerList) insert(key, value string) {
	if strings.HasPrefix(key, ":") {
		i := 0
		for i < len(h.kv) && strings.HasPrefix(h.kv[i].key, ":") {
			i++
		}
		h.kv = append(h.kv, headerKV{})
		copy(h.kv[i+1:], h.kv[i:])
		h.kv[i] = headerKV{key, value}
		return
	}
	h.kv = append(h.kv, headerKV{key, value})
}

// remove deletes every occurrence.
func (h *headerList) remove(key string) {
	out := h.kv[:0]
	for _, kv := range h.kv {
		if kv.key != key {
			out = append(out, kv)
		}
	}
	h.kv = out
}

// byteSize is HeaderMapImpl::byteSize: the sum of name and value lengths.
func (h *headerList) byteSize() int {
	n := 0
	for _, kv := range h.kv {
		n += len(kv.key) + len(kv.value)
	}
	return n
}

// toProto is MutationUtils::headersToProto with send_header_raw_value: bytes in raw_value,
// value left empty.
func (h *headerList) toProto() *corev3.HeaderMap {
	out := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 0, len(h.kv))}
	for _, kv := range h.kv {
		out.Headers = append(out.Headers, &corev3.HeaderValue{Key: kv.key, RawValue: []byte(kv.value)})
	}
	return out
}

// isTokenChar reports an RFC 9110 tchar, the alphabet Envoy's headerNameIsValid accepts
// (uppercase included, HTTP/1 semantics).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// headerNameIsValid is HeaderUtility::headerNameIsValid: an optional leading ':' then a
// non-empty token.
func headerNameIsValid(name string) bool {
	name = strings.TrimPrefix(name, ":")
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isTokenChar(name[i]) {
			return false
		}
	}
	return true
}

// headerValueIsValid is HeaderUtility::headerValueIsValid (oghttp2's IsValidHeaderValue
// with obs-text allowed): tab, visible ASCII, space and bytes 0x80-0xff.
func headerValueIsValid(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\t' || (c >= 0x20 && c < 0x7f) || c >= 0x80 {
			continue
		}
		return false
	}
	return true
}
