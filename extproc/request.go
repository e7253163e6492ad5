package extproc

import (
	"context"
	"errors"
	"fmt"
	"github.com/ocisigner/ocisigner/internal/text"
	"log/slog"
	"net/http"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/signer"
)

// Bounds on what ocisigner reads from a request before doing any work on
// it. Envoy's own header limit is 60 KiB (max_request_headers_kb) in all;
// anything larger did not come through an Envoy configured as envoy.yaml is.
const (
	maxPathLen    = 16 << 10
	maxProfileLen = 256
)

// foreignCredentials are credentials a client sends for someone other than
// OCI, which ocisigner's signature replaces: a proxy's (curl -x with a
// user), an API key an SDK sends to its own service (OpenAI's X-Api-Key,
// Azure's api-key, Google's x-goog-api-key), and cookies. OCI's API uses
// none of them (the SDKs never send them), and a cookie sent to a gateway
// on localhost belongs to whatever else runs on localhost: browsers send
// cookies by host, whatever the port. The client's own Authorization is
// overwritten by the signature. OpenAI-Organization names an account, not a
// secret, and passes.
var foreignCredentials = [...]string{"proxy-authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie"}

// signedOnce are the headers a signature covers that ocisigner passes on as
// the client sent them. A second copy would be forwarded beside the signed
// one, and OCI might read the copy it got no signature for.
var signedOnce = [...]string{signer.HeaderContentType, signer.HeaderOBOToken, signer.HeaderSubscription, signer.HeaderCrossTenancy}

// onHeaders answers the request headers in the signing stage: the
// signature, for a request without a body or whose body OCI does not sign;
// else what the body's answer needs, and the wait for the body. forwarded is
// the dynamic metadata Envoy forwards (what the address stage left).
func (s *Server) onHeaders(ctx context.Context, st *stream, m *extprocv3.HttpHeaders, forwarded *corev3.Metadata) *extprocv3.ProcessingResponse {
	a, r := s.begin(st, m)
	if r == nil {
		r = s.authorize(a)
	}
	if r == nil {
		r = s.screen(st, forwarded)
	}
	if r == nil {
		r = checkSignedOnce(&st.h)
	}
	if r == nil {
		r = s.admitSigning(ctx, st, forwarded)
	}
	if r != nil {
		return s.refused(st, r)
	}
	creds, r := s.credentialsFor(ctx, st)
	if r == nil {
		r = s.checkAddressed(forwarded, creds, st.h.authority)
	}
	// What a Generative AI request needs goes in this answer, before the body.
	var route *extprocv3.HeaderMutation
	if r == nil {
		route, r = s.genaiHeaders(ctx, st, creds)
	}
	if r != nil {
		return s.refused(st, r)
	}
	bodySigned := signer.BodySigned(st.h.method, st.h.path)
	if bodySigned && !m.GetEndOfStream() {
		// Sign once the whole body is here: Envoy buffers it and applies the
		// body response's header mutations before anything goes upstream.
		st.phase = awaitBody
		return headersAnswer(route, false)
	}
	var d *signer.Digest
	if bodySigned {
		d = &signer.Digest{Length: 0, SHA256: emptySHA256}
	}
	mut, r := s.sign(st, creds, d)
	if r != nil {
		return s.refused(st, r)
	}
	mut.SetHeaders = append(route.GetSetHeaders(), mut.SetHeaders...)
	resp := headersAnswer(mut, false)
	if !m.GetEndOfStream() {
		// A body the signature does not cover: let it stream. Envoy closes
		// the stream once it takes the override.
		resp.ModeOverride = StreamedUploadMode
		st.phase = streaming
	}
	resp.DynamicMetadata = s.metadata(st, OutcomeSigned)
	return resp
}

// checkSignedOnce refuses a request that carries a header the signature
// covers more than once.
func checkSignedOnce(h *requestHeaders) *refusal {
	for _, name := range signedOnce {
		if h.count(name) > 1 {
			return refuse(http.StatusBadRequest, CodeDuplicateHeader,
				fmt.Sprintf("the request carries %s more than once; a signed header must be sent once", name))
		}
	}
	return nil
}

// credentialsFor picks the request's profile and gets its credentials.
func (s *Server) credentialsFor(ctx context.Context, st *stream) (*signer.Credentials, *refusal) {
	profile, r := s.profileOf(ctx, st)
	if r != nil {
		return nil, r
	}
	st.profile = profile
	creds, err := s.cfg.Credentials.Source(profile).Credentials(ctx)
	if err != nil {
		return nil, s.credentialRefusal(profile, err)
	}
	st.use(creds)
	return creds, nil
}

