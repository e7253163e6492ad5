// Package extproc is ocisigner's Envoy ext_proc service: one gRPC stream per
// HTTP request, signed in the response to its headers or to its buffered
// body, refused with an ImmediateResponse when it cannot be signed. It never
// ends a stream OK before the request was answered, since Envoy would then
// forward the request unsigned; once the final answer is sent it ends the
// stream at once, so that a signer restarting while OCI works on the request
// cannot fail a request OCI already executed.
package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/signer"
)

// Defaults of Config.
const (
	DefaultProfileHeader = "x-oci-profile"
	// DefaultCompartmentKey is the gRPC metadata key a route sets (like the
	// profile pin) to name the compartment of its Generative AI requests.
	DefaultCompartmentKey = "x-oci-compartment"
	DefaultMaxBodyBytes   = 32 << 20
	// DefaultMaxStreams bounds the streams the whole server serves at once.
	// Every in-flight OCI request holds one; beyond it a stream is refused
	// with RESOURCE_EXHAUSTED (Envoy answers its status_on_error).
	DefaultMaxStreams = 16384
	// DefaultMaxStreamsPerConn is the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
	// the server announces. Envoy opens another connection to the signer
	// cluster when one is full, so this bounds a single client, not Envoy.
	DefaultMaxStreamsPerConn = 1024
	// DefaultFirstMessageTimeout is how long a new stream may stay silent.
	// Envoy sends the request headers as soon as it opens the stream, so a
	// stream that says nothing is not Envoy.
	DefaultFirstMessageTimeout = 10 * time.Second
	// DefaultIdleTimeout is how long a stream may wait for Envoy's next
	// message once it has begun: in practice the wait for a buffered body,
	// which Envoy sends once the client has uploaded all of it. 15 minutes
	// lets a body of the default 32 MiB limit arrive at about 36 KiB/s, a
	// slow uplink; a client slower than that is cut off by Envoy's own
	// stream_idle_timeout (5 minutes without a byte) long before, unless it
	// trickles, and then this bounds the ext_proc slot it holds.
	DefaultIdleTimeout = 15 * time.Minute
)

// StreamedUploadMode is the mode_override sent for requests whose body is not
// signed (Object Storage PutObject and UploadPart): the body streams past
// Envoy and ocisigner unbuffered. Envoy honours it only when it equals one of
// the filter's allowed_override_modes field by field, so every field is set
// and envoy.yaml lists this exact mode.
var StreamedUploadMode = &extprocfilterv3.ProcessingMode{
	RequestHeaderMode:   extprocfilterv3.ProcessingMode_SEND,
	ResponseHeaderMode:  extprocfilterv3.ProcessingMode_SKIP,
	RequestBodyMode:     extprocfilterv3.ProcessingMode_NONE,
	ResponseBodyMode:    extprocfilterv3.ProcessingMode_NONE,
	RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
	ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
}

// Credentials maps a profile name to the source of its credentials.
type Credentials interface {
	Source(profile string) signer.Source
}

// Event describes one request's outcome, for logs and metrics. Every string
// in it that a client chose is already capped in length.
type Event struct {
	Profile       string
	Kind          signer.Kind
	Method        string
	Host          string
	Path          string // query values elided
	BodyBytes     int64  // bytes hashed into the signature
	Streamed      bool   // body left out of the signature and streamed (PutObject, UploadPart)
	SignedHeaders string
	Outcome       string    // OutcomeSigned, or the refusal code
	Status        int       // the refusal's HTTP status; 0 when signed
	KeyID         string    // masked
	Expiry        time.Time // when the credentials used expire; zero for API keys
	Duration      time.Duration
	SignDuration  time.Duration // time inside signer.Sign
	// Caller is the caller's label and Rule the policy's bounded metric
	// label for the decision (a rule's name or one of policy's fixed
	// labels); both "" without a policy. Caller is as many values as
	// callers: never a metric label.
	Caller string
	Rule   string
}

// OutcomeSigned is Event.Outcome for a signed request.
const OutcomeSigned = "signed"

// Observer receives an Event per request. It must be cheap and safe for
// concurrent use: it runs on the request path.
type Observer interface {
	Observe(Event)
}

