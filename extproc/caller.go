package extproc

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/policy"
)

// A shared gateway knows who is asking (docs/shared-gateway.md). The caller
// is taken only from what Envoy verified or what ocisigner verifies itself,
// never from a header a client could write:
//
//   - the mTLS peer certificate Envoy validated, as ext_proc request
//     attributes (ExtProcAttributesKey): Envoy's CEL attributes
//     connection.uri_san_peer_certificate, connection.dns_san_peer_certificate
//     and connection.subject_peer_certificate. Each is a string; the SAN ones
//     are the certificate's FIRST URI or DNS SAN only, and absent without one
//     (source/extensions/filters/common/expr/context.cc,
//     SslExtractorsValues: CelValue::CreateString(&info.uriSanPeerCertificate()[0]));
//     all three are absent on a connection without TLS (ConnectionWrapper::
//     operator[] reads them only when the connection has an sslConnection()).
//     A SPIFFE X.509-SVID has exactly one URI SAN, so the first is the ID.
//   - the payload of a JWT Envoy's jwt_authn filter verified: jwt_authn puts
//     it in the request's dynamic metadata, namespace JWTMetadataNamespace,
//     under the provider's payload_in_metadata name
//     (jwt_authn/filter.cc Filter::setExtractedData, authenticator.cc
//     handleGoodJwt), and ext_proc forwards that namespace when it is listed
//     in metadata_options.forwarding_namespaces (ext_proc.cc
//     Filter::addDynamicMetadata). A client cannot set dynamic metadata.
//   - a gateway key (policy.KeyPrefix...), sent as an OpenAI SDK sends its
//     api_key (Authorization: Bearer) or in an api-key header, looked up in
//     the keys file in constant time (policy.Keys.Lookup).
//
// All of it is read only when a policy is configured: without one nothing
// here runs, and the gateway behaves as it always did.

// ExtProcAttributesKey is the key of ProcessingRequest.attributes Envoy
// fills, whatever the filter is called in the configuration (ext_proc.cc
// Filter::addAttributes uses the filter's canonical name).
const ExtProcAttributesKey = "envoy.filters.http.ext_proc"

// The request attributes that carry the peer certificate.
const (
	AttrPeerURISAN  = "connection.uri_san_peer_certificate"
	AttrPeerDNSSAN  = "connection.dns_san_peer_certificate"
	AttrPeerSubject = "connection.subject_peer_certificate"
)

// JWTMetadataNamespace is where jwt_authn leaves verified payloads.
const JWTMetadataNamespace = "envoy.filters.http.jwt_authn"

// IdentityHeaders are request headers that name a caller in some setup (an
// Envoy's x-forwarded-client-cert, a proxy's user header, a client's own
// claim). With a policy, a request carrying one is refused: it cannot have
// come from a client allowed to say who it is, and a header silently
// ignored would let a misconfigured chain believe it was read. An operator
// whose Envoy sets one itself (forward_client_cert_details SANITIZE_SET, an
// Istio sidecar) names it in Config.EnvoyIdentityHeaders; ocisigner then
// lets it pass, and still never reads a caller from it.
var IdentityHeaders = []string{"x-forwarded-client-cert", "x-oci-caller", "x-ocisigner-caller", "x-jwt-payload",
	"x-forwarded-user", "x-auth-request-user", "x-remote-user"}

// PolicySource gives the policy in force; a *policy.Watcher[policy.Policy].
type PolicySource interface{ Current() *policy.Policy }

// KeySource gives the gateway keys in force; a *policy.Watcher[policy.Keys].
type KeySource interface{ Current() *policy.Keys }

// admission is what the policy said of a stream's request: the caller's
// label (policy.Caller.Label, bounded, never a token or a key) and the
// decision. The GenAI code reads Grant's compartment and project.
type admission struct {
	enforced bool // a policy decided (Config.Policy is set)
	caller   string
	d        policy.Decision
}

// Grant is the policy's decision for the request, and whether a policy made
// it: the profile it signs as, and for Generative AI the compartment and
// project the deciding rule sets ("" when it sets none). Code that sets
// GenAI headers must let these win over a client's.
func (st *stream) Grant() (policy.Decision, bool) { return st.adm.d, st.adm.enforced }

