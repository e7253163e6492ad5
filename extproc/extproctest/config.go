package extproctest

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ErrUnsupported is wrapped by New when the configuration asks for something the stand-in
// does not reproduce (a body mode other than NONE or BUFFERED, trailers, response bodies).
// Pretending to support them would let a test pass against behaviour Envoy does not have.
var ErrUnsupported = errors.New("extproctest: not supported by the Envoy stand-in")

// ErrConfig is wrapped by New when the configuration is unusable as written.
var ErrConfig = errors.New("extproctest: invalid configuration")

// Envoy's defaults, from ext_proc.proto and the HTTP connection manager.
const (
	defaultBufferLimit        = 1 << 20                // per_connection_buffer_limit_bytes
	defaultMessageTimeout     = 200 * time.Millisecond // ExternalProcessor.message_timeout
	defaultStatusOnError      = http.StatusInternalServerError
	defaultRemoteCloseTimeout = time.Second      // envoy.filters.http.ext_proc.remote_close_timeout_milliseconds
	defaultRouteTimeout       = 15 * time.Second // RouteAction.timeout
	defaultConnectTimeout     = 5 * time.Second  // Cluster.connect_timeout
	maxHeadersCount           = 100              // HttpProtocolOptions.max_headers_count
	maxHeadersBytes           = 60 << 10         // HttpConnectionManager.max_request_headers_kb
)

