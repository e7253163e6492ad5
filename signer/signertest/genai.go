package signertest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The OpenAI-compatible bases of OCI Generative AI. On the inference host
// (https://inference.generativeai.<region>.oci.<realm domain>): the base the
// service documents now ("OCI OpenAI-Compatible Endpoints",
// docs.oracle.com/en-us/iaas/Content/generative-ai/openai-compatible-api.htm;
// oci-genai-auth-python, openai/oci_openai.py _build_base_url) and the one
// oci-openai 0.x used (base_url = service_endpoint + "/20231130/actions/v1",
// oci_openai/oci_openai.py _build_service_url); both take chat requests. On
// the control plane (https://generativeai.<region>.oci.<realm domain>): the
// base Oracle's examples reach vector stores with, through a second client
// (oci-genai-auth-python, examples/agenthub/openai/common.py,
// AGENTHUB_OPENAI_CP_URL).
const (
	genAIOpenAIBase  = "/openai/v1"
	genAIActionsBase = "/20231130/actions/v1"
	genAIControlBase = "/20231130/openai/v1"
)

// The headers that name the compartment a GenAI request is billed and
// authorized in. Current clients send opc-compartment-id; oci-openai 0.x
// sent only CompartmentId, and oci-genai-auth (Python _build_headers, Java
// OciHeaderInterceptor) still sends both "for backward compatibility".
const (
	headerCompartmentID       = "opc-compartment-id"
	headerCompartmentIDLegacy = "CompartmentId"
)

// Headers the stand-in reads besides the compartment: the project, as the
// OpenAI SDKs send it (option.WithProject; header names are
// case-insensitive, so the Java helper's openai-project is the same header),
// and the optional conversation store of oci-genai-auth (Python
// CONVERSATION_STORE_ID_HEADER, Java OciOpenAI.conversationStoreId).
const (
	headerProject           = "OpenAI-Project"
	headerConversationStore = "opc-conversation-store-id"
)

// apiKeyHeaders are where SDKs put an API key other than Authorization;
// Oracle's helpers strip the first and last before signing
// (oci-genai-auth-python auth.py HttpxOciAuth._sign_request).
var apiKeyHeaders = []string{"X-Api-Key", "Api-Key", "X-Goog-Api-Key"}

// defaultGenAIChunks is how many chat.completion.chunk events a streamed
// answer has unless SetChunks says otherwise: enough that a proxy which
// buffered the stream would hold several kilobytes back.
const defaultGenAIChunks = 64

// DefaultGenAIReply is the assistant's answer to a plain chat completion or
// Responses request.
const DefaultGenAIReply = "Signed by ocisigner, verified by the signertest GenAI stand-in."

// defaultGenAIModels are the models GET .../models lists.
var defaultGenAIModels = []string{"meta.llama-3.3-70b-instruct", "openai.gpt-oss-120b", "xai.grok-4"}

// Error codes the GenAI stand-in answers with besides the Server's.
const (
	CodeMissingParameter = "MissingParameter"
	codeNotFound         = "NotAuthorizedOrNotFound"
)

// genAIStreamPiece is the text of delta i of a streamed answer: chunk i of a
// chat completion, or output_text.delta i of a Responses stream.
func genAIStreamPiece(i int) string { return fmt.Sprintf("tok%03d ", i) }

