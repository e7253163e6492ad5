package extproctest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// filter is one request's pass through the ext_proc filter (Filter and its two
// ProcessorStates in source/extensions/filters/http/ext_proc/ext_proc.cc and
// processor_state.cc). Envoy runs it on an event loop; here it runs on the request's
// goroutine and waits on channels: answers from the processor, the message timer, the
// downstream body and the client going away.
type filter struct {
	e     *Envoy
	cfg   *settings
	w     http.ResponseWriter
	r     *http.Request
	rc    *http.ResponseController
	ctx   context.Context
	stop  func()
	start time.Time

	reqHeaders  *headerList
	respHeaders *headerList
	hasBody     bool // the request did not end with its headers (!no_body_)
	respNoBody  bool

	dsBody   *downstreamBody
	pump     *pump
	buf      []byte // the buffered request body
	bodyDone bool   // the whole request body is in buf

	// proc is the state of the ext_proc filter running now: each filter of the chain
	// (Config.Before, then Config's) starts from a fresh one.
	proc
	obs []*observer // the filters of Config.After (observe.go)

	route         Route // the cached route (ActiveStream::cached_route_)
	routeCleared  bool  // ext_proc cleared the route cache: the next look-up matches again
	upstreamAddr  string
	routeDeadline time.Time // when the route timeout runs out, once it runs

	exchange   *exchange
	relayed100 bool // written by the upstream reader while the handler waits for it
	reply      *localReply
	gone       bool // the client went away: no response at all

	// access log
	dynMeta        map[string]*structpb.Struct
	logRespHeaders *headerList
	status         int
	details        string
	upstreamCalled bool
	wrote          bool
	abort          bool // the relayed response broke off: reset the client connection

	readInterrupted bool // a read of the client's body was cut off (stopBodyReads)
}

// proc is one ext_proc filter's part of a request: its stream, its callback state and
// timer, and what it has sent and been answered (Filter and its ProcessorStates).
type proc struct {
	dec, enc           dirState
	reqHeadersSent     bool // headers_ is set: body answers may mutate the request headers
	sess               *session
	sessOpen           bool
	complete           bool // processing_complete_: the processor is ignored from now on
	cb                 callbackState
	timer              *time.Timer
	timerC             <-chan time.Time
	timerRestarted     bool // new_timeout_received_
	protocolConfigSent bool

	bodySent     bool
	bodyAnswered bool
	bodyReplaced bool // CONTINUE_AND_REPLACE with a body mutation on the request headers

	respBodyReplaced    bool
	respBody            []byte
	respHeadersAnswered bool
}

type callbackState int

const (
	cbIdle callbackState = iota
	cbRequestHeaders
	cbRequestBody
	cbResponseHeaders
)

func newFilter(e *Envoy, w http.ResponseWriter, r *http.Request) *filter {
	ctx, cancel := context.WithCancel(r.Context())
	stopAfter := context.AfterFunc(e.baseCtx, cancel)
	f := &filter{
		e:      e,
		cfg:    e.cfg,
		w:      w,
		r:      r,
		rc:     http.NewResponseController(w),
		ctx:    ctx,
		start:  time.Now(),
		dsBody: newDownstreamBody(r.Body),
	}
	f.stop = func() { stopAfter(); cancel() }
	// Envoy reads the request and writes the response independently; net/http needs to be
	// told, or reading the body after the response started would fail.
	_ = f.rc.EnableFullDuplex()
	return f
}

func (f *filter) serve() {
	r := f.r
	if r.ProtoMajor == 1 && r.ProtoMinor == 0 && !f.cfg.AcceptHTTP10 {
		// http_protocol_options.accept_http_10 is off by default (http1/codec_impl.cc
		// ServerConnectionImpl::checkProtocolVersion), whatever the method.
		f.reply = &localReply{status: http.StatusUpgradeRequired, details: "low_version"}
		f.sendLocalReply()
		return
	}
	if isUpgrade(r) {
		f.reply = &localReply{status: http.StatusForbidden, details: "upgrade_failed"}
		f.sendLocalReply()
		return
	}
	h, err := requestHeaders(r, f.cfg.StripAnyHostPort, f.cfg.Proxy100Continue)
	if err != nil {
		f.reply = &localReply{status: http.StatusRequestHeaderFieldsTooLarge, details: "http1.too_many_headers"}
		f.sendLocalReply()
		return
	}
	f.reqHeaders = h
	f.hasBody = hasBody(r)
	if r.Method == http.MethodConnect {
		f.serveConnect() // connect.go
		return
	}
	// ActiveStream::decodeHeaders matches the route before the filters run.
	f.route = f.matchRoute()
	if expectsContinue(r) && !f.cfg.Proxy100Continue {
		// Envoy answers 100 Continue as soon as it has the headers; net/http would wait
		// for the first body read.
		_, _ = r.Body.Read(nil)
	}

	f.decodeChain()
	switch {
	case f.gone:
	case f.reply != nil:
		f.sendLocalReply()
	default:
		f.forward()
	}
}

