package extproctest_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
)

// firstMessage waits for the processor's only stream and returns its first message.
func firstMessage(t *testing.T, p *fakeProcessor) *extprocv3.ProcessingRequest {
	t.Helper()
	var msgs []*extprocv3.ProcessingRequest
	eventually(t, "a message on the processor's stream", func() bool {
		ss := p.allStreams()
		if len(ss) == 0 {
			return false
		}
		msgs = ss[0].messages()
		return len(msgs) > 0
	})
	return msgs[0]
}

func TestConnectWithoutInterceptIsUpgradeFailed(t *testing.T) {
	h := newHarness(t, signer(), nil)
	resp, _ := raw(t, h.envoy.Addr(), "CONNECT "+ociHost+":443 HTTP/1.1\r\nHost: "+ociHost+":443\r\n\r\n")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
	if d := h.logs.last(t).ResponseCodeDetails; d != "upgrade_failed" {
		t.Errorf("details %q, want upgrade_failed", d)
	}
	if n := len(h.proc.allStreams()); n != 0 {
		t.Errorf("processor saw %d streams", n)
	}
}

func TestConnectToNonOCIHostIs403WithoutSDSStream(t *testing.T) {
	h := newIntercept(t, mintAll, nil)
	resp, body := raw(t, h.envoy.Addr(), "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	if resp.StatusCode != http.StatusForbidden || body != "not an OCI host" {
		t.Fatalf("got %d %q, want the route's 403", resp.StatusCode, body)
	}
	names, streams := h.sds.subscriptions()
	if len(names) != 0 || streams != 0 {
		t.Errorf("SDS saw subscriptions %v on %d streams, want none", names, streams)
	}
	if st := h.envoy.Stats(); st.ConnectTerminated != 0 || st.CertRequested != 0 || st.LocalRepliesDirect != 1 {
		t.Errorf("stats %+v", st)
	}
}

// The CONNECT authority reaches the route table, and the filter state, with its port
// stripped only under strip_any_host_port.
func TestStripAnyHostPortAppliesToConnect(t *testing.T) {
	for _, strip := range []bool{true, false} {
		t.Run(fmt.Sprintf("strip=%v", strip), func(t *testing.T) {
			var seen []string
			h := newIntercept(t, mintAll, func(c *extproctest.Config) {
				c.StripAnyHostPort = strip
				c.Routes = func(rr extproctest.RouteRequest) extproctest.Route {
					if rr.Method == http.MethodConnect {
						seen = append(seen, rr.Authority)
						if rr.Path != "" {
							t.Errorf("CONNECT has :path %q", rr.Path)
						}
					}
					return ociRoutes(rr)
				}
			})
			client := h.proxyClient(t, h.clientTLS(ociHost), true)
			doGet(t, client, "https://"+ociHost+"/n/")
			want := ociHost
			if !strip {
				want += ":443"
			}
			if len(seen) != 1 || seen[0] != want {
				t.Errorf("CONNECT routed as %v, want %q", seen, want)
			}
			got := attributes(firstMessage(t, h.proc)).GetFields()[connectHostAttr].GetStringValue()
			if got != want {
				t.Errorf("%s = %q, want %q", connectHostAttr, got, want)
			}
		})
	}
}

func doGet(t *testing.T, client *http.Client, url string) *http.Response {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(b) != "upstream ok" {
		t.Fatalf("GET %s: %d %q %v", url, resp.StatusCode, b, err)
	}
	return resp
}

