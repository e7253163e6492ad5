package extproc_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

const (
	e2eRouteProject  = "ocid1.generativeaiproject.oc1.us-ashburn-1.route"
	e2eFlagProject   = "ocid1.generativeaiproject.oc1.us-ashburn-1.flag"
	e2eClientProject = "ocid1.generativeaiproject.oc1.us-ashburn-1.client"
	e2eTenancy       = "ocid1.tenancy.oc1..test" // the fixture's profiles'
	e2eInference     = "inference.generativeai.us-ashburn-1.oci.oraclecloud.com"
	e2eControl       = "generativeai.us-ashburn-1.oci.oraclecloud.com"
)

// lockedLog collects what the signer logs and what Envoy's access log
// says, for one stack.
type lockedLog struct {
	mu    sync.Mutex
	b     strings.Builder
	lines []string
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedLog) access(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

// accessLine waits for the access log line holding every want: Envoy logs
// when a request is torn down, which may be after the client has its answer.
func (l *lockedLog) accessLine(t *testing.T, want ...string) string {
	t.Helper()
	var found string
	waitFor(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, line := range l.lines {
			if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(line, w) }) {
				found = line
				return true
			}
		}
		return false
	})
	return found
}

// genaiStack is the stack with the GenAI stand-in behind it; a request
// carrying x-route: team is on a route that names e2eRouteProject (as a
// route's grpc_initial_metadata would); flag is --genai-project.
func genaiStack(t *testing.T, flag string) (*stack, *signertest.GenAI, *lockedLog) {
	t.Helper()
	logs := &lockedLog{}
	s := newStack(t, stackOptions{
		envoy: func(c *extproctest.Config) {
			c.Metadata = func(r *http.Request) map[string]string {
				if r.Header.Get("x-route") == "team" {
					return map[string]string{extproc.DefaultProjectKey: e2eRouteProject}
				}
				return nil
			}
			c.AccessLog = func(e extproctest.AccessLogEntry) {
				line, err := extproctest.FormatAccessLog(extproctest.AccessLogFormat, e)
				if err != nil {
					t.Error(err)
				}
				logs.access(line)
			}
		},
		server: func(c *extproc.Config) {
			c.GenAIProject = flag
			c.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(&suiteLogs, logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
		},
	})
	return s, signertest.NewGenAI(s.oci), logs
}

// sdk is the official OpenAI Go SDK, unmodified, pointed at one of the
// gateway's Generative AI bases.
func (s *stack) sdk(base string, opts ...option.RequestOption) *openai.Client {
	c := openai.NewClient(append([]option.RequestOption{option.WithBaseURL(s.envoy.URL() + base), option.WithAPIKey("unused"),
		option.WithHTTPClient(s.client), option.WithMaxRetries(0)}, opts...)...)
	return &c
}

// callFor is the GenAI stand-in's record of the request OCI answered with rid.
func callFor(t *testing.T, g *signertest.GenAI, rid string) signertest.GenAICall {
	t.Helper()
	var out signertest.GenAICall
	waitFor(t, func() bool {
		for _, c := range g.Calls() {
			if c.RequestID == rid {
				out = c
				return true
			}
		}
		return false
	})
	return out
}

// receivedFor is what OCI received for rid, with the verdict on its signature.
func (s *stack) receivedFor(t *testing.T, rid string) signertest.Received {
	t.Helper()
	for _, r := range s.oci.Requests() {
		if r.RequestID == rid {
			return r
		}
	}
	t.Fatalf("OCI has no request %q", rid)
	return signertest.Received{}
}

func hello() responses.ResponseNewParams {
	return responses.ResponseNewParams{Model: "openai.gpt-oss-120b", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello.")}}
}

// The Responses API with the official openai-go SDK, unmodified, through
// the Envoy stand-in built from envoy.yaml, ocisigner, and the GenAI
// stand-in (which verifies the signature over the real host and path and
// the body digest, and refuses a missing project, a stray API key or
// Bearer): the project from the route, the client (which wins) and, in a
// gateway with --genai-project, the flag; both compartment spellings on
// the inference host; the client's X-Api-Key never leaves.
func TestResponsesAPIThroughTheGateway(t *testing.T) {
	t.Parallel()
	s, genai, _ := genaiStack(t, "")
	genai.ForbidSecret("sk-openai-secret")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		opts []option.RequestOption
		want string
	}{
		{"project from the route", []option.RequestOption{option.WithHeader("x-route", "team")}, e2eRouteProject},
		{"project from the client", []option.RequestOption{option.WithHeader("x-route", "team"), option.WithProject(e2eClientProject)}, e2eClientProject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var raw *http.Response
			c := s.sdk("/genai/openai/v1", append(tc.opts, option.WithHeader("X-Api-Key", "sk-openai-secret"))...)
			resp, err := c.Responses.New(ctx, hello(), option.WithResponseInto(&raw))
			if err != nil {
				t.Fatal(err)
			}
			if resp.OutputText() != signertest.DefaultGenAIReply || resp.Status != "completed" {
				t.Fatalf("response %+v", resp)
			}
			rid := raw.Header.Get("opc-request-id")
			call, rec := callFor(t, genai, rid), s.receivedFor(t, rid)
			if !rec.OK || rec.Host != e2eInference || rec.RequestURI != "/openai/v1/responses" || !slices.Contains(rec.SignedHeaders, "x-content-sha256") {
				t.Fatalf("OCI received %s%s (ok %v: %s), signed %v", rec.Host, rec.RequestURI, rec.OK, rec.Reason, rec.SignedHeaders)
			}
			if call.Project != tc.want || call.CompartmentID != e2eTenancy || call.CompartmentIDLegacy != e2eTenancy {
				t.Fatalf("project %q, compartments %q and %q; want project %s and both spellings", call.Project, call.CompartmentID, call.CompartmentIDLegacy, tc.want)
			}
		})
	}
	t.Run("project from the flag", func(t *testing.T) {
		s, genai, _ := genaiStack(t, e2eFlagProject)
		var raw *http.Response
		if _, err := s.sdk("/genai/openai/v1").Responses.New(ctx, hello(), option.WithResponseInto(&raw)); err != nil {
			t.Fatal(err)
		}
		if call := callFor(t, genai, raw.Header.Get("opc-request-id")); call.Project != e2eFlagProject {
			t.Fatalf("project %q", call.Project)
		}
	})
	if s.envoy.Stats().ObserverStreams == 0 {
		t.Fatal("envoy.yaml's observing filter never ran: FromBootstrap did not read it")
	}
}

