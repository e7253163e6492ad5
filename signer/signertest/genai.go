package signertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The OpenAI-compatible endpoints of OCI Generative AI inference
// (https://inference.generativeai.<region>.oci.<realm domain>): the base the
// service documents now ("OCI OpenAI-Compatible Endpoints",
// docs.oracle.com/en-us/iaas/Content/generative-ai/openai-compatible-api.htm)
// and the one oci-openai 0.x used (base_url = service_endpoint +
// "/20231130/actions/v1", oci_openai/oci_openai.py). Both take the same
// requests.
const (
	GenAIOpenAIBase  = "/openai/v1"
	GenAIActionsBase = "/20231130/actions/v1"
)

// The headers that name the compartment a GenAI request is billed and
// authorized in. Current clients send opc-compartment-id (oci-genai-auth's
// examples, default_headers={"opc-compartment-id": ...}); oci-openai 0.x
// sent CompartmentId, which the service still takes.
const (
	HeaderCompartmentID       = "opc-compartment-id"
	HeaderCompartmentIDLegacy = "CompartmentId"
)

// DefaultGenAIChunks is how many chat.completion.chunk events a streamed
// answer has unless SetChunks says otherwise: enough that a proxy which
// buffered the stream would hold several kilobytes back.
const DefaultGenAIChunks = 64

// DefaultGenAIReply is the assistant's answer to a plain chat completion.
const DefaultGenAIReply = "Signed by ocisigner, verified by the signertest GenAI stand-in."

// DefaultGenAIModels are the models GET .../models lists.
var DefaultGenAIModels = []string{"meta.llama-3.3-70b-instruct", "openai.gpt-oss-120b", "xai.grok-4"}

// Error codes the GenAI stand-in answers with besides the Server's.
const (
	CodeMissingParameter = "MissingParameter"
)

// GenAIStreamPiece is the content of chunk i of a streamed answer; the last
// chunk carries no content but finish_reason "stop".
func GenAIStreamPiece(i int) string { return fmt.Sprintf("tok%03d ", i) }

// GenAIStreamText is the whole content of a streamed answer of n chunks.
func GenAIStreamText(n int) string {
	var b strings.Builder
	for i := 0; i < n-1; i++ {
		b.WriteString(GenAIStreamPiece(i))
	}
	return b.String()
}

// GenAICall is one request a GenAI handler answered (the Server answers
// unverified requests itself, and records them in its own log).
type GenAICall struct {
	Seq       int64
	RequestID string // the opc-request-id answered: Server.Requests() has the same
	Method    string
	Path      string
	KeyID     string // the verified signature's keyId

	Compartment       string
	CompartmentHeader string // the header that carried it: HeaderCompartmentID or HeaderCompartmentIDLegacy
	Model             string
	Stream            bool
	Messages          int

	Status  int
	Code    string // the OCI error code answered, "" on success
	Message string
	Reason  string // the stand-in's precise account of a refusal

	// Chunks is how many chat.completion.chunk events were written and
	// flushed; Done reports that "data: [DONE]" followed them.
	Chunks int
	Done   bool
	// Written holds when each chunk was flushed, for test logs; ordering
	// proofs use a StreamGate, not these times.
	Written []time.Time
}

// GenAI is a stand-in for OCI Generative AI's OpenAI-compatible inference
// endpoints, served by a Server: the Server verifies each request's
// signature and body digest as OCI does, and only then does GenAI look at
// it. It answers, under both GenAIOpenAIBase and GenAIActionsBase,
//
//   - POST .../chat/completions: a chat.completion object, or with
//     "stream": true a text/event-stream of chat.completion.chunk events,
//     each flushed as written, ended by "data: [DONE]";
//   - GET .../models: a list of the models SetModels names.
//
// Both need the compartment header (HeaderCompartmentID, or the legacy
// HeaderCompartmentIDLegacy), else 400 MissingParameter in OCI's error
// shape; both refuse with 401 NotAuthenticated a request in which any header
// carries a Bearer credential, or a secret named with ForbidSecret: the
// client's OpenAI API key must never reach OCI. (A request whose
// Authorization itself is Bearer never gets here: the Server refuses it as
// unsigned.)
type GenAI struct {
	srv *Server

	mu        sync.Mutex
	chunks    int
	reply     string
	models    []string
	forbidden []string
	gates     []*StreamGate
	log       []GenAICall
	seq       atomic.Int64
}

// NewGenAI serves the GenAI endpoints on srv. Call it once per Server (its
// patterns cannot be registered twice). Make srv accept the test's
// credentials as usual (RegisterAPIKey, TrustIssuer).
func NewGenAI(srv *Server) *GenAI {
	g := &GenAI{srv: srv, chunks: DefaultGenAIChunks, reply: DefaultGenAIReply, models: append([]string(nil), DefaultGenAIModels...)}
	for _, base := range []string{GenAIOpenAIBase, GenAIActionsBase} {
		srv.Handle("POST "+base+"/chat/completions", http.HandlerFunc(g.chat))
		srv.Handle("GET "+base+"/models", http.HandlerFunc(g.listModels))
	}
	return g
}

