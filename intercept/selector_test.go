package intercept

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	rpcstatus "google.golang.org/grpc/status"

	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
)

// harness is an SDS on a loopback gRPC server, on a clock the test moves,
// with its events recorded and its log captured.
type harness struct {
	t      *testing.T
	ca     *CA
	sds    *SDS
	cfg    Config
	clock  *credentialstest.Clock
	events *recorder
	log    *syncBuffer
	client secretv3.SecretDiscoveryServiceClient
}

func newHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	ca, _ := newTestCA(t, "*.corp.example")
	h := &harness{t: t, ca: ca, clock: credentialstest.NewClock(t0), events: newRecorder(), log: &syncBuffer{}}
	h.cfg = Config{
		CA: ca, Clock: h.clock, Observer: h.events, LeafTTL: 3 * time.Second,
		Logger: slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&h.cfg)
	}
	sds, err := NewSDS(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.sds = sds
	g := grpc.NewServer()
	sds.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		sds.Close()
		if strings.Contains(h.log.String(), "PRIVATE KEY") {
			t.Errorf("a private key was logged:\n%s", h.log.String())
		}
	})
	h.client = secretv3.NewSecretDiscoveryServiceClient(conn)
	return h
}

// selectorStream is one name's subscription as Envoy's on-demand selector
// holds it: a delta stream of its own (on_demand/config.cc,
// AsyncContextConfig: one SDS provider, so one subscription, per name),
// whose first request subscribes to exactly that name (the integration
// test's waitSendSdsResponse), ACKing every response with its nonce
// (DeltaSubscriptionState::getNextRequestWithAck). A removal ends the
// selector's interest (SecretManager::doRemoveCertificateConfig erases the
// entry and with it the subscription and its stream).
type selectorStream struct {
	h      *harness
	name   string
	stream grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]
	cancel context.CancelFunc
}

// subscribe opens the stream for name; initialVersion, when set, is the
// version of a leaf Envoy already holds (a stream opened again after the
// last one broke).
func (h *harness) subscribe(name, initialVersion string) *selectorStream {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := h.client.DeltaSecrets(ctx)
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	h.t.Cleanup(cancel)
	req := &discoveryv3.DeltaDiscoveryRequest{
		Node: &corev3.Node{Id: "envoy-test"}, TypeUrl: SecretTypeURL, ResourceNamesSubscribe: []string{name},
	}
	if initialVersion != "" {
		req.InitialResourceVersions = map[string]string{name: initialVersion}
	}
	if err := s.Send(req); err != nil {
		h.t.Fatal(err)
	}
	return &selectorStream{h: h, name: name, stream: s, cancel: cancel}
}

// hangGuard bounds a wait for an answer that should come without the
// clock moving; it is not a performance limit: a server that answers
// nothing would leave Envoy's handshake waiting for its connect timeout.
const hangGuard = 20 * time.Second

// recv returns the next response, or the stream's end (nil and its error).
func (ss *selectorStream) recv() (*discoveryv3.DeltaDiscoveryResponse, error) {
	ss.h.t.Helper()
	type result struct {
		resp *discoveryv3.DeltaDiscoveryResponse
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := ss.stream.Recv()
		ch <- result{resp, err}
	}()
	select {
	case r := <-ch:
		return r.resp, r.err
	case <-time.After(hangGuard):
		ss.h.t.Fatalf("%s: no answer from the SDS: Envoy's handshake would wait until its connect timeout", ss.name)
		return nil, nil
	}
}

func (ss *selectorStream) mustRecv() *discoveryv3.DeltaDiscoveryResponse {
	ss.h.t.Helper()
	resp, err := ss.recv()
	if err != nil {
		ss.h.t.Fatalf("%s: stream ended: %v", ss.name, err)
	}
	if resp.GetTypeUrl() != SecretTypeURL || resp.GetNonce() == "" {
		ss.h.t.Fatalf("%s: response of type %q nonce %q: Envoy drops the first and cannot ACK the second", ss.name, resp.GetTypeUrl(), resp.GetNonce())
	}
	return resp
}

func (ss *selectorStream) ack(resp *discoveryv3.DeltaDiscoveryResponse) {
	ss.h.t.Helper()
	if err := ss.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: SecretTypeURL, ResponseNonce: resp.GetNonce()}); err != nil && err != io.EOF {
		ss.h.t.Fatal(err)
	}
}

// expectLeaf receives a leaf for the stream's name, checks it, ACKs it and
// returns it with its version.
func (ss *selectorStream) expectLeaf() (*x509.Certificate, string) {
	ss.h.t.Helper()
	resp := ss.mustRecv()
	if len(resp.GetResources()) != 1 || len(resp.GetRemovedResources()) != 0 {
		ss.h.t.Fatalf("%s: %d resources and removals %v; want one leaf", ss.name, len(resp.GetResources()), resp.GetRemovedResources())
	}
	res := resp.GetResources()[0]
	leaf := ss.h.checkLeaf(ss.name, res)
	ss.ack(resp)
	return leaf, res.GetVersion()
}