// A streamed Responses answer reaches the SDK event by event: the
// stand-in holds its last event until the client has read every other.
func TestResponsesStreamThroughTheGatewayEventByEvent(t *testing.T) {
	t.Parallel()
	s, genai, _ := genaiStack(t, "")
	const chunks = 24
	total := chunks + 7 // created, in_progress, item and part added, the deltas, text, part and item done, completed
	genai.SetChunks(chunks)
	gate := genai.HoldNextStream()
	t.Cleanup(gate.Release)
	stream := s.sdk("/genai/openai/v1", option.WithHeader("x-route", "team")).Responses.NewStreaming(context.Background(), hello())
	defer stream.Close()
	var text strings.Builder
	got := 0
	for got < total-1 && stream.Next() {
		if d, ok := stream.Current().AsAny().(responses.ResponseTextDeltaEvent); ok {
			text.WriteString(d.Delta)
		}
		got++
	}
	// The stand-in marks the hold after flushing the event before it, so
	// the client may read that event first: wait for the mark.
	select {
	case <-gate.Reached():
	case <-time.After(10 * time.Second):
		t.Fatal("the stand-in never reached its held event")
	}
	if got != total-1 || gate.Written() != total-1 {
		t.Fatalf("the client had %d events while the stand-in held its last (%d written): the stream is buffered", got, gate.Written())
	}
	gate.Release()
	if !stream.Next() || stream.Current().Type != "response.completed" {
		t.Fatalf("last event: %v %v", stream.Current().Type, stream.Err())
	}
	if stream.Next() || stream.Err() != nil {
		t.Fatalf("after response.completed: %v", stream.Err())
	}
	if text.String() != signertest.GenAIStreamText(chunks) {
		t.Fatalf("text %q", text.String())
	}
}

