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

	// AccessLog, if set, is called once per downstream request when it ends.
	AccessLog func(AccessLogEntry)
	// Logf, if set, receives debugging output.
	Logf func(format string, args ...any)
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
