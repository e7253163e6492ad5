package extproctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// The router and the response path (source/common/router/router.cc, and Filter::encodeHeaders
// in ext_proc.cc): the processed request goes upstream, the ext_proc stream stays open for
// the response headers if Envoy needs it (or is closed when they arrive), and the upstream
// response is relayed.

// upstreamBody is what follows the request headers upstream.
func (f *filter) upstreamBody() (body io.Reader, streaming bool) {
	switch {
	case f.bodyReplaced:
		// CONTINUE_AND_REPLACE: the rest of the original body is read and dropped.
		f.drainDownstream()
		return bytes.NewReader(f.buf), false
	case !f.hasBody:
		return nil, false
	case f.pump == nil:
		return f.dsBody, true // never buffered: stream it
	case f.bodyDone:
		return bytes.NewReader(f.buf), false
	}
	// Part of the body is buffered (the processor chose NONE, or was dropped): send that,
	// then stream the rest. The pump may be blocked reading a client that waits for the
	// upstream's 100 Continue, so the filter does not wait for it: the upstream writer takes
	// over the pump's last read when it completes, then reads the client itself.
	f.pump.abandon()
	return io.MultiReader(bytes.NewReader(f.buf), &handoffReader{p: f.pump, body: f.dsBody}), true
}

// handoffReader is the body after a stopped pump: what the pump's last read got, then the
// rest straight from the client.
type handoffReader struct {
	p      *pump
	body   io.Reader
	took   bool
	rest   []byte
	endErr error
}

func (r *handoffReader) Read(b []byte) (int, error) {
	if !r.took {
		<-r.p.done
		r.took = true
		r.rest, r.endErr = r.p.leftover.data, r.p.leftover.err
	}
	if len(r.rest) > 0 {
		n := copy(b, r.rest)
		r.rest = r.rest[n:]
		return n, nil
	}
	if r.endErr != nil {
		return 0, r.endErr
	}
	return r.body.Read(b)
}

func (f *filter) drainDownstream() {
	if !f.hasBody || f.bodyDone {
		return
	}
	if f.pump != nil {
		if c := f.pump.halt(); c.err != nil {
			if !errors.Is(c.err, io.EOF) {
				f.onDownstreamGone()
			}
			return
		}
	}
	if _, err := io.Copy(io.Discard, f.dsBody); err != nil {
		f.onDownstreamGone()
	}
}

type upstreamResult struct {
	x   *exchange
	err error
}