// stopBodyReads makes later reads of the client's body fail and interrupts one in progress.
func (f *filter) stopBodyReads() {
	if f.dsBody.stop() {
		_ = f.rc.SetReadDeadline(time.Now())
		f.readInterrupted = true
	}
}

// delayedCloseTimeout is the connection manager's delayed_close_timeout default (1000 ms).
const delayedCloseTimeout = time.Second

// cleanup is Filter::onDestroy plus releasing what net/http must not see used after
// ServeHTTP returns.
func (f *filter) cleanup() {
	f.finishCall()
	if f.sessOpen {
		f.closeStreamMaybeGraceful()
	}
	f.observeDone()
	if f.wrote {
		_ = f.rc.Flush() // the client gets its answer before we wait on its body below
	}
	if f.pump != nil {
		f.pump.abandon()
	}
	f.stopBodyReads()
	if f.pump != nil {
		<-f.pump.done
	}
	if f.readInterrupted {
		// Nothing reads the body any more (the pump is done, the upstream writer was waited
		// for). The response said connection: close (closesConnection); Envoy closes with
		// FlushWriteAndDelay (ConnectionManagerImpl::checkForDeferredClose, connection_impl.cc
		// ConnectionImpl::close) and waits up to delayed_close_timeout for the client to
		// close first, so the client reads the response rather than a reset. net/http's
		// closing of the body after ServeHTTP reads and drops the rest meanwhile.
		_ = f.rc.SetReadDeadline(time.Now().Add(delayedCloseTimeout))
	}
	f.stop()
	if f.cfg.AccessLog != nil {
		var upstreamHost string
		if f.upstreamCalled {
			upstreamHost = f.upstreamAddr
		}
		f.cfg.AccessLog(AccessLogEntry{
			Method:              f.r.Method,
			Path:                f.r.RequestURI,
			Status:              f.status,
			ResponseCodeDetails: f.details,
			StreamStarted:       f.sess != nil,
			UpstreamCalled:      f.upstreamCalled,
			StartTime:           f.start,
			Duration:            time.Since(f.start),
			RequestHeaders:      headerMapForLog(f.reqHeaders),
			ResponseHeaders:     headerMapForLog(f.logRespHeaders),
			DynamicMetadata:     f.dynMeta,
			UpstreamHost:        upstreamHost,
			RouteName:           f.route.Name,
		})
	}
	if f.abort {
		panic(http.ErrAbortHandler)
	}
}

// decodeChain runs the ext_proc filters of the chain in order: the filter manager calls
// each decoder filter's decodeHeaders in turn, and an ext_proc filter stops the iteration
// until its processor has answered (FilterManager::decodeHeaders, ext_proc.cc
// Filter::onHeaders). A filter that refused the request ends the chain.
func (f *filter) decodeChain() {
	if f.jwtAuthnDecode() {
		return
	}
	main := f.cfg
	defer func() { f.cfg = main }()
	for _, b := range main.before {
		f.cfg = b
		f.decode()
		// Done with this request: ext_proc closes a stream once nothing more is
		// expected of it (Filter::closeGrpcStreamIfLastRespReceived), at the latest when
		// the filter is destroyed (onDestroy).
		f.finishCall()
		if f.sessOpen {
			f.closeStreamMaybeGraceful()
		}
		if f.stopped() {
			return
		}
		f.proc = proc{}
	}
	f.cfg = main
	f.decode()
	f.observeRequest()
}

// disabled reports the running filter's ExtProcPerRoute.disabled on the current route.
func (f *filter) disabled() bool {
	if pr, ok := f.route.PerFilter[f.cfg.Name]; ok && pr.Disabled {
		return true
	}
	return f.cfg.last && f.route.ExtProcDisabled || f.cfg.Disabled != nil && f.cfg.Disabled(f.r)
}

