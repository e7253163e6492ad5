package signertest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
)

// The Responses API, Files, Conversations and vector stores of OCI's
// OpenAI-compatible surface, in the shapes openai-go/v3 reads (responses.Response,
// responses.ResponseStreamEventUnion, openai.FileObject,
// conversations.Conversation, openai.VectorStore).

// responsesRequest is the part of a Responses API request the stand-in reads.
type responsesRequest struct {
	Model  *string         `json:"model"`
	Input  json.RawMessage `json:"input"`
	Stream bool            `json:"stream"`
}

func (g *GenAI) responses(w http.ResponseWriter, r *http.Request, c *GenAICall, st genaiSettings, body []byte) {
	var req responsesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		g.refuse(w, c, genaiInvalid("The request body is not valid JSON.", "decoding the Responses request: %v", err))
		return
	}
	if req.Model == nil || *req.Model == "" {
		g.refuse(w, c, genaiInvalid("model is required.", "the Responses request names no model"))
		return
	}
	c.Model, c.Stream = *req.Model, req.Stream
	var items []json.RawMessage
	var text string
	switch {
	case json.Unmarshal(req.Input, &text) == nil && text != "":
		c.Messages = 1
	case json.Unmarshal(req.Input, &items) == nil && len(items) > 0:
		c.Messages = len(items)
	default:
		g.refuse(w, c, genaiInvalid("input is required.", "the Responses request has no input (a string or a list of items)"))
		return
	}
	c.ObjectID = fmt.Sprintf("resp_signertest_%d", c.Seq)
	rs := responseState{id: c.ObjectID, msgID: fmt.Sprintf("msg_signertest_%d", c.Seq), created: g.srv.now().Unix(), model: c.Model, inputLen: len(body)}
	if !req.Stream {
		g.answer(w, c, rs.response("completed", &st.reply))
		return
	}
	g.streamResponse(g.startStream(w, r, c), rs, st.chunks)
}

// responseState is what every event of one Responses answer repeats.
type responseState struct {
	id, msgID, model string
	created          int64
	inputLen         int
}

// message is the assistant's output item with its text, when the text is
// known; an item in progress has no content yet.
func (rs responseState) message(status string, text *string) map[string]any {
	content := []any{}
	if text != nil {
		content = append(content, map[string]any{"type": "output_text", "text": *text, "annotations": []any{}, "logprobs": []any{}})
	}
	return map[string]any{"id": rs.msgID, "type": "message", "status": status, "role": "assistant", "content": content}
}

// response is the response object: in progress without output, or
// completed with the message and its usage.
func (rs responseState) response(status string, text *string) map[string]any {
	out := map[string]any{
		"id": rs.id, "object": "response", "created_at": rs.created, "status": status, "model": rs.model,
		"output": []any{}, "error": nil, "incomplete_details": nil, "instructions": nil, "metadata": map[string]string{},
		"parallel_tool_calls": true, "tool_choice": "auto", "tools": []any{}, "temperature": 1.0, "top_p": 1.0,
		"text": map[string]any{"format": map[string]string{"type": "text"}},
	}
	if text != nil {
		out["output"] = []any{rs.message("completed", text)}
		in, o := rs.inputLen/4, len(*text)/4
		out["usage"] = map[string]any{"input_tokens": in, "output_tokens": o, "total_tokens": in + o,
			"input_tokens_details": map[string]int{"cached_tokens": 0}, "output_tokens_details": map[string]int{"reasoning_tokens": 0}}
	}
	return out
}