// metricRule is the bounded metric label of the decision, "" without a policy.
func (a *admission) metricRule() string {
	if !a.enforced {
		return ""
	}
	return a.d.MetricLabel()
}

// admitSigning decides the signing stage's request: the host it is
// addressed to, and the alias the address stage resolved, if any (its
// dynamic metadata, which a client cannot set).
func (s *Server) admitSigning(ctx context.Context, st *stream, forwarded *corev3.Metadata) *refusal {
	alias := forwarded.GetFilterMetadata()[MetadataNamespace].GetFields()[metaAlias].GetStringValue()
	return s.admit(ctx, st, alias, st.h.authority)
}

// admitGateway decides a gateway-addressed request in the address stage,
// before the alias is resolved with the profile the decision picks: the
// alias, or the host its first segment names.
func (s *Server) admitGateway(ctx context.Context, st *stream, g *gatewayTarget) *refusal {
	if a, ok := s.aliases[strings.ToLower(g.name)]; ok {
		return s.admit(ctx, st, a.Name, "")
	}
	return s.admit(ctx, st, "", g.seg)
}

// admit identifies the caller and asks the policy what it may do, before
// any credentials are fetched or anything is signed. Without a policy it
// does nothing.
func (s *Server) admit(ctx context.Context, st *stream, alias, host string) *refusal {
	if s.cfg.Policy == nil {
		return nil
	}
	st.adm = admission{enforced: true, caller: "none", d: policy.Decision{Enforced: true}}
	p := s.cfg.Policy.Current()
	if p == nil {
		return refuse(http.StatusInternalServerError, CodeInternal, "ocisigner hit an internal error: it has no policy loaded; see its log")
	}
	if r := s.refuseIdentityHeaders(&st.h); r != nil {
		st.adm.caller = "(invalid)"
		return r
	}
	c, r := s.callerOf(st)
	if r != nil {
		st.adm.caller, st.adm.d.Status, st.adm.d.Code = "(invalid)", r.status, r.code
		return r
	}
	st.adm.caller = c.Label()
	named, r := s.namedProfile(ctx, &st.h)
	if r != nil {
		return r
	}
	st.adm.d = p.Decide(c, policy.Request{Profile: named, Host: host, Alias: alias, Method: st.h.method})
	if !st.adm.d.Allowed {
		return refuse(st.adm.d.Status, st.adm.d.Code, st.adm.d.Message)
	}
	return nil
}

// invalidCaller refuses an identity that is not well formed, before
// anything is signed.
func invalidCaller(format string, args ...any) *refusal {
	return refuse(http.StatusUnauthorized, policy.CodeInvalidCaller, "the caller's identity was refused before anything was signed: "+fmt.Sprintf(format, args...))
}

func (s *Server) refuseIdentityHeaders(h *requestHeaders) *refusal {
	for _, name := range IdentityHeaders {
		if h.has(name) && !s.envoyIdentity[name] {
			return invalidCaller("the request carries %s, a header any client can write; this gateway identifies callers only by what Envoy verified "+
				"(a client certificate, a JWT) or by a gateway key. If Envoy sets %s itself, its operator says so with --envoy-identity-header %s", name, name, name)
		}
	}
	return nil
}

// callerOf builds the caller from the stream's attributes, forwarded
// metadata and headers.
func (s *Server) callerOf(st *stream) (*policy.Caller, *refusal) {
	c := &policy.Caller{}
	var err error
	if c.Peer, err = peerOf(st.attributes); err != nil {
		return nil, invalidCaller("%s", trimInvalid(err))
	}
	if c.JWT, err = jwtOf(st.forwarded); err != nil {
		return nil, invalidCaller("%s", trimInvalid(err))
	}
	k, r := presentedKey(&st.h)
	if r != nil || k.IsZero() {
		return c, r
	}
	var ks *policy.Keys
	if s.cfg.Keys != nil {
		ks = s.cfg.Keys.Current()
	}
	if c.Key, err = ks.Lookup(k); err != nil {
		// The sentinels' messages hold no key.
		return nil, invalidCaller("%s", err.Error())
	}
	return c, nil
}

