package signertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/ocisigner/ocisigner/signer"
)

const (
	testCompartment = "ocid1.compartment.oc1..genaitest"
	openAIKey       = "sk-test-0123456789abcdef" // what a client configured for OpenAI would send
)

// signingTransport does what the gateway will do for the SDK: it drops the
// client's Authorization (its OpenAI API key) and signs the request as it
// will be sent, with the product's signer. extra headers are added after
// signing, unsigned, to model a gateway that lets something through.
type signingTransport struct {
	creds *signer.Credentials
	now   time.Time
	extra http.Header
	// tamper, when set, changes the body after it was signed.
	tamper func([]byte) []byte
	base   *http.Transport
}

func (s *signingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	req.Header.Del("Authorization")
	sig, err := signer.Sign(&signer.Request{
		Method: req.Method, Host: req.URL.Host, Target: req.URL.RequestURI(),
		Header: signer.HTTPHeader(req.Header), Body: body,
	}, s.creds, s.now)
	if err != nil {
		return nil, err
	}
	for _, f := range sig.Headers {
		if f.Name != signer.HeaderContentLength { // net/http writes it from ContentLength
			req.Header.Set(f.Name, f.Value)
		}
	}
	for k, vs := range s.extra {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if s.tamper != nil {
		body = s.tamper(body)
	}
	req.ContentLength = int64(len(body))
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return s.base.RoundTrip(req)
}

type genaiFixture struct {
	*fixture
	genai *GenAI
}

func newGenAIFixture(t *testing.T) *genaiFixture {
	t.Helper()
	f := &genaiFixture{fixture: newFixture(t)}
	f.genai = NewGenAI(f.srv)
	return f
}

// client is an openai-go client pointed straight at the stand-in under base.
// With signed, its requests are signed as the gateway will sign them;
// without, they go out as the SDK makes them (Authorization: Bearer <key>).
func (f *genaiFixture) client(t *testing.T, base string, signed bool, extra http.Header, opts ...option.RequestOption) openai.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	var rt http.RoundTripper = tr
	if signed {
		rt = &signingTransport{creds: f.api, now: testNow, extra: extra, base: tr}
	}
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(f.srv.URL + base + "/"),
		option.WithAPIKey(openAIKey),
		option.WithHTTPClient(&http.Client{Transport: rt}),
		option.WithMaxRetries(0),
	}, opts...)...)
}

func withCompartment() option.RequestOption {
	return option.WithHeader(headerCompartmentID, testCompartment)
}

// bounded is a guard against a hang (a stand-in or proxy that buffers a
// stream would block the client forever), not a timing assertion.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func chatParams(model string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Say hello.")},
	}
}

// lastCall is the GenAI record of the request answered with requestID.
func (f *genaiFixture) call(t *testing.T, requestID string) GenAICall {
	t.Helper()
	for _, c := range f.genai.Calls() {
		if c.RequestID == requestID {
			return c
		}
	}
	t.Fatalf("no GenAI call with request id %q; calls: %+v", requestID, f.genai.Calls())
	return GenAICall{}
}

// wantNoBearerArrived checks what the Server received for requestID: signed,
// and no header with a Bearer credential or the OpenAI key.
func (f *genaiFixture) wantNoBearerArrived(t *testing.T, requestID string) {
	t.Helper()
	for _, rec := range f.srv.Requests() {
		if rec.RequestID != requestID {
			continue
		}
		if a := rec.Header.Get("Authorization"); !strings.HasPrefix(a, "Signature ") {
			t.Errorf("Authorization = %.30q…, want a Signature", a)
		}
		for name, vs := range rec.Header {
			for _, v := range vs {
				if strings.Contains(strings.ToLower(v), "bearer") || strings.Contains(v, openAIKey) {
					t.Errorf("header %s arrived with %q", name, v)
				}
			}
		}
		return
	}
	t.Fatalf("the server has no request %q", requestID)
}