func (f *filter) forward() {
	// The dynamic forward proxy filter, then the router, ask for the route: if ext_proc
	// cleared the cache it is matched again, against the headers as mutated.
	if f.routeCleared {
		f.route = f.matchRoute()
		f.routeCleared = false
	}
	if d := f.route.Direct; d != nil {
		// router.cc Filter::decodeHeaders: a direct_response route is answered by the
		// router itself (the forward proxy filter skips routes without a route entry).
		f.setReply(&localReply{status: d.Status, body: []byte(d.Body), headers: d.Headers,
			details: "direct_response"}, &f.e.stats.lrDirect)
		f.sendLocalReply()
		return
	}
	addr := f.cfg.Upstream
	if f.cfg.Resolve != nil {
		// ProxyFilter::decodeHeaders resolves headers.Host() as the filters before it
		// left it, and the cluster's load balancer picks the host by the same header
		// (dynamic_forward_proxy cluster.cc Cluster::LoadBalancer::chooseHost).
		authority, _ := f.reqHeaders.get(":authority")
		a, err := f.cfg.Resolve(authority)
		if err != nil {
			f.e.logf("extproctest: resolve %q: %v", authority, err)
			f.setReply(&localReply{status: http.StatusServiceUnavailable, body: []byte("DNS resolution failure"),
				details: "dns_resolution_failure{" + err.Error() + "}"}, &f.e.stats.lrDNS)
			f.sendLocalReply()
			return
		}
		addr = a
	}
	f.upstreamAddr = addr
	// The router sets auto_sni's server name from :authority before its own
	// rewrites (router.cc Filter::decodeHeaders, then finalizeRequestHeaders).
	authority, _ := f.reqHeaders.get(":authority")
	body, streaming := f.upstreamBody()
	if f.gone {
		return
	}
	for _, name := range f.route.RemoveHeaders {
		f.reqHeaders.remove(strings.ToLower(name))
	}
	if rw := f.route.Rewrite; rw != nil {
		// Router finalizeRequestHeaders: after every filter, and after the connection pool
		// (so the upstream host) was chosen.
		authority, _ := f.reqHeaders.get(":authority")
		path, _ := f.reqHeaders.get(":path")
		authority, path = rw(authority, path)
		f.reqHeaders.set(":authority", authority)
		f.reqHeaders.set(":path", path)
	}
	if !f.cfg.SuppressEnvoyHeaders && f.cfg.RouteTimeout > 0 {
		// FilterUtility::setTimeoutHeaders: the route timeout left, in milliseconds.
		left := (f.cfg.RouteTimeout - time.Since(f.start)).Milliseconds()
		f.reqHeaders.set("x-envoy-expected-rq-timeout-ms", strconv.FormatInt(max(left, 1), 10))
	}
	req := encodeUpstream(f.reqHeaders, body)
	f.upstreamCalled = true
	f.e.stats.upstreamRequests.Add(1)
	upStart := time.Now()

	upCtx, upCancel := context.WithCancel(f.ctx)
	defer upCancel()
	resC := make(chan upstreamResult, 1)
	f.e.goTracked(func() {
		x, err := f.e.upstreamPool(addr, authority).start(upCtx, req, f.e.goTracked, f.relayInformational)
		resC <- upstreamResult{x, err}
	})

	// The route timeout runs from the end of the request (Filter::onRequestComplete) to the
	// end of the response (onUpstreamComplete disarms it), body included.
	var eofC <-chan struct{}
	var routeC <-chan time.Time
	var routeTimer *time.Timer
	startRouteTimer := func() {
		if f.cfg.RouteTimeout > 0 {
			f.routeDeadline = time.Now().Add(f.cfg.RouteTimeout)
			routeTimer = time.NewTimer(f.cfg.RouteTimeout)
			routeC = routeTimer.C
		}
	}
	defer func() {
		if routeTimer != nil {
			routeTimer.Stop()
		}
	}()
	if streaming {
		eofC = f.dsBody.eof
	} else {
		startRouteTimer()
	}

	var res upstreamResult
	for waiting := true; waiting; {
		var evC <-chan event
		if f.sessOpen {
			evC = f.sess.events
		}
		select {
		case res = <-resC:
			waiting = false
		case ev := <-evC:
			// Envoy may still hear from the processor here (the stream of a buffered body
			// stays open until the response headers): an error or a stray message fails the
			// request even though it is already on its way upstream.
			f.onEvent(ev)
			if f.stopped() {
				upCancel()
				res = <-resC
				waiting = false
			}
		case <-eofC:
			eofC = nil
			startRouteTimer()
		case <-routeC:
			upCancel()
			res = <-resC
			waiting = false
			f.setReply(&localReply{
				status:  http.StatusGatewayTimeout,
				body:    []byte("upstream request timeout"),
				details: "upstream_response_timeout",
			}, &f.e.stats.lrUpstream)
		case <-f.ctx.Done():
			f.onDownstreamGone()
			upCancel()
			res = <-resC
			waiting = false
		}
	}
	if res.x != nil {
		f.exchange = res.x
		defer f.finishExchange()
	}
	switch {
	case f.gone:
		return
	case f.reply != nil:
		f.sendLocalReply()
		return
	case res.err != nil:
		if f.dsBody.failed() != nil {
			f.onDownstreamGone()
			return
		}
		reason := "connection_failure"
		var ue *upstreamError
		if errors.As(res.err, &ue) {
			reason = ue.reason
		}
		f.e.logf("extproctest: upstream: %v", res.err)
		f.setReply(&localReply{
			status:  http.StatusServiceUnavailable,
			body:    []byte("upstream connect error or disconnect/reset before headers. reset reason: " + strings.ReplaceAll(reason, "_", " ")),
			details: "upstream_reset_before_response_started{" + reason + "}",
		}, &f.e.stats.lrUpstream)
		f.sendLocalReply()
		return
	}
	f.encodeHeaders(res.x, time.Since(upStart))
}

