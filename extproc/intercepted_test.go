package extproc_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	ondemandv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/cert_selectors/on_demand_secret/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/intercept"
	"github.com/ocisigner/ocisigner/internal/envoyconfig"
)

// identityHost is where credentials are minted.
const identityHost = "identity.us-phoenix-1.oraclecloud.com"

// The shipped envoy.yaml, read by the stand-in, intercepts as it says: the
// stand-in's interception comes from the file, not from the test.
func TestShippedEnvoyInterceptsAsConfigured(t *testing.T) {
	c := shippedConfig(t, "127.0.0.1:1", "127.0.0.1:2")
	ic := c.Intercept
	if ic == nil {
		t.Fatal("envoy.yaml read without interception")
	}
	switch {
	case ic.SDS != "127.0.0.1:1":
		t.Errorf("SDS at %q, want the signer's address", ic.SDS)
	case ic.DefaultSNI != intercept.NoSNIName:
		t.Errorf("default_value %q, want %q", ic.DefaultSNI, intercept.NoSNIName)
	case !ic.TLSInspector || !ic.InternalUpstream || ic.AuthorityFilterState != extproc.ConnectAuthorityKey:
		t.Errorf("tls_inspector %v, internal_upstream %v, filter state %q", ic.TLSInspector, ic.InternalUpstream, ic.AuthorityFilterState)
	case !slices.Equal(ic.ALPN, []string{"h2", "http/1.1"}):
		t.Errorf("ALPN %v", ic.ALPN)
	case !ic.DisableStatefulSessionResumption || !ic.DisableStatelessSessionResumption:
		t.Error("session resumption on")
	case ic.TransportSocketConnectTimeout <= 0 || ic.TransportSocketConnectTimeout > 10*time.Second:
		t.Errorf("transport_socket_connect_timeout %v", ic.TransportSocketConnectTimeout)
	}
	if !slices.Contains(c.RequestAttributes, extproc.AttrSNI) || !slices.Contains(c.RequestAttributes, extproc.AttrConnectHost) {
		t.Errorf("request_attributes %v lack %s or %s", c.RequestAttributes, extproc.AttrSNI, extproc.AttrConnectHost)
	}
}

// icStack is the whole path with interception: an unmodified HTTPS client
// with the stand-in as its proxy → the stand-in's internal listener, whose
// certificates come from ocisigner's SDS → the signer → OCI.
type icStack struct {
	*stack
	ca     *intercept.CA
	sds    *intercept.SDS
	events *eventLog
	pool   *x509.CertPool
}

type eventLog struct {
	mu     sync.Mutex
	events []intercept.Event
}

func (l *eventLog) Observe(ev intercept.Event) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

func (l *eventLog) all() []intercept.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

