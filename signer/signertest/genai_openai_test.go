package signertest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/conversations"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/ocisigner/ocisigner/signer"
)

const testProject = "ocid1.generativeaiproject.oc1.us-chicago-1.genaitest"

func withProject() option.RequestOption { return option.WithProject(testProject) }

func responseParams(model string) responses.ResponseNewParams {
	return responses.ResponseNewParams{
		Model: model,
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("Say hello.")},
	}
}

// recordFor is the Server's record of the request answered with requestID.
func (f *genaiFixture) recordFor(t *testing.T, requestID string) Received {
	t.Helper()
	for _, rec := range f.srv.Requests() {
		if rec.RequestID == requestID {
			return rec
		}
	}
	t.Fatalf("the server has no request %q", requestID)
	return Received{}
}

// waitCalls waits for n recorded calls: a stream is recorded once its
// handler has returned, which may be just after the client read the end.
func (f *genaiFixture) waitCalls(t *testing.T, n int) []GenAICall {
	t.Helper()
	ctx := bounded(t)
	for ctx.Err() == nil {
		if calls := f.genai.Calls(); len(calls) >= n {
			return calls
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d calls recorded, want %d", len(f.genai.Calls()), n)
	return nil
}

func TestGenAIResponsesThroughOpenAIGoSDK(t *testing.T) {
	f := newGenAIFixture(t)
	f.genai.setReply("hello from a project")
	c := f.client(t, genAIOpenAIBase, true, nil, withProject())
	var raw *http.Response
	resp, err := c.Responses.New(bounded(t), responseParams("openai.gpt-oss-120b"), option.WithResponseInto(&raw))
	if err != nil {
		t.Fatalf("SDK: %v; server: %+v", err, f.srv.Requests())
	}
	if resp.Status != "completed" || resp.Model != "openai.gpt-oss-120b" || resp.OutputText() != "hello from a project" ||
		!strings.HasPrefix(resp.ID, "resp_") || resp.Usage.TotalTokens == 0 {
		t.Errorf("response %+v", resp)
	}
	rid := raw.Header.Get("opc-request-id")
	got := f.call(t, rid)
	// Oracle's own inference example sends the project and no compartment.
	if got.Status != 200 || got.Project != testProject || got.Compartment != "" || got.Model != "openai.gpt-oss-120b" ||
		got.Messages != 1 || got.Stream || got.ObjectID != resp.ID || got.Path != "/openai/v1/responses" {
		t.Errorf("recorded %+v", got)
	}
	if rec := f.recordFor(t, rid); got.BodySHA256 != rec.BodySHA256 || rec.Header.Get("x-content-sha256") != rec.BodySHA256 {
		t.Errorf("body digest %s, the server's %s, signed %s", got.BodySHA256, rec.BodySHA256, rec.Header.Get("x-content-sha256"))
	}
	f.wantNoBearerArrived(t, rid)
}

// responseEventTypes is what a stream of n chunks sends, in order.
func responseEventTypes(n int) []string {
	types := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
	for i := 0; i < n-1; i++ {
		types = append(types, "response.output_text.delta")
	}
	return append(types, "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed")
}

// TestGenAIResponsesStreamEventByEvent has the SDK parse every event of a
// streamed Responses answer, in order, while the stand-in holds the last:
// each was flushed on its own, and each is what OpenAI's wire has.
func TestGenAIResponsesStreamEventByEvent(t *testing.T) {
	f := newGenAIFixture(t)
	const n = 12
	f.genai.SetChunks(n)
	gate := f.genai.HoldNextStream()
	t.Cleanup(gate.Release)
	c := f.client(t, genAIOpenAIBase, true, nil, withProject(), withCompartment())
	ctx := bounded(t)
	var raw *http.Response
	stream := c.Responses.NewStreaming(ctx, responseParams("xai.grok-4"), option.WithResponseInto(&raw))
	defer stream.Close()

	want := responseEventTypes(n)
	var text strings.Builder
	var itemID string
	parsed := map[string]int{} // events the SDK decoded into their own type
	for i, typ := range want {
		if i == len(want)-1 {
			select {
			case <-gate.Reached():
			case <-ctx.Done():
				t.Fatal("the stand-in never reached the gate")
			}
			if w := gate.Written(); w != len(want)-1 {
				t.Fatalf("the client read %d events while the stand-in had written %d", i, w)
			}
			gate.Release()
		}
		if !stream.Next() {
			t.Fatalf("stream ended before event %d (%s): %v", i, typ, stream.Err())
		}
		ev := stream.Current()
		if ev.Type != typ || ev.SequenceNumber != int64(i) {
			t.Fatalf("event %d: %s #%d, want %s #%d", i, ev.Type, ev.SequenceNumber, typ, i)
		}
		decoded := ev.AsAny()
		parsed[fmt.Sprintf("%T", decoded)]++
		switch e := decoded.(type) {
		case responses.ResponseCreatedEvent:
			if e.Response.Status != "in_progress" || e.Response.Model != "xai.grok-4" || !strings.HasPrefix(e.Response.ID, "resp_") {
				t.Errorf("created %+v", e.Response)
			}
		case responses.ResponseOutputItemAddedEvent:
			itemID = e.Item.ID
		case responses.ResponseTextDeltaEvent:
			if e.ItemID != itemID || e.OutputIndex != 0 || e.ContentIndex != 0 {
				t.Errorf("delta %d for item %s/%d/%d, want %s/0/0", i, e.ItemID, e.OutputIndex, e.ContentIndex, itemID)
			}
			text.WriteString(e.Delta)
		case responses.ResponseTextDoneEvent:
			if e.Text != GenAIStreamText(n) {
				t.Errorf("done text %q", e.Text)
			}
		case responses.ResponseCompletedEvent:
			if e.Response.Status != "completed" || e.Response.OutputText() != GenAIStreamText(n) {
				t.Errorf("completed %+v", e.Response)
			}
		}
	}
	if stream.Next() {
		t.Errorf("an event after response.completed: %+v", stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != GenAIStreamText(n) {
		t.Errorf("deltas %q", text.String())
	}
	for typ, count := range map[string]int{
		"responses.ResponseCreatedEvent": 1, "responses.ResponseInProgressEvent": 1, "responses.ResponseOutputItemAddedEvent": 1,
		"responses.ResponseContentPartAddedEvent": 1, "responses.ResponseTextDeltaEvent": n - 1, "responses.ResponseTextDoneEvent": 1,
		"responses.ResponseContentPartDoneEvent": 1, "responses.ResponseOutputItemDoneEvent": 1, "responses.ResponseCompletedEvent": 1,
	} {
		if parsed[typ] != count {
			t.Errorf("the SDK decoded %d %s, want %d (all: %v)", parsed[typ], typ, count, parsed)
		}
	}
	if itemID == "" {
		t.Error("the output item has no id")
	}
	if ct := raw.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content-type %q", ct)
	}
	got := f.waitCalls(t, 1)[0]
	if !got.Stream || !got.Done || got.Chunks != len(want) || got.Project != testProject || got.Compartment != testCompartment {
		t.Errorf("recorded %+v", got)
	}
}

// uploadBytes is a file whose bytes a multipart parser or a proxy could
// trip on: CRLF, a line that looks like a boundary, NUL, and high bytes.
func uploadBytes() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 200<<10; i++ {
		fmt.Fprintf(&b, "line %d\r\n--not-a-boundary\r\n\x00\xff\xfe", i)
	}
	return b.Bytes()
}

func TestGenAIFileUploadThroughOpenAIGoSDK(t *testing.T) {
	f := newGenAIFixture(t)
	c := f.client(t, genAIOpenAIBase, true, nil, withProject())
	content := uploadBytes()
	var raw *http.Response
	file, err := c.Files.New(bounded(t), openai.FileNewParams{
		File:    openai.File(bytes.NewReader(content), "report.pdf", "application/pdf"),
		Purpose: openai.FilePurposeUserData,
	}, option.WithResponseInto(&raw))
	if err != nil {
		t.Fatalf("SDK: %v; server: %+v", err, f.srv.Requests())
	}
	if file.Filename != "report.pdf" || file.Bytes != int64(len(content)) || file.Purpose != "user_data" || !strings.HasPrefix(file.ID, "file-") {
		t.Errorf("file %+v", file)
	}
	rid := raw.Header.Get("opc-request-id")
	got := f.call(t, rid)
	sum := sha256.Sum256(content)
	if got.Filename != "report.pdf" || got.FileSize != int64(len(content)) || got.FileSHA256 != base64.StdEncoding.EncodeToString(sum[:]) ||
		got.Purpose != "user_data" || got.Project != testProject {
		t.Errorf("recorded %+v", got)
	}
	rec := f.recordFor(t, rid)
	if !strings.HasPrefix(rec.Header.Get("Content-Type"), "multipart/form-data; boundary=") || rec.BodyLength <= int64(len(content)) ||
		got.BodySHA256 != rec.BodySHA256 || rec.Header.Get("x-content-sha256") != rec.BodySHA256 {
		t.Errorf("server received %s, %d bytes hashing to %s (signed %s, stand-in %s)",
			rec.Header.Get("Content-Type"), rec.BodyLength, rec.BodySHA256, rec.Header.Get("x-content-sha256"), got.BodySHA256)
	}
}

// A multipart body changed by one byte after it was signed never reaches
// the stand-in: the digest is of the exact bytes.
func TestGenAIFileUploadChangedAfterSigningIsRefused(t *testing.T) {
	f := newGenAIFixture(t)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	flip := func(b []byte) []byte {
		out := bytes.Clone(b)
		out[len(out)/2] ^= 1
		return out
	}
	c := openai.NewClient(option.WithBaseURL(f.srv.URL+genAIOpenAIBase+"/"), option.WithAPIKey(openAIKey), option.WithMaxRetries(0),
		option.WithHTTPClient(&http.Client{Transport: &signingTransport{creds: f.api, now: testNow, tamper: flip, base: tr}}), withProject())
	_, err := c.Files.New(bounded(t), openai.FileNewParams{File: openai.File(bytes.NewReader(uploadBytes()), "a.bin", "application/octet-stream"), Purpose: openai.FilePurposeAssistants})
	status, body := sdkStatus(t, err)
	if status != 401 || !strings.Contains(body, CodeNotAuthenticated) || len(f.genai.Calls()) != 0 {
		t.Fatalf("answer %d %s; calls %+v", status, body, f.genai.Calls())
	}
	if reqs := f.srv.Requests(); len(reqs) != 1 || !strings.Contains(reqs[0].Reason, "x-content-sha256") {
		t.Fatalf("server: %+v", reqs)
	}
}

func TestGenAIVectorStoresOnTheControlPlane(t *testing.T) {
	f := newGenAIFixture(t)
	c := f.client(t, genAIControlBase, true, nil, withProject(), withCompartment())
	ctx := bounded(t)
	first, err := c.VectorStores.New(ctx, openai.VectorStoreNewParams{Name: openai.String("handbook"), FileIDs: []string{"file-1", "file-2"}})
	if err != nil {
		t.Fatalf("SDK: %v; server: %+v", err, f.srv.Requests())
	}
	second, err := c.VectorStores.New(ctx, openai.VectorStoreNewParams{Name: openai.String("faq")})
	if err != nil {
		t.Fatal(err)
	}
	if first.Name != "handbook" || first.Status != "completed" || first.FileCounts.Total != 2 || !strings.HasPrefix(first.ID, "vs_") || first.ID == second.ID {
		t.Errorf("created %+v and %+v", first, second)
	}
	page, err := c.VectorStores.List(ctx, openai.VectorStoreListParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 2 || page.Data[0].ID != second.ID || page.Data[1].ID != first.ID || page.HasMore {
		t.Errorf("list %+v", page.Data)
	}
	for _, call := range f.genai.Calls() {
		if call.Status != 200 || call.Project != testProject || call.Compartment != testCompartment || !strings.HasPrefix(call.Path, "/20231130/openai/v1/vector_stores") {
			t.Errorf("recorded %+v", call)
		}
	}
}

func TestGenAIConversationsThroughOpenAIGoSDK(t *testing.T) {
	f := newGenAIFixture(t)
	const store = "ocid1.generativeaiconversationstore.oc1..test"
	c := f.client(t, genAIOpenAIBase, true, nil, withProject(), option.WithHeader("opc-conversation-store-id", store))
	var raw *http.Response
	conv, err := c.Conversations.New(bounded(t), conversations.ConversationNewParams{Metadata: map[string]string{"topic": "demo"}}, option.WithResponseInto(&raw))
	if err != nil {
		t.Fatalf("SDK: %v; server: %+v", err, f.srv.Requests())
	}
	if !strings.HasPrefix(conv.ID, "conv_") || conv.Metadata == nil {
		t.Errorf("conversation %+v", conv)
	}
	if got := f.call(t, raw.Header.Get("opc-request-id")); got.ConversationStore != store || got.Project != testProject || got.ObjectID != conv.ID {
		t.Errorf("recorded %+v", got)
	}
}

// TestGenAIRefuseNext shows the stand-in answering 401 to verified requests
// as many times as told, then as usual: the Server verified every one.
func TestGenAIRefuseNext(t *testing.T) {
	f := newGenAIFixture(t)
	c := f.client(t, genAIOpenAIBase, true, nil, withCompartment(), withProject())
	f.genai.RefuseNext(2)
	for i, want := range []int{401, 401, 200} {
		_, err := c.Responses.New(bounded(t), responseParams("m"))
		if want == 200 {
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			continue
		}
		if status, body := sdkStatus(t, err); status != want || !strings.Contains(body, `"code":"NotAuthenticated"`) {
			t.Fatalf("request %d: %d %s", i, status, body)
		}
	}
	for i, rec := range f.srv.Requests() {
		if !rec.OK {
			t.Errorf("request %d failed verification: %s", i, rec.Reason)
		}
	}
	calls := f.genai.Calls()
	if len(calls) != 3 || calls[0].Reason != "refused by RefuseNext" || calls[1].Status != 401 || calls[2].Status != 200 {
		t.Errorf("calls %+v", calls)
	}
	f.genai.RefuseNext(5)
	f.genai.RefuseNext(0)
	if _, err := c.Responses.New(bounded(t), responseParams("m")); err != nil {
		t.Errorf("RefuseNext(0) did not cancel: %v", err)
	}
}

// A request signed with a key OCI does not know, or not signed at all,
// never reaches the stand-in's endpoints.
func TestGenAIEndpointsNeedAValidSignature(t *testing.T) {
	f := newGenAIFixture(t)
	stranger := Key(t, 2)
	unknown := &signer.Credentials{KeyID: APIKeyID("X", &stranger.PublicKey), Key: stranger, Kind: signer.KindAPIKey}
	for _, target := range []string{"/openai/v1/responses", "/openai/v1/files", "/20231130/openai/v1/vector_stores"} {
		for name, w := range map[string]*wire{
			"unknown key": signed(t, unknown, "POST", f.srv.Addr, target, []byte(`{}`), testNow, field{"content-type", "application/json"}),
			"no signature": {Method: "POST", Target: target, Host: f.srv.Addr, Body: []byte(`{}`),
				Header: []field{{"content-type", "application/json"}, {"authorization", "Bearer " + openAIKey}}},
		} {
			if r := doClient(t, f.srv.Addr, w); r.Status != 401 || !bytes.Contains(r.Body, []byte(CodeNotAuthenticated)) {
				t.Errorf("%s %s: %d %s", name, target, r.Status, r.Body)
			}
		}
	}
	if calls := f.genai.Calls(); len(calls) != 0 {
		t.Errorf("unverified requests reached the stand-in: %+v", calls)
	}
}

// multipartBody is a Files upload as an SDK writes it.
func multipartBody(t *testing.T, purpose string, file []byte) (body []byte, contentType string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	if purpose != "" {
		if err := mw.WriteField("purpose", purpose); err != nil {
			t.Fatal(err)
		}
	}
	if file != nil {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="file"; filename="a.txt"`)
		h.Set("Content-Type", "text/plain")
		pw, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		pw.Write(file)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), mw.FormDataContentType()
}

// TestGenAIChecksHeadersAndPlanes drives the new endpoints with hand-built
// signed requests: which headers each needs, which plane serves it, and
// the values a gateway must never let through.
func TestGenAIChecksHeadersAndPlanes(t *testing.T) {
	const (
		inference = "inference.generativeai.us-chicago-1.oci.oraclecloud.com"
		control   = "generativeai.us-chicago-1.oci.oraclecloud.com"
	)
	ctJSON := field{"content-type", "application/json"}
	comp := field{headerCompartmentID, testCompartment}
	legacy := field{headerCompartmentIDLegacy, testCompartment}
	proj := field{"openai-project", testProject}
	upload, uploadType := multipartBody(t, "assistants", []byte("hello"))
	noPurpose, noPurposeType := multipartBody(t, "", []byte("hello"))
	noFile, noFileType := multipartBody(t, "assistants", nil)
	resp := `{"model":"m","input":"hi"}`
	for _, tc := range []struct {
		name, method, host, target, body string
		headers                          []field
		status                           int
		code, reason                     string
		check                            func(t *testing.T, c GenAICall)
	}{
		{name: "responses with a project only", method: "POST", target: "/openai/v1/responses", body: resp, headers: []field{ctJSON, proj}, status: 200},
		{name: "responses without project", method: "POST", target: "/openai/v1/responses", body: resp, headers: []field{ctJSON, comp},
			status: 400, code: CodeMissingParameter, reason: "no OpenAI-Project"},
		{name: "files without project", method: "POST", target: "/openai/v1/files", body: string(upload), headers: []field{{"content-type", uploadType}, comp},
			status: 400, code: CodeMissingParameter, reason: "no OpenAI-Project"},
		{name: "conversations without project", method: "POST", target: "/openai/v1/conversations", body: `{}`, headers: []field{ctJSON, comp},
			status: 400, code: CodeMissingParameter, reason: "no OpenAI-Project"},
		{name: "vector stores without project", method: "GET", target: "/20231130/openai/v1/vector_stores", headers: []field{comp},
			status: 400, code: CodeMissingParameter, reason: "no OpenAI-Project"},
		{name: "vector stores without compartment", method: "GET", target: "/20231130/openai/v1/vector_stores", headers: []field{proj},
			status: 400, code: CodeMissingParameter, reason: "opc-compartment-id is not set"},
		{name: "vector stores with the legacy spelling alone", method: "GET", target: "/20231130/openai/v1/vector_stores", headers: []field{proj, legacy},
			status: 400, code: CodeMissingParameter, reason: "CompartmentId alone does not do"},
		{name: "chat with both spellings", method: "POST", target: "/openai/v1/chat/completions", body: `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
			headers: []field{ctJSON, comp, legacy}, status: 200, check: func(t *testing.T, c GenAICall) {
				if c.CompartmentID != testCompartment || c.CompartmentIDLegacy != testCompartment || c.CompartmentHeader != headerCompartmentID {
					t.Errorf("recorded %+v", c)
				}
			}},
		{name: "spellings that disagree", method: "POST", target: "/openai/v1/responses", body: resp,
			headers: []field{ctJSON, proj, comp, {headerCompartmentIDLegacy, "ocid1.compartment.oc1..other"}},
			status:  400, code: codeInvalidParameter, reason: "but CompartmentId"},
		{name: "project twice", method: "POST", target: "/openai/v1/responses", body: resp, headers: []field{ctJSON, proj, {"OpenAI-Project", "ocid1.generativeaiproject.oc1..two"}},
			status: 400, code: codeInvalidParameter, reason: "OpenAI-Project arrived 2 times"},
		{name: "compartment twice", method: "GET", target: "/openai/v1/models", headers: []field{comp, comp},
			status: 400, code: codeInvalidParameter, reason: "opc-compartment-id arrived 2 times"},
		{name: "conversation store twice", method: "POST", target: "/openai/v1/conversations", body: `{}`,
			headers: []field{ctJSON, proj, {"opc-conversation-store-id", "a"}, {"opc-conversation-store-id", "b"}},
			status:  400, code: codeInvalidParameter, reason: "arrived 2 times"},
		{name: "responses on the inference host", method: "POST", host: inference, target: "/openai/v1/responses", body: resp, headers: []field{ctJSON, proj}, status: 200,
			check: func(t *testing.T, c GenAICall) {
				if c.Host != inference {
					t.Errorf("host %q", c.Host)
				}
			}},
		{name: "responses on the control plane host", method: "POST", host: control, target: "/openai/v1/responses", body: resp, headers: []field{ctJSON, proj},
			status: 404, code: "NotAuthorizedOrNotFound", reason: "is a control plane host"},
		{name: "vector stores on the control plane host", method: "GET", host: control + ":443", target: "/20231130/openai/v1/vector_stores", headers: []field{comp, proj}, status: 200},
		{name: "vector stores on the inference host", method: "GET", host: inference, target: "/20231130/openai/v1/vector_stores", headers: []field{comp, proj},
			status: 404, code: "NotAuthorizedOrNotFound", reason: "is a inference host"},
		{name: "responses without input", method: "POST", target: "/openai/v1/responses", body: `{"model":"m"}`, headers: []field{ctJSON, proj},
			status: 400, code: codeInvalidParameter, reason: "no input"},
		{name: "responses with an empty input list", method: "POST", target: "/openai/v1/responses", body: `{"model":"m","input":[]}`, headers: []field{ctJSON, proj},
			status: 400, code: codeInvalidParameter, reason: "no input"},
		{name: "responses without model", method: "POST", target: "/openai/v1/responses", body: `{"input":"hi"}`, headers: []field{ctJSON, proj},
			status: 400, code: codeInvalidParameter, reason: "names no model"},
		{name: "responses not JSON", method: "POST", target: "/openai/v1/responses", body: `model=m`, headers: []field{ctJSON, proj},
			status: 400, code: codeInvalidParameter, reason: "decoding"},
		{name: "a file", method: "POST", target: "/openai/v1/files", body: string(upload), headers: []field{{"content-type", uploadType}, proj}, status: 200,
			check: func(t *testing.T, c GenAICall) {
				if c.Filename != "a.txt" || c.FileSize != 5 || c.Purpose != "assistants" {
					t.Errorf("recorded %+v", c)
				}
			}},
		{name: "a file that is not multipart", method: "POST", target: "/openai/v1/files", body: `{"file":"x"}`, headers: []field{ctJSON, proj},
			status: 400, code: codeInvalidParameter, reason: "content-type"},
		{name: "a file without purpose", method: "POST", target: "/openai/v1/files", body: string(noPurpose), headers: []field{{"content-type", noPurposeType}, proj},
			status: 400, code: codeInvalidParameter, reason: "purpose \"\""},
		{name: "an upload without file", method: "POST", target: "/openai/v1/files", body: string(noFile), headers: []field{{"content-type", noFileType}, proj},
			status: 400, code: codeInvalidParameter, reason: "file false"},
		{name: "a vector store without name", method: "POST", target: "/20231130/openai/v1/vector_stores", body: `{"file_ids":[]}`, headers: []field{ctJSON, comp, proj},
			status: 400, code: codeInvalidParameter, reason: "names none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newGenAIFixture(t)
			host := tc.host
			if host == "" {
				host = f.srv.Addr
			}
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			r := doClient(t, f.srv.Addr, signed(t, f.api, tc.method, host, tc.target, body, testNow, tc.headers...))
			if r.Status != tc.status {
				t.Fatalf("status %d, body %s; calls %+v", r.Status, r.Body, f.genai.Calls())
			}
			c := f.call(t, r.Header.Get("opc-request-id"))
			if tc.code != "" {
				var e struct{ Code, Message string }
				if err := json.Unmarshal(r.Body, &e); err != nil || e.Code != tc.code || e.Message == "" || c.Code != tc.code || !strings.Contains(c.Reason, tc.reason) {
					t.Errorf("answer %s, recorded %q: %q; want %s saying %q", r.Body, c.Code, c.Reason, tc.code, tc.reason)
				}
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}