// headerCompartment is the header OCI Generative AI reads the compartment
// of a request from.
const headerCompartment = "opc-compartment-id"

// compartmentFor is the compartment of a Generative AI request that names
// none: the route's, else the operator's, else the tenancy (the root
// compartment). With none of them the request is refused: OCI would get an
// empty opc-compartment-id.
func (s *Server) compartmentFor(ctx context.Context, creds *signer.Credentials) (string, *refusal) {
	if v := metadata.ValueFromIncomingContext(ctx, s.cfg.CompartmentKey); len(v) > 0 && v[0] != "" {
		if err := signer.CheckOCID(v[0], "compartment", "tenancy"); err != nil {
			return "", refuse(http.StatusInternalServerError, CodeMisconfigured, "the route's "+s.cfg.CompartmentKey+": "+err.Error())
		}
		return v[0], nil
	}
	if s.cfg.GenAICompartment != "" {
		return s.cfg.GenAICompartment, nil
	}
	if creds.Tenancy != "" {
		return creds.Tenancy, nil
	}
	return "", refuse(http.StatusBadRequest, CodeNoCompartment, fmt.Sprintf(
		"OCI Generative AI needs a compartment, and none is known for profile %s: send the opc-compartment-id header, "+
			"or ask the gateway's operator to set one for the route (%s) or for every request (--genai-compartment)",
		capEcho(creds.Profile), s.cfg.CompartmentKey))
}

func (s *Server) onBody(ctx context.Context, st *stream, b *extprocv3.HttpBody, d *signer.Digest) *extprocv3.ProcessingResponse {
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
		return s.refused(st, s.credentialRefusal(st.profile, err))
	}
	st.use(creds)
	mut, r := s.sign(st, creds, d)
	if r != nil {
		return s.refused(st, r)
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
		RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mut}},
	}, DynamicMetadata: s.metadata(st, OutcomeSigned)}
}

var emptySHA256 = signer.DigestOf(nil).SHA256

// profileFor picks the profile: the route's pin (gRPC metadata), the
// request header, the default, as the operator allows.
func (s *Server) profileFor(ctx context.Context, h *requestHeaders) (string, *refusal) {
	p, r := s.namedProfile(ctx, h)
	if r != nil {
		return "", r
	}
	if p == "" {
		p = s.cfg.DefaultProfile
	}
	if s.profiles != nil && !s.profiles[p] {
		return "", refuse(http.StatusForbidden, CodeProfileNotServed, fmt.Sprintf(
			"this gateway does not sign for profile %q; its operator lists the profiles it serves with --profiles", capEcho(p)))
	}
	return p, nil
}

// namedProfile is the profile the request names, by the route's pin or the
// header as the operator allows; "" when it names none.
func (s *Server) namedProfile(ctx context.Context, h *requestHeaders) (string, *refusal) {
	header, _ := h.Get(s.cfg.ProfileHeader)
	// One key, not FromIncomingContext: that copies all of the stream's
	// metadata on every request.
	var pinned string
	if v := metadata.ValueFromIncomingContext(ctx, s.cfg.ProfileHeader); len(v) > 0 {
		pinned = v[0]
	}
	if len(header) > maxProfileLen || len(pinned) > maxProfileLen {
		return "", refuse(http.StatusBadRequest, CodeUnknownProfile,
			fmt.Sprintf("the profile name %q is longer than any profile ocisigner serves", capEcho(header+pinned)))
	}
	var p string
	switch {
	case header != "" && s.cfg.NoProfileHeader:
		return "", refuse(http.StatusForbidden, CodeProfileNotServed, fmt.Sprintf(
			"this gateway does not let a request choose its profile (%s: %s); its operator chooses with routes, or turns selection on with --profile-header",
			s.cfg.ProfileHeader, capEcho(header)))
	case header != "" && pinned != "" && header != pinned && !s.cfg.HeaderOverridesRoute:
		return "", refuse(http.StatusForbidden, CodeProfileNotServed, fmt.Sprintf(
			"this route signs as its own profile; the %s header cannot change it to %q (its operator can allow that with --profile-header-overrides-route)",
			s.cfg.ProfileHeader, capEcho(header)))
	case header != "":
		p = header
	case pinned != "":
		p = pinned
	}
	return p, nil
}