// SetChunks sets how many chunk events a streamed answer has (at least 2:
// content, then the finish); n < 2 restores DefaultGenAIChunks.
func (g *GenAI) SetChunks(n int) {
	if n < 2 {
		n = DefaultGenAIChunks
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.chunks = n
}

// SetReply sets the content of plain (not streamed) answers.
func (g *GenAI) SetReply(s string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reply = s
}

// SetModels sets the models GET .../models lists.
func (g *GenAI) SetModels(models ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.models = append([]string(nil), models...)
}

// ForbidSecret makes any request in which a header value or the body
// contains s (a client's OpenAI API key, say, in whatever header) refused
// with 401, as if it had leaked to OCI.
func (g *GenAI) ForbidSecret(s string) {
	if s == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.forbidden = append(g.forbidden, s)
}

// Calls returns what the GenAI handlers answered so far, in completion
// order (a stream is recorded once it has ended).
func (g *GenAI) Calls() []GenAICall {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]GenAICall, len(g.log))
	copy(out, g.log)
	return out
}

// A StreamGate holds one streamed answer before its last chunk event, so
// that a test can prove the earlier events reached the client while the
// stand-in had not yet written the last: whatever the client reads before
// Release was flushed on its own, not buffered until the end.
type StreamGate struct {
	reached   chan struct{}
	release   chan struct{}
	reachOnce sync.Once
	relOnce   sync.Once
	written   atomic.Int64
}

// HoldNextStream returns a gate that the next streamed answer (in arrival
// order, after any gates already waiting) will stop at.
func (g *GenAI) HoldNextStream() *StreamGate {
	gate := &StreamGate{reached: make(chan struct{}), release: make(chan struct{})}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gates = append(g.gates, gate)
	return gate
}

// Reached is closed once the stream has flushed every chunk but the last
// and waits for Release.
func (s *StreamGate) Reached() <-chan struct{} { return s.reached }

// Release lets the stream write its last chunk and [DONE]. It is safe to
// call more than once. A stream never released ends when its client goes
// away or the Server closes.
func (s *StreamGate) Release() { s.relOnce.Do(func() { close(s.release) }) }

// Written is how many chunk events the stream has written and flushed.
func (s *StreamGate) Written() int { return int(s.written.Load()) }

type genaiSettings struct {
	chunks    int
	reply     string
	models    []string
	forbidden []string
}

func (g *GenAI) settings() genaiSettings {
	g.mu.Lock()
	defer g.mu.Unlock()
	return genaiSettings{g.chunks, g.reply, append([]string(nil), g.models...), append([]string(nil), g.forbidden...)}
}

func (g *GenAI) record(c *GenAICall) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.log = append(g.log, *c)
}

func (g *GenAI) takeGate() *StreamGate {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.gates) == 0 {
		return nil
	}
	gate := g.gates[0]
	g.gates = g.gates[1:]
	return gate
}

// start opens the record of a request and runs the checks both endpoints
// share; on a refusal it has answered and reports false.
func (g *GenAI) start(w http.ResponseWriter, r *http.Request, st genaiSettings, body []byte) (*GenAICall, bool) {
	c := &GenAICall{Seq: g.seq.Add(1), RequestID: w.Header().Get("opc-request-id"), Method: r.Method, Path: r.URL.Path}
	if caller, ok := CallerFrom(r.Context()); ok {
		c.KeyID = caller.KeyID
	}
	for name, values := range r.Header {
		for _, v := range values {
			if hasBearer(v) {
				g.refuse(w, c, notAuthenticated(MsgRequiredInfo, "header %s carries a Bearer credential: the client's API key must not reach OCI", name))
				return c, false
			}
			for _, s := range st.forbidden {
				if strings.Contains(v, s) {
					g.refuse(w, c, notAuthenticated(MsgRequiredInfo, "header %s carries a secret the test forbade (ForbidSecret)", name))
					return c, false
				}
			}
		}
	}
	for _, s := range st.forbidden {
		if bytes.Contains(body, []byte(s)) {
			g.refuse(w, c, notAuthenticated(MsgRequiredInfo, "the body carries a secret the test forbade (ForbidSecret)"))
			return c, false
		}
	}
	c.Compartment, c.CompartmentHeader = r.Header.Get(HeaderCompartmentID), HeaderCompartmentID
	if c.Compartment == "" {
		c.Compartment, c.CompartmentHeader = r.Header.Get(HeaderCompartmentIDLegacy), HeaderCompartmentIDLegacy
	}
	if c.Compartment == "" {
		c.CompartmentHeader = ""
		g.refuse(w, c, &rejection{status: http.StatusBadRequest, code: CodeMissingParameter,
			message: "Missing required header: " + HeaderCompartmentID + ".",
			reason:  fmt.Sprintf("neither %s nor %s is set", HeaderCompartmentID, HeaderCompartmentIDLegacy)})
		return c, false
	}
	return c, true
}