// decode is decodeHeaders and decodeData: send the headers, then the buffered body, each
// time waiting for the answer.
func (f *filter) decode() {
	// The filter reads its per-route config as its decodeHeaders starts (ext_proc.cc
	// Filter::decodeHeaders, mergePerRouteConfig, Http::Utility::getAllPerFilterConfig),
	// from the route the callbacks give: after an earlier filter cleared the route cache,
	// the route matched again against the headers as that filter left them
	// (ActiveStream::refreshCachedRoute).
	if f.routeCleared {
		f.route = f.matchRoute()
		f.routeCleared = false
	}
	mode := f.cfg.mode
	if f.disabled() {
		mode = allDisabledMode()
	}
	f.dec, f.enc = decodingState(mode), encodingState(mode)

	if f.dec.sendHeaders {
		f.openStream()
		f.reqHeadersSent = true
		req := f.newRequest()
		f.setRequestAttributes(req)
		req.Request = &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers:     f.reqHeaders.toProto(),
			EndOfStream: !f.hasBody,
		}}
		f.startCall(cbRequestHeaders)
		f.sendMsg(req)
	}
	if !f.complete && f.dec.shouldRemoveContentLength() {
		f.reqHeaders.remove("content-length")
	}
	if f.dec.sendHeaders {
		// While the answer is pending, a BUFFERED body is buffered, not held back: ext_proc.cc
		// Filter::onData (HeadersCallback) returns StopIterationAndBuffer for BUFFERED, so the
		// filter manager's watermark buffer calls ActiveStreamDecoderFilter::requestDataTooLarge
		// (filter_manager.cc) once it passes the limit, which sends a 413 local reply, even
		// though the answer might have switched the body to NONE. Only other body modes get
		// StopIterationAndWatermark (flow control, no 413); here they are not read until the
		// router needs them, which has the same effect on the client.
		if f.hasBody && f.dec.bodyMode == extprocfilterv3.ProcessingMode_BUFFERED {
			f.pump = f.e.startPump(f.dsBody)
		}
		f.waitFor(func() bool { return f.cb == cbIdle })
		if f.stopped() {
			return
		}
	}

	if !f.hasBody || f.complete || f.bodyReplaced {
		return
	}
	switch f.dec.bodyMode {
	case extprocfilterv3.ProcessingMode_NONE:
		return
	case extprocfilterv3.ProcessingMode_BUFFERED:
	default:
		f.unsupported(fmt.Sprintf("request_body_mode %v", f.dec.bodyMode))
		return
	}
	if !f.bodySent {
		if f.pump == nil {
			f.pump = f.e.startPump(f.dsBody)
		}
		f.waitFor(func() bool { return f.bodyDone || f.complete })
		if f.stopped() || f.complete {
			return
		}
		f.sendBody()
	}
	f.waitFor(func() bool { return f.cb == cbIdle })
}

// sendBody sends the whole buffered body as one message with end_of_stream, opening the
// stream first if the headers were not sent (request_header_mode SKIP).
func (f *filter) sendBody() {
	f.openStream()
	req := f.newRequest()
	req.Request = &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{
		Body:        f.buf,
		EndOfStream: true,
	}}
	f.startCall(cbRequestBody)
	f.bodySent = true
	f.sendMsg(req)
}

// waitFor handles whatever happens until cond holds or the request is over.
func (f *filter) waitFor(cond func() bool) {
	for !cond() && !f.stopped() {
		var evC <-chan event
		if f.sessOpen {
			evC = f.sess.events
		}
		var pumpC <-chan chunk
		if f.pump != nil && !f.bodyDone {
			pumpC = f.pump.ch
		}
		if evC == nil && pumpC == nil && f.timerC == nil {
			// Nothing can make cond true: a bug in the stand-in, not in the processor.
			f.e.logf("extproctest: internal error: waiting on nothing (cb=%d)", f.cb)
			f.unsupported("internal state")
			return
		}
		select {
		case ev := <-evC:
			f.onEvent(ev)
		case <-f.timerC:
			f.timerC = nil
			f.onMessageTimeout()
		case c := <-pumpC:
			f.onChunk(c)
		case <-f.ctx.Done():
			f.onDownstreamGone()
		}
	}
}

func (f *filter) stopped() bool { return f.reply != nil || f.gone }

// onChunk buffers body data. Past the limit Envoy answers 413, whether or not the headers
// answer has come, unless the processor was already dropped, in which case the data just
// flows.
func (f *filter) onChunk(c chunk) {
	f.buf = append(f.buf, c.data...)
	if c.err != nil {
		if !errors.Is(c.err, io.EOF) {
			f.onDownstreamGone()
			return
		}
		f.bodyDone = true
	}
	f.checkBufferLimit()
}

// checkBufferLimit answers 413 for a BUFFERED body over the limit: the watermark buffer's
// high watermark is the limit and fires above it, not at it (filter_manager.cc
// ActiveStreamDecoderFilter::createBuffer and requestDataTooLarge).
func (f *filter) checkBufferLimit() {
	if !f.complete && f.dec.bodyMode == extprocfilterv3.ProcessingMode_BUFFERED &&
		int64(len(f.buf)) > f.cfg.BodyBufferLimit {
		f.setReply(&localReply{
			status:  http.StatusRequestEntityTooLarge,
			body:    []byte("Payload Too Large"),
			details: "request_payload_too_large",
		}, &f.e.stats.lrTooLarge)
	}
}