func newICStack(t *testing.T, server func(*extproc.Config)) *icStack {
	t.Helper()
	dir := t.TempDir()
	ca, err := intercept.LoadOrCreate(dir, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The CA key joins what TestMain makes sure was never logged; the SDS
	// logs to the suite's log at debug level.
	key, err := os.ReadFile(filepath.Join(dir, intercept.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	secret(strings.Split(string(key), "\n")[1])
	logger := slog.New(slog.NewTextHandler(&suiteLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ic := &icStack{ca: ca, events: &eventLog{}, pool: x509.NewCertPool()}
	ic.pool.AddCert(ca.Certificate())
	if ic.sds, err = intercept.NewSDS(intercept.Config{CA: ca, Observer: ic.events, Logger: logger}); err != nil {
		t.Fatal(err)
	}
	ic.stack = newStack(t, stackOptions{server: server, register: func(g *grpc.Server) { ic.sds.Register(g) }})
	// Registered after newStack's: runs before the gRPC server stops.
	t.Cleanup(ic.sds.Close)
	return ic
}

// client is what HTTPS_PROXY and a CA bundle make of an HTTP client.
func (s *icStack) client(t *testing.T) *http.Client {
	tr := &http.Transport{
		Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: s.envoy.Addr()}),
		TLSClientConfig:   &tls.Config{RootCAs: s.pool},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

// raw sends CONNECT connectTo, a handshake with sni, and then request,
// HTTP/1.1 as written, and reads the answer.
func (s *icStack) raw(t *testing.T, connectTo, sni, request string) answer {
	t.Helper()
	c, err := net.Dial("tcp", s.envoy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", connectTo, connectTo)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %v %v", connectTo, resp, err)
	}
	tc := tls.Client(c, &tls.Config{RootCAs: s.pool, ServerName: sni, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake for %s: %v", sni, err)
	}
	if _, err := io.WriteString(tc, request); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

func TestInterceptedRequestsAreSignedOnlyForTheirHost(t *testing.T) {
	s := newICStack(t, nil)
	const throwaway = `Signature version="1",keyId="ocid1.tenancy.oc1..throwaway/ocid1.user.oc1..throwaway/aa:bb",algorithm="rsa-sha256",headers="date",signature="AAAA"`

	req, _ := http.NewRequest(http.MethodPost, "https://"+iaasHost+"/20160918/instances?compartmentId=x", strings.NewReader(`{"a":1}`))
	req.Header.Set("Authorization", throwaway)
	resp, err := s.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("intercepted POST: %s %d %s", resp.Proto, resp.StatusCode, body)
	}
	if rec := s.lastRecord(); !rec.OK || rec.KeyID != s.apiKeyID || rec.Host != iaasHost {
		t.Errorf("OCI got keyId %q host %q ok %v, want the real profile's %q", rec.KeyID, rec.Host, rec.OK, s.apiKeyID)
	}

	for _, tc := range []struct {
		name, connect, sni, request string
	}{
		{"SNI differs from :authority", iaasHost, iaasHost, "GET /n/ HTTP/1.1\r\nHost: " + osHost + "\r\n\r\n"},
		{"CONNECT host differs from SNI", iaasHost, osHost, "GET /n/ HTTP/1.1\r\nHost: " + osHost + "\r\n\r\n"},
		{"gateway form inside the tunnel", iaasHost, iaasHost, "GET /" + iaasHost + "/x HTTP/1.1\r\nHost: localhost\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.oci.Requests())
			a := s.raw(t, tc.connect, tc.sni, tc.request)
			if a.status != http.StatusMisdirectedRequest {
				t.Fatalf("got %d %s, want 421", a.status, a.body)
			}
			if code, msg := a.refusal(t); code != extproc.CodeMisdirected || !strings.Contains(msg, "opened for "+tc.connect) {
				t.Errorf("refusal %s: %s", code, msg)
			}
			if len(s.oci.Requests()) != before {
				t.Error("a refused request reached OCI")
			}
		})
	}
	// Envoy's strip_any_host_port takes any port off before the signer
	// looks (and the forward proxy then goes to 443).
	if a := s.raw(t, iaasHost, iaasHost, "GET /x HTTP/1.1\r\nHost: "+iaasHost+":8443\r\n\r\n"); a.status != 200 {
		t.Errorf("Host with a port: %d %s", a.status, a.body)
	}
}

// Credential minting is refused in every mode, naming the flag that lifts
// it; with the flag it is signed like anything else.
func TestCredentialMintingRefusedInEveryMode(t *testing.T) {
	const path = "/20160918/users/ocid1.user.oc1..aaaa/apiKeys"
	body := `{"key":"-----BEGIN PUBLIC KEY-----"}`
	for _, allow := range []bool{false, true} {
		s := newICStack(t, func(c *extproc.Config) { c.AllowCredentialMinting = allow })
		for _, mode := range []string{"intercepted", "proxy form", "gateway form"} {
			t.Run(fmt.Sprintf("%s allow=%v", mode, allow), func(t *testing.T) {
				var a answer
				switch mode {
				case "intercepted":
					req, _ := http.NewRequest(http.MethodPost, "https://"+identityHost+path, strings.NewReader(body))
					resp, err := s.client(t).Do(req)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					a = answer{resp.StatusCode, resp.Header, b}
				case "proxy form":
					a = s.do(s.request(http.MethodPost, identityHost, path, strings.NewReader(body)))
				case "gateway form":
					a = s.do(s.request(http.MethodPost, "localhost", "/"+identityHost+path, strings.NewReader(body)))
				}
				if allow {
					if a.status != 200 || a.echo(t).Host != identityHost {
						t.Fatalf("allowed: %d %s", a.status, a.body)
					}
					return
				}
				if a.status != http.StatusForbidden {
					t.Fatalf("got %d %s, want 403", a.status, a.body)
				}
				code, msg := a.refusal(t)
				if code != extproc.CodeCredentialMinting || !strings.Contains(msg, "identity.UploadApiKey") || !strings.Contains(msg, "--allow-credential-minting") {
					t.Errorf("refusal %s: %s", code, msg)
				}
			})
		}
		if !allow && len(s.oci.Requests()) != 0 {
			t.Errorf("OCI got %d minting requests", len(s.oci.Requests()))
		}
	}
}

// CONNECT to a host that is not OCI's: the catch-all's 403, and no
// certificate is ever asked for.
func TestConnectToOtherHostIsRefusedWithoutSDS(t *testing.T) {
	s := newICStack(t, nil)
	c, err := net.Dial("tcp", s.envoy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "CONNECT is served for OCI API endpoints only") {
		t.Errorf("got %d %s", resp.StatusCode, b)
	}
	if st := s.envoy.Stats(); st.CertRequested != 0 || st.SDSStreams != 0 || st.ConnectTerminated != 0 {
		t.Errorf("Envoy asked for certificates: %+v", st)
	}
	if ev := s.events.all(); len(ev) != 0 || s.sds.Stats().Streams != 0 {
		t.Errorf("the SDS saw %v", ev)
	}
}

// What the signer does with the attributes alone: a configuration that
// sends one of them without the other is refused as misconfigured, since it
// would hide the host check; a request with neither is a plain one.
func TestInterceptAttributesMustComeTogether(t *testing.T) {
	s := newStack(t, stackOptions{})
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	attrs := func(kv ...string) map[string]*structpb.Struct {
		f := map[string]*structpb.Value{}
		for i := 0; i < len(kv); i += 2 {
			f[kv[i]] = structpb.NewStringValue(kv[i+1])
		}
		return map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: f}}
	}
	for _, tc := range []struct {
		name  string
		attrs map[string]*structpb.Struct
		want  int // 0: signed
		in    string
	}{
		{"none", nil, 0, ""},
		{"plain: SNI empty, no CONNECT host", attrs(extproc.AttrSNI, ""), 0, ""},
		{"intercepted, all equal", attrs(extproc.AttrSNI, iaasHost, extproc.AttrConnectHost, iaasHost), 0, ""},
		{"SNI in upper case", attrs(extproc.AttrSNI, strings.ToUpper(iaasHost), extproc.AttrConnectHost, iaasHost), 0, ""},
		{"CONNECT host with port 443", attrs(extproc.AttrSNI, iaasHost, extproc.AttrConnectHost, iaasHost+":443"), 0, ""},
		{"CONNECT host with another port", attrs(extproc.AttrSNI, iaasHost, extproc.AttrConnectHost, iaasHost+":8443"), 421, ""},
		{"SNI without CONNECT host", attrs(extproc.AttrSNI, iaasHost), 500, "internal_upstream"},
		{"CONNECT host without SNI", attrs(extproc.AttrSNI, "", extproc.AttrConnectHost, iaasHost), 500, "tls_inspector"},
		{"CONNECT host an IP", attrs(extproc.AttrSNI, iaasHost, extproc.AttrConnectHost, "192.0.2.1"), 421, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := extprocv3.NewExternalProcessorClient(conn).Process(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			hv := func(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, RawValue: []byte(v)} }
			if err := st.Send(&extprocv3.ProcessingRequest{Attributes: tc.attrs, Request: &extprocv3.ProcessingRequest_RequestHeaders{
				RequestHeaders: &extprocv3.HttpHeaders{EndOfStream: true, Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					hv(":method", "GET"), hv(":path", "/x"), hv(":authority", iaasHost), hv(":scheme", "https")}}}}}); err != nil {
				t.Fatal(err)
			}
			resp, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			ir := resp.GetImmediateResponse()
			switch {
			case tc.want == 0 && ir != nil:
				t.Fatalf("refused: %s", ir.GetBody())
			case tc.want != 0 && int(ir.GetStatus().GetCode()) != tc.want:
				t.Fatalf("got %v, want %d", resp, tc.want)
			case tc.want != 0 && !strings.Contains(string(ir.GetBody()), tc.in):
				t.Errorf("refusal %s does not name %s", ir.GetBody(), tc.in)
			}
		})
	}
}