// Config configures a Server.
type Config struct {
	Credentials    Credentials
	DefaultProfile string
	// ProfileHeader names the request header, and the gRPC metadata key
	// (a route's pin), that select a profile per request. It is removed
	// before the request leaves.
	ProfileHeader string
	// NoProfileHeader turns per-request selection off: a request naming a
	// profile is refused, and only routes (and the default) choose. On a
	// gateway others can reach, the header would let anyone pick any profile.
	NoProfileHeader bool
	// HeaderOverridesRoute lets the header choose another profile than the
	// one a route pins; by default the route's pin wins and such a request
	// is refused.
	HeaderOverridesRoute bool
	// Profiles, when set, are the only profiles ocisigner signs for,
	// however a request chooses.
	Profiles []string
	// Aliases are the service aliases of gateway-addressed requests; nil
	// means signer.Aliases().
	Aliases []signer.Alias
	// CompartmentKey is the gRPC metadata key with which a route names the
	// compartment of its Generative AI requests; "" means
	// DefaultCompartmentKey.
	CompartmentKey string
	// GenAICompartment is the compartment a Generative AI inference request
	// without opc-compartment-id gets when its route names none; "" means
	// the tenancy of the credentials (the root compartment).
	GenAICompartment string
	// ProjectKey is the gRPC metadata key with which a route names the
	// Generative AI project of its /openai/v1 requests; "" means
	// DefaultProjectKey. GenAIProject is the project such a request without
	// an openai-project header gets when its route names none (genai.go).
	ProjectKey, GenAIProject string
	Hosts                    *HostPolicy // nil: OCI realm domains only
	MaxBodyBytes             int64       // largest body signed; 0 means DefaultMaxBodyBytes
	// MaxStreams, MaxStreamsPerConn and FirstMessageTimeout bound what a
	// client that is not Envoy can hold; 0 means the defaults above.
	MaxStreams          int
	MaxStreamsPerConn   uint32
	FirstMessageTimeout time.Duration
	// IdleTimeout bounds the wait between two messages of a stream (for a
	// body-signed request, the upload of its body); 0 means
	// DefaultIdleTimeout. A stream that goes quiet longer ends with
	// DeadlineExceeded, so it cannot hold a MaxStreams slot for ever.
	IdleTimeout time.Duration
	// MinPingInterval is the keepalive enforcement's minimum time between a
	// peer's pings; 0 means DefaultMinPingInterval.
	MinPingInterval time.Duration
	// DiscloseErrors puts the whole credential error (file paths, the
	// config's profile names) into refusals. Off, those go to the log only:
	// on a shared gateway they tell one client about another's setup.
	DiscloseErrors bool
	// Policy, when set, decides per caller which profile a request signs
	// as and what it may reach (caller.go); nil keeps the behaviour of a
	// gateway without policy. Keys are the gateway keys callers may
	// present. EnvoyIdentityHeaders are IdentityHeaders the operator's
	// Envoy sets itself, so a request carrying one is not refused.
	Policy               PolicySource
	Keys                 KeySource
	EnvoyIdentityHeaders []string
	Logger               *slog.Logger
	Clock                func() time.Time
	// Observer gets an Event per request; one that also implements
	// RefusalObserver gets OCI's 401 and 403 to what was signed (observe.go).
	Observer Observer

	// AllowCredentialMinting lets requests through that would mint
	// credentials from the gateway's identity (intercepted.go, minting.go).
	AllowCredentialMinting bool
}

// Server is the ext_proc service.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	cfg     Config
	log     *slog.Logger
	hosts   *HostPolicy
	streams chan struct{} // a slot per stream being served
	// observing is a slot per stream of the observe stage (observe.go).
	observing chan struct{}
	aliases   map[string]signer.Alias
	// aliasList is the aliases' names, sorted, for messages.
	aliasList     []string
	profiles      map[string]bool // nil: every profile
	envoyIdentity map[string]bool // Config.EnvoyIdentityHeaders
}

