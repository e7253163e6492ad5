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
// metadata (Config.ReceivingNamespaces), request_attributes on the request headers message
// (Config.RequestAttributes) and the access log (AccessLogEntry, rendered with an Envoy
// format string by FormatAccessLog; AccessLogFormat is ocisigner's).
//
// With Config.Intercept it is also an HTTPS interceptor, as Envoy 1.37 and later can be: the
// listener accepts CONNECT (403 upgrade_failed without it), a route with
// Route.TerminateConnect terminates it into an internal listener, and a route's
// direct_response refuses it before any TLS. The internal listener runs tls_inspector and
// terminates TLS with a certificate chosen by the on-demand secret selector and the sni
// mapper: the handshake pauses while the name (the SNI, or the mapper's default_value) is
// fetched over delta SDS, one DeltaSecrets stream per name; the server's update resumes it, a
// removal fails it with a handshake_failure alert, and silence lasts until
// transport_socket_connect_timeout closes the connection (forever without one). A name keeps
// its subscription and certificate until the server removes it, SDS down or certificate
// expired; no session is resumed, and the selector is refused unless both kinds of
// resumption are off. ALPN follows the server's order; without ALPN the codec looks for the
// HTTP/2 preface. The decrypted requests (HTTP/1.1 or HTTP/2) then go through the same
// connection manager, ext_proc, dynamic forward proxy and router, with
// connection.requested_server_name and the CONNECT host (filter state handed over by the
// internal_upstream transport socket) available as request attributes. Stats count tunnels,
// subscriptions, SDS streams, handshakes and connect timeouts.
//
// The ext_proc filters of a chain: Config's, those before it that process the request
// headers alone (Config.Before), and those after it in observability mode (Config.After,
// observe.go): sent the headers without waiting, their answers ignored, their streams
// closed after deferred_close_timeout.
//
// What it does not do is said on Config: response bodies and trailers
// are never sent to the processor, the STREAMED, BUFFERED_PARTIAL and FULL_DUPLEX_STREAMED
// body modes are refused (ErrUnsupported, or a 500 local reply when a mode override asks for
// them), the listener's own TLS is the shared gateway's mTLS only (Config.DownstreamTLS:
// Go's crypto/tls verifying, no SAN matchers or CRLs), no HTTP/2 there and no retries, ext_proc on a
// CONNECT request is refused (a 500 local reply), response_attributes are not sent,
// state-of-the-world SDS is not spoken, and on the internal listener proxy_100_continue is
// reproduced for HTTP/1.1 only (net/http's HTTP/2 server answers 100-continue itself).
//
// Its scope is frozen: it models what ocisigner's Envoy configurations use, and a new
// behaviour comes in only with the Envoy source it follows, cited (file and function) in
// the file that models it. TestEveryFileCitesEnvoy holds every file to that, but for the
// few that model no Envoy rule (noEnvoyRule says which and why). Whether it still matches
// Envoy is checked where Envoy exists: extproc's end-to-end table runs against a real one
// when OCISIGNER_ENVOY names it (docs/testing.md).
package extproctest