func TestGenAIChatCompletionThroughOpenAIGoSDK(t *testing.T) {
	for _, tc := range []struct{ name, base string }{
		{"openai base", genAIOpenAIBase},
		{"actions base", genAIActionsBase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newGenAIFixture(t)
			f.genai.setReply("hello from OCI")
			c := f.client(t, tc.base, true, nil, withCompartment())
			var raw *http.Response
			resp, err := c.Chat.Completions.New(bounded(t), chatParams("meta.llama-3.3-70b-instruct"), option.WithResponseInto(&raw))
			if err != nil {
				t.Fatalf("SDK: %v; server: %+v", err, f.srv.Requests())
			}
			if resp.Object != "chat.completion" || resp.Model != "meta.llama-3.3-70b-instruct" || len(resp.Choices) != 1 ||
				resp.Choices[0].Message.Content != "hello from OCI" || resp.Choices[0].FinishReason != "stop" {
				t.Errorf("completion %+v", resp)
			}
			rid := raw.Header.Get("opc-request-id")
			got := f.call(t, rid)
			if got.Status != http.StatusOK || got.Compartment != testCompartment || got.CompartmentHeader != headerCompartmentID ||
				got.Model != "meta.llama-3.3-70b-instruct" || got.Stream || got.Messages != 2 || got.KeyID != f.api.KeyID ||
				got.Path != tc.base+"/chat/completions" {
				t.Errorf("recorded %+v", got)
			}
			f.wantNoBearerArrived(t, rid)
		})
	}
}

// TestGenAIStreamReachesClientBeforeItEnds proves each event is flushed on
// its own: the client reads every chunk but the last while the stand-in is
// held before writing it, so none of them can have waited for the end.
func TestGenAIStreamReachesClientBeforeItEnds(t *testing.T) {
	f := newGenAIFixture(t)
	const n = 50
	f.genai.SetChunks(n)
	gate := f.genai.HoldNextStream()
	t.Cleanup(gate.Release)
	c := f.client(t, genAIOpenAIBase, true, nil, withCompartment())
	ctx := bounded(t)
	var raw *http.Response
	stream := c.Chat.Completions.NewStreaming(ctx, chatParams("openai.gpt-oss-120b"), option.WithResponseInto(&raw))
	defer stream.Close()

	var text strings.Builder
	for i := 0; i < n-1; i++ {
		if !stream.Next() {
			t.Fatalf("stream ended after %d chunks, before the gate was released: %v", i, stream.Err())
		}
		ch := stream.Current()
		if ch.Object != "chat.completion.chunk" || len(ch.Choices) != 1 {
			t.Fatalf("chunk %d: %+v", i, ch)
		}
		if i == 0 && ch.Choices[0].Delta.Role != "assistant" {
			t.Errorf("first delta role = %q", ch.Choices[0].Delta.Role)
		}
		text.WriteString(ch.Choices[0].Delta.Content)
	}
	select {
	case <-gate.Reached():
	case <-ctx.Done():
		t.Fatal("the stand-in never reached the gate")
	}
	if w := gate.Written(); w != n-1 {
		t.Fatalf("the client read %d chunks while the stand-in had written %d; want %d before the last", n-1, w, n-1)
	}
	gate.Release()
	if !stream.Next() {
		t.Fatalf("no last chunk after release: %v", stream.Err())
	}
	if last := stream.Current(); last.Choices[0].FinishReason != "stop" || last.Choices[0].Delta.Content != "" {
		t.Errorf("last chunk %+v", last)
	}
	if stream.Next() {
		t.Errorf("an event after the last chunk: %+v", stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if got, want := text.String(), GenAIStreamText(n); got != want {
		t.Errorf("streamed text %q, want %q", got, want)
	}
	if ct := raw.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content-type %q", ct)
	}
	// The record is written once the handler returns, after [DONE].
	var got GenAICall
	for ctx.Err() == nil {
		if calls := f.genai.Calls(); len(calls) == 1 {
			got = calls[0]
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !got.Stream || got.Chunks != n || !got.Done || len(got.Written) != n || got.Compartment != testCompartment || got.Model != "openai.gpt-oss-120b" {
		t.Errorf("recorded %+v", got)
	}
	f.wantNoBearerArrived(t, raw.Header.Get("opc-request-id"))
}

func TestGenAIStreamWithoutGateRunsToDone(t *testing.T) {
	f := newGenAIFixture(t)
	c := f.client(t, genAIActionsBase, true, nil, withCompartment())
	stream := c.Chat.Completions.NewStreaming(bounded(t), chatParams("xai.grok-4"))
	defer stream.Close()
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if chunks != defaultGenAIChunks || len(acc.Choices) != 1 || acc.Choices[0].Message.Content != GenAIStreamText(defaultGenAIChunks) {
		t.Errorf("%d chunks, accumulated %+v", chunks, acc.ChatCompletion)
	}
}

func TestGenAIListsModelsThroughOpenAIGoSDK(t *testing.T) {
	f := newGenAIFixture(t)
	f.genai.setModels("cohere.command-a-03-2025", "meta.llama-4-scout-17b-16e-instruct")
	c := f.client(t, genAIOpenAIBase, true, nil, withCompartment())
	page, err := c.Models.List(bounded(t))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID+"/"+m.OwnedBy)
	}
	if got := strings.Join(ids, ","); got != "cohere.command-a-03-2025/cohere,meta.llama-4-scout-17b-16e-instruct/meta" {
		t.Errorf("models %s", got)
	}
}

// sdkStatus returns the status and body of an openai-go API error. The SDK
// reads OpenAI's {"error": {...}}, not OCI's shape, so the body is read from
// the response it keeps.
func sdkStatus(t *testing.T, err error) (int, string) {
	t.Helper()
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("error %v is not an API error", err)
	}
	body, rerr := io.ReadAll(apiErr.Response.Body)
	if rerr != nil {
		t.Fatal(rerr)
	}
	return apiErr.StatusCode, string(body)
}