// hasBearer reports whether a header value holds a Bearer credential, alone
// or in a comma-separated list.
func hasBearer(v string) bool {
	for _, part := range strings.Split(v, ",") {
		scheme, _, _ := strings.Cut(strings.TrimSpace(part), " ")
		if strings.EqualFold(scheme, "Bearer") {
			return true
		}
	}
	return false
}

func (g *GenAI) refuse(w http.ResponseWriter, c *GenAICall, rej *rejection) {
	c.Status, c.Code, c.Message, c.Reason = rej.status, rej.code, rej.message, rej.reason
	writeJSON(w, rej.status, struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{rej.code, rej.message})
}

func (g *GenAI) listModels(w http.ResponseWriter, r *http.Request) {
	st := g.settings()
	c, ok := g.start(w, r, st, nil)
	defer g.record(c)
	if !ok {
		return
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, m := range st.models {
		owner, _, _ := strings.Cut(m, ".")
		out.Data = append(out.Data, model{ID: m, Object: "model", Created: 1735689600, OwnedBy: owner})
	}
	c.Status = http.StatusOK
	writeJSON(w, http.StatusOK, out)
}

// chatRequest is the part of an OpenAI chat completion request the
// stand-in reads.
type chatRequest struct {
	Model    *string           `json:"model"`
	Messages []json.RawMessage `json:"messages"`
	Stream   bool              `json:"stream"`
}

func (g *GenAI) chat(w http.ResponseWriter, r *http.Request) {
	st := g.settings()
	// The Server has read the body and checked it against x-content-sha256.
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(r.Body)
	c, ok := g.start(w, r, st, body.Bytes())
	defer g.record(c)
	if !ok {
		return
	}
	var req chatRequest
	if err := json.Unmarshal(body.Bytes(), &req); err != nil {
		g.refuse(w, c, &rejection{status: http.StatusBadRequest, code: CodeInvalidParameter,
			message: "The request body is not valid JSON.", reason: fmt.Sprintf("decoding the chat request: %v", err)})
		return
	}
	if req.Model == nil || *req.Model == "" {
		g.refuse(w, c, &rejection{status: http.StatusBadRequest, code: CodeInvalidParameter,
			message: "model is required.", reason: "the chat request names no model"})
		return
	}
	c.Model, c.Stream, c.Messages = *req.Model, req.Stream, len(req.Messages)
	if len(req.Messages) == 0 {
		g.refuse(w, c, &rejection{status: http.StatusBadRequest, code: CodeInvalidParameter,
			message: "messages must not be empty.", reason: "the chat request has no messages"})
		return
	}
	id := fmt.Sprintf("chatcmpl-signertest-%d", c.Seq)
	created := time.Now().Unix()
	if !req.Stream {
		c.Status = http.StatusOK
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": c.Model,
			"choices": []any{map[string]any{
				"index":         0,
				"message":       map[string]any{"role": "assistant", "content": st.reply},
				"finish_reason": "stop",
			}},
			"usage": map[string]int{"prompt_tokens": body.Len() / 4, "completion_tokens": len(st.reply) / 4, "total_tokens": body.Len()/4 + len(st.reply)/4},
		})
		return
	}
	g.stream(w, r, c, st.chunks, id, created)
}

// stream writes n chunk events and [DONE], flushing each, and stops before
// the last chunk at the next StreamGate, if one is waiting.
func (g *GenAI) stream(w http.ResponseWriter, r *http.Request, c *GenAICall, n int, id string, created int64) {
	gate := g.takeGate()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	c.Status = http.StatusOK
	event := func(data []byte) error {
		if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
			return err
		}
		return rc.Flush()
	}
	for i := 0; i < n; i++ {
		if i == n-1 && gate != nil {
			gate.reachOnce.Do(func() { close(gate.reached) })
			select {
			case <-gate.release:
			case <-r.Context().Done():
				c.Reason = fmt.Sprintf("the client went away while the stream was held before chunk %d", i)
				return
			}
		}
		delta := map[string]any{}
		var finish any
		switch {
		case i == n-1:
			finish = "stop"
		case i == 0:
			delta["role"] = "assistant"
			delta["content"] = GenAIStreamPiece(i)
		default:
			delta["content"] = GenAIStreamPiece(i)
		}
		data, err := json.Marshal(map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": c.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		})
		if err != nil {
			panic(err) // only maps of strings and numbers
		}
		if err := event(data); err != nil {
			c.Reason = fmt.Sprintf("writing chunk %d: %v", i, err)
			return
		}
		c.Chunks++
		c.Written = append(c.Written, time.Now())
		if gate != nil {
			gate.written.Add(1)
		}
	}
	if err := event([]byte("[DONE]")); err != nil {
		c.Reason = fmt.Sprintf("writing [DONE]: %v", err)
		return
	}
	c.Done = true
}