// onDownstreamGone is a reset by the client: no reply, the stream is closed in cleanup.
func (f *filter) onDownstreamGone() {
	f.gone = true
	f.complete = true
	f.finishCall()
}

func (f *filter) openStream() {
	if f.sess != nil {
		return
	}
	// The service-wide initial metadata, then the route's grpc_initial_metadata, which
	// replaces a key of the same name (ext_proc.cc mergeHeaderValuesField).
	md := map[string]string{}
	maps.Copy(md, f.cfg.InitialMetadata)
	if f.cfg.last {
		maps.Copy(md, f.route.Metadata)
	}
	maps.Copy(md, f.route.PerFilter[f.cfg.Name].Metadata)
	if f.cfg.Metadata != nil {
		for k, v := range f.cfg.Metadata(f.r) {
			md[k] = v
		}
	}
	f.sess = f.e.openSession(md)
	f.sessOpen = true
}

// newRequest starts a ProcessingRequest as Envoy fills it: metadata_context always present,
// holding the request's dynamic metadata of the forwarding namespaces
// (Filter::addDynamicMetadata), protocol_config on the first message of the stream only.
func (f *filter) newRequest() *extprocv3.ProcessingRequest {
	req := &extprocv3.ProcessingRequest{MetadataContext: &corev3.Metadata{}}
	for _, ns := range f.cfg.ForwardingNamespaces {
		if v, ok := f.dynMeta[ns]; ok {
			if req.MetadataContext.FilterMetadata == nil {
				req.MetadataContext.FilterMetadata = map[string]*structpb.Struct{}
			}
			req.MetadataContext.FilterMetadata[ns] = proto.Clone(v).(*structpb.Struct)
		}
	}
	if !f.protocolConfigSent {
		req.ProtocolConfig = &extprocv3.ProtocolConfiguration{
			RequestBodyMode:  f.dec.bodyMode,
			ResponseBodyMode: f.enc.bodyMode,
		}
		f.protocolConfigSent = true
	}
	return req
}

func (f *filter) sendMsg(req *extprocv3.ProcessingRequest) {
	f.sess.send(req)
	f.e.stats.msgsSent.Add(1)
}

// startCall is onStartProcessorCall: the message timer runs until the answer.
func (f *filter) startCall(cb callbackState) {
	f.cb = cb
	f.timerRestarted = false
	if f.timer != nil {
		f.timer.Stop()
	}
	f.timer = time.NewTimer(f.cfg.MessageTimeout)
	f.timerC = f.timer.C
}

// finishCall is onFinishProcessorCall / clearAsyncState: no call pending, no timer.
func (f *filter) finishCall() {
	f.cb = cbIdle
	if f.timer != nil {
		f.timer.Stop()
	}
	f.timerC = nil
}

// closeStream is Filter::closeStream: half-close and reset.
func (f *filter) closeStream() {
	if f.sessOpen {
		f.sess.close(false)
		f.sessOpen = false
	}
}

// closeStreamMaybeGraceful is Filter::closeStreamMaybeGraceful: Envoy is done with the
// processor for this request.
func (f *filter) closeStreamMaybeGraceful() {
	f.complete = true
	if f.sessOpen {
		f.sess.close(f.cfg.GracefulClose)
		f.sessOpen = false
	}
}

// moreExpected reports that the processor has not yet answered everything Envoy would ask
// it about this request, so dropping it now lets something through unprocessed.
func (f *filter) moreExpected() bool {
	if f.cb != cbIdle {
		return true
	}
	if f.hasBody && !f.bodyReplaced && f.dec.bodyMode == extprocfilterv3.ProcessingMode_BUFFERED && !f.bodyAnswered {
		return true
	}
	return f.enc.sendHeaders && !f.respHeadersAnswered
}

func (f *filter) setReply(lr *localReply, counter interface{ Add(int64) int64 }) {
	if f.reply != nil || f.gone {
		return
	}
	f.reply = lr
	if counter != nil {
		counter.Add(1)
	}
}

// unsupported fails the request rather than imitate Envoy wrongly.
func (f *filter) unsupported(what string) {
	f.complete = true
	f.finishCall()
	f.closeStream()
	f.setReply(&localReply{
		status:  http.StatusInternalServerError,
		details: "extproctest_unsupported: " + what,
	}, &f.e.stats.lrUnsupported)
}