// Config is the part of an Envoy configuration the stand-in reproduces: the listener, the
// ext_proc filter, the per-route ext_proc settings and one route to one upstream.
type Config struct {
	// Processor is the gRPC target of the ext_proc server: "127.0.0.1:port" or
	// "unix:/path/to.sock". One connection is shared by all requests, as Envoy shares its
	// cluster's HTTP/2 connection.
	Processor string
	// Upstream is the "host:port" of the plain HTTP/1.1 server that receives processed
	// requests (a loopback address in tests), unless Resolve is set.
	Upstream string

	// ProcessingMode is the filter's processing_mode. Nil means what ocisigner's envoy.yaml
	// uses: request_header_mode SEND, response_header_mode SKIP, request_body_mode BUFFERED,
	// response_body_mode NONE, trailers SKIP. A non-nil mode is taken as Envoy reads it, so
	// an unset response_header_mode means SEND.
	ProcessingMode *extprocfilterv3.ProcessingMode
	// AllowModeOverride is allow_mode_override.
	AllowModeOverride bool
	// AllowedOverrideModes is allowed_override_modes.
	AllowedOverrideModes []*extprocfilterv3.ProcessingMode
	// BodyBufferLimit is request_body_buffer_limit (or the connection buffer limit); 0 means
	// Envoy's 1 MiB. A BUFFERED body longer than this gets 413, also when it arrives while
	// the answer to the request headers is pending and that answer would have switched the
	// body to NONE (ext_proc.cc Filter::onData returns StopIterationAndBuffer for BUFFERED).
	// Envoy 1.37 and later apply the route's limit when the route is matched; the stand-in
	// has one limit for every route, as ocisigner's envoy.yaml sets the same on each.
	BodyBufferLimit int64
	// MessageTimeout is message_timeout; 0 means Envoy's 200 ms.
	MessageTimeout time.Duration
	// MaxMessageTimeout is max_message_timeout; 0 (Envoy's default) makes every
	// override_message_timeout from the server ignored.
	MaxMessageTimeout time.Duration
	// StatusOnError is status_on_error; 0 means 500.
	StatusOnError int
	// FailureModeAllow is failure_mode_allow.
	FailureModeAllow bool
	// DisallowIsError is mutation_rules.disallow_is_error; it is ORed into MutationRules.
	DisallowIsError bool
	// MutationRules is mutation_rules; nil means Envoy's defaults.
	MutationRules *mutationrulesv3.HeaderMutationRules

	// Routes is the route table: it picks the route for a request's headers, once when the
	// request arrives and again, with the mutated headers, after ext_proc cleared the route
	// cache. Nil is one route that forwards everything with ext_proc enabled.
	Routes func(RouteRequest) Route
	// RouteCacheAction is route_cache_action: whether an answer with a header mutation
	// clears the route cache always (CLEAR), never (RETAIN) or when the answer sets
	// clear_route_cache (DEFAULT).
	RouteCacheAction extprocfilterv3.ExternalProcessor_RouteCacheAction
	// Resolve is the dynamic forward proxy's DNS: it maps the request's :authority, as the
	// filters left it, to the "host:port" to connect to. An error fails the request with 503,
	// as a failed resolution does. Nil sends every request to Upstream.
	Resolve func(authority string) (addr string, err error)
	// UpstreamTLS, if set, makes the connections to the upstream TLS as a
	// cluster with an UpstreamTlsContext does (tls.go); a handshake or
	// verification failure is a connection failure (503), and nothing is
	// sent. Nil speaks plain HTTP/1.1.
	UpstreamTLS *UpstreamTLS
	// Metadata gives the gRPC initial metadata of a request's stream, as
	// ExtProcPerRoute.overrides.grpc_initial_metadata does for the matched route; it adds
	// to the route's Metadata. May be nil.
	Metadata func(r *http.Request) map[string]string
	// Disabled reports that ext_proc is disabled for the request's route
	// (ExtProcPerRoute.disabled), like the route's ExtProcDisabled: no stream is opened.
	// May be nil.
	Disabled func(r *http.Request) bool

	// Proxy100Continue is the HTTP connection manager's proxy_100_continue, which
	// ocisigner's envoy.yaml sets. Off, Envoy answers "Expect: 100-continue" itself as soon
	// as it has the headers and drops the header; on, the header goes to the processor and
	// upstream, and the client's only 100 is the upstream's, relayed once the request has
	// been forwarded: an upload is held back until the processor has answered its headers
	// (and a BUFFERED body, which is needed before anything is forwarded, comes only when
	// the client stops waiting for the 100). Only 100 is relayed; other 1xx are dropped.
	Proxy100Continue bool
	// AcceptHTTP10 is the connection manager's http_protocol_options.accept_http_10: off,
	// Envoy answers an HTTP/1.0 request (a CONNECT too) with 426 before any filter or route
	// (http1/codec_impl.cc ServerConnectionImpl::checkProtocolVersion). Python's
	// http.client before 3.12 sends its CONNECT as HTTP/1.0.
	AcceptHTTP10 bool
	// StripAnyHostPort is the HTTP connection manager's strip_any_host_port, which
	// ocisigner's envoy.yaml sets: the port is removed from :authority before filters run.
	StripAnyHostPort bool
	// SuppressEnvoyHeaders is the router's suppress_envoy_headers: without it Envoy adds
	// x-envoy-expected-rq-timeout-ms upstream and x-envoy-upstream-service-time downstream.
	SuppressEnvoyHeaders bool
	// GracefulClose turns on the runtime flag envoy.reloadable_features.ext_proc_graceful_grpc_close
	// (off by default in Envoy): Envoy then half-closes the stream and waits up to
	// RemoteCloseTimeout for the server to finish instead of resetting it at once.
	GracefulClose bool
	// RemoteCloseTimeout bounds the wait of GracefulClose; 0 means Envoy's 1 s.
	RemoteCloseTimeout time.Duration
	// ConnectTimeout is the processor cluster's connect_timeout; 0 means Envoy's 5 s. A
	// processor that cannot be reached within it gives StatusOnError, unless the message
	// timeout (504) runs out first.
	ConnectTimeout time.Duration
	// RouteTimeout is the route's timeout, counted from the end of the request to the end
	// of the upstream response: before the response headers it gives 504, after them it
	// cuts the response off (router.cc onResponseTimeout). 0 means Envoy's 15 s and a
	// negative value means none ("timeout: 0s" in a route), which a long stream needs.
	RouteTimeout time.Duration

	// ReceivingNamespaces is metadata_options.receiving_namespaces.untyped: the top-level
	// keys of a ProcessingResponse's dynamic_metadata that Envoy takes into the request's
	// dynamic metadata (Filter::setDynamicMetadata). Others are dropped; typed receiving
	// namespaces are not read by ext_proc.
	ReceivingNamespaces []string

	// RequestAttributes is the filter's request_attributes: Envoy evaluates each (a CEL
	// expression) when it builds the request headers message and sends the results on that
	// message only, as ProcessingRequest.attributes["envoy.filters.http.ext_proc"], a
	// Struct keyed by the expression's text (ext_proc.cc Filter::buildHeaderRequest and
	// addAttributes; matching_utils.cc ExpressionManager::evaluateAttributes). Nothing is
	// sent when request_header_mode is SKIP. Values: bool as bool, integers as numbers,
	// everything else (strings, bytes) as a string; an expression without a value is left
	// out. The stand-in evaluates these expressions (filters/common/expr/context.cc):
	//
	//   - connection.requested_server_name: the SNI, set on the connection only by the
	//     internal listener's tls_inspector (Intercept.TLSInspector); "" (present, empty)
	//     on any other connection, and on a TLS connection without the inspector;
	//   - connection.mtls: true on a DownstreamTLS connection whose client sent a
	//     certificate, false otherwise; connection.tls_version: "TLSv1.2"/"TLSv1.3" on a
	//     TLS connection, absent otherwise;
	//   - connection.uri_san_peer_certificate, connection.dns_san_peer_certificate: the
	//     client certificate's FIRST URI or DNS SAN, absent without one or without TLS;
	//     connection.subject_peer_certificate: its subject (RFC 2253), "" on a TLS
	//     connection without a client certificate, absent without TLS;
	//   - request.host, request.path, request.method, request.scheme, request.id,
	//     request.user_agent, request.referer: the request header as it is at that time
	//     (after strip_any_host_port), absent when missing; request.protocol: "HTTP/1.1"
	//     or "HTTP/2";
	//   - filter_state['NAME'] (or "NAME"): the string value of a filter state object of
	//     the request or its connection, absent when there is none; on the internal
	//     listener this is how the CONNECT :authority can reach the processor
	//     (Intercept.AuthorityFilterState).
	//
	// Any other expression is refused with ErrUnsupported.
	RequestAttributes []string

	// Name is the filter's name in the HTTP filter chain: the key of its
	// typed_per_filter_config in a route (Route.PerFilter). "" means
	// envoy.filters.http.ext_proc.
	Name string
	// InitialMetadata is the filter's grpc_service.initial_metadata: sent on every stream
	// the filter opens (grpc/async_client_impl.cc AsyncStreamImpl::initialize, "Fill
	// service-wide initial metadata"); a route's grpc_initial_metadata of the same key
	// replaces it.
	InitialMetadata map[string]string
	// ForwardingNamespaces is metadata_options.forwarding_namespaces.untyped: on every
	// message, the request's dynamic metadata under these namespaces (what an earlier
	// filter's answer set, see ReceivingNamespaces) is sent as metadata_context
	// (ext_proc.cc Filter::addDynamicMetadata). Clients cannot set dynamic metadata.
	ForwardingNamespaces []string
	// Before are the ext_proc filters that run ahead of this one in the chain, in order.
	// Each gets the request headers, may answer them (mutations, dynamic metadata, a
	// cleared route cache, an immediate response) and is then done with the request; the
	// next filter reads its per-route config from the route as the answer left it. Only
	// filters that process request headers alone are reproduced.
	Before []Filter
	// After are the ext_proc filters that run after this one in the chain, in order. Only
	// filters in observability mode are reproduced (Filter.ObservabilityMode, observe.go):
	// they are sent the request headers (request_header_mode SEND) and the response
	// headers (response_header_mode SEND) and never waited for.
	After []Filter

	// Intercept, when set, gives the listener HTTPS interception: the connection manager
	// accepts CONNECT (upgrade_configs CONNECT), a route with Route.TerminateConnect
	// terminates it into an internal listener, and that listener terminates TLS with a
	// certificate fetched on demand over delta SDS, then runs the same connection
	// manager, ext_proc, dynamic forward proxy and router on the decrypted requests,
	// except that it accepts no CONNECT (a tunnel inside the tunnel gets 403
	// upgrade_failed; FromBootstrap requires the internal connection manager to be the
	// ingress one without CONNECT, StripConnect).
	// Nil is Envoy without upgrade_configs: every CONNECT gets 403 (upgrade_failed).
	Intercept *Intercept

	// DownstreamTLS, if set, is the listener's TLS (downtls.go): a DownstreamTlsContext,
	// with client certificates verified when it has a validation context. The client
	// certificate is then what the request attributes connection.mtls,
	// connection.uri_san_peer_certificate, connection.dns_san_peer_certificate and
	// connection.subject_peer_certificate tell. Nil is a plain listener.
	DownstreamTLS *DownstreamTLS
	// JWTAuthn, if set, is a jwt_authn filter ahead of every ext_proc filter (jwtauthn.go):
	// it refuses what its rules require and cannot verify, and leaves the payloads it
	// verified in the dynamic metadata namespace JWTAuthnNamespace.
	JWTAuthn *JWTAuthn

	// AccessLog, if set, is called once per downstream request when it ends.
	AccessLog func(AccessLogEntry)
	// Logf, if set, receives debugging output.
	Logf func(format string, args ...any)
}

