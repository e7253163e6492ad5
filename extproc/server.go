// Package extproc is ocisigner's Envoy ext_proc service: one gRPC stream per
// HTTP request, signed in the response to its headers or to its buffered
// body, refused with an ImmediateResponse when it cannot be signed. It never
// ends a stream OK before the request was answered, since Envoy would then
// forward the request unsigned.
package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
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

	"github.com/ocisigner/ocisigner/signer"
)

// Defaults of Config.
const (
	DefaultProfileHeader = "x-oci-profile"
	DefaultMaxBodyBytes  = 32 << 20
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
// *signer.ConfigFile implements it.
type Credentials interface {
	Source(profile string) signer.Source
}

// Event describes one request's outcome, for logs and metrics.
type Event struct {
	Profile       string
	Kind          signer.Kind
	Method        string
	Host          string
	Path          string // query values elided
	BodyBytes     int64  // bytes hashed into the signature
	Streamed      bool   // body left out of the signature and streamed (PutObject, UploadPart)
	SignedHeaders string
	Outcome       string    // "signed", or the refusal code
	Status        int       // the refusal's HTTP status; 0 when signed
	KeyID         string    // masked
	Expiry        time.Time // when the credentials used expire; zero for API keys
	Duration      time.Duration
	SignDuration  time.Duration // time inside signer.Sign
}

// Observer receives an Event per request. It must be cheap and safe for
// concurrent use: it runs on the request path.
type Observer interface {
	Observe(Event)
}

// Config configures a Server.
type Config struct {
	Credentials    Credentials
	DefaultProfile string
	// ProfileHeader names the request header, and the gRPC metadata key, that
	// select a profile per request. It is removed before the request leaves.
	ProfileHeader string
	Hosts         *HostPolicy // nil: OCI realm domains only
	MaxBodyBytes  int64       // largest body signed; 0 means DefaultMaxBodyBytes
	Logger        *slog.Logger
	Clock         func() time.Time
	Observer      Observer
}

// Server is the ext_proc service.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	cfg   Config
	log   *slog.Logger
	hosts *HostPolicy
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
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	s := &Server{cfg: cfg, log: cfg.Logger, hosts: cfg.Hosts}
	if s.hosts == nil {
		s.hosts = &HostPolicy{}
	}
	return s, nil
}

// Register adds the service to g, which must be made with ServerOptions.
func (s *Server) Register(g *grpc.Server) {
	extprocv3.RegisterExternalProcessorServer(g, s)
}

// ServerOptions are the gRPC server options the service needs: its codec,
// a receive limit above the largest body, keepalive enforcement that
// accepts Envoy's HTTP/2 pings (grpc-go's default answers them with GOAWAY
// too_many_pings), and the transport tuning of transport.go.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return append(s.requiredOptions(), transportOptions()...)
}

// requiredOptions are the options the service cannot work without.
func (s *Server) requiredOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(Codec()),
		grpc.MaxRecvMsgSize(s.maxRecvMsgSize()),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
	}
}

// maxRecvMsgSize is the gRPC receive limit the service needs: the largest
// body plus room for the headers around it.
func (s *Server) maxRecvMsgSize() int { return int(s.cfg.MaxBodyBytes) + 1<<20 }

type phase int

const (
	awaitHeaders phase = iota
	awaitBody          // headers seen, signature waits for the buffered body
	answered           // signed or refused; later messages pass through
)

// stream is the state of one request.
type stream struct {
	phase   phase
	start   time.Time
	h       requestHeaders
	profile string
}

// Process serves one request's stream. It returns nil only once Envoy has
// closed its side (io.EOF), after every message was answered.
func (s *Server) Process(ps extprocv3.ExternalProcessor_ProcessServer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic in ext_proc stream", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "ocisigner: internal error")
		}
	}()
	ctx := ps.Context()
	st := &stream{}
	for {
		f := frame{req: &extprocv3.ProcessingRequest{}}
		if err := ps.RecvMsg(&f); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			// Envoy went away, or the server is stopping: never OK.
			if c := status.Code(err); c == codes.OK || c == codes.Unknown {
				return status.Error(codes.Unavailable, err.Error())
			}
			return err
		}
		resp := s.handle(ctx, st, &f)
		if err := ps.Send(resp); err != nil {
			return err
		}
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
	switch r := f.req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return s.onHeaders(ctx, st, r.RequestHeaders)
	case *extprocv3.ProcessingRequest_RequestBody:
		return s.onBody(ctx, st, r.RequestBody, f.digest)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	// A filter configured to send the response too gets it back unchanged.
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
	case *extprocv3.ProcessingRequest_ResponseBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
	}
	return s.refused(st, refuse(http.StatusInternalServerError, CodeMisconfigured, "Envoy sent a message ocisigner does not know; check the ext_proc processing_mode"))
}

