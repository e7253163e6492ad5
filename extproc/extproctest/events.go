package extproctest

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// This file is what Envoy does when something arrives on the stream: Filter::onReceiveMessage,
// onGrpcError, onGrpcClose and onMessageTimeout in ext_proc.cc, and the handle*Response
// methods of ProcessorState in processor_state.cc.

// errSpurious is absl::FailedPreconditionError: an answer Envoy was not waiting for.
type errSpurious string

func (e errSpurious) Error() string { return string(e) }

// errUnsupportedMsg is a valid message the stand-in does not implement.
type errUnsupportedMsg string

func (e errUnsupportedMsg) Error() string { return string(e) }

func (f *filter) onEvent(ev event) {
	switch {
	case ev.resp != nil:
		f.onMessage(ev.resp)
	case ev.code == codes.OK:
		f.onGrpcClose()
	default:
		f.onGrpcError(ev.code, ev.msg)
	}
}

func (f *filter) onMessage(resp *extprocv3.ProcessingResponse) {
	if f.complete {
		return // Envoy ignores messages once it is done with the stream
	}
	// A server asking for more time: nothing else in the message is looked at.
	if d := resp.GetOverrideMessageTimeout(); d != nil {
		f.onNewTimeout(d.AsDuration())
		return
	}
	if mo := resp.GetModeOverride(); mo != nil {
		f.onModeOverride(mo)
	}
	switch resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders, *extprocv3.ProcessingResponse_RequestBody,
		*extprocv3.ProcessingResponse_RequestTrailers, *extprocv3.ProcessingResponse_ResponseHeaders,
		*extprocv3.ProcessingResponse_ResponseBody, *extprocv3.ProcessingResponse_ResponseTrailers,
		*extprocv3.ProcessingResponse_ImmediateResponse:
		// Filter::onReceiveMessage takes the metadata before it handles the answer, so it
		// stays even when the answer then fails (a refused mutation, a spurious message).
		f.setDynamicMetadata(resp)
	}

	var err error
	switch m := resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		err = f.onRequestHeadersResponse(m.RequestHeaders)
	case *extprocv3.ProcessingResponse_RequestBody:
		err = f.onRequestBodyResponse(m.RequestBody)
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		err = f.onResponseHeadersResponse(m.ResponseHeaders)
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		f.e.stats.msgsReceived.Add(1)
		f.onImmediateResponse(m.ImmediateResponse)
		return
	case *extprocv3.ProcessingResponse_StreamedImmediateResponse:
		err = errUnsupportedMsg("streamed_immediate_response")
	case *extprocv3.ProcessingResponse_ResponseBody, *extprocv3.ProcessingResponse_RequestTrailers,
		*extprocv3.ProcessingResponse_ResponseTrailers:
		err = errSpurious("spurious message") // never asked for
	default:
		err = errSpurious("unhandled message")
	}

	var spurious errSpurious
	var unsupported errUnsupportedMsg
	switch {
	case err == nil:
		f.e.stats.msgsReceived.Add(1)
	case errors.As(err, &spurious):
		f.e.stats.spurious.Add(1)
		// ext_proc_fail_close_spurious_resp (on by default): spurious answers follow
		// failure_mode_allow.
		if f.cfg.FailureModeAllow {
			f.e.stats.failureModeAllowed.Add(1)
			f.dropProcessor()
		} else {
			f.handleErrorResponse(err, &f.e.stats.lrSpurious)
		}
	case errors.As(err, &unsupported):
		f.e.stats.msgsReceived.Add(1)
		f.unsupported(string(unsupported))
	default:
		f.e.stats.msgsReceived.Add(1)
		f.handleErrorResponse(err, &f.e.stats.lrMutation)
	}
	f.closeIfLastResponse(resp)
}

// setDynamicMetadata is Filter::setDynamicMetadata: each top-level field of the answer's
// dynamic_metadata whose name is a receiving namespace is merged, as a Struct, into the
// request's metadata under that name (StreamInfo::setDynamicMetadata: MergeFrom, so a later
// answer replaces the fields it names and keeps the others); other fields are dropped.
func (f *filter) setDynamicMetadata(resp *extprocv3.ProcessingResponse) {
	md := resp.GetDynamicMetadata()
	if md == nil || len(f.cfg.ReceivingNamespaces) == 0 {
		return
	}
	for name, v := range md.GetFields() {
		if !slices.Contains(f.cfg.ReceivingNamespaces, name) {
			continue
		}
		if f.dynMeta == nil {
			f.dynMeta = map[string]*structpb.Struct{}
		}
		dst, ok := f.dynMeta[name]
		if !ok {
			dst = &structpb.Struct{}
			f.dynMeta[name] = dst
		}
		if s := v.GetStructValue(); s != nil {
			proto.Merge(dst, s)
		}
	}
}