// An unmodified client through HTTPS_PROXY: the CONNECT is terminated, the handshake
// waits for the certificate the SDS server mints for the SNI, and the decrypted request
// is signed and forwarded; the processor learns the SNI and the CONNECT host on the first
// message only.
func TestInterceptedRequestIsProcessedAndForwarded(t *testing.T) {
	h := newIntercept(t, mintAll, nil)
	client := h.proxyClient(t, h.clientTLS(ociHost), true)
	req, _ := http.NewRequest(http.MethodPost, "https://"+ociHost+"/n/ns/b/bucket/o", strings.NewReader("payload"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	leaf := resp.TLS.PeerCertificates[0]
	if !slices.Equal(leaf.DNSNames, []string{ociHost}) || leaf.Issuer.CommonName != "extproctest CA" {
		t.Errorf("served certificate for %v by %q", leaf.DNSNames, leaf.Issuer.CommonName)
	}
	if names, streams := h.sds.subscriptions(); !slices.Equal(names, []string{ociHost}) || streams != 1 {
		t.Errorf("SDS subscriptions %v on %d streams, want [%s] on 1", names, streams, ociHost)
	}

	got := h.up.only(t)
	if got.Host != ociHost || got.Header.Get("X-Signed") != "headers" || string(got.Body) != "payload" ||
		got.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("upstream got host %q x-signed %q xfp %q body %q", got.Host, got.Header.Get("X-Signed"),
			got.Header.Get("X-Forwarded-Proto"), got.Body)
	}

	msgs := h.proc.only(t).messages()
	if len(msgs) != 2 {
		t.Fatalf("processor got %d messages, want headers and body", len(msgs))
	}
	want := map[string]string{sniAttribute: ociHost, connectHostAttr: ociHost, "request.protocol": "HTTP/2"}
	attrs := attributes(msgs[0]).GetFields()
	for k, v := range want {
		if attrs[k].GetStringValue() != v {
			t.Errorf("attribute %s = %v, want %q", k, attrs[k], v)
		}
	}
	if len(attrs) != len(want) {
		t.Errorf("attributes %v", attrs)
	}
	if msgs[1].GetAttributes() != nil {
		t.Errorf("the body message carries attributes %v", msgs[1].GetAttributes())
	}
	if st := h.envoy.Stats(); st.ConnectTerminated != 1 || st.TLSHandshakes != 1 || st.CertRequested != 1 {
		t.Errorf("stats %+v", st)
	}
}

// ALPN h2 and http/1.1 are offered in that order; a client that offers no ALPN gets
// HTTP/1.1.
func TestInterceptALPN(t *testing.T) {
	h := newIntercept(t, mintAll, nil)
	for _, tc := range []struct {
		name      string
		do        func(t *testing.T) (negotiated string)
		wantProto string
	}{
		{"h2 preferred", func(t *testing.T) string {
			return doGet(t, h.proxyClient(t, h.clientTLS(ociHost), true), "https://"+ociHost+"/").TLS.NegotiatedProtocol
		}, "HTTP/2"},
		{"http/1.1 only", func(t *testing.T) string {
			return doGet(t, h.proxyClient(t, h.clientTLS(ociHost, "http/1.1"), false), "https://"+ociHost+"/").TLS.NegotiatedProtocol
		}, "HTTP/1.1"},
		{"no ALPN", func(t *testing.T) string {
			tc, err := h.handshake(t, ociHost, h.clientTLS(ociHost))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", ociHost)
			resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/1.1" {
				t.Fatalf("got %s %s", resp.Proto, resp.Status)
			}
			return tc.ConnectionState().NegotiatedProtocol
		}, "HTTP/1.1"},
		{"no ALPN, HTTP/2 preface", func(t *testing.T) string {
			// HTTP/2 with prior knowledge inside the TLS tunnel: Go's transport speaks
			// it over a connection it takes as plaintext.
			var negotiated string
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			tr := &http.Transport{Protocols: &p, DialContext: func(context.Context, string, string) (net.Conn, error) {
				tc, err := h.handshake(t, ociHost, h.clientTLS(ociHost))
				if err == nil {
					negotiated = tc.ConnectionState().NegotiatedProtocol
				}
				return tc, err
			}}
			t.Cleanup(tr.CloseIdleConnections)
			resp := doGet(t, &http.Client{Timeout: guard, Transport: tr}, "http://"+ociHost+"/")
			if resp.ProtoMajor != 2 {
				t.Fatalf("got %s", resp.Proto)
			}
			return negotiated
		}, "HTTP/2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.proc.allStreams())
			negotiated := tc.do(t)
			want := map[string]string{"HTTP/2": "h2", "HTTP/1.1": "http/1.1"}[tc.wantProto]
			if strings.HasPrefix(tc.name, "no ALPN") {
				want = ""
			}
			if negotiated != want {
				t.Errorf("negotiated %q, want %q", negotiated, want)
			}
			ss := h.proc.allStreams()
			if len(ss) != before+1 {
				t.Fatalf("processor streams %d, want %d", len(ss), before+1)
			}
			got := attributes(ss[before].messages()[0]).GetFields()["request.protocol"].GetStringValue()
			if got != tc.wantProto {
				t.Errorf("request.protocol %q, want %q", got, tc.wantProto)
			}
		})
	}
}

