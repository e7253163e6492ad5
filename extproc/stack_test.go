package extproc_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// The hosts requests are addressed to. The Envoy stand-in keeps them as the
// Host when it forwards to the OCI stand-in on loopback, so the signature
// covers the real endpoint's name.
const (
	iaasHost = "iaas.us-phoenix-1.oraclecloud.com"
	osHost   = "objectstorage.us-ashburn-1.oraclecloud.com"
)

// suiteLogs collects the log output of every stack in this package, at
// debug level, so TestMain can check that no secret was ever logged.
var suiteLogs signertest.LogBuffer

// suiteSecrets are what must never appear in suiteLogs: key material,
// tokens, signatures. Stacks register theirs as they make them.
var suiteSecrets struct {
	mu   sync.Mutex
	list []string
}

func secret(s string) {
	suiteSecrets.mu.Lock()
	suiteSecrets.list = append(suiteSecrets.list, s)
	suiteSecrets.mu.Unlock()
}

// stack is the whole path over real loopback sockets: client → Envoy
// stand-in → ocisigner's ext_proc service (gRPC) → OCI stand-in.
type stack struct {
	t       *testing.T
	oci     *signertest.Server
	folder  *signertest.Folder
	issuer  *signertest.Issuer
	config  *credentials.Store
	server  *extproc.Server
	grpc    *grpc.Server
	addr    string             // the gRPC server's
	envoy   *extproctest.Envoy // the stand-in; nil when a real Envoy runs
	url     string             // where clients send: Envoy's listener
	client  *http.Client
	handler chan error // what each Process call returned, when tracked

	apiKeyID string
	session  signertest.Session
}

type stackOptions struct {
	oci         *signertest.Server   // the OCI stand-in; a new plain-HTTP one when nil
	issuer      *signertest.Issuer   // of session tokens; a new one when nil
	signer      []credentials.Option // for the config's profiles
	maxBody     int64
	envoy       func(*extproctest.Config)
	server      func(*extproc.Config)
	register    func(*grpc.Server) // more services beside ext_proc (SDS)
	trackStatus bool
	// envoyBinary, when set, runs a real Envoy (or anything that starts
	// like one) with the shipped envoy.yaml in place of the stand-in.
	envoyBinary string
}

func newStack(t *testing.T, so stackOptions) *stack {
	t.Helper()
	s := &stack{t: t, oci: so.oci, folder: signertest.NewFolder(t), issuer: so.issuer}
	if s.oci == nil {
		s.oci = signertest.NewServer(t)
	}
	if s.issuer == nil {
		s.issuer = signertest.NewIssuer(t)
	}
	s.oci.TrustIssuer(s.issuer)

	apiKey := signertest.Key(t, 1)
	s.folder.APIKeyProfile("API", apiKey, "keys/api.pem", signertest.PKCS8, "")
	s.apiKeyID = signertest.APIKeyID("API", &apiKey.PublicKey)
	s.oci.RegisterAPIKey(s.apiKeyID, &apiKey.PublicKey)

	sessKey := signertest.Key(t, 2)
	tok := s.issuer.Mint(t, &sessKey.PublicKey, signertest.TokenOptions{Subject: "ocid1.user.oc1..session"})
	s.session = s.folder.SessionProfile("SESSION", sessKey, tok)
	expKey := signertest.Key(t, 3)
	s.folder.SessionProfile("EXPIRED", expKey, s.issuer.Mint(t, &expKey.PublicKey, signertest.TokenOptions{IssuedAt: time.Now().Add(-3 * time.Hour)}))
	for _, k := range []int{1, 2, 3} {
		secret(string(signertest.EncodeKey(t, signertest.Key(t, k), signertest.PKCS1, ""))[40:120])
	}
	secret(tok)

	logger := slog.New(slog.NewTextHandler(&suiteLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg, err := credentials.Open(credentials.Settings{ConfigPath: s.folder.ConfigPath(), DefaultProfile: "API"}, append([]credentials.Option{credentials.WithLogger(logger)}, so.signer...)...)
	if err != nil {
		t.Fatal(err)
	}
	s.config = cfg
	t.Cleanup(func() { cfg.Close() })
	ec := extproc.Config{Credentials: cfg, DefaultProfile: "API", MaxBodyBytes: so.maxBody, Logger: logger}
	if so.server != nil {
		so.server(&ec)
	}
	s.server, err = extproc.New(ec)
	if err != nil {
		t.Fatal(err)
	}
	opts := s.server.ServerOptions()
	if so.trackStatus {
		s.handler = make(chan error, 64)
		opts = append(opts, grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if v := metadata.ValueFromIncomingContext(ss.Context(), extproc.StageKey); len(v) == 1 && v[0] == extproc.StageObserve {
				return h(srv, ss) // the observing stream of a response: not a request's
			}
			err := h(srv, ss)
			s.handler <- err
			return err
		}))
	}
	s.grpc = grpc.NewServer(opts...)
	s.server.Register(s.grpc)
	if so.register != nil {
		so.register(s.grpc)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	go func() { _ = s.grpc.Serve(lis) }()
	t.Cleanup(s.grpc.Stop)

	if so.envoyBinary != "" {
		s.url = startRealEnvoy(t, so, lis.Addr().String(), s.oci.Addr)
	} else {
		ecfg := shippedConfig(t, lis.Addr().String(), s.oci.Addr)
		if so.envoy != nil {
			so.envoy(&ecfg)
		}
		s.envoy, err = extproctest.New(ecfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.envoy.Close() })
		s.url = s.envoy.URL()
	}
	s.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1100, MaxConnsPerHost: 0}}
	t.Cleanup(s.client.CloseIdleConnections)
	// Whatever else a test checks, these hold for every stack: no request
	// went upstream without processing, and OCI saw only signed requests.
	t.Cleanup(func() {
		if s.envoy != nil {
			if st := s.envoy.Stats(); st.ContinuedUnprocessed != 0 {
				t.Errorf("Envoy forwarded %d requests unprocessed", st.ContinuedUnprocessed)
			}
		}
		for _, r := range s.oci.Requests() {
			if p, err := signertest.ParseAuthorization(r.Header.Get("Authorization")); err == nil {
				secret(p["signature"])
			}
			if r.KeyID == "" {
				t.Errorf("OCI received an unsigned request: %s %s", r.Method, r.RequestURI)
			}
		}
	})
	return s
}