// GenAIStreamText is the whole text of a streamed answer of n chunks (the
// last chat chunk carries no content but finish_reason "stop").
func GenAIStreamText(n int) string {
	var b strings.Builder
	for i := 0; i < n-1; i++ {
		b.WriteString(genAIStreamPiece(i))
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
	Host      string // the Host header as received
	KeyID     string // the verified signature's keyId

	// Compartment is the compartment the request named, and
	// CompartmentHeader the header it was read from (headerCompartmentID
	// first, else headerCompartmentIDLegacy); CompartmentID and
	// CompartmentIDLegacy are what each spelling carried, "" when absent.
	Compartment         string
	CompartmentHeader   string
	CompartmentID       string
	CompartmentIDLegacy string
	Project             string // OpenAI-Project, "" when absent
	ConversationStore   string // opc-conversation-store-id, "" when absent
	// BodySHA256 is the base64 SHA-256 of the body the handler read: the
	// bytes the Server held to x-content-sha256.
	BodySHA256 string

	Model    string
	Stream   bool
	Messages int    // chat messages, or Responses input items (a string is one)
	ObjectID string // the id answered: chatcmpl-…, resp_…, file-…, conv_…, vs_…

	// Files uploads: the file part's name, size and base64 SHA-256, and the
	// purpose field.
	Filename   string
	FileSize   int64
	FileSHA256 string
	Purpose    string

	Status  int
	Code    string // the OCI error code answered, "" on success
	Message string
	Reason  string // the stand-in's precise account of a refusal

	// Chunks is how many stream events were written and flushed
	// (chat.completion.chunk events, or Responses API events); Done reports
	// that the stream ended as it should ("data: [DONE]" after the chunks,
	// or response.completed).
	Chunks int
	Done   bool
	// Written holds when each event was flushed, for test logs; ordering
	// proofs use a streamGate, not these times.
	Written []time.Time
}

// GenAI is a stand-in for OCI Generative AI's OpenAI-compatible endpoints,
// served by a Server: the Server verifies each request's signature and body
// digest as OCI does, and only then does GenAI look at it. It answers
//
//   - POST .../chat/completions and GET .../models, under genAIOpenAIBase
//     and genAIActionsBase: a chat.completion object, or with "stream": true
//     a text/event-stream of chat.completion.chunk events ended by
//     "data: [DONE]"; a list of the models SetModels names;
//   - POST genAIOpenAIBase/responses: a Responses API response object, or
//     with "stream": true its events (response.created … response.completed),
//     each as "event: <type>" and "data: <json>", as OpenAI's wire has them;
//   - POST genAIOpenAIBase/files (multipart/form-data: purpose, file): a
//     file object;
//   - POST genAIOpenAIBase/conversations: a conversation object;
//   - POST and GET genAIControlBase/vector_stores: a vector store object; the
//     list of those created.
//
// Every stream event is flushed as written. It refuses, in OCI's error shape
// ({"code", "message"}), in this order:
//
//   - the next requests RefuseNext names: 401 NotAuthenticated;
//   - a credential that must never reach OCI: a Bearer in any header, an
//     X-Api-Key, Api-Key or X-Goog-Api-Key header, a secret named with
//     ForbidSecret anywhere: 401 NotAuthenticated (a request whose
//     Authorization itself is Bearer never gets here: the Server refuses it
//     as unsigned);
//   - a Host naming the other plane's GenAI host (vector stores on
//     inference.generativeai.…, inference on generativeai.…): 404
//     NotAuthorizedOrNotFound; a Host that is neither (127.0.0.1) is taken
//     for the right one;
//   - a compartment, project or conversation store header sent twice, or
//     the two compartment spellings disagreeing: 400 InvalidParameter;
//   - no compartment where one is needed: 400 MissingParameter. Chat and
//     models need one, in either spelling; vector stores need
//     opc-compartment-id (Oracle's control plane example sends that
//     spelling alone); Responses, Files and Conversations take the
//     project's (Oracle's inference example sends only the project);
//   - no OpenAI-Project on Responses, Files, Conversations and vector
//     stores (oci-genai-auth MIGRATION.md: "required: project"): 400
//     MissingParameter;
//   - a body it cannot read as the endpoint's request: 400 InvalidParameter.
//
// OCI's own codes for the project and conflict refusals are not documented;
// the stand-in's are its choice, in OCI's shape.
type GenAI struct {
	srv *Server

	mu        sync.Mutex
	chunks    int
	reply     string
	models    []string
	forbidden []string
	refuse401 int
	gates     []*streamGate
	stores    []vectorStore
	log       []GenAICall
	seq       atomic.Int64
}

// NewGenAI serves the GenAI endpoints on srv. Call it once per Server (its
// patterns cannot be registered twice). Make srv accept the test's
// credentials as usual (RegisterAPIKey, TrustIssuer).
func NewGenAI(srv *Server) *GenAI {
	g := &GenAI{srv: srv, chunks: defaultGenAIChunks, reply: DefaultGenAIReply, models: append([]string(nil), defaultGenAIModels...)}
	chat := genaiEndpoint{plane: planeInference, compartment: true, legacyCompartment: true}
	withProject := genaiEndpoint{plane: planeInference, legacyCompartment: true, project: true}
	control := genaiEndpoint{plane: planeControl, compartment: true, project: true}
	for _, base := range []string{genAIOpenAIBase, genAIActionsBase} {
		g.handle("POST "+base+"/chat/completions", chat, g.chat)
		g.handle("GET "+base+"/models", chat, g.listModels)
	}
	g.handle("POST "+genAIOpenAIBase+"/responses", withProject, g.responses)
	g.handle("POST "+genAIOpenAIBase+"/files", withProject, g.uploadFile)
	g.handle("POST "+genAIOpenAIBase+"/conversations", withProject, g.newConversation)
	g.handle("POST "+genAIControlBase+"/vector_stores", control, g.newVectorStore)
	g.handle("GET "+genAIControlBase+"/vector_stores", control, g.listVectorStores)
	return g
}

// SetChunks sets how many chunks a streamed answer has (at least 2):
// chat.completion.chunk events, or output_text deltas plus one. n < 2
// restores defaultGenAIChunks.
func (g *GenAI) SetChunks(n int) {
	if n < 2 {
		n = defaultGenAIChunks
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.chunks = n
}

// setReply sets the text of answers that are not streamed.
func (g *GenAI) setReply(s string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reply = s
}

// setModels sets the models GET .../models lists.
func (g *GenAI) setModels(models ...string) {
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

// RefuseNext makes the GenAI endpoints answer the next n requests that
// reach them (signed, and verified by the Server) with 401
// NotAuthenticated before anything else, as OCI answers a signature made
// with credentials it no longer accepts: what a gateway that watches OCI's
// refusals must see. n <= 0 cancels the refusals still pending.
func (g *GenAI) RefuseNext(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refuse401 = max(n, 0)
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

// A streamGate holds one streamed answer before its last event, so that a
// test can prove the earlier events reached the client while the stand-in
// had not yet written the last: whatever the client reads before Release
// was flushed on its own, not buffered until the end.
type streamGate struct {
	reached   chan struct{}
	release   chan struct{}
	reachOnce sync.Once
	relOnce   sync.Once
	written   atomic.Int64
}

// HoldNextStream returns a gate that the next streamed answer, chat or
// Responses (in arrival order, after any gates already waiting), will stop
// at before its last event: the finish_reason chunk, or response.completed.
func (g *GenAI) HoldNextStream() *streamGate {
	gate := &streamGate{reached: make(chan struct{}), release: make(chan struct{})}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gates = append(g.gates, gate)
	return gate
}

// Reached is closed once the stream has flushed every event but the last
// and waits for Release.
func (s *streamGate) Reached() <-chan struct{} { return s.reached }

// Release lets the stream write its last event (and [DONE]). It is safe to
// call more than once. A stream never released ends when its client goes
// away or the Server closes.
func (s *streamGate) Release() { s.relOnce.Do(func() { close(s.release) }) }

// Written is how many events the stream has written and flushed.
func (s *streamGate) Written() int { return int(s.written.Load()) }

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

func (g *GenAI) takeGate() *streamGate {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.gates) == 0 {
		return nil
	}
	gate := g.gates[0]
	g.gates = g.gates[1:]
	return gate
}

// take401 reports whether this request is one RefuseNext named.
func (g *GenAI) take401() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refuse401 == 0 {
		return false
	}
	g.refuse401--
	return true
}

// The planes of Generative AI, told apart by host name.
const (
	planeInference = "inference"
	planeControl   = "control plane"
)

// genaiEndpoint is what an endpoint demands of a request before its
// handler reads it.
type genaiEndpoint struct {
	plane             string
	compartment       bool // a compartment is required
	legacyCompartment bool // CompartmentId alone will do
	project           bool // OpenAI-Project is required
}

// genaiHandler answers a request that passed its endpoint's checks; body is
// what the Server verified.
type genaiHandler func(w http.ResponseWriter, r *http.Request, c *GenAICall, st genaiSettings, body []byte)

// handle serves pattern: it opens the record, runs ep's checks and hands
// the request to h, recording the call once h returns.
func (g *GenAI) handle(pattern string, ep genaiEndpoint, h genaiHandler) {
	g.srv.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := g.settings()
		// The Server has read the body and checked it against x-content-sha256.
		body, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(body)
		c := &GenAICall{Seq: g.seq.Add(1), RequestID: w.Header().Get("opc-request-id"), Method: r.Method, Path: r.URL.Path,
			Host: r.Host, BodySHA256: base64.StdEncoding.EncodeToString(sum[:])}
		if caller, ok := callerFrom(r.Context()); ok {
			c.KeyID = caller.KeyID
		}
		defer g.record(c)
		if g.take401() {
			g.refuse(w, c, notAuthenticated(msgRequiredInfo, "refused by RefuseNext"))
			return
		}
		for _, check := range []func(*http.Request, *GenAICall, genaiSettings, []byte) *rejection{
			checkCredentials, ep.checkPlane, ep.checkHeaders,
		} {
			if rej := check(r, c, st, body); rej != nil {
				g.refuse(w, c, rej)
				return
			}
		}
		h(w, r, c, st, body)
	}))
}