func (s *Server) onHeaders(ctx context.Context, st *stream, m *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	if st.phase != awaitHeaders {
		return s.refused(st, refuse(http.StatusInternalServerError, CodeMisconfigured, "request headers arrived twice on one stream"))
	}
	st.start = time.Now()
	st.h = parseHeaders(m.GetHeaders())
	h := &st.h
	if h.method == "" || h.path == "" || h.authority == "" {
		return s.refused(st, refuse(http.StatusBadRequest, CodeMisconfigured, "request has no :method, :path or :authority to sign"))
	}
	if !s.hosts.Allowed(h.authority) {
		return s.refused(st, refuse(http.StatusForbidden, CodeHostNotAllowed,
			fmt.Sprintf("ocisigner signs only for OCI API hosts; %q is not one. If it should be, start ocisigner with --allow-host %s", h.authority, h.authority)))
	}
	st.profile = s.profileFor(ctx, h)
	creds, err := s.cfg.Credentials.Source(st.profile).Credentials(ctx)
	if err != nil {
		return s.refused(st, credentialRefusal(st.profile, err))
	}
	bodySigned := signer.BodySigned(h.method, h.path)
	if bodySigned && !m.GetEndOfStream() {
		// Sign once the whole body is here: Envoy buffers it and applies the
		// body response's header mutations before anything goes upstream.
		st.phase = awaitBody
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
	}
	var d *signer.Digest
	if bodySigned {
		d = &signer.Digest{Length: 0, SHA256: emptySHA256}
	}
	mut, r := s.sign(st, creds, d)
	if r != nil {
		return s.refused(st, r)
	}
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mut}},
	}}
	if !m.GetEndOfStream() {
		// A body the signature does not cover: let it stream.
		resp.ModeOverride = StreamedUploadMode
	}
	return resp
}

func (s *Server) onBody(ctx context.Context, st *stream, b *extprocv3.HttpBody, d *signer.Digest) *extprocv3.ProcessingResponse {
	switch st.phase {
	case answered:
		// Signed at the headers but the filter did not take the mode
		// override (allow_mode_override off): the body passes unchanged.
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
	case awaitHeaders:
		return s.refused(st, refuse(http.StatusInternalServerError, CodeMisconfigured,
			"Envoy sent a body without its headers; set the ext_proc request_header_mode to SEND"))
	}
	if !b.GetEndOfStream() {
		return s.refused(st, refuse(http.StatusInternalServerError, CodeMisconfigured,
			"Envoy sent the body in pieces; ocisigner signs bodies only with the ext_proc request_body_mode BUFFERED"))
	}
	if d == nil {
		dd := signer.DigestOf(b.GetBody())
		d = &dd
	}
	if d.Length > s.cfg.MaxBodyBytes {
		return s.refused(st, refuse(http.StatusRequestEntityTooLarge, CodeBodyTooLarge,
			fmt.Sprintf("request body of %d bytes is over ocisigner's --max-body-bytes %d; raise it together with Envoy's request_body_buffer_limit", d.Length, s.cfg.MaxBodyBytes)))
	}
	// The credentials are taken again: a rotation while the body uploaded wins.
	creds, err := s.cfg.Credentials.Source(st.profile).Credentials(ctx)
	if err != nil {
		return s.refused(st, credentialRefusal(st.profile, err))
	}
	mut, r := s.sign(st, creds, d)
	if r != nil {
		return s.refused(st, r)
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
		RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mut}},
	}}
}

var emptySHA256 = signer.DigestOf(nil).SHA256

