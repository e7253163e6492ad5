package extproc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ocisigner/ocisigner/signer"
)

// The observe stage. envoy.yaml runs a third ext_proc filter on the OCI
// routes, after the signing filter, in observability mode: its streams
// carry StageKey=StageObserve, Envoy sends each one the response headers
// and does not wait for an answer (ext_proc.cc
// sendHeadersInObservabilityMode returns Continue; onReceiveMessage ignores
// whatever comes back), and forwards with it the dynamic metadata the
// signing filter's answer left (metadata_options.forwarding_namespaces,
// Filter::addDynamicMetadata): which profile, principal and key signed the
// request, and the outcome. So ocisigner sees OCI's answer to what it
// signed without adding anything to the response's latency, and sends
// nothing back.
const StageObserve = "observe"

// OCIRefusal is OCI's 401 or 403 to a request ocisigner signed, as the
// observe stage saw it. Every string in it is capped in length.
type OCIRefusal struct {
	Profile   string
	Kind      signer.Kind
	KeyID     string // masked
	Host      string // the host signed for
	Status    int    // 401 or 403
	RequestID string // OCI's opc-request-id
	// EarlyRefresh reports that a refresh of the profile's credentials was
	// asked for (EarlyRefresher) because of this refusal.
	EarlyRefresh bool
}

// RefusalObserver is implemented by an Observer (Config.Observer) that
// also wants OCI's refusals of signed requests. It must be cheap and safe
// for concurrent use.
type RefusalObserver interface {
	ObserveRefusal(OCIRefusal)
}

// EarlyRefresher is implemented by Credentials that can fetch a profile's
// credentials anew ahead of schedule, without blocking, rate-limited
// (credentials.Store). The observe stage asks on OCI's 401.
type EarlyRefresher interface {
	RefreshEarly(profile string) bool
}

// isObserveStage reports a stream of the observe stage.
func isObserveStage(ctx context.Context) bool {
	v := metadata.ValueFromIncomingContext(ctx, StageKey)
	return len(v) == 1 && v[0] == StageObserve
}

// observe serves one stream of the observe stage: it reads what Envoy sends
// (the response headers) and ends the stream once they are there, or Envoy
// closed its side. It answers nothing: Envoy would ignore it. Its streams
// are bounded apart from the signing ones, which they must never crowd out.
func (s *Server) observe(ps extprocv3.ExternalProcessor_ProcessServer) error {
	select {
	case s.observing <- struct{}{}:
		defer func() { <-s.observing }()
	default:
		return status.Errorf(codes.ResourceExhausted, "ocisigner: %d observing streams in flight", cap(s.observing))
	}
	for {
		f := &frame{req: &extprocv3.ProcessingRequest{}}
		if err := s.recv(ps, f, s.cfg.FirstMessageTimeout, "no message within %s on an observing stream"); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return status.Error(codes.Unavailable, err.Error())
		}
		if rh := f.req.GetResponseHeaders(); rh != nil {
			s.onObserved(rh, f.req.GetMetadataContext())
			return nil
		}
	}
}

// onObserved looks at OCI's answer to a request. Only a request ocisigner
// signed counts: a local reply (ocisigner's refusal, Envoy's own) passes
// the observing filter too, with another outcome or none.
func (s *Server) onObserved(m *extprocv3.HttpHeaders, md *corev3.Metadata) {
	f := md.GetFilterMetadata()[MetadataNamespace].GetFields()
	if f["outcome"].GetStringValue() != OutcomeSigned {
		return
	}
	h := parseHeaders(m.GetHeaders())
	code, _ := h.Get(":status")
	st, err := strconv.Atoi(code)
	if err != nil || st < 400 || st > 499 {
		return
	}
	ref := OCIRefusal{Profile: capEcho(f["profile"].GetStringValue()), Kind: signer.Kind(capEcho(f["principal"].GetStringValue())),
		KeyID: capEcho(f["key_id"].GetStringValue()), Host: capEcho(f["upstream"].GetStringValue()), Status: st}
	ref.RequestID, _ = h.Get("opc-request-id")
	ref.RequestID = capEcho(ref.RequestID)
	noProject := strings.HasPrefix(f["project"].GetStringValue(), projectNonePrefix)
	attrs := []slog.Attr{slog.String("profile", ref.Profile), slog.Int("status", st), slog.String("host", ref.Host),
		slog.String("principal", string(ref.Kind)), slog.String("key_id", ref.KeyID), slog.String("opc-request-id", ref.RequestID)}
	if noProject {
		attrs = append(attrs, slog.String("hint", "no openai-project was sent: name the project for the route (gRPC metadata "+
			s.cfg.ProjectKey+"), for every request (--genai-project), or have the client send OpenAI-Project"))
	}
	if st != http.StatusUnauthorized && st != http.StatusForbidden {
		if noProject {
			s.log.LogAttrs(context.Background(), slog.LevelWarn, "OCI refused a Generative AI request that named no project", attrs...)
		}
		return
	}
	if st == http.StatusUnauthorized {
		if er, ok := s.cfg.Credentials.(EarlyRefresher); ok && ref.Profile != "" {
			ref.EarlyRefresh = er.RefreshEarly(ref.Profile)
		}
		attrs = append(attrs, slog.Bool("early_refresh", ref.EarlyRefresh))
	}
	s.log.LogAttrs(context.Background(), slog.LevelWarn, "OCI refused a signed request", append(attrs,
		slog.String("meaning", refusalMeaning(st)))...)
	if ro, ok := s.cfg.Observer.(RefusalObserver); ok {
		ro.ObserveRefusal(ref)
	}
}

// refusalMeaning says what OCI's status means for the operator.
func refusalMeaning(status int) string {
	if status == http.StatusUnauthorized {
		return "OCI did not accept the signature's credentials: a token revoked, expired or refreshed elsewhere, a key no longer registered, or a clock off by minutes"
	}
	return "OCI authenticated the request but does not allow it: the principal's policies, or the tenancy's, forbid it"
}