// Filter is an ext_proc filter ahead of Config's in the HTTP filter chain. Its settings mean
// what Config's of the same name mean. Its processing_mode must send the request headers and
// nothing else (request_header_mode SEND, response_header_mode SKIP, bodies NONE, trailers
// SKIP or DEFAULT): a filter that buffers a body ahead of another is not reproduced, so New
// refuses one with ErrUnsupported.
type Filter struct {
	Name                 string // its key in Route.PerFilter; required
	ProcessingMode       *extprocfilterv3.ProcessingMode
	InitialMetadata      map[string]string
	MutationRules        *mutationrulesv3.HeaderMutationRules
	RouteCacheAction     extprocfilterv3.ExternalProcessor_RouteCacheAction
	MessageTimeout       time.Duration
	StatusOnError        int
	FailureModeAllow     bool
	ReceivingNamespaces  []string
	ForwardingNamespaces []string
	RequestAttributes    []string
	// ObservabilityMode is observability_mode, for a filter of Config.After: messages are
	// sent without waiting and answers ignored (observe.go).
	ObservabilityMode bool
	// DeferredCloseTimeout is deferred_close_timeout, for a filter in observability mode: how
	// long its stream stays open after the request ends; 0 means Envoy's 5 s.
	DeferredCloseTimeout time.Duration
}

