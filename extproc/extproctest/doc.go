// Package extproctest is a stand-in for Envoy (1.36 and later, modelled on 1.40) in front of
// an ext_proc server, for tests on machines that have no Envoy binary.
//
// An Envoy listens on 127.0.0.1 for HTTP/1.1. For each request it does what Envoy's HTTP
// connection manager and ext_proc filter do before the router runs, drives one real
// envoy.service.ext_proc.v3.ExternalProcessor/Process stream against the configured processor,
// then forwards the (mutated) request over HTTP/1.1 to the configured upstream and relays the
// response. Every behaviour below was checked against Envoy's source; each file names the
// Envoy file it follows.
//
// It exists to catch ext_proc servers that work against a lenient fake but fail, or worse,
// fail open, behind a real Envoy. So it reproduces Envoy's traps on purpose:
//
//   - a stream the server closes with status OK before it answered makes Envoy carry on
//     without the processor: the request goes upstream unprocessed (Stats.ClosedOKEarly,
//     Stats.ContinuedUnprocessed);
//   - in BUFFERED mode Envoy buffers the body that arrives while it waits for the answer to
//     the request headers, and answers 413 once that exceeds the buffer limit, even when the
//     answer would have switched the body mode to NONE;
//   - the default message timeout is 200 ms, the default status on error 500, timeouts 504;
//   - Envoy half-closes and immediately resets the stream once it needs nothing more, so a
//     server that waits for io.EOF from Recv may see a cancellation instead.
//
// What it does not do is said on Config: response bodies and trailers are never sent to the
// processor, the STREAMED, BUFFERED_PARTIAL and FULL_DUPLEX_STREAMED body modes are refused
// (ErrUnsupported, or a 500 local reply when a mode override asks for them), and there is no
// TLS, HTTP/2, routing or request attributes.
package extproctest
