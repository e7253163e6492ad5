// Package extproctest is a stand-in for Envoy (1.37 and later, modelled on 1.40) in front of
// an ext_proc server, for tests on machines that have no Envoy binary.
//
// An Envoy listens on 127.0.0.1 for HTTP/1.1. For each request it does what Envoy's HTTP
// connection manager, ext_proc filter, dynamic forward proxy and router do: it matches a
// route, drives one real envoy.service.ext_proc.v3.ExternalProcessor/Process stream against
// the configured processor, matches the route again if the processor cleared the route
// cache, resolves the (possibly mutated) :authority, then forwards the request over HTTP/1.1
// and relays the response. Every behaviour below was checked against Envoy's source; each
// file names the Envoy file and function it follows.
//
// It exists to catch ext_proc servers that work against a lenient fake but fail, or worse,
// fail open, behind a real Envoy. So it reproduces Envoy's traps on purpose:
//
//   - a stream the server closes with status OK before it answered everything makes Envoy
//     carry on without the processor: the rest goes upstream unprocessed (Stats.ClosedOKEarly,
//     Stats.ContinuedUnprocessed); closing after the last answer is harmless
//     (Stats.ClosedOKAfterLastAnswer);
//   - in BUFFERED mode Envoy buffers the body that arrives while it waits for the answer to
//     the request headers, and answers 413 once that exceeds the buffer limit, even when the
//     answer would have switched the body mode to NONE;
//   - a processor may change :authority only where mutation_rules allow it, and a changed
//     :authority is routed only if the route cache was cleared (Config.RouteCacheAction,
//     CommonResponse.clear_route_cache); otherwise the route matched for the original host
//     applies;
//   - router rewrites (Route.Rewrite) run after ext_proc, so they change what was signed;
//   - the default message timeout is 200 ms, the default status on error 500, timeouts 504;
//     a route timeout covers the whole response and cuts a long stream;
//   - Envoy half-closes and immediately resets the stream once it needs nothing more, so a
//     server that waits for io.EOF from Recv may see a cancellation instead.
//
// It also reproduces proxy_100_continue (Config.Proxy100Continue), the processor's dynamic
// metadata (Config.ReceivingNamespaces) and the access log (AccessLogEntry, rendered with an
// Envoy format string by FormatAccessLog; AccessLogFormat is ocisigner's).
//
// What it does not do is said on Config: one ext_proc filter (ocisigner's envoy.yaml runs two,
// one per route; configure the stand-in as the one under test), response bodies and trailers
// are never sent to the processor, the STREAMED, BUFFERED_PARTIAL and FULL_DUPLEX_STREAMED
// body modes are refused (ErrUnsupported, or a 500 local reply when a mode override asks for
// them), and there is no TLS, HTTP/2, retries or request attributes.
package extproctest