// The server's order of preference decides, and no protocol in common means no ALPN (not
// an alert, which is what crypto/tls alone would send).
func TestInterceptALPNServerPreference(t *testing.T) {
	h := newIntercept(t, mintAll, nil)
	for _, tc := range []struct {
		offer []string
		want  string
	}{
		{[]string{"http/1.1", "h2"}, "h2"},
		{[]string{"spdy/3", "http/1.1"}, "http/1.1"},
		{[]string{"spdy/3"}, ""},
	} {
		conn, err := h.handshake(t, ociHost, h.clientTLS(ociHost, tc.offer...))
		if err != nil {
			t.Errorf("offer %v: %v", tc.offer, err)
			continue
		}
		if got := conn.ConnectionState().NegotiatedProtocol; got != tc.want {
			t.Errorf("offer %v: negotiated %q, want %q", tc.offer, got, tc.want)
		}
	}
}

// An HTTP/2 request whose body has no declared length still has a body (its HEADERS frame
// does not end the stream): it is signed as such and sent upstream chunked.
func TestInterceptedH2BodyOfUnknownLength(t *testing.T) {
	h := newIntercept(t, mintAll, nil)
	client := h.proxyClient(t, h.clientTLS(ociHost), true)
	body := io.MultiReader(strings.NewReader("part one, "), strings.NewReader("part two"))
	req, _ := http.NewRequest(http.MethodPut, "https://"+ociHost+"/n/ns/b/bucket/o/x", body)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("got %s %s", resp.Proto, resp.Status)
	}
	got := h.up.only(t)
	if string(got.Body) != "part one, part two" || !slices.Equal(got.TransferEncoding, []string{"chunked"}) {
		t.Errorf("upstream got body %q transfer-encoding %v", got.Body, got.TransferEncoding)
	}
	msgs := h.proc.only(t).messages()
	if len(msgs) != 2 || msgs[0].GetRequestHeaders().GetEndOfStream() || string(msgs[1].GetRequestBody().GetBody()) != "part one, part two" {
		t.Errorf("processor got %v", msgs)
	}
}