// sign computes the signature and the header mutation that carries it.
func (s *Server) sign(st *stream, creds *signer.Credentials, d *signer.Digest) (*extprocv3.HeaderMutation, *refusal) {
	h := &st.h
	t0 := time.Now()
	out, err := signer.Sign(&signer.Request{Method: h.method, Host: h.authority, Target: h.path, Header: h, Digest: d}, creds, s.cfg.Clock())
	signDur := time.Since(t0)
	st.signed = out
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
	// the content-length now set would make the length ambiguous. Nor do
	// credentials meant for someone else (foreignCredentials).
	for _, name := range append([]string{signer.HeaderXDate, s.cfg.ProfileHeader}, foreignCredentials[:]...) {
		if h.has(name) {
			mut.RemoveHeaders = append(mut.RemoveHeaders, name)
		}
	}
	if out.BodySigned && h.has("transfer-encoding") {
		mut.RemoveHeaders = append(mut.RemoveHeaders, "transfer-encoding")
	}
	if st.phase != streaming {
		st.phase = final
	}
	ev := s.event(st)
	ev.Outcome, ev.SignDuration, ev.SignedHeaders, ev.Streamed = OutcomeSigned, signDur, out.SignedHeaders, !out.BodySigned && h.method == http.MethodPut
	if d != nil {
		ev.BodyBytes = d.Length
	}
	// Typed attributes: the line is written for every request.
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "signed", append([]slog.Attr{slog.String("profile", ev.Profile), slog.String("kind", string(ev.Kind)),
		slog.String("method", ev.Method), slog.String("host", ev.Host), slog.String("path", ev.Path),
		slog.Int64("body_bytes", ev.BodyBytes), slog.Bool("streamed", ev.Streamed), slog.String("signed_headers", ev.SignedHeaders),
		slog.String("key_id", ev.KeyID), slog.String("outcome", ev.Outcome), slog.Duration("duration", ev.Duration)}, st.adm.auditAttrs()...)...)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("signing string", "profile", ev.Profile, "signing_string", signer.MaskSigningString(out.SigningString))
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.Observe(ev)
	}
	return mut, nil
}

// event describes the request as far as it went: the credentials are
// there once it got them.
func (s *Server) event(st *stream) Event {
	ev := Event{Profile: capEcho(st.profile), Method: capEcho(st.h.method), Host: capEcho(st.h.authority), Path: capEcho(logPath(st.h.path)),
		Kind: st.kind, KeyID: st.keyID, Expiry: st.expiry, Caller: st.adm.caller, Rule: st.adm.metricRule()}
	if !st.start.IsZero() {
		ev.Duration = time.Since(st.start)
	}
	return ev
}

// MetadataNamespace is the dynamic metadata namespace of ocisigner's
// answers; envoy.yaml's access log prints its fields next to OCI's status.
const MetadataNamespace = "ocisigner"

// metadata is the dynamic metadata of a final answer: which profile, which
// principal, the masked keyId, the outcome and the host signed for. Envoy
// takes it from any answer, ImmediateResponse included (ext_proc.cc
// setDynamicMetadata, with metadata_options.receiving_namespaces).
func (s *Server) metadata(st *stream, outcome string) *structpb.Struct {
	f := make(map[string]*structpb.Value, 6)
	set := func(k, v string) {
		if v != "" {
			f[k] = structpb.NewStringValue(v)
		}
	}
	set("outcome", outcome)
	set("profile", capEcho(st.profile))
	set("principal", string(st.kind))
	set("key_id", st.keyID)
	set("upstream", capEcho(st.h.authority))
	set("project", st.project)
	set("caller", st.adm.caller)
	set("rule", st.adm.d.Rule)
	return &structpb.Struct{Fields: map[string]*structpb.Value{MetadataNamespace: structpb.NewStructValue(&structpb.Struct{Fields: f})}}
}

// refused logs and observes a refusal and returns its ImmediateResponse.
func (s *Server) refused(st *stream, r *refusal) *extprocv3.ProcessingResponse {
	st.phase, st.refusal = final, r
	ev := s.event(st)
	ev.Kind, ev.KeyID, ev.Expiry = "", "", time.Time{} // nothing was signed
	ev.Outcome, ev.Status = r.code, r.status
	level := slog.LevelWarn
	if r.status >= 500 {
		level = slog.LevelError
	}
	reason := r.message
	if r.err != nil {
		reason = r.err.Error() // the whole story, file paths included, for the operator
	}
	s.log.LogAttrs(context.Background(), level, "refused", append([]slog.Attr{slog.String("profile", ev.Profile), slog.String("method", ev.Method),
		slog.String("host", ev.Host), slog.String("path", ev.Path), slog.Int("status", r.status), slog.String("outcome", r.code),
		slog.String("reason", text.CutCounted(reason, maxMessage)), slog.Duration("duration", ev.Duration)}, st.adm.auditAttrs()...)...)
	if s.cfg.Observer != nil {
		s.cfg.Observer.Observe(ev)
	}
	resp := r.response()
	resp.DynamicMetadata = s.metadata(st, r.code)
	return resp
}
