package extproctest_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// testCA mints leaf certificates for the fake SDS server.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "extproctest CA"},
		NotBefore:             time.Now().Add(-3 * time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// mint returns a PEM leaf for name (SAN = name), valid until ttl from now (a negative ttl
// mints one that has expired), and its PEM key.
func (ca *testCA) mint(name string, ttl time.Duration) (chain, key []byte, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     time.Now().Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// sdsAnswer is what the fake SDS server does with a subscribed name.
type sdsAnswer int

const (
	sdsMint   sdsAnswer = iota // send a certificate minted for the name
	sdsRefuse                  // removed_resources: the name is refused
	sdsSilent                  // say nothing
)

// fakeSDS is a delta SDS server that mints from a test CA, refuses names with
// removed_resources, or stays silent, and records every subscription.
type fakeSDS struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	addr string
	srv  *grpc.Server
	ca   *testCA

	mu         sync.Mutex
	ttl        time.Duration // of minted leaves from now; 0 is an hour
	answer     func(name string) sdsAnswer
	subscribed []string // names, in the order they were subscribed, one entry per subscription
	streams    int
	acks, nack int
	live       map[*sdsStream]bool
	nonce      int
}

type sdsStream struct {
	g     grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]
	mu    sync.Mutex
	names []string
}

func startSDS(t *testing.T, ca *testCA, answer func(string) sdsAnswer) *fakeSDS {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSDS{addr: ln.Addr().String(), srv: grpc.NewServer(), ca: ca, answer: answer, live: map[*sdsStream]bool{}}
	secretv3.RegisterSecretDiscoveryServiceServer(f.srv, f)
	go func() { _ = f.srv.Serve(ln) }()
	t.Cleanup(f.srv.Stop)
	return f
}

func (f *fakeSDS) DeltaSecrets(g grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	st := &sdsStream{g: g}
	f.mu.Lock()
	f.streams++
	f.live[st] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.live, st)
		f.mu.Unlock()
	}()
	for {
		req, err := g.Recv()
		if err != nil {
			return nil
		}
		f.mu.Lock()
		switch {
		case req.GetErrorDetail() != nil:
			f.nack++
		case req.GetResponseNonce() != "":
			f.acks++
		}
		f.subscribed = append(f.subscribed, req.GetResourceNamesSubscribe()...)
		answer := f.answer
		f.mu.Unlock()
		for _, name := range req.GetResourceNamesSubscribe() {
			st.mu.Lock()
			st.names = append(st.names, name)
			st.mu.Unlock()
			switch answer(name) {
			case sdsMint:
				if err := f.sendCert(st, name); err != nil {
					return err
				}
			case sdsRefuse:
				if err := f.send(st, &discoveryv3.DeltaDiscoveryResponse{RemovedResources: []string{name}}); err != nil {
					return err
				}
			}
		}
	}
}

func (f *fakeSDS) sendCert(st *sdsStream, name string) error {
	f.mu.Lock()
	ttl := f.ttl
	f.mu.Unlock()
	if ttl == 0 {
		ttl = time.Hour
	}
	chain, key, err := f.ca.mint(name, ttl)
	if err != nil {
		return err
	}
	secret, err := anypb.New(&tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: chain}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: key}},
	}}})
	if err != nil {
		return err
	}
	return f.send(st, &discoveryv3.DeltaDiscoveryResponse{Resources: []*discoveryv3.Resource{{Name: name, Version: "1", Resource: secret}}})
}

func (f *fakeSDS) send(st *sdsStream, resp *discoveryv3.DeltaDiscoveryResponse) error {
	f.mu.Lock()
	f.nonce++
	resp.Nonce = fmt.Sprint(f.nonce)
	f.mu.Unlock()
	resp.TypeUrl = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.g.Send(resp)
}

// push sends a certificate for name on every open stream subscribed to it, as a server
// that was slow to mint would.
func (f *fakeSDS) push(t *testing.T, name string) {
	t.Helper()
	f.mu.Lock()
	var targets []*sdsStream
	for st := range f.live {
		st.mu.Lock()
		for _, n := range st.names {
			if n == name {
				targets = append(targets, st)
				break
			}
		}
		st.mu.Unlock()
	}
	f.mu.Unlock()
	if len(targets) == 0 {
		t.Fatalf("no SDS stream is subscribed to %q", name)
	}
	for _, st := range targets {
		if err := f.sendCert(st, name); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fakeSDS) setTTL(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ttl = d
}

// acked returns how many responses Envoy acknowledged and rejected.
func (f *fakeSDS) acked() (acks, nacks int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acks, f.nack
}

// subscriptions returns the names subscribed so far and the number of streams opened.
func (f *fakeSDS) subscriptions() ([]string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.subscribed...), f.streams
}