// HeadersOnlyMode is the processing_mode of a filter that sends the request headers and
// nothing else.
func HeadersOnlyMode() *extprocfilterv3.ProcessingMode {
	return &extprocfilterv3.ProcessingMode{
		RequestHeaderMode:   extprocfilterv3.ProcessingMode_SEND,
		ResponseHeaderMode:  extprocfilterv3.ProcessingMode_SKIP,
		RequestBodyMode:     extprocfilterv3.ProcessingMode_NONE,
		ResponseBodyMode:    extprocfilterv3.ProcessingMode_NONE,
		RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
		ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
	}
}

// resolve is the settings the filter runs with: main's, with the filter's own in place of
// the ext_proc filter's.
func (bf Filter) resolve(main *settings) (*settings, error) {
	if bf.Name == "" {
		return nil, fmt.Errorf("%w: a Before filter has no Name", ErrConfig)
	}
	mode := HeadersOnlyMode()
	if bf.ProcessingMode != nil {
		mode = proto.Clone(bf.ProcessingMode).(*extprocfilterv3.ProcessingMode)
	}
	if d := decodingState(mode); !d.sendHeaders || d.bodyMode != extprocfilterv3.ProcessingMode_NONE || d.sendTrailers ||
		!encodingState(mode).noExternalProcess() {
		return nil, fmt.Errorf("%w: filter %s processes more than the request headers (%v)", ErrUnsupported, bf.Name, mode)
	}
	s := &settings{Config: main.Config, mode: mode}
	c := &s.Config
	c.Name, c.InitialMetadata, c.ForwardingNamespaces, c.ReceivingNamespaces = bf.Name, bf.InitialMetadata, bf.ForwardingNamespaces, bf.ReceivingNamespaces
	c.MutationRules, c.DisallowIsError, c.RouteCacheAction, c.FailureModeAllow = bf.MutationRules, false, bf.RouteCacheAction, bf.FailureModeAllow
	c.MessageTimeout, c.StatusOnError = bf.MessageTimeout, bf.StatusOnError
	c.AllowModeOverride, c.AllowedOverrideModes, c.Metadata, c.Disabled, c.RequestAttributes = false, nil, nil, nil, bf.RequestAttributes
	c.Before = nil
	if c.MessageTimeout == 0 {
		c.MessageTimeout = defaultMessageTimeout
	}
	if c.StatusOnError == 0 {
		c.StatusOnError = defaultStatusOnError
	}
	var err error
	if s.checker, err = newChecker(bf.MutationRules, false); err != nil {
		return nil, err
	}
	if s.attrs, err = compileAttributes(bf.RequestAttributes); err != nil {
		return nil, err
	}
	return s, nil
}

