package extproctest

import (
	"strconv"
	"strings"
	"unicode"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// localReply is a response Envoy makes up itself (sendLocalReply, source/common/http/utility.cc
// Utility::sendLocalReply and Filter::sendImmediateResponse): nothing goes upstream, or what
// came back from it is dropped.
type localReply struct {
	status   int
	body     []byte
	mutation *extprocv3.HeaderMutation // an ImmediateResponse's headers
	headers  map[string]string         // a direct_response's response_headers_to_add
	details  string                    // %RESPONSE_CODE_DETAILS%
}

// sendLocalReply writes f.reply. An ImmediateResponse's header mutation goes through the
// filter's mutation rules; a failure there is only logged and stops the remaining mutations,
// the reply is sent anyway. A non-empty body gets content-length and, unless the processor
// set one, content-type: text/plain.
func (f *filter) sendLocalReply() {
	lr := f.reply
	h := &headerList{}
	h.insert(":status", strconv.Itoa(lr.status))
	if lr.mutation != nil {
		if err := applyHeaderMutations(lr.mutation, h, false, f.cfg.checker, false, &f.e.stats.rejectedMutations); err != nil {
			f.e.logf("extproctest: immediate response mutations failed with %v", err)
		}
	}
	if len(lr.body) > 0 {
		h.set("content-length", strconv.Itoa(len(lr.body)))
		if !h.has("content-type") {
			h.set("content-type", "text/plain")
		}
	}
	for k, v := range lr.headers {
		h.set(strings.ToLower(k), v) // OVERWRITE_IF_EXISTS_OR_ADD
	}
	f.observeResponse(h, len(lr.body) == 0)
	finishResponseHeaders(h, f.closesConnection(h))
	f.logRespHeaders = h
	f.status = writeResponseHeaders(f.w, h)
	f.wrote = true
	if len(lr.body) > 0 {
		_, _ = f.w.Write(lr.body)
	}
	// StringUtil::replaceAllEmptySpace
	f.details = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return '_'
		}
		return r
	}, lr.details)
}
