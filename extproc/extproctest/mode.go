package extproctest

import (
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
)

// This file follows ProcessorState's mode handling (processor_state.cc, processor_state.h)
// and the mode_override checks of Filter::onReceiveMessage (ext_proc.cc).

type pm = extprocfilterv3.ProcessingMode

// dirState is what one direction (decoding: the request, encoding: the response) of the
// filter will send to the processor.
type dirState struct {
	sendHeaders  bool
	sendTrailers bool
	bodyMode     extprocfilterv3.ProcessingMode_BodySendMode
}

// decodingState is DecodingProcessorState::setProcessingModeInternal: headers are sent
// unless SKIP (DEFAULT means SEND), trailers only when SEND.
func decodingState(m *pm) dirState {
	return dirState{
		sendHeaders:  m.GetRequestHeaderMode() != extprocfilterv3.ProcessingMode_SKIP,
		sendTrailers: m.GetRequestTrailerMode() == extprocfilterv3.ProcessingMode_SEND,
		bodyMode:     m.GetRequestBodyMode(),
	}
}

// encodingState is EncodingProcessorState::setProcessingModeInternal.
func encodingState(m *pm) dirState {
	return dirState{
		sendHeaders:  m.GetResponseHeaderMode() != extprocfilterv3.ProcessingMode_SKIP,
		sendTrailers: m.GetResponseTrailerMode() == extprocfilterv3.ProcessingMode_SEND,
		bodyMode:     m.GetResponseBodyMode(),
	}
}

// allDisabledMode is what ExtProcPerRoute.disabled turns the filter into.
func allDisabledMode() *pm {
	return &pm{
		RequestHeaderMode:  extprocfilterv3.ProcessingMode_SKIP,
		ResponseHeaderMode: extprocfilterv3.ProcessingMode_SKIP,
	}
}

// shouldRemoveContentLength is ProcessorState::shouldRemoveContentLength: in these modes a
// later body change could not be reflected, so Envoy drops Content-Length (and HTTP/1 goes
// chunked). BUFFERED with headers sent keeps it: the processor must keep it right.
func (d dirState) shouldRemoveContentLength() bool {
	switch d.bodyMode {
	case extprocfilterv3.ProcessingMode_STREAMED, extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED,
		extprocfilterv3.ProcessingMode_BUFFERED_PARTIAL:
		return true
	case extprocfilterv3.ProcessingMode_BUFFERED:
		return !d.sendHeaders
	}
	return false
}

// noExternalProcess is EncodingProcessorState::noExternalProcess.
func (d dirState) noExternalProcess() bool {
	return !d.sendHeaders && !d.sendTrailers && d.bodyMode == extprocfilterv3.ProcessingMode_NONE
}

// effectiveModeOverride: DEFAULT header and trailer modes in a mode_override keep the
// filter's configured ones; body modes are always taken as sent (an unset one is NONE).
func effectiveModeOverride(target, configured *pm) *pm {
	out := &pm{
		RequestHeaderMode:   configured.GetRequestHeaderMode(),
		ResponseHeaderMode:  configured.GetResponseHeaderMode(),
		RequestTrailerMode:  configured.GetRequestTrailerMode(),
		ResponseTrailerMode: configured.GetResponseTrailerMode(),
		RequestBodyMode:     target.GetRequestBodyMode(),
		ResponseBodyMode:    target.GetResponseBodyMode(),
	}
	if v := target.GetRequestHeaderMode(); v != extprocfilterv3.ProcessingMode_DEFAULT {
		out.RequestHeaderMode = v
	}
	if v := target.GetResponseHeaderMode(); v != extprocfilterv3.ProcessingMode_DEFAULT {
		out.ResponseHeaderMode = v
	}
	if v := target.GetRequestTrailerMode(); v != extprocfilterv3.ProcessingMode_DEFAULT {
		out.RequestTrailerMode = v
	}
	if v := target.GetResponseTrailerMode(); v != extprocfilterv3.ProcessingMode_DEFAULT {
		out.ResponseTrailerMode = v
	}
	return out
}

// overrideAllowed: with allowed_override_modes set, the effective override must equal one
// entry field by field, request_header_mode excepted. Entries are compared as written, so an
// entry that leaves response_header_mode unset (DEFAULT) never matches an effective mode
// whose response_header_mode is SKIP.
func overrideAllowed(eff *pm, allowed []*pm) bool {
	if len(allowed) == 0 {
		return true
	}
	for _, a := range allowed {
		if eff.GetRequestBodyMode() == a.GetRequestBodyMode() &&
			eff.GetRequestTrailerMode() == a.GetRequestTrailerMode() &&
			eff.GetResponseHeaderMode() == a.GetResponseHeaderMode() &&
			eff.GetResponseBodyMode() == a.GetResponseBodyMode() &&
			eff.GetResponseTrailerMode() == a.GetResponseTrailerMode() {
			return true
		}
	}
	return false
}