// A file uploaded to /files goes out as the SDK wrote it: the multipart
// body is hashed and signed exactly (x-content-sha256 is the digest of the
// bytes OCI received), and the file inside is the file sent.
func TestFileUploadThroughTheGateway(t *testing.T) {
	t.Parallel()
	s, genai, _ := genaiStack(t, e2eFlagProject)
	var b bytes.Buffer
	for i := 0; b.Len() < 256<<10; i++ {
		fmt.Fprintf(&b, "line %d\r\n--not-a-boundary\r\n\x00\xff\xfe", i)
	}
	content := b.Bytes()
	var raw *http.Response
	file, err := s.sdk("/genai/openai/v1").Files.New(context.Background(), openai.FileNewParams{
		File: openai.File(bytes.NewReader(content), "notes.txt", "text/plain"), Purpose: openai.FilePurposeUserData,
	}, option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	rid := raw.Header.Get("opc-request-id")
	call, rec := callFor(t, genai, rid), s.receivedFor(t, rid)
	sum := sha256.Sum256(content)
	if file.Bytes != int64(len(content)) || call.FileSHA256 != base64.StdEncoding.EncodeToString(sum[:]) || call.Filename != "notes.txt" {
		t.Fatalf("file %+v, recorded %+v", file, call)
	}
	if !rec.OK || !strings.HasPrefix(rec.Header.Get("Content-Type"), "multipart/form-data; boundary=") || rec.Header.Get("x-content-sha256") != rec.BodySHA256 ||
		rec.BodySHA256 != call.BodySHA256 || !slices.Contains(rec.SignedHeaders, "x-content-sha256") || !slices.Contains(rec.SignedHeaders, "content-type") {
		t.Fatalf("OCI received %s, %d bytes hashing to %s, signed %s over %v (ok %v: %s)", rec.Header.Get("Content-Type"),
			rec.BodyLength, rec.BodySHA256, rec.Header.Get("x-content-sha256"), rec.SignedHeaders, rec.OK, rec.Reason)
	}
}

// A vector store is created on the control plane through its own base
// URL (genai-control): with the route's project and opc-compartment-id
// alone, as Oracle's control-plane example sends it.
func TestVectorStoreOnTheControlPlane(t *testing.T) {
	t.Parallel()
	s, genai, _ := genaiStack(t, "")
	var raw *http.Response
	vs, err := s.sdk("/genai-control/v1", option.WithHeader("x-route", "team")).VectorStores.New(context.Background(),
		openai.VectorStoreNewParams{Name: openai.String("handbook")}, option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	rid := raw.Header.Get("opc-request-id")
	call, rec := callFor(t, genai, rid), s.receivedFor(t, rid)
	if vs.Name != "handbook" || !strings.HasPrefix(vs.ID, "vs_") || !rec.OK || rec.Host != e2eControl || rec.RequestURI != "/20231130/openai/v1/vector_stores" {
		t.Fatalf("vector store %+v; OCI received %s%s (ok %v: %s)", vs, rec.Host, rec.RequestURI, rec.OK, rec.Reason)
	}
	if call.Project != e2eRouteProject || call.CompartmentID != e2eTenancy || call.CompartmentIDLegacy != "" {
		t.Fatalf("project %q, compartments %q and %q", call.Project, call.CompartmentID, call.CompartmentIDLegacy)
	}
}

// The older actions base gets both compartment spellings too (oci-openai
// 0.x read CompartmentId there), and a client's own compartment in the old
// spelling alone is what both carry.
func TestCompartmentSpellingsThroughTheGateway(t *testing.T) {
	t.Parallel()
	s, genai, _ := genaiStack(t, "")
	const mine = "ocid1.compartment.oc1..mine"
	chat := openai.ChatCompletionNewParams{Model: "meta.llama-3.3-70b-instruct", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}
	for _, tc := range []struct {
		name, base string
		opts       []option.RequestOption
		want       string
	}{
		{"actions base", "/genai-actions/v1", nil, e2eTenancy},
		{"client's old spelling", "/genai/openai/v1", []option.RequestOption{option.WithHeader("CompartmentId", mine)}, mine},
	} {
		var raw *http.Response
		if _, err := s.sdk(tc.base, tc.opts...).Chat.Completions.New(context.Background(), chat, option.WithResponseInto(&raw)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if call := callFor(t, genai, raw.Header.Get("opc-request-id")); call.CompartmentID != tc.want || call.CompartmentIDLegacy != tc.want {
			t.Fatalf("%s: compartments %q and %q, want %q in both", tc.name, call.CompartmentID, call.CompartmentIDLegacy, tc.want)
		}
	}
}

// With no project from the route, the flag or the client, the request goes
// on as it is (the gateway does not guess) and OCI refuses it: the SDK
// gets OCI's 400, and both the signer's log and Envoy's access log say no
// project was sent and how to set one.
func TestNoProjectHintWhenOCIRefuses(t *testing.T) {
	t.Parallel()
	s, genai, logs := genaiStack(t, "")
	_, err := s.sdk("/genai/openai/v1").Responses.New(context.Background(), hello())
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Response.Header.Get(extproc.HeaderRefused) != "" {
		t.Fatalf("err = %v, want OCI's 400", err)
	}
	if call := callFor(t, genai, apiErr.Response.Header.Get("opc-request-id")); call.Code != signertest.CodeMissingParameter || call.Project != "" {
		t.Fatalf("OCI answered %s (project %q), want its refusal of a request without a project", call.Code, call.Project)
	}
	line := logs.accessLine(t, "POST /openai/v1/responses ", " 400 via_upstream ")
	for _, want := range []string{"outcome=signed", "project=none(route:x-oci-genai-project,flag:--genai-project,header:OpenAI-Project)"} {
		if !strings.Contains(line, want) {
			t.Errorf("access log lacks %q:\n%s", want, line)
		}
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "named no project") })
	for _, want := range []string{`msg="OCI refused a Generative AI request that named no project"`, "status=400", "x-oci-genai-project", "--genai-project", "OpenAI-Project"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("signer log lacks %q", want)
		}
	}
}

