package extproc

import (
	"context"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/signer"
)

// PreviewRequest is a request to sign without sending it: what Envoy would
// send the service, as an HTTP client writes it.
type PreviewRequest struct {
	Method    string
	Authority string // the Host the request is addressed to
	Path      string // path and query, exactly as they would be sent
	Header    []signer.Field
	Body      []byte
	// Metadata is the stream's gRPC metadata, as a route's
	// grpc_initial_metadata sets it (a pinned profile, a compartment).
	Metadata map[string]string
}

// Preview is what the service answers for a request: the headers it sets
// and removes, and what it signed; or why it refuses.
type Preview struct {
	Profile   string
	Kind      signer.Kind
	KeyID     string // masked
	Region    string // of the credentials, which aliases resolve with
	Authority string // the host signed for, and that the request goes to
	Path      string // the target signed, and that goes upstream
	Set       []signer.Field
	Remove    []string
	// Signed is Sign's outcome: the signing string and the headers="..."
	// list. It holds the credentials' secrets (the keyId in the
	// authorization header): print it through the masking helpers.
	Signed *signer.Signed
	// Refused is the refusal, when the service would not sign.
	Refused *Refusal
}

// Refusal is an ImmediateResponse the service answers a request with.
type Refusal struct {
	Status  int
	Code    string
	Message string
}

// Preview runs r through the same code as a request from Envoy, without a
// stream: `ocisigner sign` shows with it what the service would do. A
// gateway-addressed request goes through both stages, as envoy.yaml's two
// filters take it: the address stage's answer re-addresses it, and the
// signing stage signs what that left, with the dynamic metadata it set.
func (s *Server) Preview(ctx context.Context, r PreviewRequest) *Preview {
	if len(r.Metadata) > 0 {
		ctx = metadata.NewIncomingContext(ctx, metadata.New(r.Metadata))
	}
	out := &Preview{}
	st := &stream{address: true}
	first := s.handle(ctx, st, &frame{req: headersRequest(r, nil)})
	forwarded := &corev3.Metadata{}
	if md := first.GetDynamicMetadata().GetFields()[MetadataNamespace].GetStructValue(); md != nil {
		forwarded.FilterMetadata = map[string]*structpb.Struct{MetadataNamespace: md}
	}
	answers := []*extprocv3.ProcessingResponse{first}
	if first.GetImmediateResponse() == nil {
		r.Authority, r.Path = st.h.authority, st.h.path
		st = &stream{}
		req := headersRequest(r, forwarded)
		answers = append(answers, s.handle(ctx, st, &frame{req: req}))
		if st.phase == awaitBody {
			d := signer.DigestOf(r.Body)
			answers = append(answers, s.handle(ctx, st, &frame{req: &extprocv3.ProcessingRequest{
				Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{EndOfStream: true}},
			}, digest: &d}))
		}
	}
	for _, a := range answers {
		if ir := a.GetImmediateResponse(); ir != nil {
			out.Refused = &Refusal{Status: int(ir.GetStatus().GetCode()), Code: st.refusal.code, Message: st.refusal.message}
		}
		for _, c := range []*extprocv3.CommonResponse{a.GetRequestHeaders().GetResponse(), a.GetRequestBody().GetResponse()} {
			for _, h := range c.GetHeaderMutation().GetSetHeaders() {
				out.Set = append(out.Set, signer.Field{Name: h.GetHeader().GetKey(), Value: string(h.GetHeader().GetRawValue())})
			}
			out.Remove = append(out.Remove, c.GetHeaderMutation().GetRemoveHeaders()...)
		}
	}
	out.Profile, out.Kind, out.KeyID, out.Region, out.Authority, out.Path, out.Signed = st.profile, st.kind, st.keyID, st.region, st.h.authority, st.h.path, st.signed
	return out
}

// headersRequest is the request headers message Envoy would send for r.
func headersRequest(r PreviewRequest, forwarded *corev3.Metadata) *extprocv3.ProcessingRequest {
	hm := &corev3.HeaderMap{}
	add := func(k, v string) {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(v)})
	}
	add(":method", r.Method)
	add(":path", r.Path)
	add(":authority", r.Authority)
	add(":scheme", "http")
	for _, f := range r.Header {
		add(f.Name, f.Value)
	}
	return &extprocv3.ProcessingRequest{MetadataContext: forwarded,
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: hm, EndOfStream: len(r.Body) == 0}}}
}
