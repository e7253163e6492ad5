package extproc_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// refreshingCredentials records the early refreshes asked for.
type refreshingCredentials struct {
	staticCredentials
	mu    sync.Mutex
	asked []string
	grant bool
}

func (r *refreshingCredentials) RefreshEarly(profile string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked = append(r.asked, profile)
	return r.grant
}

// refusals records what the observe stage reports.
type refusals struct {
	mu  sync.Mutex
	got []extproc.OCIRefusal
}

func (r *refusals) Observe(extproc.Event) {}
func (r *refusals) ObserveRefusal(o extproc.OCIRefusal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, o)
}

// observeOnce sends one observing stream as envoy.yaml's observing filter
// does (stage metadata, the response headers in observability mode, the
// signer's metadata forwarded) and returns once the service ended it; the
// service must answer nothing.
func observeOnce(t *testing.T, addr string, status string, meta map[string]any, hdrs ...string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(t.Context(), extproc.StageKey, extproc.StageObserve)
	st, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte(status)}}}
	for i := 0; i+1 < len(hdrs); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: hdrs[i], RawValue: []byte(hdrs[i+1])})
	}
	md := &corev3.Metadata{}
	if meta != nil {
		s, err := structpb.NewStruct(meta)
		if err != nil {
			t.Fatal(err)
		}
		md.FilterMetadata = map[string]*structpb.Struct{extproc.MetadataNamespace: s}
	}
	if err := st.Send(&extprocv3.ProcessingRequest{ObservabilityMode: true, MetadataContext: md,
		Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: hm}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := st.Recv(); err != io.EOF {
		t.Fatalf("the observing stream got %v, %v; want its end and no answer", resp, err)
	}
}

// The observe stage counts OCI's 401 and 403 to what was signed, by
// profile, asks for an early refresh on a 401 only, logs what the operator
// can do, and leaves alone what OCI did not answer to a signed request:
// ocisigner's own refusals, 2xx, and any 4xx but for the hint of a missing
// project.
func TestObserveStageSeesOCIsRefusals(t *testing.T) {
	var logs bytes.Buffer
	k := signertest.Key(t, 1)
	creds := &refreshingCredentials{staticCredentials: staticCredentials{signer.StaticSource{C: &signer.Credentials{
		KeyID: "t/u/" + signer.Fingerprint(&k.PublicKey), Key: k, Kind: signer.KindAPIKey, Region: "us-chicago-1"}}}, grant: true}
	obs := &refusals{}
	s, err := extproc.New(extproc.Config{Credentials: creds, Observer: obs, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(s.ServerOptions()...)
	s.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	addr := lis.Addr().String()
	signed := func(profile, project string) map[string]any {
		m := map[string]any{"outcome": extproc.OutcomeSigned, "profile": profile, "principal": "security_token", "key_id": "ST$eyJ…", "upstream": inferenceHost}
		if project != "" {
			m["project"] = project
		}
		return m
	}
	observeOnce(t, addr, "401", signed("SESSION", ""), "opc-request-id", "OPC401")
	observeOnce(t, addr, "403", signed("API", ""), "opc-request-id", "OPC403")
	observeOnce(t, addr, "401", map[string]any{"outcome": extproc.CodeCredentialsExpired, "profile": "EXPIRED"}, extproc.HeaderRefused, extproc.CodeCredentialsExpired)
	observeOnce(t, addr, "200", signed("SESSION", ""))
	observeOnce(t, addr, "404", signed("SESSION", ""))
	observeOnce(t, addr, "400", signed("SESSION", "none(route:x-oci-genai-project,flag:--genai-project,header:OpenAI-Project)"), "opc-request-id", "OPC400")
	observeOnce(t, addr, "401", nil)

	if len(obs.got) != 2 || obs.got[0].Profile != "SESSION" || obs.got[0].Status != 401 || !obs.got[0].EarlyRefresh || obs.got[0].RequestID != "OPC401" ||
		obs.got[1].Profile != "API" || obs.got[1].Status != 403 || obs.got[1].EarlyRefresh {
		t.Fatalf("refusals reported: %+v", obs.got)
	}
	if len(creds.asked) != 1 || creds.asked[0] != "SESSION" {
		t.Fatalf("early refreshes asked for %v, want SESSION's once (a 401; not a 403)", creds.asked)
	}
	out := logs.String()
	for _, want := range []string{`msg="OCI refused a signed request" profile=SESSION status=401`, "opc-request-id=OPC401", "early_refresh=true",
		"opc-request-id=OPC403", `msg="OCI refused a Generative AI request that named no project"`, "x-oci-genai-project", "--genai-project"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "EXPIRED") || strings.Count(out, "OCI refused") != 3 {
		t.Errorf("the log reports what OCI did not refuse:\n%s", out)
	}
}

// Observing streams never take the slots of the streams that sign: with
// every signing slot busy, OCI's answers are still observed.
func TestObservingStreamsHaveTheirOwnSlots(t *testing.T) {
	obs := &refusals{}
	k := signertest.Key(t, 1)
	creds := staticCredentials{signer.StaticSource{C: &signer.Credentials{KeyID: "t/u/" + signer.Fingerprint(&k.PublicKey), Key: k, Kind: signer.KindAPIKey}}}
	s, err := extproc.New(extproc.Config{Credentials: creds, Observer: obs, MaxStreams: 1})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(s.ServerOptions()...)
	s.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A signing stream that holds the only slot: a POST whose body has not come.
	busy, err := extprocv3.NewExternalProcessorClient(conn).Process(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := busy.Send(benchCases["POST-1MiB"].messages()[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := busy.Recv(); err != nil {
		t.Fatal(err)
	}
	observeOnce(t, lis.Addr().String(), "401", map[string]any{"outcome": extproc.OutcomeSigned, "profile": "P"})
	if len(obs.got) != 1 {
		t.Fatalf("observed %d refusals with the signing slots full", len(obs.got))
	}
}