func trimInvalid(err error) string {
	return strings.TrimPrefix(err.Error(), policy.ErrInvalidCaller.Error()+": ")
}

// peerOf is the certificate Envoy validated, from the request attributes.
func peerOf(attrs map[string]*structpb.Struct) (*policy.Peer, error) {
	f := attrs[ExtProcAttributesKey].GetFields()
	var vals [3]string
	for i, name := range []string{AttrPeerURISAN, AttrPeerDNSSAN, AttrPeerSubject} {
		v, ok := f[name]
		if !ok {
			continue
		}
		sv, isString := v.GetKind().(*structpb.Value_StringValue)
		if !isString {
			return nil, fmt.Errorf("%w: request attribute %s is not a string, as Envoy sends it", policy.ErrInvalidCaller, name)
		}
		vals[i] = sv.StringValue
	}
	return policy.NewPeer([]string{vals[0]}, []string{vals[1]}, vals[2])
}

// jwtOf is the payload jwt_authn verified, from the forwarded metadata.
// One provider's payload at most: a request verified by two is ambiguous.
func jwtOf(md *corev3.Metadata) (*policy.JWT, error) {
	ns, ok := md.GetFilterMetadata()[JWTMetadataNamespace]
	if !ok || len(ns.GetFields()) == 0 {
		return nil, nil
	}
	if n := len(ns.GetFields()); n > 1 {
		return nil, fmt.Errorf("%w: the request carries %d verified JWT payloads; this gateway reads one (one jwt_authn provider with payload_in_metadata per request)", policy.ErrInvalidCaller, n)
	}
	for name, v := range ns.GetFields() {
		sv, ok := v.GetKind().(*structpb.Value_StructValue)
		if !ok {
			return nil, fmt.Errorf("%w: jwt_authn metadata %s is not a JWT payload", policy.ErrInvalidCaller, capEcho(name))
		}
		return policy.NewJWT(sv.StructValue.AsMap())
	}
	return nil, nil
}

// presentedKey is the gateway key the request presents: an Authorization
// Bearer or an api-key header that is one. Any other Bearer (a JWT, an SDK's
// placeholder) is not a key; the signature replaces it. Two keys are
// refused rather than one of them chosen.
func presentedKey(h *requestHeaders) (policy.Key, *refusal) {
	var found []policy.Key
	for _, hv := range h.list {
		switch hv.GetKey() {
		case "authorization":
			if k, ok := policy.KeyFromAuthorization(headerValue(hv)); ok {
				found = append(found, k)
			}
		case "api-key":
			if v := strings.TrimSpace(headerValue(hv)); strings.HasPrefix(v, policy.KeyPrefix) {
				found = append(found, policy.NewKey(v))
			}
		}
	}
	switch len(found) {
	case 0:
		return policy.Key{}, nil
	case 1:
		return found[0], nil
	}
	return policy.Key{}, invalidCaller("the request presents %d gateway keys; send one, as Authorization: Bearer or in api-key", len(found))
}

// profileOf is the profile to sign as: the policy's decision when a policy
// decided, else as without a policy.
func (s *Server) profileOf(ctx context.Context, st *stream) (string, *refusal) {
	if s.cfg.Policy == nil {
		return s.profileFor(ctx, &st.h)
	}
	if !st.adm.enforced || !st.adm.d.Allowed {
		// Every path to credentials passes admit first; this is the lock.
		return "", refuse(http.StatusInternalServerError, CodeInternal, "ocisigner hit an internal error: no policy decision for the request; see its log")
	}
	p := st.adm.d.Profile
	if s.profiles != nil && !s.profiles[p] {
		return "", refuse(http.StatusForbidden, CodeProfileNotServed, fmt.Sprintf(
			"the gateway's policy grants profile %q (rule %q), which this gateway does not sign for; its operator lists the profiles it serves with --profiles",
			capEcho(p), st.adm.d.Rule))
	}
	return p, nil
}

// auditAttrs are the log attributes of the caller and the rule, when a
// policy decided.
func (a *admission) auditAttrs() []slog.Attr {
	if !a.enforced {
		return nil
	}
	return []slog.Attr{slog.String("caller", a.caller), slog.String("rule", a.metricRule())}
}
