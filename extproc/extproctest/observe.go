package extproctest

import (
	"fmt"
	"maps"
	"net/http"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// An ext_proc filter in observability mode ("send and go"), after Config's in the chain
// (Config.After). What differs from the filter the rest of the stand-in models, from
// source/extensions/filters/http/ext_proc/ext_proc.cc:
//
//   - Filter::decodeHeaders and Filter::encodeHeaders: with headers to send and
//     observability mode, sendHeadersInObservabilityMode opens the stream, builds the
//     headers message with observability_mode set (buildHeaderRequest) and sends it, then
//     returns Continue: no onStartProcessorCall, no message timer, no pause. The request
//     and the response go on at once.
//   - buildHeaderRequest: attributes and the forwarding namespaces' dynamic metadata ride
//     on the message (addAttributes, addDynamicMetadata, read from the request's stream
//     info when the message is built); encodeProtocolConfig sends no protocol_config in
//     observability mode.
//   - Filter::encodeHeaders runs for every response the connection manager encodes, a
//     local reply of an earlier filter included: it merges its per-route config there
//     ("in case the decodeHeaders() is not called when processing local reply",
//     mergePerRouteConfig), so a route's ExtProcPerRoute.disabled holds for it too.
//   - Filter::onReceiveMessage returns first thing in observability mode: answers are
//     ignored, whatever they say. A gRPC error with failure_mode_allow only closes the
//     stream (onGrpcError, onGrpcCloseWithStatus); without it Envoy would send a local
//     reply (onGrpcError → sendImmediateResponse) possibly in the middle of the response,
//     which is not reproduced: New refuses such a filter.
//   - Filter::onDestroy: in observability mode the stream is not closed with the request
//     but after deferred_close_timeout (deferredCloseStream, DeferredDeletableStream::
//     deferredClose, closeStreamOnTimer: stream_->close()), so a message still in flight
//     reaches the processor. FilterConfig reads the timeout with PROTOBUF_GET_MS_OR_DEFAULT
//     (config, deferred_close_timeout, DEFAULT_DEFERRED_CLOSE_TIMEOUT_MS), 5000 ms.
//   - Filter::onData: only STREAMED bodies are sent in observability mode; the stand-in
//     reproduces NONE alone (New refuses the others).

// defaultDeferredCloseTimeout is DEFAULT_DEFERRED_CLOSE_TIMEOUT_MS.
const defaultDeferredCloseTimeout = 5 * time.Second

// resolveObserver is the settings of a filter of Config.After.
func (bf Filter) resolveObserver(main *settings) (*settings, error) {
	if bf.Name == "" {
		return nil, fmt.Errorf("%w: an After filter has no Name", ErrConfig)
	}
	if !bf.ObservabilityMode {
		return nil, fmt.Errorf("%w: filter %s after the main one waits for its answers; only observability_mode is reproduced there", ErrUnsupported, bf.Name)
	}
	if !bf.FailureModeAllow {
		return nil, fmt.Errorf("%w: filter %s in observability mode without failure_mode_allow: a failed stream would send a local reply mid-response (ext_proc.cc onGrpcError)",
			ErrUnsupported, bf.Name)
	}
	// Unset fields are Envoy's defaults: headers SEND, bodies NONE, trailers not sent.
	mode := &extprocfilterv3.ProcessingMode{}
	if bf.ProcessingMode != nil {
		mode = proto.Clone(bf.ProcessingMode).(*extprocfilterv3.ProcessingMode)
	}
	if d, e := decodingState(mode), encodingState(mode); d.bodyMode != extprocfilterv3.ProcessingMode_NONE ||
		e.bodyMode != extprocfilterv3.ProcessingMode_NONE || d.sendTrailers || e.sendTrailers {
		return nil, fmt.Errorf("%w: filter %s in observability mode sends bodies or trailers (%v)", ErrUnsupported, bf.Name, mode)
	}
	s := &settings{Config: Config{Name: bf.Name, InitialMetadata: bf.InitialMetadata, ForwardingNamespaces: bf.ForwardingNamespaces,
		FailureModeAllow: true}, mode: mode, deferredClose: bf.DeferredCloseTimeout}
	if s.deferredClose <= 0 {
		s.deferredClose = defaultDeferredCloseTimeout
	}
	return s, nil
}

// observer is one request's pass through a filter in observability mode.
type observer struct {
	cfg      *settings
	merged   bool // route_config_merged_
	dec, enc dirState
	md       map[string]string // the stream's initial metadata
	sess     *session
}

// observers are the request's filters of Config.After, made on first use.
func (f *filter) observers() []*observer {
	if f.obs == nil && len(f.e.cfg.after) > 0 {
		for _, c := range f.e.cfg.after {
			f.obs = append(f.obs, &observer{cfg: c})
		}
	}
	return f.obs
}

// merge is mergePerRouteConfig, once per request, on the route the request has now.
func (o *observer) merge(r Route) {
	if o.merged {
		return
	}
	o.merged = true
	mode := o.cfg.mode
	pr := r.PerFilter[o.cfg.Name]
	if pr.Disabled {
		mode = allDisabledMode()
	}
	o.dec, o.enc = decodingState(mode), encodingState(mode)
	o.md = map[string]string{}
	maps.Copy(o.md, o.cfg.InitialMetadata)
	maps.Copy(o.md, pr.Metadata)
}

// observeRequest is decodeHeaders of the filters of Config.After, once the filters before
// them let the request go on.
func (f *filter) observeRequest() {
	if f.stopped() || f.r.Method == http.MethodConnect {
		return
	}
	if f.routeCleared {
		f.route = f.matchRoute()
		f.routeCleared = false
	}
	for _, o := range f.observers() {
		o.merge(f.route)
		if o.dec.sendHeaders {
			f.sendObserved(o, &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
				Headers: f.reqHeaders.toProto(), EndOfStream: !f.hasBody}})
		}
	}
}