// Intercept is the HTTPS interception part of an Envoy (1.37 and later) configuration:
// the CONNECT upgrade on the listener, the internal cluster that carries a terminated
// CONNECT into an internal listener (envoy.bootstrap.internal_listener, an
// envoy_internal_address endpoint), and that internal listener: its tls_inspector, its
// filter chain's transport_socket_connect_timeout and a DownstreamTlsContext whose
// certificate comes from envoy.tls.certificate_selectors.on_demand_secret with the
// envoy.tls.certificate_mappers.sni mapper.
type Intercept struct {
	// SDS is the gRPC target of the on-demand selector's config_source (api_type
	// DELTA_GRPC): "127.0.0.1:port" or "unix:/path". In ocisigner's deployment this is the
	// signer's ext_proc port. Envoy opens one DeltaSecrets stream per secret name (each
	// name is its own SDS subscription, with its own gRPC mux) and keeps it until the
	// server removes the name. State-of-the-world SDS is not reproduced.
	SDS string
	// DefaultSNI is the sni mapper's default_value (required by Envoy): the secret name
	// asked for when the client sends no SNI.
	DefaultSNI string
	// TLSInspector puts envoy.filters.listener.tls_inspector on the internal listener.
	// Only it sets the connection's requested server name (tls_inspector.cc; the TLS
	// socket does not, ssl_socket.cc SslSocket::onSuccess), so without it
	// connection.requested_server_name is "" for ext_proc even though the handshake, and
	// the sni mapper, saw the SNI.
	TLSInspector bool
	// TransportSocketConnectTimeout is the internal listener filter chain's
	// transport_socket_connect_timeout: a handshake not finished by then (for example
	// while SDS has not answered) is closed without an alert
	// (connection_impl.cc ServerConnectionImpl::onTransportSocketConnectTimeout). 0 is
	// Envoy's default: no timeout, the handshake waits as long as the client does.
	TransportSocketConnectTimeout time.Duration
	// DisableStatelessSessionResumption and DisableStatefulSessionResumption are the
	// DownstreamTlsContext fields. The on-demand selector refuses a context unless both
	// are set ("On demand certificates are not integrated with session resumption
	// support.", on_demand/config.cc createTlsCertificateSelectorFactory), so New fails
	// with ErrConfig otherwise. No session is ever resumed.
	DisableStatelessSessionResumption bool
	DisableStatefulSessionResumption  bool
	// ALPN is common_tls_context.alpn_protocols, in the server's order of preference
	// (ServerContextImpl::alpnSelectCallback, SSL_select_next_proto): the first of these
	// the client offers is chosen; none in common, or a client that offers none, means no
	// ALPN, and the connection manager (codec_type AUTO) then speaks HTTP/2 only if the
	// client's first bytes are the HTTP/2 preface, HTTP/1.1 otherwise
	// (ConnectionManagerUtility::determineNextProtocol). Nil is Envoy's default: no ALPN.
	ALPN []string
	// AuthorityFilterState, if set, is the object_key under which an
	// envoy.filters.http.set_filter_state filter on the listener stores a CONNECT's
	// %REQ(:AUTHORITY)% (factory envoy.string, shared_with_upstream ONCE). It reaches the
	// internal listener's connection only when InternalUpstream is set; ext_proc can then
	// read it with the request attribute filter_state['KEY'].
	AuthorityFilterState string
	// InternalUpstream is the internal cluster's transport_socket
	// envoy.transport_sockets.internal_upstream: it hands the filter state objects shared
	// with the upstream to the internal listener's connection (internal_upstream
	// config.cc InternalSocketFactory::createTransportSocket, user_space
	// PassthroughStateImpl::mergeInto). Without it (raw_buffer, Envoy's default) the
	// tunnel still works but no filter state crosses.
	InternalUpstream bool
}