func TestGenAIRefusesThroughOpenAIGoSDK(t *testing.T) {
	for _, tc := range []struct {
		name       string
		signed     bool
		extra      http.Header
		opts       []option.RequestOption
		forbid     string
		status     int
		code       string
		byStandIn  bool   // answered by GenAI, not already by the Server
		wantReason string // in GenAICall.Reason or Received.Reason
	}{
		{name: "unsigned, the OpenAI key as Bearer", signed: false, opts: []option.RequestOption{withCompartment()},
			status: 401, code: CodeNotAuthenticated, wantReason: "is not Signature"},
		{name: "missing compartment", signed: true,
			status: 400, code: CodeMissingParameter, byStandIn: true, wantReason: "neither opc-compartment-id nor CompartmentId"},
		{name: "a Bearer in another header", signed: true, opts: []option.RequestOption{withCompartment()},
			extra:  http.Header{"X-Original-Authorization": {"Bearer " + openAIKey}},
			status: 401, code: CodeNotAuthenticated, byStandIn: true, wantReason: "X-Original-Authorization carries a Bearer"},
		{name: "a Bearer among other values", signed: true, opts: []option.RequestOption{withCompartment()},
			extra:  http.Header{"X-Forwarded-Credentials": {"Basic abc, bearer " + openAIKey}},
			status: 401, code: CodeNotAuthenticated, byStandIn: true, wantReason: "carries a Bearer"},
		{name: "the forbidden key without a scheme", signed: true, opts: []option.RequestOption{withCompartment()},
			extra: http.Header{"X-Custom-Token": {openAIKey}}, forbid: openAIKey,
			status: 401, code: CodeNotAuthenticated, byStandIn: true, wantReason: "X-Custom-Token carries a secret the test forbade"},
		{name: "an X-Api-Key", signed: true, opts: []option.RequestOption{withCompartment()},
			extra:  http.Header{"X-Api-Key": {"anything"}},
			status: 401, code: CodeNotAuthenticated, byStandIn: true, wantReason: "X-Api-Key is present"},
		{name: "an api-key in lower case", signed: true, opts: []option.RequestOption{withCompartment()},
			extra:  http.Header{"api-key": {"anything"}},
			status: 401, code: CodeNotAuthenticated, byStandIn: true, wantReason: "Api-Key is present"},
		{name: "an empty X-Goog-Api-Key", signed: true, opts: []option.RequestOption{withCompartment()},
			extra:  http.Header{"X-Goog-Api-Key": {""}},
			status: 401, code: CodeNotAuthenticated, byStandIn: true, wantReason: "X-Goog-Api-Key is present"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newGenAIFixture(t)
			f.genai.ForbidSecret(tc.forbid)
			c := f.client(t, genAIOpenAIBase, tc.signed, tc.extra, tc.opts...)
			_, err := c.Chat.Completions.New(bounded(t), chatParams("meta.llama-3.3-70b-instruct"))
			status, body := sdkStatus(t, err)
			var e struct{ Code, Message string }
			if jerr := json.Unmarshal([]byte(body), &e); jerr != nil || status != tc.status || e.Code != tc.code || e.Message == "" {
				t.Fatalf("answer %d %s, want %d with code %s", status, body, tc.status, tc.code)
			}
			reqs := f.srv.Requests()
			if len(reqs) != 1 {
				t.Fatalf("server saw %d requests", len(reqs))
			}
			calls := f.genai.Calls()
			if !tc.byStandIn {
				if len(calls) != 0 || reqs[0].OK || !strings.Contains(reqs[0].Reason, tc.wantReason) {
					t.Errorf("the Server should have refused it: %+v; calls %+v", reqs[0], calls)
				}
				return
			}
			if len(calls) != 1 || calls[0].Status != tc.status || calls[0].Code != tc.code || !strings.Contains(calls[0].Reason, tc.wantReason) {
				t.Errorf("calls %+v", calls)
			}
			t.Logf("reason: %s", calls[0].Reason)
		})
	}
}