// streamResponse writes a Responses answer as OpenAI streams one: the
// response created and in progress, the message item and its text part
// opened, n-1 output_text deltas, the text, part and item done, and
// response.completed, which a gate holds back. Every event carries its type
// and a sequence_number counting from 0.
func (g *GenAI) streamResponse(s *sse, rs responseState, n int) {
	seq := 0
	send := func(typ string, fields map[string]any) bool {
		fields["type"], fields["sequence_number"] = typ, seq
		seq++
		return s.event(typ, typ, fields)
	}
	at := func(fields map[string]any) map[string]any {
		fields["item_id"], fields["output_index"], fields["content_index"] = rs.msgID, 0, 0
		return fields
	}
	text := GenAIStreamText(n)
	part := map[string]any{"type": "output_text", "text": text, "annotations": []any{}, "logprobs": []any{}}
	steps := []func() bool{
		func() bool {
			return send("response.created", map[string]any{"response": rs.response("in_progress", nil)})
		},
		func() bool {
			return send("response.in_progress", map[string]any{"response": rs.response("in_progress", nil)})
		},
		func() bool {
			return send("response.output_item.added", map[string]any{"output_index": 0, "item": rs.message("in_progress", nil)})
		},
		func() bool {
			return send("response.content_part.added", at(map[string]any{"part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}}}))
		},
	}
	for i := 0; i < n-1; i++ {
		steps = append(steps, func() bool {
			return send("response.output_text.delta", at(map[string]any{"delta": genAIStreamPiece(i), "logprobs": []any{}}))
		})
	}
	steps = append(steps,
		func() bool {
			return send("response.output_text.done", at(map[string]any{"text": text, "logprobs": []any{}}))
		},
		func() bool { return send("response.content_part.done", at(map[string]any{"part": part})) },
		func() bool {
			return send("response.output_item.done", map[string]any{"output_index": 0, "item": rs.message("completed", &text)})
		},
		func() bool {
			return s.hold("response.completed") && send("response.completed", map[string]any{"response": rs.response("completed", &text)})
		},
	)
	for _, step := range steps {
		if !step() {
			return
		}
	}
	s.c.Done = true
}

// maxFormField bounds a form field other than the file, which is never
// more than a word.
const maxFormField = 1 << 10

// uploadFile reads a Files upload, multipart/form-data with a purpose field
// and a file part, from the body the Server verified, and answers a file
// object.
func (g *GenAI) uploadFile(w http.ResponseWriter, r *http.Request, c *GenAICall, _ genaiSettings, body []byte) {
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/form-data" || params["boundary"] == "" {
		g.refuse(w, c, genaiInvalid("The request must be multipart/form-data.", "content-type %q: %v", r.Header.Get("Content-Type"), err))
		return
	}
	var sawFile bool
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			g.refuse(w, c, genaiInvalid("The multipart body could not be read.", "reading the multipart body: %v", err))
			return
		}
		switch p.FormName() {
		case "file":
			h := sha256.New()
			n, err := io.Copy(h, p)
			if err != nil {
				g.refuse(w, c, genaiInvalid("The file part could not be read.", "reading the file part: %v", err))
				return
			}
			sawFile, c.Filename, c.FileSize, c.FileSHA256 = true, p.FileName(), n, base64.StdEncoding.EncodeToString(h.Sum(nil))
		case "purpose":
			v, _ := io.ReadAll(io.LimitReader(p, maxFormField))
			c.Purpose = string(v)
		}
	}
	if !sawFile || c.Purpose == "" {
		g.refuse(w, c, genaiInvalid("file and purpose are required.", "the upload has file %v, purpose %q", sawFile, c.Purpose))
		return
	}
	c.ObjectID = fmt.Sprintf("file-signertest-%d", c.Seq)
	g.answer(w, c, map[string]any{
		"id": c.ObjectID, "object": "file", "bytes": c.FileSize, "created_at": g.srv.now().Unix(),
		"filename": c.Filename, "purpose": c.Purpose, "status": "processed",
	})
}

// newConversation answers a conversation object; its body, if any, must
// be a JSON object (metadata, items).
func (g *GenAI) newConversation(w http.ResponseWriter, _ *http.Request, c *GenAICall, _ genaiSettings, body []byte) {
	var req struct {
		Metadata map[string]string `json:"metadata"`
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			g.refuse(w, c, genaiInvalid("The request body is not valid JSON.", "decoding the conversation request: %v", err))
			return
		}
	}
	if req.Metadata == nil {
		req.Metadata = map[string]string{}
	}
	c.ObjectID = fmt.Sprintf("conv_signertest_%d", c.Seq)
	g.answer(w, c, map[string]any{"id": c.ObjectID, "object": "conversation", "created_at": g.srv.now().Unix(), "metadata": req.Metadata})
}

// vectorStore is one vector store created, as the list answers it.
type vectorStore map[string]any

func (g *GenAI) newVectorStore(w http.ResponseWriter, _ *http.Request, c *GenAICall, _ genaiSettings, body []byte) {
	var req struct {
		Name     *string           `json:"name"`
		FileIDs  []string          `json:"file_ids"`
		Metadata map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		g.refuse(w, c, genaiInvalid("The request body is not valid JSON.", "decoding the vector store request: %v", err))
		return
	}
	if req.Name == nil || strings.TrimSpace(*req.Name) == "" {
		g.refuse(w, c, genaiInvalid("name is required.", "the vector store request names none"))
		return
	}
	if req.Metadata == nil {
		req.Metadata = map[string]string{}
	}
	c.ObjectID = fmt.Sprintf("vs_signertest_%d", c.Seq)
	now := g.srv.now().Unix()
	n := len(req.FileIDs)
	vs := vectorStore{
		"id": c.ObjectID, "object": "vector_store", "created_at": now, "last_active_at": now, "name": *req.Name,
		"status": "completed", "usage_bytes": 0, "metadata": req.Metadata, "expires_at": nil,
		"file_counts": map[string]int{"in_progress": 0, "completed": n, "failed": 0, "cancelled": 0, "total": n},
	}
	g.mu.Lock()
	g.stores = append(g.stores, vs)
	g.mu.Unlock()
	g.answer(w, c, vs)
}

// listVectorStores answers every vector store created, newest first, as
// one page.
func (g *GenAI) listVectorStores(w http.ResponseWriter, _ *http.Request, c *GenAICall, _ genaiSettings, _ []byte) {
	g.mu.Lock()
	data := make([]vectorStore, 0, len(g.stores))
	for i := len(g.stores) - 1; i >= 0; i-- {
		data = append(data, g.stores[i])
	}
	g.mu.Unlock()
	out := map[string]any{"object": "list", "data": data, "has_more": false, "first_id": nil, "last_id": nil}
	if len(data) > 0 {
		out["first_id"], out["last_id"] = data[0]["id"], data[len(data)-1]["id"]
	}
	g.answer(w, c, out)
}