// relayInformational is Filter::onUpstream1xxHeaders and the connection manager's
// encode1xxHeaders: with proxy_100_continue the first upstream 100 goes to the client
// (ActiveStreamDecoderFilter::encode1xxHeaders swallows it otherwise). It runs while the
// handler waits for the final response headers, so nothing else writes to the client.
func (f *filter) relayInformational(resp *http.Response) {
	if !f.cfg.Proxy100Continue || resp.StatusCode != http.StatusContinue || f.relayed100 || f.r.ProtoMajor != 1 {
		return
	}
	f.relayed100 = true
	if dc, ok := f.r.Context().Value(downConnKey{}).(*downConn); ok {
		_ = dc.writeInformational(encodeInformational(resp))
	}
}

// finishExchange makes sure the upstream writer is not left reading the client's body, then
// releases the connection.
func (f *filter) finishExchange() {
	x := f.exchange
	select {
	case <-x.written:
	default:
		// The upstream answered before taking the whole request: give up on the rest.
		x.abandon()
		f.stopBodyReads()
	}
	x.finish()
}

// responseHeaders is the upstream response's headers as Envoy's codec and router give
// them to the filters.
func (f *filter) responseHeaders(resp *http.Response, upstreamTime time.Duration) *headerList {
	h := &headerList{}
	h.insert(":status", strconv.Itoa(resp.StatusCode))
	names := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range resp.Header[k] {
			h.add(strings.ToLower(k), v)
		}
	}
	for _, te := range resp.TransferEncoding {
		h.add("transfer-encoding", te)
	}
	if !f.cfg.SuppressEnvoyHeaders {
		h.set("x-envoy-upstream-service-time", strconv.FormatInt(upstreamTime.Milliseconds(), 10))
	}
	return h
}

// encodeHeaders is the response headers passing the ext_proc filter on their way out.
func (f *filter) encodeHeaders(x *exchange, upstreamTime time.Duration) {
	resp := x.resp
	h := f.responseHeaders(resp, upstreamTime)
	f.respHeaders = h
	f.respNoBody = resp.Body == http.NoBody || resp.ContentLength == 0
	f.observeResponse(h, f.respNoBody)
	if !f.complete && f.enc.sendHeaders {
		f.openStream()
		req := f.newRequest()
		req.Request = &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
			Headers:     h.toProto(),
			EndOfStream: f.respNoBody,
		}}
		f.startCall(cbResponseHeaders)
		f.sendMsg(req)
		f.waitFor(func() bool { return f.cb == cbIdle })
		if f.gone {
			return
		}
		if f.reply != nil {
			f.sendLocalReply()
			return
		}
	}
	if !f.complete && f.enc.shouldRemoveContentLength() {
		h.remove("content-length")
	}
	if f.enc.noExternalProcess() && f.sessOpen {
		f.closeStreamMaybeGraceful()
	}
	if !f.complete && !f.respNoBody && !f.respBodyReplaced && f.enc.bodyMode != extprocfilterv3.ProcessingMode_NONE {
		f.unsupported(fmt.Sprintf("response_body_mode %v", f.enc.bodyMode))
		f.sendLocalReply()
		return
	}
	// Nothing more can come from the processor that matters for this response.
	f.closeStreamMaybeGraceful()

	finishResponseHeaders(f.respHeaders, f.closesConnection(f.respHeaders))
	f.logRespHeaders = f.respHeaders
	f.status = writeResponseHeaders(f.w, f.respHeaders)
	f.wrote = true
	f.details = "via_upstream"
	if f.respBodyReplaced {
		_, _ = f.w.Write(f.respBody)
		return
	}
	if !f.routeDeadline.IsZero() {
		// The response has started: when the route timeout runs out now, Envoy can only
		// reset the stream (router.cc onUpstreamAbort via onResponseTimeout).
		var timedOut atomic.Bool
		t := time.AfterFunc(time.Until(f.routeDeadline), func() {
			timedOut.Store(true)
			x.abandon()
		})
		defer t.Stop()
		f.relay(x.body())
		if timedOut.Load() && f.abort {
			f.details = "upstream_response_timeout"
		}
		return
	}
	f.relay(x.body())
}

// relay streams the response body to the client as it comes.
func (f *filter) relay(body io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := f.w.Write(buf[:n]); werr != nil {
				f.gone = true
				return
			}
			_ = f.rc.Flush()
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			// The upstream broke off mid-body: Envoy resets the downstream stream.
			f.e.logf("extproctest: upstream body: %v", err)
			f.abort = true
			return
		}
	}
}
