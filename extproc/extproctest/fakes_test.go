package extproctest_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// guard bounds every wait in these tests. It only turns a hang into a failure; no test
// depends on anything finishing within it.
const guard = 20 * time.Second

// fakeProcessor is a minimal ext_proc server whose behaviour each test scripts with handle.
// It records every stream so tests can see what Envoy sent and how the stream ended.
type fakeProcessor struct {
	extprocv3.UnimplementedExternalProcessorServer
	addr   string
	srv    *grpc.Server
	handle func(s *procStream) error

	mu      sync.Mutex
	streams []*procStream
}

// procStream is one Process call as the server saw it.
type procStream struct {
	grpc extprocv3.ExternalProcessor_ProcessServer
	md   metadata.MD

	mu       sync.Mutex
	received []*extprocv3.ProcessingRequest
	recvErr  error         // what ended the stream for the server: Recv's error (io.EOF for a half-close by Envoy) or a failed Send
	ended    chan struct{} // closed when recvErr is set
	done     chan struct{} // closed when the handler returned
}

func startProcessor(t *testing.T, handle func(s *procStream) error) *fakeProcessor {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &fakeProcessor{addr: ln.Addr().String(), srv: grpc.NewServer(), handle: handle}
	extprocv3.RegisterExternalProcessorServer(p.srv, p)
	go func() { _ = p.srv.Serve(ln) }()
	t.Cleanup(p.srv.Stop)
	return p
}

func (p *fakeProcessor) Process(g extprocv3.ExternalProcessor_ProcessServer) error {
	md, _ := metadata.FromIncomingContext(g.Context())
	s := &procStream{grpc: g, md: md, ended: make(chan struct{}), done: make(chan struct{})}
	p.mu.Lock()
	p.streams = append(p.streams, s)
	p.mu.Unlock()
	defer close(s.done)
	return p.handle(s)
}

func (p *fakeProcessor) allStreams() []*procStream {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*procStream(nil), p.streams...)
}

// only returns the single stream a one-request test expects.
func (p *fakeProcessor) only(t *testing.T) *procStream {
	t.Helper()
	ss := p.allStreams()
	if len(ss) != 1 {
		t.Fatalf("processor saw %d streams, want 1", len(ss))
	}
	return ss[0]
}

func (s *procStream) recv() (*extprocv3.ProcessingRequest, error) {
	req, err := s.grpc.Recv()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.recvErr == nil {
			s.recvErr = err
			close(s.ended)
		}
		return nil, err
	}
	s.received = append(s.received, proto.Clone(req).(*extprocv3.ProcessingRequest))
	return req, nil
}

// send answers; a failure means Envoy ended the stream, which is recorded like a failed Recv.
func (s *procStream) send(resp *extprocv3.ProcessingResponse) error {
	err := s.grpc.Send(resp)
	if err != nil {
		s.mu.Lock()
		if s.recvErr == nil {
			s.recvErr = err
			close(s.ended)
		}
		s.mu.Unlock()
	}
	return err
}

func (s *procStream) messages() []*extprocv3.ProcessingRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*extprocv3.ProcessingRequest(nil), s.received...)
}

func (s *procStream) endErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recvErr
}

// waitEnded waits until Envoy ended the stream (Recv returned) and returns how.
func (s *procStream) waitEnded(t *testing.T) error {
	t.Helper()
	select {
	case <-s.ended:
		return s.endErr()
	case <-time.After(guard):
		t.Fatal("the stream was never ended by Envoy")
		return nil
	}
}

// respond answers every message with answer(req) (nil means no answer) and returns only
// once Recv fails: the well-behaved server shape. The stream's end is not an error.
func respond(answer func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse) func(*procStream) error {
	return func(s *procStream) error {
		for {
			req, err := s.recv()
			if err != nil {
				return nil
			}
			if resp := answer(req); resp != nil {
				if err := s.send(resp); err != nil {
					return nil
				}
			}
		}
	}
}

// signer answers like ocisigner would: x-signed on the headers (and, for a body, x-body-len
// on the body answer).
func signer() func(*procStream) error {
	return respond(func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		switch {
		case req.GetRequestHeaders() != nil:
			return headersResp(setHeaders("x-signed", "headers"))
		case req.GetRequestBody() != nil:
			return bodyResp(setHeaders("x-body-len", strconv.Itoa(len(req.GetRequestBody().GetBody()))))
		case req.GetResponseHeaders() != nil:
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
				ResponseHeaders: &extprocv3.HeadersResponse{}}}
		}
		return nil
	})
}

func setHeaders(kv ...string) *extprocv3.HeaderMutation {
	m := &extprocv3.HeaderMutation{}
	for i := 0; i+1 < len(kv); i += 2 {
		m.SetHeaders = append(m.SetHeaders, &corev3.HeaderValueOption{
			Header: &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])},
		})
	}
	return m
}

func headersResp(m *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: m}}}}
}

func bodyResp(m *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
		RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{HeaderMutation: m}}}}
}

func immediate(code typev3.StatusCode, body, details string, m *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: code},
			Headers: m,
			Body:    []byte(body),
			Details: details,
		}}}
}

// mode builds a ProcessingMode with every field explicit, as ocisigner's envoy.yaml writes
// them.
func mode(body extprocfilterv3.ProcessingMode_BodySendMode) *extprocfilterv3.ProcessingMode {
	return &extprocfilterv3.ProcessingMode{
		RequestHeaderMode:   extprocfilterv3.ProcessingMode_SEND,
		ResponseHeaderMode:  extprocfilterv3.ProcessingMode_SKIP,
		RequestBodyMode:     body,
		ResponseBodyMode:    extprocfilterv3.ProcessingMode_NONE,
		RequestTrailerMode:  extprocfilterv3.ProcessingMode_SKIP,
		ResponseTrailerMode: extprocfilterv3.ProcessingMode_SKIP,
	}
}