// onModeOverride: honoured only when allow_mode_override, while a headers answer is pending,
// without FULL_DUPLEX_STREAMED configured, and (with allowed_override_modes) only if the
// effective mode is in the list.
func (f *filter) onModeOverride(mo *extprocfilterv3.ProcessingMode) {
	cfg := f.cfg.mode
	if !f.cfg.AllowModeOverride || (f.cb != cbRequestHeaders && f.cb != cbResponseHeaders) ||
		cfg.GetRequestBodyMode() == extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED ||
		cfg.GetResponseBodyMode() == extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED {
		f.e.stats.overridesIgnored.Add(1)
		return
	}
	eff := effectiveModeOverride(mo, cfg)
	if !overrideAllowed(eff, f.cfg.AllowedOverrideModes) {
		f.e.logf("extproctest: mode_override %v not in allowed_override_modes", eff)
		f.e.stats.overridesIgnored.Add(1)
		return
	}
	f.dec, f.enc = decodingState(eff), encodingState(eff)
	f.e.stats.overridesHonoured.Add(1)
}

func (f *filter) onRequestHeadersResponse(hr *extprocv3.HeadersResponse) error {
	if f.cb != cbRequestHeaders {
		return errSpurious("spurious message")
	}
	common := hr.GetResponse()
	replace := common.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE
	if m := common.GetHeaderMutation(); m != nil {
		if err := applyHeaderMutations(m, f.reqHeaders, replace, f.cfg.checker,
			f.dec.shouldRemoveContentLength(), &f.e.stats.rejectedMutations); err != nil {
			return err
		}
	}
	f.clearRouteCache(common)
	f.finishCall()
	if replace {
		// The answer is final for the request: its body mutation replaces the body (and
		// Content-Length goes), and nothing more is sent to the processor.
		if bm := common.GetBodyMutation(); bm != nil {
			f.reqHeaders.remove("content-length")
			f.bodyReplaced = true
			f.buf = applyBodyMutation(bm, f.buf)
		}
		f.dec.bodyMode = extprocfilterv3.ProcessingMode_NONE
		f.dec.sendTrailers = false
		return nil
	}
	if !f.hasBody {
		return nil
	}
	if f.bodyDone && f.dec.bodyMode != extprocfilterv3.ProcessingMode_NONE {
		if f.dec.bodyMode == extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED {
			return errUnsupportedMsg("request_body_mode FULL_DUPLEX_STREAMED")
		}
		// The whole body came in while the answer was pending: whatever the body mode,
		// Envoy sends it now as one buffered message.
		f.sendBody()
	}
	return nil
}

func (f *filter) onRequestBodyResponse(br *extprocv3.BodyResponse) error {
	if f.cb != cbRequestBody {
		return errSpurious("spurious message")
	}
	common := br.GetResponse()
	replace := common.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE
	if m := common.GetHeaderMutation(); m != nil && f.reqHeadersSent {
		if err := applyHeaderMutations(m, f.reqHeaders, replace, f.cfg.checker,
			f.dec.shouldRemoveContentLength(), &f.e.stats.rejectedMutations); err != nil {
			return err
		}
	}
	if bm := common.GetBodyMutation(); bm != nil {
		// ProcessorState::validateContentLength: in BUFFERED mode Content-Length is kept,
		// so it has to match the new body.
		if cl, ok := f.reqHeaders.get("content-length"); ok && f.reqHeadersSent {
			if n, err := strconv.ParseUint(cl, 10, 64); err == nil && n != uint64(len(bm.GetBody())) {
				return errMutation("mismatch between content length and the length of the mutated body")
			}
		}
		f.buf = applyBodyMutation(bm, f.buf)
	}
	f.clearRouteCache(common)
	f.finishCall()
	f.bodyAnswered = true
	return nil
}

func (f *filter) onResponseHeadersResponse(hr *extprocv3.HeadersResponse) error {
	if f.cb != cbResponseHeaders {
		return errSpurious("spurious message")
	}
	common := hr.GetResponse()
	replace := common.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE
	if m := common.GetHeaderMutation(); m != nil {
		if err := applyHeaderMutations(m, f.respHeaders, replace, f.cfg.checker,
			f.enc.shouldRemoveContentLength(), &f.e.stats.rejectedMutations); err != nil {
			return err
		}
	}
	f.finishCall()
	f.respHeadersAnswered = true
	if replace {
		if bm := common.GetBodyMutation(); bm != nil {
			f.respHeaders.remove("content-length")
			f.respBodyReplaced = true
			f.respBody = applyBodyMutation(bm, nil)
		}
		f.enc.bodyMode = extprocfilterv3.ProcessingMode_NONE
		f.enc.sendTrailers = false
	}
	return nil
}

