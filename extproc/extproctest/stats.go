package extproctest

import "sync/atomic"

// Stats are counters tests can assert on. Most mirror an Envoy ext_proc statistic (named in
// the comment); the rest split Envoy's local replies by cause so a test can tell a fail-closed
// 500 from an unrelated one.
type Stats struct {
	Requests int64 // downstream requests received

	StreamsStarted   int64 // streams_started
	StreamsFailed    int64 // streams_failed: the stream ended with a gRPC error
	MessagesSent     int64 // stream_msgs_sent
	MessagesReceived int64 // stream_msgs_received
	SpuriousMessages int64 // spurious_msgs_received: an answer of the wrong type or at the wrong time
	MessageTimeouts  int64 // message_timeouts

	// RejectedHeaderMutations is rejected_header_mutations: every set or remove the
	// mutation rules refused, whether ignored or turned into an error.
	RejectedHeaderMutations int64

	ModeOverridesHonoured int64 // mode_override applied
	ModeOverridesIgnored  int64 // mode_override present but not applied (not allowed, not in the allow-list, wrong phase)

	OverrideMessageTimeoutReceived int64 // override_message_timeout_received
	OverrideMessageTimeoutIgnored  int64 // override_message_timeout_ignored

	// ImmediateResponses counts ImmediateResponse messages turned into replies.
	ImmediateResponses int64

	// Local replies Envoy sends instead of forwarding, by cause.
	LocalRepliesGRPCError   int64 // the stream failed or the processor was unreachable (StatusOnError)
	LocalRepliesTimeout     int64 // message_timeout expired (504)
	LocalRepliesMutation    int64 // a mutation was invalid, or rejected with disallow_is_error, or broke a limit (StatusOnError)
	LocalRepliesSpurious    int64 // an unexpected message with fail-closed spurious handling (StatusOnError)
	LocalRepliesTooLarge    int64 // the buffered body exceeded the limit (413)
	LocalRepliesUnsupported int64 // the processor asked for a mode the stand-in does not implement (500)
	LocalRepliesUpstream    int64 // the upstream failed or timed out (503/504)

	// ClosedOKEarly counts streams the server ended with status OK before it had given
	// every answer Envoy would ask it for (part of Envoy's streams_closed, from
	// onGrpcCloseWithStatus): Envoy then ignores the processor and the rest of the request
	// goes through unprocessed (counted in ContinuedUnprocessed too).
	ClosedOKEarly int64
	// ClosedOKAfterLastAnswer counts streams the server ended with status OK after its last
	// answer while Envoy still held them open (a BUFFERED body's stream stays open until the
	// upstream response headers): harmless, the request is already processed.
	ClosedOKAfterLastAnswer int64
	// ContinuedUnprocessed counts requests Envoy let through although the processor had not
	// answered everything it would have been asked: the OK-close trap, or an error, timeout
	// or spurious message under failure_mode_allow.
	ContinuedUnprocessed int64
	// FailureModeAllowed is failure_mode_allowed.
	FailureModeAllowed int64

	UpstreamRequests int64 // requests sent upstream

	// RouteCacheCleared counts answers that cleared the route cache (route_cache_action
	// DEFAULT with clear_route_cache set, or CLEAR, on an answer with a header mutation).
	RouteCacheCleared int64
	// ClearRouteCacheIgnored is clear_route_cache_ignored: clear_route_cache set on an
	// answer without a header mutation.
	ClearRouteCacheIgnored int64
	// ClearRouteCacheDisabled is clear_route_cache_disabled: clear_route_cache set while
	// route_cache_action is RETAIN.
	ClearRouteCacheDisabled int64
	// LocalRepliesDirect counts routes answered with their direct_response.
	LocalRepliesDirect int64
	// LocalRepliesDNS counts requests whose :authority could not be resolved (503).
	LocalRepliesDNS int64

	// HTTPS interception (Config.Intercept).

	// ConnectTerminated counts CONNECT requests terminated into the internal listener.
	ConnectTerminated int64
	// CertRequested is on_demand_secret.cert_requested: secret names subscribed.
	CertRequested int64
	// SDSStreams counts DeltaSecrets streams opened (one per name, again after a failure).
	SDSStreams int64
	// TLSHandshakes is the internal listener's ssl.handshake: handshakes completed.
	TLSHandshakes int64
	// TLSHandshakeErrors is ssl.connection_error: handshakes that failed, a refused name
	// (removed secret), a connect timeout or a client that went away included.
	TLSHandshakeErrors int64
	// TransportSocketConnectTimeouts is downstream_cx_transport_socket_connect_timeout:
	// connections closed because the handshake outlasted transport_socket_connect_timeout.
	TransportSocketConnectTimeouts int64

	// Filters in observability mode (Config.After), counted apart from the others as
	// Envoy counts each filter under its own stat_prefix.

	// ObserverStreams is their streams_started.
	ObserverStreams int64
	// ObserverMessages is their stream_msgs_sent.
	ObserverMessages int64
}