// AccessLogEntry is what Envoy's access log would say about one downstream request.
// FormatAccessLog renders it with an Envoy format string.
type AccessLogEntry struct {
	Method string
	Path   string // the request target as received
	Status int    // 0 when the client went away before any response
	// ResponseCodeDetails is %RESPONSE_CODE_DETAILS%: "via_upstream" for relayed responses,
	// the ImmediateResponse's details (spaces made underscores) or Envoy's reason for a
	// local reply, for example "ext_proc_error_gRPC_error_13{boom}".
	ResponseCodeDetails string
	StreamStarted       bool // an ext_proc stream was opened for the request
	UpstreamCalled      bool // the request was sent upstream
	StartTime           time.Time
	Duration            time.Duration
	// RequestHeaders are the request headers as the access log sees them, at the end: after
	// every filter and the router (the processor's mutations, route rewrites). Pseudo-headers
	// are keyed as they are (":authority"), the others by canonical name.
	RequestHeaders http.Header
	// ResponseHeaders are the response headers sent to the client.
	ResponseHeaders http.Header
	// DynamicMetadata is the request's dynamic metadata by namespace: what the processor
	// sent in ProcessingResponse.dynamic_metadata for the namespaces in
	// ReceivingNamespaces, merged answer after answer.
	DynamicMetadata map[string]*structpb.Struct
	// UpstreamHost is the "host:port" the request was sent to, if it was.
	UpstreamHost string
	// RouteName is the name of the route the request ended on.
	RouteName string
}

// settings is Config with Envoy's defaults filled in and the rules compiled.
type settings struct {
	Config
	mode    *extprocfilterv3.ProcessingMode
	checker *checker
	before  []*settings // Config.Before, resolved
	after   []*settings // Config.After, resolved (observe.go)
	// deferredClose is a filter of Config.After's deferred_close_timeout.
	deferredClose time.Duration
	last          bool // Config's own filter, the last of the chain
	attrs         []attribute
	jwt           *jwtAuthn // Config.JWTAuthn, compiled
}

// DefaultProcessingMode returns the mode of ocisigner's envoy.yaml, used when
// Config.ProcessingMode is nil.
func DefaultProcessingMode() *extprocfilterv3.ProcessingMode {
	return &extprocfilterv3.ProcessingMode{
		RequestHeaderMode:   extprocfilterv3.ProcessingMode_SEND,
		ResponseHeaderMode:  extprocfilterv3.ProcessingMode_SKIP,
		RequestBodyMode:     extprocfilterv3.ProcessingMode_BUFFERED,
		ResponseBodyMode:    extprocfilterv3.ProcessingMode_NONE,
		RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
		ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
	}
}

// ProxyMutationRules returns the mutation_rules of the proxy-form ext_proc filter in
// ocisigner's envoy.yaml (deploy/envoy_test.go keeps them equal): Envoy's defaults, which
// refuse host, :authority, :method, :scheme and x-envoy-*, with a refused mutation failing
// the request.
func ProxyMutationRules() *mutationrulesv3.HeaderMutationRules {
	return &mutationrulesv3.HeaderMutationRules{DisallowIsError: wrapperspb.Bool(true)}
}