// observeResponse is encodeHeaders of the filters of Config.After, in the encoder
// chain's order (the reverse of the decoder chain's), for a response from upstream or a
// local reply. It never waits.
func (f *filter) observeResponse(h *headerList, endOfStream bool) {
	if f.reqHeaders == nil || f.r.Method == http.MethodConnect {
		return // no filter chain was made for the request
	}
	obs := f.observers()
	for i := len(obs) - 1; i >= 0; i-- {
		o := obs[i]
		o.merge(f.route)
		if o.enc.sendHeaders {
			f.sendObserved(o, &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
				Headers: h.toProto(), EndOfStream: endOfStream}})
		}
	}
}

// sendObserved opens o's stream if need be and queues one message on it.
func (f *filter) sendObserved(o *observer, msg any) {
	if o.sess == nil {
		o.sess = f.e.startSession(o.md)
		f.e.stats.observerStreams.Add(1)
	}
	req := &extprocv3.ProcessingRequest{ObservabilityMode: true, MetadataContext: f.metadataFor(o.cfg.ForwardingNamespaces)}
	switch m := msg.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		req.Request = m
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		req.Request = m
	}
	o.sess.send(req)
	f.e.stats.observerMessages.Add(1)
}

// metadataFor is addDynamicMetadata: the request's dynamic metadata of the namespaces, as
// it is when the message is built.
func (f *filter) metadataFor(namespaces []string) *corev3.Metadata {
	md := &corev3.Metadata{}
	for _, ns := range namespaces {
		if v, ok := f.dynMeta[ns]; ok {
			if md.FilterMetadata == nil {
				md.FilterMetadata = map[string]*structpb.Struct{}
			}
			md.FilterMetadata[ns] = proto.Clone(v).(*structpb.Struct)
		}
	}
	return md
}

// observeDone is onDestroy of the filters of Config.After: each open stream is closed
// after its deferred_close_timeout, or as soon as the processor ended it, or when the
// stand-in closes. Whatever the processor sent is ignored.
func (f *filter) observeDone() {
	for _, o := range f.obs {
		if o.sess == nil {
			continue
		}
		sess, d := o.sess, o.cfg.deferredClose
		f.e.goTracked(func() {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-sess.recvDone:
			case <-f.e.baseCtx.Done():
			}
			sess.close(false)
		})
	}
}