// counters is the live, concurrently updated form of Stats.
type counters struct {
	requests, streamsStarted, streamsFailed, msgsSent, msgsReceived, spurious, timeouts atomic.Int64
	rejectedMutations, overridesHonoured, overridesIgnored                              atomic.Int64
	timeoutOverrideReceived, timeoutOverrideIgnored, immediate                          atomic.Int64
	lrGRPC, lrTimeout, lrMutation, lrSpurious, lrTooLarge, lrUnsupported, lrUpstream    atomic.Int64
	closedOKEarly, continuedUnprocessed, failureModeAllowed, upstreamRequests           atomic.Int64
	closedOKAfterLastAnswer, routeCacheCleared, clearRouteCacheIgnored                  atomic.Int64
	clearRouteCacheDisabled, lrDirect, lrDNS                                            atomic.Int64
	connectTerminated, certRequested, sdsStreams, tlsHandshakes, tlsHandshakeErrors     atomic.Int64
	connectTimeouts, observerStreams, observerMessages                                  atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Requests:                       c.requests.Load(),
		StreamsStarted:                 c.streamsStarted.Load(),
		StreamsFailed:                  c.streamsFailed.Load(),
		MessagesSent:                   c.msgsSent.Load(),
		MessagesReceived:               c.msgsReceived.Load(),
		SpuriousMessages:               c.spurious.Load(),
		MessageTimeouts:                c.timeouts.Load(),
		RejectedHeaderMutations:        c.rejectedMutations.Load(),
		ModeOverridesHonoured:          c.overridesHonoured.Load(),
		ModeOverridesIgnored:           c.overridesIgnored.Load(),
		OverrideMessageTimeoutReceived: c.timeoutOverrideReceived.Load(),
		OverrideMessageTimeoutIgnored:  c.timeoutOverrideIgnored.Load(),
		ImmediateResponses:             c.immediate.Load(),
		LocalRepliesGRPCError:          c.lrGRPC.Load(),
		LocalRepliesTimeout:            c.lrTimeout.Load(),
		LocalRepliesMutation:           c.lrMutation.Load(),
		LocalRepliesSpurious:           c.lrSpurious.Load(),
		LocalRepliesTooLarge:           c.lrTooLarge.Load(),
		LocalRepliesUnsupported:        c.lrUnsupported.Load(),
		LocalRepliesUpstream:           c.lrUpstream.Load(),
		ClosedOKEarly:                  c.closedOKEarly.Load(),
		ClosedOKAfterLastAnswer:        c.closedOKAfterLastAnswer.Load(),
		ContinuedUnprocessed:           c.continuedUnprocessed.Load(),
		FailureModeAllowed:             c.failureModeAllowed.Load(),
		UpstreamRequests:               c.upstreamRequests.Load(),
		RouteCacheCleared:              c.routeCacheCleared.Load(),
		ClearRouteCacheIgnored:         c.clearRouteCacheIgnored.Load(),
		ClearRouteCacheDisabled:        c.clearRouteCacheDisabled.Load(),
		LocalRepliesDirect:             c.lrDirect.Load(),
		LocalRepliesDNS:                c.lrDNS.Load(),
		ConnectTerminated:              c.connectTerminated.Load(),
		CertRequested:                  c.certRequested.Load(),
		SDSStreams:                     c.sdsStreams.Load(),
		TLSHandshakes:                  c.tlsHandshakes.Load(),
		TLSHandshakeErrors:             c.tlsHandshakeErrors.Load(),
		TransportSocketConnectTimeouts: c.connectTimeouts.Load(),
		ObserverStreams:                c.observerStreams.Load(),
		ObserverMessages:               c.observerMessages.Load(),
	}
}