// checkCredentials refuses a request that carries a credential other than
// the signature: whatever the client held for OpenAI must not reach OCI.
func checkCredentials(r *http.Request, _ *GenAICall, st genaiSettings, body []byte) *rejection {
	for _, name := range apiKeyHeaders {
		if _, ok := r.Header[http.CanonicalHeaderKey(name)]; ok {
			return notAuthenticated(msgRequiredInfo, "header %s is present: the client's API key must not reach OCI", name)
		}
	}
	for name, values := range r.Header {
		for _, v := range values {
			if hasBearer(v) {
				return notAuthenticated(msgRequiredInfo, "header %s carries a Bearer credential: the client's API key must not reach OCI", name)
			}
			for _, s := range st.forbidden {
				if strings.Contains(v, s) {
					return notAuthenticated(msgRequiredInfo, "header %s carries a secret the test forbade (ForbidSecret)", name)
				}
			}
		}
	}
	for _, s := range st.forbidden {
		if bytes.Contains(body, []byte(s)) {
			return notAuthenticated(msgRequiredInfo, "the body carries a secret the test forbade (ForbidSecret)")
		}
	}
	return nil
}

// checkPlane refuses a request whose Host is the other plane's GenAI host:
// the two serve different paths, and a gateway that mixed them up would
// sign for one host a path only the other has.
func (ep genaiEndpoint) checkPlane(r *http.Request, _ *GenAICall, _ genaiSettings, _ []byte) *rejection {
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	var plane string
	switch {
	case strings.HasPrefix(host, "inference.generativeai."):
		plane = planeInference
	case strings.HasPrefix(host, "generativeai."):
		plane = planeControl
	default:
		return nil
	}
	if plane == ep.plane {
		return nil
	}
	return &rejection{status: http.StatusNotFound, code: codeNotFound,
		message: "Authorization failed or requested resource not found.",
		reason:  fmt.Sprintf("%s is a %s host; %s is served on the %s", host, plane, r.URL.Path, ep.plane)}
}

