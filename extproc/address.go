package extproc

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/signer"
)

// The address stage. envoy.yaml runs two ext_proc filters on the same
// signer: the gateway filter, ahead, on the catch-all route, whose streams
// carry StageKey=StageAddress (its grpc_service.initial_metadata), and the
// signing filter. A stream of the address stage only re-addresses a
// gateway-addressed request; Envoy then matches the route again, and the
// signing filter, reading its per-route config on that route (ext_proc.cc
// Filter::decodeHeaders, mergePerRouteConfig), signs the request with the
// route's profile pin, as it signs a proxy-form request sent there directly.
// So a pin holds whichever form reached its route.
const (
	StageKey     = "x-ocisigner-stage"
	StageAddress = "address"
)

// Dynamic metadata the address stage leaves for the signing filter, which
// gets it through metadata_options.forwarding_namespaces (a client cannot
// set dynamic metadata).
const (
	metaAlias  = "gateway_alias"  // the alias the request was addressed by
	metaRegion = "gateway_region" // the region it was resolved with
)

// OutcomeAddressed is the outcome a gateway-addressed request has after the
// address stage, until the signing filter's answer replaces it.
const OutcomeAddressed = "addressed"

// onAddress answers the request headers in the address stage: the OCI host
// and target a gateway-addressed request names, as :authority and :path,
// with the route cache cleared. A request already addressed to an OCI host
// passes unchanged: the signing filter signs it.
func (s *Server) onAddress(ctx context.Context, st *stream, m *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	a, r := s.begin(st, m)
	if r != nil {
		return s.refused(st, r)
	}
	st.phase = final
	// A routing decision, not a refusal: asking authorize would format a
	// refusal for every gateway-addressed request only to drop it.
	if s.hosts.Allowed(a) {
		return headersAnswer(nil, false) // addressed to a host it signs for: the signing filter's
	}
	g, r := splitGateway(st.h.path)
	if g == nil && r == nil {
		r = hostNotAllowed(a) // addressed to the gateway, with nothing after it
	}
	if r != nil {
		return s.refused(st, r)
	}
	if r = s.admitGateway(ctx, st, g); r != nil {
		return s.refused(st, r)
	}
	res, r := s.resolveGateway(g, func() (*signer.Credentials, *refusal) { return s.credentialsFor(ctx, st) })
	if r != nil {
		return s.refused(st, r)
	}
	st.h.authority, st.h.path = res.authority, res.target
	mut := &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader(":authority", res.authority), setHeader(":path", res.target)}}
	resp := headersAnswer(mut, true)
	meta := s.metadata(st, OutcomeAddressed)
	if res.alias.Name != "" {
		f := meta.Fields[MetadataNamespace].GetStructValue().Fields
		f[metaAlias], f[metaRegion] = structpb.NewStringValue(res.alias.Name), structpb.NewStringValue(st.region)
	}
	resp.DynamicMetadata = meta
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("addressed", "profile", capEcho(st.profile), "host", res.authority, "path", capEcho(logPath(res.target)))
	}
	return resp
}

// headersAnswer is the answer to request headers: a mutation, if any, and
// clear_route_cache for one that re-addresses the request, so that Envoy
// matches the route again against the OCI host (envoy.yaml's gateway filter
// also sets route_cache_action CLEAR; processor_state.cc clearRouteCache).
func headersAnswer(mut *extprocv3.HeaderMutation, readdressed bool) *extprocv3.ProcessingResponse {
	c := &extprocv3.CommonResponse{}
	if len(mut.GetSetHeaders()) > 0 || len(mut.GetRemoveHeaders()) > 0 {
		c.HeaderMutation = mut
		c.ClearRouteCache = readdressed
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: c}}}
}

// checkAddressed refuses to sign a request the address stage addressed by
// an alias with another region than the signing credentials': the signing
// filter's route may pin another profile than the one the alias was
// resolved with, and a signature must be for the host the credentials'
// own region names.
func (s *Server) checkAddressed(forwarded *corev3.Metadata, c *signer.Credentials, authority string) *refusal {
	f := forwarded.GetFilterMetadata()[MetadataNamespace].GetFields()
	name := f[metaAlias].GetStringValue()
	if name == "" {
		return nil
	}
	a, ok := s.aliases[name]
	if !ok {
		return refuse(http.StatusInternalServerError, CodeMisconfigured, fmt.Sprintf("the address stage named alias %q, which the signing stage does not know", capEcho(name)))
	}
	host, r := s.aliasHost(a, c)
	if r != nil {
		return r
	}
	if strings.EqualFold(host, authority) {
		return nil
	}
	return refuse(http.StatusMisdirectedRequest, CodeMisdirected, fmt.Sprintf(
		"the alias %s was resolved for region %s, but this route signs as profile %s, whose region is %s (%s): name that profile with the %s header, or address the host itself",
		a.Name, capEcho(f[metaRegion].GetStringValue()), capEcho(c.Profile), capEcho(c.Region), host, s.cfg.ProfileHeader))
}

// begin reads a stream's request headers and checks what every request
// must have: a method, a path of a sane length, an authority that is a host
// name with an optional port.
func (s *Server) begin(st *stream, m *extprocv3.HttpHeaders) (signer.Authority, *refusal) {
	st.start = time.Now()
	st.h = parseHeaders(m.GetHeaders())
	h := &st.h
	if h.method == "" || h.path == "" || h.authority == "" {
		return signer.Authority{}, refuse(http.StatusBadRequest, CodeMisconfigured, "request has no :method, :path or :authority to sign")
	}
	if len(h.path) > maxPathLen {
		return signer.Authority{}, refuse(http.StatusRequestURITooLong, CodePathTooLong,
			fmt.Sprintf("the request path is %d bytes; ocisigner signs paths of up to %d", len(h.path), maxPathLen))
	}
	a, err := signer.ParseAuthority(h.authority)
	if err != nil {
		return signer.Authority{}, refuse(http.StatusBadRequest, CodeInvalidHost,
			fmt.Sprintf("ocisigner signs only for a host name with an optional port; %q is not one: %v", capEcho(h.authority), err))
	}
	return a, nil
}