// New returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Credentials == nil {
		return nil, errors.New("extproc: Config.Credentials is required")
	}
	if cfg.DefaultProfile == "" {
		cfg.DefaultProfile = signer.DefaultProfile
	}
	if cfg.ProfileHeader == "" {
		cfg.ProfileHeader = DefaultProfileHeader
	}
	// Envoy sends header names lower-case, and gRPC metadata keys are too.
	cfg.ProfileHeader = strings.ToLower(cfg.ProfileHeader)
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.MaxStreamsPerConn == 0 {
		cfg.MaxStreamsPerConn = DefaultMaxStreamsPerConn
	}
	if cfg.FirstMessageTimeout <= 0 {
		cfg.FirstMessageTimeout = DefaultFirstMessageTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MinPingInterval <= 0 {
		cfg.MinPingInterval = DefaultMinPingInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.CompartmentKey == "" {
		cfg.CompartmentKey = DefaultCompartmentKey
	}
	if cfg.ProjectKey == "" {
		cfg.ProjectKey = DefaultProjectKey
	}
	s := &Server{cfg: cfg, log: cfg.Logger, hosts: cfg.Hosts, streams: make(chan struct{}, cfg.MaxStreams), aliases: map[string]signer.Alias{},
		observing: make(chan struct{}, cfg.MaxStreams)}
	if s.hosts == nil {
		s.hosts = &HostPolicy{}
	}
	if cfg.Aliases == nil {
		cfg.Aliases = signer.Aliases()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, a := range cfg.Aliases {
		s.aliases[a.Name] = a
		s.aliasList = append(s.aliasList, a.Name)
	}
	slices.Sort(s.aliasList)
	s.envoyIdentity = map[string]bool{}
	for _, h := range cfg.EnvoyIdentityHeaders {
		s.envoyIdentity[strings.ToLower(h)] = true
	}
	if cfg.Profiles != nil {
		s.profiles = map[string]bool{}
		for _, p := range cfg.Profiles {
			s.profiles[p] = true
		}
	}
	return s, nil
}

// Validate reports settings that cannot work together: an allowed host of
// one word is reached in the gateway form by that word (/myhost/...), so an
// alias of the same name would hide it.
func (c Config) Validate() error {
	aliases := c.Aliases
	if aliases == nil {
		aliases = signer.Aliases()
	}
	if c.Hosts == nil {
		return nil
	}
	for _, a := range aliases {
		if slices.Contains(c.Hosts.Exact(), a.Name) {
			return fmt.Errorf("%w: --allow-host %s is also the name of an alias, so /%s/... would be read as the alias; allow the host by a longer name", ErrHostPattern, a.Name, a.Name)
		}
	}
	return nil
}

// Profiles are the only profiles the service signs for (Config.Profiles),
// or nil for every profile.
func (s *Server) Profiles() []string { return slices.Clone(s.cfg.Profiles) }

// Register adds the service to g, which must be made with ServerOptions.
func (s *Server) Register(g *grpc.Server) {
	extprocv3.RegisterExternalProcessorServer(g, s)
}

// ServerOptions are the gRPC server options the service needs: its codec,
// a receive limit above the largest body, keepalive enforcement that
// accepts Envoy's HTTP/2 pings (grpc-go's default answers them with GOAWAY
// too_many_pings), a bound on concurrent streams per connection, and the
// transport tuning of transport.go.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return append(s.requiredOptions(), transportOptions()...)
}

// requiredOptions are the options the service cannot work without.
func (s *Server) requiredOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(Codec()),
		grpc.MaxRecvMsgSize(s.maxRecvMsgSize()),
		grpc.MaxConcurrentStreams(s.cfg.MaxStreamsPerConn),
		// Envoy pings every 30s (envoy.yaml's connection_keepalive), idle
		// or not; a peer pinging more than once every 2s gets GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: s.cfg.MinPingInterval, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
	}
}

// DefaultMinPingInterval is the most often a peer may ping without being
// told to go away (grpc-go counts faster pings as abuse). Envoy's
// connection_keepalive interval in envoy.yaml must not be shorter
// (deploy/envoy_test.go checks it).
const DefaultMinPingInterval = 2 * time.Second

// maxRecvMsgSize is the gRPC receive limit the service needs: the largest
// body plus room for the headers around it.
func (s *Server) maxRecvMsgSize() int { return int(s.cfg.MaxBodyBytes) + 1<<20 }

type phase int

const (
	awaitHeaders phase = iota
	awaitBody          // headers seen, signature waits for the buffered body
	streaming          // signed at the headers; an upload body streams past, Envoy closes
	final              // the request is answered: signed, or refused
)

// stream is the state of one request.
type stream struct {
	phase   phase
	start   time.Time
	h       requestHeaders
	profile string
	kind    signer.Kind // of the credentials signed with
	keyID   string      // masked
	region  string      // of the credentials
	expiry  time.Time
	project string         // where a Generative AI request's project came from (genai.go)
	address bool           // the stream is the address stage's (StageKey)
	signed  *signer.Signed // what Sign returned, for Preview
	refusal *refusal       // why it was refused, for Preview
	// What Envoy sent with the request headers for the caller (caller.go),
	// and what the policy said.
	attributes map[string]*structpb.Struct
	forwarded  *corev3.Metadata
	adm        admission
}

// use records the credentials the request is signed with.
func (st *stream) use(c *signer.Credentials) {
	st.kind, st.keyID, st.region, st.expiry = c.Kind, signer.MaskKeyID(c.KeyID), c.Region, c.Expiry()
}