// expectRemoval receives removed_resources for the stream's name, ACKs it,
// and sees the server end the stream, as the selector's integration test's
// server does after a removal (removeSecret).
func (ss *selectorStream) expectRemoval() {
	ss.h.t.Helper()
	resp := ss.mustRecv()
	if !slices.Equal(resp.GetRemovedResources(), []string{ss.name}) || len(resp.GetResources()) != 0 {
		ss.h.t.Fatalf("%q: got resources %d, removed %q; want removed_resources naming exactly it", ss.name, len(resp.GetResources()), resp.GetRemovedResources())
	}
	ss.ack(resp)
	if resp, err := ss.recv(); err != io.EOF {
		ss.h.t.Fatalf("%q: after the removal the stream goes on (%v, %v); the server ends it", ss.name, resp, err)
	}
}

// checkLeaf holds a served Secret to what Envoy loads and a client then
// verifies (leafProblem), failing the test on any difference.
func (h *harness) checkLeaf(name string, res *discoveryv3.Resource) *x509.Certificate {
	h.t.Helper()
	leaf, err := h.leafProblem(name, res)
	if err != nil {
		h.t.Fatal(err)
	}
	return leaf
}

// leafProblem says what is wrong with a served resource, if anything: it
// must be named as subscribed and hold a Secret of that name, a
// tls_certificate with the chain and key inline; the leaf must be for
// exactly the (lower-cased) name, verify under the CA now, match the key,
// not be in the last third of its life, and carry a ttl that ends with it.
func (h *harness) leafProblem(name string, res *discoveryv3.Resource) (*x509.Certificate, error) {
	now := h.clock.Now()
	if res.GetName() != name || res.GetVersion() == "" || res.GetResource().GetTypeUrl() != SecretTypeURL {
		return nil, fmt.Errorf("resource %q version %q type %q; want %q, a version, %s", res.GetName(), res.GetVersion(), res.GetResource().GetTypeUrl(), name, SecretTypeURL)
	}
	var secret tlsv3.Secret
	if err := res.GetResource().UnmarshalTo(&secret); err != nil {
		return nil, err
	}
	tc := secret.GetTlsCertificate()
	chain, key := tc.GetCertificateChain().GetInlineBytes(), tc.GetPrivateKey().GetInlineBytes()
	if secret.GetName() != name || len(chain) == 0 || len(key) == 0 {
		return nil, fmt.Errorf("secret %q: chain %d bytes, key %d bytes inline; want %q with both", secret.GetName(), len(chain), len(key), name)
	}
	block, _ := pem.Decode(chain)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM certificate in the chain", name)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	host := strings.ToLower(name)
	roots := x509.NewCertPool()
	roots.AddCert(h.ca.cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, fmt.Errorf("%s: the leaf does not verify under the CA now: %w", name, err)
	}
	if !slices.Equal(leaf.DNSNames, []string{host}) || len(leaf.IPAddresses) > 0 {
		return nil, fmt.Errorf("%s: SANs %v %v; want exactly %s", name, leaf.DNSNames, leaf.IPAddresses, host)
	}
	if left := leaf.NotAfter.Sub(now); left <= h.cfg.LeafTTL/3 {
		return nil, fmt.Errorf("%s: a leaf with %s left of a %s TTL was served; never in its last third", name, left, h.cfg.LeafTTL)
	}
	if res.GetTtl().AsDuration() != leaf.NotAfter.Sub(now) {
		return nil, fmt.Errorf("%s: resource ttl %s, leaf has %s left", name, res.GetTtl().AsDuration(), leaf.NotAfter.Sub(now))
	}
	kb, _ := pem.Decode(key)
	if kb == nil {
		return nil, fmt.Errorf("%s: no PEM key", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if ek, ok := k.(*ecdsa.PrivateKey); err != nil || !ok || !ek.PublicKey.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("%s: the key is not the leaf's (%T, %v)", name, k, err)
	}
	return leaf, nil
}

// recorder is an Observer tests wait on.
type recorder struct {
	mu     sync.Mutex
	events []Event
	signal chan struct{}
}

func newRecorder() *recorder { return &recorder{signal: make(chan struct{})} }

func (r *recorder) Observe(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	close(r.signal)
	r.signal = make(chan struct{})
}

func (r *recorder) count(kind EventKind, reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == kind && (reason == "" || e.Reason == reason) {
			n++
		}
	}
	return n
}

// wait returns the first event that pred accepts, waiting for it.
func (r *recorder) wait(t *testing.T, what string, pred func(Event) bool) Event {
	t.Helper()
	for {
		r.mu.Lock()
		i := slices.IndexFunc(r.events, pred)
		var e Event
		if i >= 0 {
			e = r.events[i]
		}
		signal := r.signal
		r.mu.Unlock()
		if i >= 0 {
			return e
		}
		select {
		case <-signal:
		case <-time.After(hangGuard):
			t.Fatalf("no %s event", what)
		}
	}
}

func (r *recorder) waitEvent(t *testing.T, kind EventKind, name, reason string) Event {
	t.Helper()
	return r.wait(t, kind.String()+" "+name+" "+reason, func(e Event) bool {
		return e.Kind == kind && e.Name == name && (reason == "" || e.Reason == reason)
	})
}

// syncBuffer is a log destination for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// statusOf is the gRPC status of a stream's end.
func statusOf(err error) *rpcstatus.Status { s, _ := rpcstatus.FromError(err); return s }