// checkHeaders reads the compartment, project and conversation store into
// c and refuses what ep needs and the request lacks.
func (ep genaiEndpoint) checkHeaders(r *http.Request, c *GenAICall, _ genaiSettings, _ []byte) *rejection {
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{headerCompartmentID, &c.CompartmentID},
		{headerCompartmentIDLegacy, &c.CompartmentIDLegacy},
		{headerProject, &c.Project},
		{headerConversationStore, &c.ConversationStore},
	} {
		values := r.Header.Values(f.name)
		if len(values) > 1 {
			return genaiInvalid(fmt.Sprintf("The %s header may be given once.", f.name), "%s arrived %d times", f.name, len(values))
		}
		if len(values) == 1 {
			*f.dst = values[0]
		}
	}
	if c.CompartmentID != "" && c.CompartmentIDLegacy != "" && c.CompartmentID != c.CompartmentIDLegacy {
		return genaiInvalid("The compartment headers disagree.", "%s %q but %s %q", headerCompartmentID, c.CompartmentID, headerCompartmentIDLegacy, c.CompartmentIDLegacy)
	}
	switch {
	case c.CompartmentID != "":
		c.Compartment, c.CompartmentHeader = c.CompartmentID, headerCompartmentID
	case c.CompartmentIDLegacy != "" && ep.legacyCompartment:
		c.Compartment, c.CompartmentHeader = c.CompartmentIDLegacy, headerCompartmentIDLegacy
	}
	if ep.compartment && c.Compartment == "" {
		reason := fmt.Sprintf("neither %s nor %s is set", headerCompartmentID, headerCompartmentIDLegacy)
		if !ep.legacyCompartment {
			reason = fmt.Sprintf("%s is not set (%s alone does not do on the %s)", headerCompartmentID, headerCompartmentIDLegacy, ep.plane)
		}
		return &rejection{status: http.StatusBadRequest, code: CodeMissingParameter,
			message: "Missing required header: " + headerCompartmentID + ".", reason: reason}
	}
	if ep.project && c.Project == "" {
		return &rejection{status: http.StatusBadRequest, code: CodeMissingParameter,
			message: "Missing required header: " + headerProject + ".",
			reason:  fmt.Sprintf("no %s header: %s needs a Generative AI project", headerProject, r.URL.Path)}
	}
	return nil
}