// profileFor picks the profile: the request header, else the route's gRPC
// metadata, else the default.
func (s *Server) profileFor(ctx context.Context, h *requestHeaders) string {
	if p, ok := h.Get(s.cfg.ProfileHeader); ok && p != "" {
		return p
	}
	// One key, not FromIncomingContext: that copies all of the stream's
	// metadata on every request.
	if v := metadata.ValueFromIncomingContext(ctx, s.cfg.ProfileHeader); len(v) > 0 && v[0] != "" {
		return v[0]
	}
	return s.cfg.DefaultProfile
}

// sign computes the signature and the header mutation that carries it.
func (s *Server) sign(st *stream, creds *signer.Credentials, d *signer.Digest) (*extprocv3.HeaderMutation, *refusal) {
	h := &st.h
	t0 := time.Now()
	out, err := signer.Sign(&signer.Request{Method: h.method, Host: h.authority, Target: h.path, Header: h, Digest: d}, creds, s.cfg.Clock())
	signDur := time.Since(t0)
	if err != nil {
		r := refuse(http.StatusBadRequest, CodeMisconfigured, "cannot sign this request: "+err.Error())
		if !errors.Is(err, signer.ErrInvalidRequest) {
			r = refuse(http.StatusInternalServerError, CodeInternal, "cannot sign this request: "+err.Error())
		}
		return nil, r
	}
	mut := &extprocv3.HeaderMutation{SetHeaders: make([]*corev3.HeaderValueOption, 0, len(out.Headers))}
	for _, f := range out.Headers {
		mut.SetHeaders = append(mut.SetHeaders, setHeader(f.Name, f.Value))
	}
	// What OCI would read instead of what was signed must not reach it: a
	// client's x-date overrides date, and a chunked transfer-encoding beside
	// the content-length now set would make the length ambiguous.
	for _, name := range []string{signer.HeaderXDate, s.cfg.ProfileHeader} {
		if h.has(name) {
			mut.RemoveHeaders = append(mut.RemoveHeaders, name)
		}
	}
	if out.BodySigned && h.has("transfer-encoding") {
		mut.RemoveHeaders = append(mut.RemoveHeaders, "transfer-encoding")
	}
	st.phase = answered
	ev := s.event(st, creds)
	ev.Outcome, ev.SignDuration, ev.SignedHeaders, ev.Streamed = "signed", signDur, out.SignedHeaders, !out.BodySigned && h.method == http.MethodPut
	if d != nil {
		ev.BodyBytes = d.Length
	}
	// Typed attributes: the line is written for every request.
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "signed", slog.String("profile", ev.Profile), slog.String("kind", string(ev.Kind)),
		slog.String("method", ev.Method), slog.String("host", ev.Host), slog.String("path", ev.Path),
		slog.Int64("body_bytes", ev.BodyBytes), slog.Bool("streamed", ev.Streamed), slog.String("signed_headers", ev.SignedHeaders),
		slog.String("key_id", ev.KeyID), slog.String("outcome", ev.Outcome), slog.Duration("duration", ev.Duration))
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("signing string", "profile", ev.Profile, "signing_string", signer.MaskSigningString(out.SigningString))
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.Observe(ev)
	}
	return mut, nil
}

func (s *Server) event(st *stream, creds *signer.Credentials) Event {
	ev := Event{Profile: st.profile, Method: st.h.method, Host: st.h.authority, Path: logPath(st.h.path)}
	if !st.start.IsZero() {
		ev.Duration = time.Since(st.start)
	}
	if creds != nil {
		ev.Kind, ev.KeyID, ev.Expiry = creds.Kind, signer.MaskKeyID(creds.KeyID), creds.Expiry()
	}
	return ev
}

// refused logs and observes a refusal and returns its ImmediateResponse.
func (s *Server) refused(st *stream, r *refusal) *extprocv3.ProcessingResponse {
	st.phase = answered
	ev := s.event(st, nil)
	ev.Outcome, ev.Status = r.code, r.status
	level := slog.LevelWarn
	if r.status >= 500 {
		level = slog.LevelError
	}
	s.log.Log(context.Background(), level, "refused", "profile", ev.Profile, "method", ev.Method, "host", ev.Host, "path", ev.Path,
		"status", r.status, "outcome", r.code, "reason", r.message, "duration", ev.Duration)
	if s.cfg.Observer != nil {
		s.cfg.Observer.Observe(ev)
	}
	return r.response()
}