// TestGenAIChecksTheRequest drives the stand-in with hand-built signed
// requests, for the cases an SDK would not produce.
func TestGenAIChecksTheRequest(t *testing.T) {
	compartment := field{headerCompartmentID, testCompartment}
	ctype := field{"content-type", "application/json"}
	for _, tc := range []struct {
		name    string
		method  string
		target  string
		body    string
		headers []field
		status  int
		code    string
		check   func(t *testing.T, c GenAICall, body []byte)
	}{
		{name: "legacy CompartmentId header", method: "POST", target: genAIActionsBase + "/chat/completions",
			body: `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, headers: []field{ctype, {"CompartmentId", testCompartment}}, status: 200,
			check: func(t *testing.T, c GenAICall, _ []byte) {
				if c.Compartment != testCompartment || c.CompartmentHeader != headerCompartmentIDLegacy {
					t.Errorf("recorded %+v", c)
				}
			}},
		{name: "no model", method: "POST", target: genAIOpenAIBase + "/chat/completions",
			body: `{"messages":[{"role":"user","content":"hi"}]}`, headers: []field{ctype, compartment}, status: 400, code: codeInvalidParameter},
		{name: "no messages", method: "POST", target: genAIOpenAIBase + "/chat/completions",
			body: `{"model":"m","messages":[]}`, headers: []field{ctype, compartment}, status: 400, code: codeInvalidParameter},
		{name: "not JSON", method: "POST", target: genAIOpenAIBase + "/chat/completions",
			body: `model=m`, headers: []field{ctype, compartment}, status: 400, code: codeInvalidParameter},
		{name: "models without compartment", method: "GET", target: genAIOpenAIBase + "/models",
			status: 400, code: CodeMissingParameter},
		{name: "models", method: "GET", target: genAIActionsBase + "/models", headers: []field{compartment}, status: 200,
			check: func(t *testing.T, _ GenAICall, body []byte) {
				var l struct {
					Object string
					Data   []struct{ ID, Object string }
				}
				if err := json.Unmarshal(body, &l); err != nil || l.Object != "list" || len(l.Data) != len(defaultGenAIModels) || l.Data[0].Object != "model" {
					t.Errorf("models %s", body)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newGenAIFixture(t)
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			w := signed(t, f.api, tc.method, f.srv.Addr, tc.target, body, testNow, tc.headers...)
			r := doClient(t, f.srv.Addr, w)
			if r.Status != tc.status {
				t.Fatalf("status %d, body %s", r.Status, r.Body)
			}
			c := f.call(t, r.Header.Get("opc-request-id"))
			if tc.code != "" {
				var e struct{ Code, Message string }
				if err := json.Unmarshal(r.Body, &e); err != nil || e.Code != tc.code || e.Message == "" || c.Code != tc.code || c.Reason == "" {
					t.Errorf("answer %s, recorded %+v", r.Body, c)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("content-type %q", ct)
				}
				t.Logf("reason: %s", c.Reason)
			}
			if tc.check != nil {
				tc.check(t, c, r.Body)
			}
		})
	}
}

func TestGenAIHeldStreamEndsWhenClientLeaves(t *testing.T) {
	f := newGenAIFixture(t)
	f.genai.SetChunks(3)
	gate := f.genai.HoldNextStream()
	c := f.client(t, genAIOpenAIBase, true, nil, withCompartment())
	ctx, cancel := context.WithCancel(bounded(t))
	stream := c.Chat.Completions.NewStreaming(ctx, chatParams("m"))
	for i := 0; i < 2; i++ {
		if !stream.Next() {
			t.Fatalf("chunk %d: %v", i, stream.Err())
		}
	}
	<-gate.Reached()
	cancel()
	stream.Close()
	deadline := bounded(t)
	for deadline.Err() == nil {
		if calls := f.genai.Calls(); len(calls) == 1 {
			if calls[0].Done || calls[0].Chunks != 2 || !strings.Contains(calls[0].Reason, "went away") {
				t.Errorf("recorded %+v", calls[0])
			}
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the held stream never ended after its client left")
}