func genaiInvalid(message, format string, args ...any) *rejection {
	return &rejection{status: http.StatusBadRequest, code: codeInvalidParameter, message: message, reason: fmt.Sprintf(format, args...)}
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

// answer writes a JSON success and records it.
func (g *GenAI) answer(w http.ResponseWriter, c *GenAICall, v any) {
	c.Status = http.StatusOK
	writeJSON(w, http.StatusOK, v)
}

func (g *GenAI) listModels(w http.ResponseWriter, _ *http.Request, c *GenAICall, st genaiSettings, _ []byte) {
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
	g.answer(w, c, out)
}

// chatRequest is the part of an OpenAI chat completion request the
// stand-in reads.
type chatRequest struct {
	Model    *string           `json:"model"`
	Messages []json.RawMessage `json:"messages"`
	Stream   bool              `json:"stream"`
}

func (g *GenAI) chat(w http.ResponseWriter, r *http.Request, c *GenAICall, st genaiSettings, body []byte) {
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		g.refuse(w, c, genaiInvalid("The request body is not valid JSON.", "decoding the chat request: %v", err))
		return
	}
	if req.Model == nil || *req.Model == "" {
		g.refuse(w, c, genaiInvalid("model is required.", "the chat request names no model"))
		return
	}
	c.Model, c.Stream, c.Messages = *req.Model, req.Stream, len(req.Messages)
	if len(req.Messages) == 0 {
		g.refuse(w, c, genaiInvalid("messages must not be empty.", "the chat request has no messages"))
		return
	}
	c.ObjectID = fmt.Sprintf("chatcmpl-signertest-%d", c.Seq)
	created := g.srv.now().Unix()
	if !req.Stream {
		g.answer(w, c, map[string]any{
			"id": c.ObjectID, "object": "chat.completion", "created": created, "model": c.Model,
			"choices": []any{map[string]any{
				"index":         0,
				"message":       map[string]any{"role": "assistant", "content": st.reply},
				"finish_reason": "stop",
			}},
			"usage": map[string]int{"prompt_tokens": len(body) / 4, "completion_tokens": len(st.reply) / 4, "total_tokens": len(body)/4 + len(st.reply)/4},
		})
		return
	}
	s := g.startStream(w, r, c)
	n := st.chunks
	for i := 0; i < n; i++ {
		if i == n-1 && !s.hold(fmt.Sprintf("chunk %d", i)) {
			return
		}
		delta := map[string]any{}
		var finish any
		switch {
		case i == n-1:
			finish = "stop"
		case i == 0:
			delta["role"] = "assistant"
			delta["content"] = genAIStreamPiece(i)
		default:
			delta["content"] = genAIStreamPiece(i)
		}
		if !s.event("", fmt.Sprintf("chunk %d", i), map[string]any{
			"id": c.ObjectID, "object": "chat.completion.chunk", "created": created, "model": c.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		}) {
			return
		}
	}
	if err := s.write("", []byte("[DONE]")); err != nil {
		c.Reason = fmt.Sprintf("writing [DONE]: %v", err)
		return
	}
	c.Done = true
}

// sse writes one streamed answer: each event flushed as written, counted
// in the call's record and its gate.
type sse struct {
	w    http.ResponseWriter
	r    *http.Request
	rc   *http.ResponseController
	c    *GenAICall
	gate *streamGate
}

// startStream answers 200 text/event-stream and takes the next gate.
func (g *GenAI) startStream(w http.ResponseWriter, r *http.Request, c *GenAICall) *sse {
	s := &sse{w: w, r: r, rc: http.NewResponseController(w), c: c, gate: g.takeGate()}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	c.Status = http.StatusOK
	return s
}

// write sends one event, named when name is not "", and flushes it.
func (s *sse) write(name string, data []byte) error {
	var err error
	if name != "" {
		_, err = fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", name, data)
	} else {
		_, err = fmt.Fprintf(s.w, "data: %s\n\n", data)
	}
	if err != nil {
		return err
	}
	return s.rc.Flush()
}

// event marshals v and writes it as a counted event; on failure it notes
// why in the record and reports false.
func (s *sse) event(name, what string, v any) bool {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // only maps of strings, numbers and slices
	}
	if err := s.write(name, data); err != nil {
		s.c.Reason = fmt.Sprintf("writing %s: %v", what, err)
		return false
	}
	s.c.Chunks++
	s.c.Written = append(s.c.Written, time.Now())
	if s.gate != nil {
		s.gate.written.Add(1)
	}
	return true
}

// hold waits at the stream's gate, if it has one, before the last event;
// it reports false when the client went away meanwhile.
func (s *sse) hold(what string) bool {
	if s.gate == nil {
		return true
	}
	s.gate.reachOnce.Do(func() { close(s.gate.reached) })
	select {
	case <-s.gate.release:
		return true
	case <-s.r.Context().Done():
		s.c.Reason = fmt.Sprintf("the client went away while the stream was held before %s", what)
		return false
	}
}