// icHarness is the stand-in with interception on, a signer, an upstream and an SDS server.
type icHarness struct {
	proc  *fakeProcessor
	up    *upstream
	ca    *testCA
	sds   *fakeSDS
	envoy *extproctest.Envoy
}

const (
	ociHost         = "objectstorage.us-phoenix-1.oraclecloud.com"
	defaultSNI      = "no-sni.ocisigner.invalid"
	authorityFSKey  = "ocisigner.connect_authority"
	sniAttribute    = "connection.requested_server_name"
	connectHostAttr = "filter_state['" + authorityFSKey + "']"
)

// ociRoutes is the route table interception needs: CONNECT to an OCI host is terminated
// into the internal listener, CONNECT elsewhere meets a direct 403, both with ext_proc off;
// requests to OCI hosts are signed, others refused.
func ociRoutes(rr extproctest.RouteRequest) extproctest.Route {
	host := rr.Authority
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	oci := strings.HasSuffix(host, ".oraclecloud.com")
	forbidden := &extproctest.DirectResponse{Status: http.StatusForbidden, Body: "not an OCI host"}
	switch {
	case rr.Method == http.MethodConnect && oci:
		return extproctest.Route{Name: "intercept", TerminateConnect: true, ExtProcDisabled: true}
	case rr.Method == http.MethodConnect, !oci:
		return extproctest.Route{Name: "not-oci", Direct: forbidden, ExtProcDisabled: true}
	}
	return extproctest.Route{Name: "oci"}
}

func newIntercept(t *testing.T, answer func(string) sdsAnswer, edit func(*extproctest.Config)) *icHarness {
	t.Helper()
	h := &icHarness{proc: startProcessor(t, signer()), up: startUpstream(t, nil), ca: newTestCA(t)}
	h.sds = startSDS(t, h.ca, answer)
	cfg := extproctest.Config{
		Processor:         h.proc.addr,
		Resolve:           func(string) (string, error) { return h.up.addr(), nil },
		MessageTimeout:    guard,
		StripAnyHostPort:  true,
		Routes:            ociRoutes,
		RequestAttributes: []string{sniAttribute, connectHostAttr, "request.protocol"},
		Intercept: &extproctest.Intercept{
			SDS:                               h.sds.addr,
			DefaultSNI:                        defaultSNI,
			TLSInspector:                      true,
			TransportSocketConnectTimeout:     guard,
			DisableStatelessSessionResumption: true,
			DisableStatefulSessionResumption:  true,
			ALPN:                              []string{"h2", "http/1.1"},
			AuthorityFilterState:              authorityFSKey,
			InternalUpstream:                  true,
		},
		Logf: t.Logf,
	}
	if edit != nil {
		edit(&cfg)
	}
	e, err := extproctest.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.envoy = e
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

func mintAll(string) sdsAnswer { return sdsMint }

// tunnel sends CONNECT authority through the stand-in and returns the connection once it
// answered 200.
func (h *icHarness) tunnel(t *testing.T, authority string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", h.envoy.Addr(), guard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(guard))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", authority, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %s", authority, resp.Status)
	}
	if br.Buffered() > 0 {
		t.Fatalf("CONNECT %s: %d bytes after the 200", authority, br.Buffered())
	}
	return c
}

// handshake opens a tunnel to authority and runs a TLS handshake in it.
func (h *icHarness) handshake(t *testing.T, authority string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	tc := tls.Client(h.tunnel(t, authority), cfg)
	return tc, tc.Handshake()
}

// clientTLS trusts the test CA and sends serverName as SNI.
func (h *icHarness) clientTLS(serverName string, alpn ...string) *tls.Config {
	return &tls.Config{RootCAs: h.ca.pool, ServerName: serverName, NextProtos: alpn}
}

// proxyClient is an unmodified HTTPS client with HTTPS_PROXY pointing at the stand-in.
func (h *icHarness) proxyClient(t *testing.T, tlsCfg *tls.Config, h2 bool) *http.Client {
	proxy := &url.URL{Scheme: "http", Host: h.envoy.Addr()}
	tr := &http.Transport{
		Proxy:             http.ProxyURL(proxy),
		TLSClientConfig:   tlsCfg,
		ForceAttemptHTTP2: h2,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: guard, Transport: tr}
}

// isAlert reports a handshake that the server ended with the named TLS alert.
func isAlert(err error, name string) bool {
	return err != nil && strings.Contains(err.Error(), "remote error: tls: "+name)
}