// Each name is its own subscription on its own delta stream, acknowledged, and a name
// already fetched is served without asking again.
func TestInterceptOneSDSStreamPerName(t *testing.T) {
	h := newIntercept(t, mintAll, nil)
	const other = "identity.us-phoenix-1.oraclecloud.com"
	for _, name := range []string{ociHost, other, ociHost, other} {
		if _, err := h.handshake(t, name, h.clientTLS(name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if names, streams := h.sds.subscriptions(); !slices.Equal(names, []string{ociHost, other}) || streams != 2 {
		t.Errorf("SDS subscriptions %v on %d streams, want one stream per name", names, streams)
	}
	eventually(t, "both updates acknowledged", func() bool { acks, _ := h.sds.acked(); return acks == 2 })
	if _, nacks := h.sds.acked(); nacks != 0 {
		t.Errorf("%d updates rejected", nacks)
	}
}

// Envoy 1.37 to 1.40 neither look at a certificate's notAfter nor fetch a name again by
// themselves: an expired certificate is served until the SDS server sends another.
func TestInterceptServesExpiredCertificateUntilServerReplacesIt(t *testing.T) {
	h := newIntercept(t, mintAll, nil)
	h.sds.setTTL(-time.Hour)
	back := h.clientTLS(ociHost)
	back.Time = func() time.Time { return time.Now().Add(-90 * time.Minute) } // while it was valid
	if _, err := h.handshake(t, ociHost, back); err != nil {
		t.Fatal(err)
	}
	var expired x509.CertificateInvalidError
	if _, err := h.handshake(t, ociHost, h.clientTLS(ociHost)); !errors.As(err, &expired) || expired.Reason != x509.Expired {
		t.Fatalf("second handshake: %v, want the expired certificate", err)
	}
	if names, streams := h.sds.subscriptions(); len(names) != 1 || streams != 1 {
		t.Errorf("SDS subscriptions %v on %d streams, want the one", names, streams)
	}
	h.sds.setTTL(time.Hour)
	h.sds.push(t, ociHost)
	eventually(t, "the replacement in use", func() bool {
		tc, err := h.handshake(t, ociHost, h.clientTLS(ociHost))
		if err == nil {
			tc.Close()
		}
		return err == nil
	})
}

// A refused name fails the handshake with an alert as soon as the SDS server says so: the
// connect timeout is 1 s, and a failure that waited for it would be a close, not an alert.
// The removal drops the name, so the next handshake subscribes anew.
func TestInterceptRefusedNameFailsHandshake(t *testing.T) {
	h := newIntercept(t, func(string) sdsAnswer { return sdsRefuse }, func(c *extproctest.Config) {
		c.Intercept.TransportSocketConnectTimeout = time.Second
	})
	for i := 1; i <= 2; i++ {
		_, err := h.handshake(t, ociHost, h.clientTLS(ociHost))
		if !isAlert(err, "handshake failure") {
			t.Fatalf("handshake %d: %v, want a handshake_failure alert", i, err)
		}
		if names, _ := h.sds.subscriptions(); len(names) != i {
			t.Errorf("after handshake %d the SDS server saw subscriptions %v", i, names)
		}
	}
	eventually(t, "two failed handshakes", func() bool { return h.envoy.Stats().TLSHandshakeErrors == 2 })
	if st := h.envoy.Stats(); st.TransportSocketConnectTimeouts != 0 || st.CertRequested != 2 {
		t.Errorf("stats %+v", st)
	}
	if n := len(h.proc.allStreams()); n != 0 {
		t.Errorf("processor saw %d streams", n)
	}
}

// Without SNI the selector asks for the sni mapper's default_value, and the attribute is
// present but empty.
func TestInterceptWithoutSNIAsksDefaultName(t *testing.T) {
	for _, tc := range []struct {
		answer sdsAnswer
		ok     bool
	}{{sdsMint, true}, {sdsRefuse, false}} {
		t.Run(fmt.Sprintf("answer=%d", tc.answer), func(t *testing.T) {
			h := newIntercept(t, func(string) sdsAnswer { return tc.answer }, nil)
			var served []string
			cfg := &tls.Config{
				// No ServerName: Go then sends no SNI. The check below stands in for the
				// name verification a client with SNI would do.
				InsecureSkipVerify: true,
				NextProtos:         []string{"http/1.1"},
				VerifyConnection: func(cs tls.ConnectionState) error {
					served = cs.PeerCertificates[0].DNSNames
					return nil
				},
			}
			tc2, err := h.handshake(t, ociHost, cfg)
			if names, _ := h.sds.subscriptions(); !slices.Equal(names, []string{defaultSNI}) {
				t.Errorf("SDS asked for %v, want [%s]", names, defaultSNI)
			}
			if !tc.ok {
				if !isAlert(err, "handshake failure") {
					t.Fatalf("handshake: %v, want a handshake_failure alert", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(served, []string{defaultSNI}) {
				t.Errorf("served a certificate for %v", served)
			}
			fmt.Fprintf(tc2, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", ociHost)
			resp, err := http.ReadResponse(bufio.NewReader(tc2), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			sni, ok := attributes(firstMessage(t, h.proc)).GetFields()[sniAttribute]
			if !ok || sni.GetStringValue() != "" {
				t.Errorf("%s = %v, want present and empty", sniAttribute, sni)
			}
		})
	}
}

// An SDS server that never answers: with transport_socket_connect_timeout the connection
// is closed (no alert) when it runs out; the name stays subscribed on its one stream, so a
// second handshake for it does not subscribe again.
func TestInterceptSilentSDSFailsAtConnectTimeout(t *testing.T) {
	h := newIntercept(t, func(string) sdsAnswer { return sdsSilent }, func(c *extproctest.Config) {
		c.Intercept.TransportSocketConnectTimeout = 150 * time.Millisecond
	})
	for i := 1; i <= 2; i++ {
		_, err := h.handshake(t, ociHost, h.clientTLS(ociHost))
		if err == nil || isAlert(err, "") {
			t.Fatalf("handshake %d: %v, want the connection closed without an alert", i, err)
		}
	}
	if names, streams := h.sds.subscriptions(); !slices.Equal(names, []string{ociHost}) || streams != 1 {
		t.Errorf("SDS subscriptions %v on %d streams, want one", names, streams)
	}
	// The server counts after it closed the connection the client saw closing.
	eventually(t, "two connect timeouts", func() bool { return h.envoy.Stats().TransportSocketConnectTimeouts == 2 })
	if st := h.envoy.Stats(); st.CertRequested != 1 || st.SDSStreams != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Without transport_socket_connect_timeout (Envoy's default) the handshake waits for as
// long as the SDS server takes, and resumes on its update.
func TestInterceptWithoutConnectTimeoutWaitsForSDS(t *testing.T) {
	h := newIntercept(t, func(string) sdsAnswer { return sdsSilent }, func(c *extproctest.Config) {
		c.Intercept.TransportSocketConnectTimeout = 0
	})
	done := make(chan error, 1)
	go func() {
		tc := tls.Client(h.tunnel(t, ociHost), h.clientTLS(ociHost))
		done <- tc.Handshake()
	}()
	eventually(t, "the subscription", func() bool {
		names, _ := h.sds.subscriptions()
		return len(names) == 1
	})
	select {
	case err := <-done:
		t.Fatalf("the handshake ended before SDS answered: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	h.sds.push(t, ociHost)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("handshake after the update: %v", err)
		}
	case <-time.After(guard):
		t.Fatal("the handshake did not resume on the update")
	}
}

// With the SDS server gone, a name fetched before still gets its certificate (the
// subscription keeps it), while a new name waits until the connect timeout.
func TestInterceptSDSDownKeepsFetchedNames(t *testing.T) {
	h := newIntercept(t, mintAll, func(c *extproctest.Config) {
		c.Intercept.TransportSocketConnectTimeout = time.Second // bounds the fetched name's handshake too
	})
	if _, err := h.handshake(t, ociHost, h.clientTLS(ociHost)); err != nil {
		t.Fatal(err)
	}
	h.sds.srv.Stop()
	if _, err := h.handshake(t, ociHost, h.clientTLS(ociHost)); err != nil {
		t.Fatalf("fetched name with SDS down: %v", err)
	}
	const other = "identity.us-phoenix-1.oraclecloud.com"
	_, err := h.handshake(t, other, h.clientTLS(other))
	if err == nil || isAlert(err, "") {
		t.Fatalf("new name with SDS down: %v, want the connection closed at the timeout", err)
	}
	eventually(t, "the connect timeout", func() bool { return h.envoy.Stats().TransportSocketConnectTimeouts == 1 })
	if st := h.envoy.Stats(); st.TLSHandshakes != 2 {
		t.Errorf("stats %+v", st)
	}
}

// tls_inspector is what sets connection.requested_server_name; the CONNECT host crosses
// into the internal listener only through the internal_upstream transport socket.
func TestInterceptAttributesDependOnInspectorAndInternalUpstream(t *testing.T) {
	for _, tc := range []struct {
		inspector, internalUpstream bool
	}{{true, true}, {false, true}, {true, false}, {false, false}} {
		t.Run(fmt.Sprintf("inspector=%v,internal_upstream=%v", tc.inspector, tc.internalUpstream), func(t *testing.T) {
			h := newIntercept(t, mintAll, func(c *extproctest.Config) {
				c.Intercept.TLSInspector = tc.inspector
				c.Intercept.InternalUpstream = tc.internalUpstream
			})
			doGet(t, h.proxyClient(t, h.clientTLS(ociHost), true), "https://"+ociHost+"/")
			attrs := attributes(firstMessage(t, h.proc)).GetFields()
			wantSNI := ""
			if tc.inspector {
				wantSNI = ociHost
			}
			if v, ok := attrs[sniAttribute]; !ok || v.GetStringValue() != wantSNI {
				t.Errorf("%s = %v, want %q", sniAttribute, v, wantSNI)
			}
			v, ok := attrs[connectHostAttr]
			if ok != tc.internalUpstream || (ok && v.GetStringValue() != ociHost) {
				t.Errorf("%s = %v (present %v)", connectHostAttr, v, ok)
			}
		})
	}
}

// The on-demand selector exists only with both kinds of session resumption off, and no
// session is resumed.
func TestInterceptRequiresSessionResumptionOff(t *testing.T) {
	for _, tc := range []struct {
		stateless, stateful bool
	}{{false, false}, {true, false}, {false, true}} {
		cfg := extproctest.Config{Processor: "127.0.0.1:1", Upstream: "127.0.0.1:1", Intercept: &extproctest.Intercept{
			SDS: "127.0.0.1:1", DefaultSNI: defaultSNI,
			DisableStatelessSessionResumption: tc.stateless, DisableStatefulSessionResumption: tc.stateful,
		}}
		if _, err := extproctest.New(cfg); !errors.Is(err, extproctest.ErrConfig) ||
			!strings.Contains(err.Error(), "not integrated with session resumption") {
			t.Errorf("stateless=%v stateful=%v: New: %v, want ErrConfig", tc.stateless, tc.stateful, err)
		}
	}

	h := newIntercept(t, mintAll, nil)
	cfg := h.clientTLS(ociHost, "http/1.1")
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i := 0; i < 2; i++ {
		tc, err := h.handshake(t, ociHost, cfg)
		if err != nil {
			t.Fatal(err)
		}
		// TLS 1.3 tickets arrive after the handshake: read so the client would store one.
		fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", ociHost)
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if tc.ConnectionState().DidResume {
			t.Errorf("handshake %d resumed a session", i+1)
		}
	}
}

func TestInterceptConfigValidation(t *testing.T) {
	valid := func() *extproctest.Intercept {
		return &extproctest.Intercept{SDS: "127.0.0.1:1", DefaultSNI: defaultSNI,
			DisableStatelessSessionResumption: true, DisableStatefulSessionResumption: true}
	}
	for _, tc := range []struct {
		name string
		edit func(*extproctest.Config)
		want error
	}{
		{"valid", func(*extproctest.Config) {}, nil},
		{"no SDS", func(c *extproctest.Config) { c.Intercept.SDS = "" }, extproctest.ErrConfig},
		{"no default_value", func(c *extproctest.Config) { c.Intercept.DefaultSNI = "" }, extproctest.ErrConfig},
		{"empty ALPN", func(c *extproctest.Config) { c.Intercept.ALPN = []string{"h2", ""} }, extproctest.ErrConfig},
		{"negative timeout", func(c *extproctest.Config) { c.Intercept.TransportSocketConnectTimeout = -1 }, extproctest.ErrConfig},
		{"unknown attribute", func(c *extproctest.Config) { c.RequestAttributes = []string{"source.address"} }, extproctest.ErrUnsupported},
		{"known attributes", func(c *extproctest.Config) {
			c.RequestAttributes = []string{"request.host", `filter_state["x"]`, "connection.tls_version", "connection.mtls"}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := extproctest.Config{Processor: "127.0.0.1:1", Upstream: "127.0.0.1:1", Intercept: valid()}
			tc.edit(&cfg)
			e, err := extproctest.New(cfg)
			if e != nil {
				e.Close()
			}
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("New: %v, want %v", err, tc.want)
			}
		})
	}
}