func boolValue(b bool) *wrapperspb.BoolValue { return wrapperspb.Bool(b) }

// headerValue returns the raw value of the first header named key in a headers message.
func headerValue(h *extprocv3.HttpHeaders, key string) (string, bool) {
	for _, hv := range h.GetHeaders().GetHeaders() {
		if hv.GetKey() == key {
			return string(hv.GetRawValue()), true
		}
	}
	return "", false
}

// upstream records what reached it. reply, if set, writes the response.
type upstream struct {
	srv   *httptest.Server
	reply func(w http.ResponseWriter, r *http.Request)

	mu   sync.Mutex
	reqs []*seenRequest
}

type seenRequest struct {
	Method, RequestURI, Host string
	Header                   http.Header
	TransferEncoding         []string
	ContentLength            int64
	Body                     []byte
}

func startUpstream(t *testing.T, reply func(w http.ResponseWriter, r *http.Request)) *upstream {
	t.Helper()
	u := &upstream{reply: reply}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, &seenRequest{
			Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(),
			TransferEncoding: r.TransferEncoding, ContentLength: r.ContentLength, Body: body,
		})
		reply := u.reply
		u.mu.Unlock()
		if reply != nil {
			reply(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("upstream ok"))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) addr() string { return u.srv.Listener.Addr().String() }

// setReply replaces the default "200 upstream ok" answer.
func (u *upstream) setReply(reply func(w http.ResponseWriter, r *http.Request)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reply = reply
}

func (u *upstream) requests() []*seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*seenRequest(nil), u.reqs...)
}

func (u *upstream) only(t *testing.T) *seenRequest {
	t.Helper()
	rs := u.requests()
	if len(rs) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(rs))
	}
	return rs[0]
}

// rawUpstream answers one request per connection with 200 and records the request's
// bytes exactly as they arrived, for checks on the wire format Envoy writes.
type rawUpstream struct {
	ln  net.Listener
	got chan []byte
}

func startRawUpstream(t *testing.T) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, got: make(chan []byte, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return u
}

func (u *rawUpstream) serve(c net.Conn) {
	defer c.Close()
	var raw bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &raw))
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, req.Body)
	u.got <- raw.Bytes()
	_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
}

func (u *rawUpstream) next(t *testing.T) string {
	t.Helper()
	select {
	case b := <-u.got:
		return string(b)
	case <-time.After(guard):
		t.Fatal("raw upstream got no request")
		return ""
	}
}

// harness is a processor, an upstream and the Envoy stand-in between them.
type harness struct {
	proc   *fakeProcessor
	up     *upstream
	envoy  *extproctest.Envoy
	client *http.Client
	logs   *accessLog
}

type accessLog struct {
	mu      sync.Mutex
	entries []extproctest.AccessLogEntry
}

func (a *accessLog) add(e extproctest.AccessLogEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, e)
}

// last returns the latest entry, waiting for it: Envoy logs when the request is torn down,
// which may be after the client already has its response.
func (a *accessLog) last(t *testing.T) extproctest.AccessLogEntry {
	t.Helper()
	var e extproctest.AccessLogEntry
	eventually(t, "an access log entry", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		if len(a.entries) == 0 {
			return false
		}
		e = a.entries[len(a.entries)-1]
		return true
	})
	return e
}

// newHarness starts everything with a generous message timeout (tests of the timeout set
// their own), then lets edit adjust the configuration.
func newHarness(t *testing.T, handle func(*procStream) error, edit func(*extproctest.Config)) *harness {
	t.Helper()
	h := &harness{proc: startProcessor(t, handle), up: startUpstream(t, nil), logs: &accessLog{}}
	cfg := extproctest.Config{
		Processor:      h.proc.addr,
		Upstream:       h.up.addr(),
		MessageTimeout: guard,
		AccessLog:      h.logs.add,
		Logf:           t.Logf,
	}
	if edit != nil {
		edit(&cfg)
	}
	e, err := extproctest.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.envoy = e
	h.client = &http.Client{
		Timeout:   guard,
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
	}
	t.Cleanup(func() {
		h.client.CloseIdleConnections()
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// do sends a request and returns status, headers and body.
func (h *harness) do(t *testing.T, req *http.Request) (int, http.Header, string) {
	t.Helper()
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func (h *harness) newRequest(t *testing.T, method, path string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, h.envoy.URL()+path, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// raw sends bytes as they are on a fresh connection and reads one response.
func raw(t *testing.T, addr, request string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, guard)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(guard))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// waitUntil polls cond until it holds or the guard runs out, and reports which. Unlike
// eventually it may be called from any goroutine.
func waitUntil(cond func() bool) bool {
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// eventually polls cond until it holds; the guard only bounds a failure.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkUpstream checks the raw request an upstream received: every want
// appears as written, and no wantNot appears in any letter case (header
// names are case-insensitive).
func checkUpstream(t *testing.T, got string, want, wantNot []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("upstream request lacks %q:\n%q", w, got)
		}
	}
	for _, w := range wantNot {
		if strings.Contains(strings.ToLower(got), strings.ToLower(w)) {
			t.Errorf("upstream request has %q:\n%q", w, got)
		}
	}
}