// onImmediateResponse: the processor answers the client itself. Envoy stops processing,
// closes the stream and sends a local reply; a status below 200 (or none) becomes 200.
func (f *filter) onImmediateResponse(ir *extprocv3.ImmediateResponse) {
	f.e.stats.immediate.Add(1)
	f.finishCall()
	f.closeStreamMaybeGraceful()
	status := http.StatusOK
	if ir.GetStatus() != nil {
		status = int(ir.GetStatus().GetCode())
	}
	if status < 200 {
		status = http.StatusOK
	}
	f.setReply(&localReply{
		status:   status,
		body:     ir.GetBody(),
		mutation: ir.GetHeaders(),
		details:  ir.GetDetails(),
	}, nil)
}

// handleErrorResponse is Filter::handleErrorResponse: a local reply with status_on_error.
func (f *filter) handleErrorResponse(err error, counter interface{ Add(int64) int64 }) {
	f.complete = true
	f.finishCall()
	f.closeStream()
	f.setReply(&localReply{status: f.cfg.StatusOnError, details: err.Error()}, counter)
}

// dropProcessor is onGrpcCloseWithStatus and the failure-mode-allow branches: Envoy stops
// using the processor and lets the request continue as it is.
func (f *filter) dropProcessor() {
	if f.moreExpected() {
		f.e.stats.continuedUnprocessed.Add(1)
	}
	f.complete = true
	f.closeStream()
	f.finishCall()
}

func (f *filter) onGrpcError(code codes.Code, msg string) {
	f.e.stats.streamsFailed.Add(1)
	if f.complete {
		return
	}
	if f.cfg.FailureModeAllow {
		f.e.stats.failureModeAllowed.Add(1)
		f.dropProcessor()
		return
	}
	f.complete = true
	f.finishCall()
	f.closeStream()
	f.setReply(&localReply{
		status:  f.cfg.StatusOnError,
		details: fmt.Sprintf("ext_proc_error_gRPC_error_%d{%s}", int(code), msg),
	}, &f.e.stats.lrGRPC)
}

// onGrpcClose is Filter::onGrpcCloseWithStatus: the server ended the stream with OK while
// Envoy still held it. Envoy stops using the processor and lets the request continue as it
// is. Before the last answer Envoy needs, that is the trap a server must not fall into (the
// rest goes through unprocessed). After it (the stream of a BUFFERED body stays open until
// the upstream response headers, closeGrpcStreamIfLastRespReceived never closes it) nothing
// is left to process and the close is harmless; a close after the last answer of a bodiless
// request never arrives, as Envoy closed that stream itself.
func (f *filter) onGrpcClose() {
	if f.complete {
		return
	}
	if f.moreExpected() {
		f.e.stats.closedOKEarly.Add(1)
	} else {
		f.e.stats.closedOKAfterLastAnswer.Add(1)
	}
	f.dropProcessor()
}

func (f *filter) onMessageTimeout() {
	f.e.stats.timeouts.Add(1)
	if f.cfg.FailureModeAllow {
		f.e.stats.failureModeAllowed.Add(1)
		f.dropProcessor()
		return
	}
	f.complete = true
	f.closeStream()
	f.finishCall()
	f.setReply(&localReply{
		status:  http.StatusGatewayTimeout,
		details: "ext_proc_error_per-message_timeout_exceeded",
	}, &f.e.stats.lrTimeout)
}

// onNewTimeout is Filter::onNewTimeout: within [1ms, max_message_timeout] and only once per
// pending message, the timer restarts with the new value.
func (f *filter) onNewTimeout(d time.Duration) {
	if d < time.Millisecond || d > f.cfg.MaxMessageTimeout || f.timerC == nil || f.timerRestarted {
		f.e.stats.timeoutOverrideIgnored.Add(1)
		return
	}
	f.timer.Stop()
	f.timer = time.NewTimer(d)
	f.timerC = f.timer.C
	f.timerRestarted = true
	f.e.stats.timeoutOverrideReceived.Add(1)
}

// closeIfLastResponse is closeGrpcStreamIfLastRespReceived (runtime flag
// ext_proc_stream_close_optimization, on by default): once the answer just handled was
// the last one Envoy needs, it closes the stream right away. A buffered body's answer never
// counts as last; that stream is closed when the upstream response headers arrive.
func (f *filter) closeIfLastResponse(resp *extprocv3.ProcessingResponse) {
	if !f.sessOpen {
		return
	}
	last := false
	switch resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		last = (!f.hasBody || (f.dec.bodyMode == extprocfilterv3.ProcessingMode_NONE && !f.dec.sendTrailers)) &&
			f.enc.noExternalProcess()
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		last = f.respNoBody || (f.enc.bodyMode == extprocfilterv3.ProcessingMode_NONE && !f.enc.sendTrailers)
	}
	if last {
		f.closeStreamMaybeGraceful()
	}
}