// traffic keeps clients sending session-profile POSTs until stop, which
// returns how many requests did not come back 200.
type traffic struct {
	sent, failures atomic.Int64
	halt           atomic.Bool
	wg             sync.WaitGroup
}

func (s *stack) startTraffic(clients int) *traffic {
	tr := &traffic{}
	for range clients {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for !tr.halt.Load() {
				req := s.request("POST", iaasHost, "/x", strings.NewReader(`{"a":1}`))
				req.Header.Set("x-oci-profile", "SESSION")
				resp, err := s.client.Do(req)
				tr.sent.Add(1)
				if err != nil {
					tr.failures.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					tr.failures.Add(1)
				}
			}
		}()
	}
	return tr
}

// more waits until n more requests were sent.
func (tr *traffic) more(t *testing.T, n int64) {
	t.Helper()
	target := tr.sent.Load() + n
	waitFor(t, func() bool { return tr.sent.Load() >= target })
}

func (tr *traffic) stop() int64 {
	tr.halt.Store(true)
	tr.wg.Wait()
	return tr.failures.Load()
}

// request builds a request to Envoy addressed to host.
func (s *stack) request(method, host, target string, body io.Reader) *http.Request {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+target, body)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Host = host
	return req
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (s *stack) do(req *http.Request) answer {
	s.t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

func (a answer) echo(t *testing.T) signertest.Echo {
	t.Helper()
	var e signertest.Echo
	if err := json.Unmarshal(a.body, &e); err != nil {
		t.Fatalf("status %d, not an echo: %s", a.status, a.body)
	}
	return e
}

// refusal decodes ocisigner's JSON refusal.
func (a answer) refusal(t *testing.T) (code, message string) {
	t.Helper()
	var r struct{ Code, Message string }
	if err := json.Unmarshal(a.body, &r); err != nil {
		t.Fatalf("status %d, not a JSON refusal: %s", a.status, a.body)
	}
	if a.header.Get(extproc.HeaderRefused) != r.Code {
		t.Errorf("refusal header %q, body code %q", a.header.Get(extproc.HeaderRefused), r.Code)
	}
	return r.Code, r.Message
}

// lastRecord is what OCI last received.
func (s *stack) lastRecord() signertest.Received {
	s.t.Helper()
	rs := s.oci.Requests()
	if len(rs) == 0 {
		s.t.Fatal("OCI received nothing")
	}
	return rs[len(rs)-1]
}

// handlerStatus waits for the next Process call to return and gives its error.
func (s *stack) handlerStatus() error {
	s.t.Helper()
	select {
	case err := <-s.handler:
		return err
	case <-time.After(30 * time.Second):
		s.t.Fatal("the ext_proc handler never returned")
		return nil
	}
}

// blockingSource blocks until its context ends or release is closed.
type blockingSource struct {
	entered chan struct{}
	release chan struct{}
	then    signer.Source
}

func (b *blockingSource) Credentials(ctx context.Context) (*signer.Credentials, error) {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.release:
		return b.then.Credentials(ctx)
	}
}

type panicSource struct{}

func (panicSource) Credentials(context.Context) (*signer.Credentials, error) { panic("boom") }

// credentialsFunc overrides one profile's source.
type overrideCredentials struct {
	base    extproc.Credentials
	profile string
	src     signer.Source
}

func (o overrideCredentials) Source(p string) signer.Source {
	if p == o.profile {
		return o.src
	}
	return o.base.Source(p)
}