// FromBootstrap refuses an interception setup it would not run as Envoy
// does, rather than run something else.
func TestFromBootstrapRefusesInterceptionItCannotRun(t *testing.T) {
	bs, err := shipped()
	if err != nil {
		t.Fatal(err)
	}
	clusters := map[string]string{envoyconfig.SignerCluster: "127.0.0.1:1", envoyconfig.OCICluster: "127.0.0.1:2"}
	hcmOf := func(l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
		h := &hcmv3.HttpConnectionManager{}
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	setHCM := func(l *listenerv3.Listener, h *hcmv3.HttpConnectionManager) {
		a, err := anypb.New(h)
		if err != nil {
			t.Fatal(err)
		}
		l.GetFilterChains()[0].GetFilters()[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	}
	internal := func(b *bootstrapv3.Bootstrap) *listenerv3.Listener { return b.GetStaticResources().GetListeners()[1] }
	for _, tc := range []struct {
		name   string
		mutate func(b *bootstrapv3.Bootstrap)
		want   error
	}{
		{"the internal listener's routes differ", func(b *bootstrapv3.Bootstrap) {
			h := hcmOf(internal(b))
			h.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetRoute().Timeout = durationpb.New(time.Minute)
			setHCM(internal(b), h)
		}, extproctest.ErrUnsupported},
		{"a CONNECT inside the tunnel accepted", func(b *bootstrapv3.Bootstrap) {
			h := hcmOf(internal(b))
			h.UpgradeConfigs = hcmOf(b.GetStaticResources().GetListeners()[0]).GetUpgradeConfigs()
			setHCM(internal(b), h)
		}, extproctest.ErrUnsupported},
		{"state-of-the-world SDS", func(b *bootstrapv3.Bootstrap) {
			fc := internal(b).GetFilterChains()[0]
			dtc := &tlsv3.DownstreamTlsContext{}
			if err := fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(dtc); err != nil {
				t.Fatal(err)
			}
			sel := dtc.GetCommonTlsContext().GetCustomTlsCertificateSelector()
			od := &ondemandv3.Config{}
			if err := sel.GetTypedConfig().UnmarshalTo(od); err != nil {
				t.Fatal(err)
			}
			od.GetConfigSource().GetApiConfigSource().ApiType = corev3.ApiConfigSource_GRPC
			sel.TypedConfig, _ = anypb.New(od)
			fc.GetTransportSocket().ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, dtc)}
		}, extproctest.ErrUnsupported},
		{"no internal listener extension", func(b *bootstrapv3.Bootstrap) { b.BootstrapExtensions = nil }, extproctest.ErrConfig},
		{"another listener", func(b *bootstrapv3.Bootstrap) {
			extra := proto.Clone(b.GetStaticResources().GetListeners()[0]).(*listenerv3.Listener)
			extra.Name = "other"
			b.StaticResources.Listeners = append(b.StaticResources.Listeners, extra)
		}, extproctest.ErrUnsupported},
		{"the CONNECT host set on every route", func(b *bootstrapv3.Bootstrap) {
			l := b.GetStaticResources().GetListeners()[0]
			h := hcmOf(l)
			for _, f := range h.GetHttpFilters() {
				f.Disabled = false
			}
			setHCM(l, h)
		}, extproctest.ErrUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := proto.Clone(bs).(*bootstrapv3.Bootstrap)
			tc.mutate(b)
			if _, err := extproctest.FromBootstrap(b, clusters); !errors.Is(err, tc.want) {
				t.Errorf("FromBootstrap: %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := extproctest.FromBootstrap(bs, clusters); err != nil {
		t.Fatalf("the shipped file: %v", err)
	}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