// GatewayMutationRules returns the mutation_rules of the gateway-form ext_proc filter in
// ocisigner's envoy.yaml (deploy/envoy_test.go keeps them equal): the defaults plus
// :authority, the narrowest rule that lets the signer address a request.
func GatewayMutationRules() *mutationrulesv3.HeaderMutationRules {
	return &mutationrulesv3.HeaderMutationRules{
		AllowExpression: &matcherv3.RegexMatcher{Regex: ":authority"},
		DisallowIsError: wrapperspb.Bool(true),
	}
}

func (c Config) resolve() (*settings, error) {
	s := &settings{Config: c}
	if c.Processor == "" {
		return nil, fmt.Errorf("%w: Processor is empty", ErrConfig)
	}
	if c.Upstream == "" && c.Resolve == nil {
		return nil, fmt.Errorf("%w: Upstream is empty and there is no Resolve", ErrConfig)
	}
	if c.ProcessingMode == nil {
		s.mode = DefaultProcessingMode()
	} else {
		s.mode = proto.Clone(c.ProcessingMode).(*extprocfilterv3.ProcessingMode)
	}
	if err := checkSupportedMode(s.mode); err != nil {
		return nil, err
	}
	if s.BodyBufferLimit == 0 {
		s.BodyBufferLimit = defaultBufferLimit
	}
	if s.BodyBufferLimit < 0 {
		return nil, fmt.Errorf("%w: negative BodyBufferLimit", ErrConfig)
	}
	if s.MessageTimeout == 0 {
		s.MessageTimeout = defaultMessageTimeout
	}
	if s.StatusOnError == 0 {
		s.StatusOnError = defaultStatusOnError
	}
	if s.StatusOnError < 200 || s.StatusOnError > 599 {
		return nil, fmt.Errorf("%w: StatusOnError %d", ErrConfig, s.StatusOnError)
	}
	if s.RemoteCloseTimeout == 0 {
		s.RemoteCloseTimeout = defaultRemoteCloseTimeout
	}
	if s.RouteTimeout == 0 {
		s.RouteTimeout = defaultRouteTimeout
	}
	if s.ConnectTimeout <= 0 {
		s.ConnectTimeout = defaultConnectTimeout
	}
	ck, err := newChecker(c.MutationRules, c.DisallowIsError)
	if err != nil {
		return nil, err
	}
	s.checker = ck
	if s.attrs, err = compileAttributes(c.RequestAttributes); err != nil {
		return nil, err
	}
	if err := c.Intercept.validate(); err != nil {
		return nil, err
	}
	if err := c.DownstreamTLS.validate(); err != nil {
		return nil, err
	}
	if s.jwt, err = c.JWTAuthn.compile(); err != nil {
		return nil, err
	}
	if s.Name == "" {
		s.Name = "envoy.filters.http.ext_proc"
	}
	s.last = true
	for _, bf := range c.Before {
		b, err := bf.resolve(s)
		if err != nil {
			return nil, err
		}
		s.before = append(s.before, b)
	}
	for _, af := range c.After {
		a, err := af.resolveObserver(s)
		if err != nil {
			return nil, err
		}
		s.after = append(s.after, a)
	}
	return s, nil
}

// checkSupportedMode refuses configured modes the stand-in does not implement, so that a
// test configured that way fails at New rather than on every request.
func checkSupportedMode(m *extprocfilterv3.ProcessingMode) error {
	switch m.GetRequestBodyMode() {
	case extprocfilterv3.ProcessingMode_NONE, extprocfilterv3.ProcessingMode_BUFFERED:
	default:
		return fmt.Errorf("%w: request_body_mode %v", ErrUnsupported, m.GetRequestBodyMode())
	}
	if m.GetResponseBodyMode() != extprocfilterv3.ProcessingMode_NONE {
		return fmt.Errorf("%w: response_body_mode %v", ErrUnsupported, m.GetResponseBodyMode())
	}
	if m.GetRequestTrailerMode() == extprocfilterv3.ProcessingMode_SEND ||
		m.GetResponseTrailerMode() == extprocfilterv3.ProcessingMode_SEND {
		return fmt.Errorf("%w: trailer modes SEND", ErrUnsupported)
	}
	return nil
}