// Hostile values a client puts in the Generative AI headers are refused
// with 400 before anything is signed: OCI never sees the request.
func TestHostileGenAIHeadersThroughTheGateway(t *testing.T) {
	t.Parallel()
	s, _, _ := genaiStack(t, e2eFlagProject)
	for _, tc := range []struct {
		name string
		opts []option.RequestOption
	}{
		{"a space in the compartment", []option.RequestOption{option.WithHeader("opc-compartment-id", "ocid1.compartment.oc1..a b")}},
		{"the project twice", []option.RequestOption{option.WithHeaderAdd("OpenAI-Project", e2eClientProject), option.WithHeaderAdd("OpenAI-Project", e2eRouteProject)}},
		{"a conversation store longer than an OCID", []option.RequestOption{option.WithHeader("opc-conversation-store-id", "ocid1."+strings.Repeat("x", 300))}},
		{"spellings that disagree", []option.RequestOption{option.WithHeader("opc-compartment-id", "ocid1.compartment.oc1..a"), option.WithHeader("CompartmentId", "ocid1.compartment.oc1..b")}},
	} {
		before := len(s.oci.Requests())
		_, err := s.sdk("/genai/openai/v1", tc.opts...).Responses.New(context.Background(), hello())
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Response.Header.Get(extproc.HeaderRefused) != extproc.CodeInvalidHeader {
			got := ""
			if apiErr != nil {
				got = fmt.Sprintf("%v %s", apiErr.Response.Header, apiErr.RawJSON())
			}
			t.Errorf("%s: err = %v (got %s), want 400 %s", tc.name, err, got, extproc.CodeInvalidHeader)
		}
		if len(s.oci.Requests()) != before {
			t.Errorf("%s: the request reached OCI", tc.name)
		}
	}
}

// docs/genai.md's Go example, run: the client as the page writes it,
// against the Envoy stand-in built from envoy.yaml.
func TestGenAIDocGoExample(t *testing.T) {
	t.Parallel()
	s, genai, _ := genaiStack(t, "")
	gatewayURL, project, ctx := s.envoy.URL(), e2eClientProject, context.Background()

	client := openai.NewClient(
		option.WithBaseURL(gatewayURL+"/genai/openai/v1"),
		option.WithAPIKey("unused"), // ocisigner signs with your OCI profile instead
		option.WithProject(project), // or let the gateway set it
	)
	resp, err := client.Responses.New(ctx, responses.ResponseNewParams{
		Model: "openai.gpt-oss-120b",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello.")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.OutputText() != signertest.DefaultGenAIReply {
		t.Fatalf("reply %q", resp.OutputText())
	}
	if calls := genai.Calls(); len(calls) != 1 || calls[0].Project != project {
		t.Fatalf("calls %+v", calls)
	}

	// And the page shows this example verbatim.
	doc, err := os.ReadFile("../docs/genai.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "Go (`github.com/openai/openai-go/v3`")
	_, block, ok2 := strings.Cut(after, "```go tested\n")
	block, _, ok3 := strings.Cut(block, "```")
	src, err := os.ReadFile("genai_e2e_test.go")
	if !ok || !ok2 || !ok3 || err != nil {
		t.Fatalf("docs/genai.md has no Go example (%v)", err)
	}
	trim := func(s string) string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	if !strings.Contains(trim(string(src)), trim(block)) || len(strings.Split(trim(block), "\n")) < 5 {
		t.Fatalf("docs/genai.md's Go example is not this test's, verbatim:\n%s", block)
	}
}