// Process serves one request's stream. It returns nil only once the request
// was answered for good, or Envoy closed its side (io.EOF) after every
// message was answered.
func (s *Server) Process(ps extprocv3.ExternalProcessor_ProcessServer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic in ext_proc stream", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "ocisigner: internal error")
		}
	}()
	if isObserveStage(ps.Context()) {
		return s.observe(ps)
	}
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		return status.Errorf(codes.ResourceExhausted, "ocisigner: %d streams in flight, the most it serves at once", s.cfg.MaxStreams)
	}
	ctx := ps.Context()
	st := &stream{address: isAddressStage(ctx)}
	for first := true; ; first = false {
		f := &frame{req: &extprocv3.ProcessingRequest{}}
		var err error
		if first {
			err = s.recv(ps, f, s.cfg.FirstMessageTimeout, "no request headers within %s of opening the stream")
		} else {
			err = s.recv(ps, f, s.cfg.IdleTimeout, "no message within %s of the last one")
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			// Envoy went away, the stream went quiet, or the server is
			// stopping: never OK.
			if c := status.Code(err); c == codes.OK || c == codes.Unknown {
				return status.Error(codes.Unavailable, err.Error())
			}
			return err
		}
		resp := s.handle(ctx, st, f)
		if err := ps.Send(resp); err != nil {
			return err
		}
		if st.phase == final {
			// Nothing more is needed from Envoy for this request, and
			// nothing Envoy could still send changes what was answered.
			return nil
		}
	}
}

// isAddressStage reports a stream of the address stage (StageKey).
func isAddressStage(ctx context.Context) bool {
	v := metadata.ValueFromIncomingContext(ctx, StageKey)
	return len(v) == 1 && v[0] == StageAddress
}

// recv receives the next message, giving up after timeout. grpc-go cannot
// interrupt a RecvMsg, so it runs on its own goroutine; returning ends the
// stream, which ends that RecvMsg too.
func (s *Server) recv(ps extprocv3.ExternalProcessor_ProcessServer, f *frame, timeout time.Duration, quiet string) error {
	got := make(chan error, 1)
	go func() { got <- ps.RecvMsg(f) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-got:
		return err
	case <-t.C:
		return status.Errorf(codes.DeadlineExceeded, "ocisigner: "+quiet, timeout)
	}
}

// handle answers one message; a panic becomes a 500 for this request.
func (s *Server) handle(ctx context.Context, st *stream, f *frame) (resp *extprocv3.ProcessingResponse) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic while handling a request", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			resp = s.refused(st, refuse(http.StatusInternalServerError, CodeInternal, "ocisigner hit an internal error; see its log"))
		}
	}()
	if f.tooLarge {
		return s.refused(st, refuse(http.StatusRequestHeaderFieldsTooLarge, CodeHeadersTooLarge,
			fmt.Sprintf("the request headers are over %d bytes, more than ocisigner reads", maxHeadersMessage)))
	}
	if st.phase == awaitBody {
		if b, ok := f.req.Request.(*extprocv3.ProcessingRequest_RequestBody); ok {
			return s.onBody(ctx, st, b.RequestBody, f.digest)
		}
		// Anything else here would let the request go on unsigned.
		return s.refused(st, refuse(http.StatusInternalServerError, CodeMisconfigured,
			"Envoy sent another message while ocisigner waited for the buffered body; set request_body_mode BUFFERED and the trailer modes SKIP"))
	}
	switch r := f.req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		if st.phase != awaitHeaders {
			return s.refused(st, refuse(http.StatusInternalServerError, CodeMisconfigured, "request headers arrived twice on one stream"))
		}
		st.attributes, st.forwarded = f.req.GetAttributes(), f.req.GetMetadataContext()
		if st.address {
			return s.onAddress(ctx, st, r.RequestHeaders)
		}
		return s.onHeaders(ctx, st, r.RequestHeaders, f.req.GetMetadataContext())
	case *extprocv3.ProcessingRequest_RequestBody:
		if st.phase == streaming {
			// Signed at the headers but the filter did not take the mode
			// override (allow_mode_override off): the body, which the
			// signature does not cover, passes unchanged.
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
		}
		return s.refused(st, refuse(http.StatusInternalServerError, CodeMisconfigured,
			"Envoy sent a body without its headers; set the ext_proc request_header_mode to SEND"))
	}
	if st.phase == streaming {
		// An upload already signed: a filter configured to send more (trailers,
		// the response) gets it back unchanged.
		switch f.req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestTrailers:
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseBody:
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
		}
	}
	return s.refused(st, refuse(http.StatusInternalServerError, CodeMisconfigured,
		"Envoy sent a message ocisigner cannot sign from before the request headers; check the ext_proc processing_mode"))
}
