package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/intercept"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// End to end with interception: an unmodified client with HTTPS_PROXY and
// the CA → the Envoy stand-in built from the shipped envoy.yaml → `ocisigner
// serve --intercept` (ext_proc and SDS on one port) → the OCI stand-in,
// which verifies every request with the REAL profile's key only. The
// clients sign (when they sign at all) with a throwaway key: what reaches
// OCI verifies only because the gateway re-signed it.

const (
	icOSHost   = "objectstorage.us-phoenix-1.oraclecloud.com"
	icIaasHost = "iaas.us-phoenix-1.oraclecloud.com"
	icIdentity = "identity.us-phoenix-1.oraclecloud.com"
	// icThrowaway is an Authorization a client signed with a key OCI does not know.
	icThrowaway = `Signature version="1",keyId="ocid1.tenancy.oc1..throwaway/ocid1.user.oc1..throwaway/00:11:22",algorithm="rsa-sha256",headers="date (request-target) host",signature="dGhyb3dhd2F5"`
)

// icGateway is a running gateway with interception.
type icGateway struct {
	fx       *fixture
	svc      *service
	envoy    *extproctest.Envoy
	env      map[string]string
	stateDir string
	logs     *signertest.LogBuffer
	caPEM    []byte
	pool     *x509.CertPool
	bundle   string // the system roots and the CA, as `ocisigner ca --bundle` writes them
	realKey  string // the keyId OCI knows
}

// newICGateway starts the service with --intercept and the Envoy stand-in
// configured by the repository's envoy.yaml. edit changes the service's
// options, envoy the stand-in's configuration (a shorter connect timeout).
func newICGateway(t *testing.T, edit func(*serveOptions), envoy func(*extproctest.Config)) *icGateway {
	t.Helper()
	g := &icGateway{fx: newFixture(t), stateDir: filepath.Join(t.TempDir(), "state"), logs: &signertest.LogBuffer{}}
	g.realKey = signertest.APIKeyID("API", &signertest.Key(t, 1).PublicKey)
	g.env = map[string]string{"OCI_CLI_CONFIG_FILE": g.fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API"}
	o := serveOptions{profileHeader: "x-oci-profile", icpt: interceptOptions{enabled: true, ca: caFlags{stateDir: g.stateDir}}}
	if edit != nil {
		edit(&o)
	}
	g.svc = startService(t, g.env, o, g.logs)

	cfg := shippedEnvoyConfig(t, g.svc.lis.Addr().String(), g.fx.oci.Addr)
	if envoy != nil {
		envoy(&cfg)
	}
	e, err := extproctest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.envoy = e
	t.Cleanup(func() { _ = e.Close() })

	code, out, errOut := runCmd(t, g.env, "ca", "--state-dir", g.stateDir)
	if code != exitOK {
		t.Fatalf("ocisigner ca: %d %s", code, errOut)
	}
	g.caPEM = []byte(out)
	g.pool = x509.NewCertPool()
	if !g.pool.AppendCertsFromPEM(g.caPEM) {
		t.Fatal("ocisigner ca printed no certificate")
	}
	g.bundle = filepath.Join(t.TempDir(), "bundle.pem")
	if code, _, errOut := runCmd(t, g.env, "ca", "--state-dir", g.stateDir, "--bundle", g.bundle); code != exitOK {
		t.Fatalf("ocisigner ca --bundle: %s", errOut)
	}
	t.Cleanup(func() { g.checkLogs(t) })
	return g
}

// checkLogs: neither the CA key nor any private key ever reaches the log,
// at debug level.
func (g *icGateway) checkLogs(t *testing.T) {
	key, err := os.ReadFile(filepath.Join(g.stateDir, intercept.KeyFileName))
	if err != nil {
		return // the CA was the operator's
	}
	block, _ := pem.Decode(key)
	logs := g.logs.String()
	body := strings.Join(strings.Split(strings.TrimSpace(string(key)), "\n")[1:3], "")
	for _, s := range []string{"PRIVATE KEY", body, string(block.Bytes[10:40])} {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds key material %q", s[:min(len(s), 20)])
		}
	}
}

// proxyEnv is what a client's environment holds: the proxy and nothing
// that would bypass it.
func (g *icGateway) proxyURL() string { return "http://" + g.envoy.Addr() }

// lastOCI is what OCI received last; it must have verified with the real key.
func (g *icGateway) checkOCI(t *testing.T, n int) []signertest.Received {
	t.Helper()
	rs := g.fx.oci.Requests()
	if len(rs) != n {
		t.Fatalf("OCI received %d requests, want %d", len(rs), n)
	}
	for _, r := range rs {
		if !r.OK || r.KeyID != g.realKey || strings.Contains(r.Header.Get("Authorization"), "throwaway") {
			t.Errorf("OCI got %s %s keyId %q ok %v (%s): want it verified with the real profile's key", r.Method, r.RequestURI, r.KeyID, r.OK, r.Reason)
		}
	}
	return rs
}

func (g *icGateway) metrics(t *testing.T) string {
	_, m := get(t, "http://"+g.svc.adminL.Addr().String()+"/metrics")
	return m
}

// oci-go-sdk, unmodified, in a process of its own: a config from `ocisigner
// client-config` (a throwaway key), HTTPS_PROXY and SSL_CERT_FILE. It
// speaks HTTP/2 through the tunnel.
func TestInterceptOCIGoSDK(t *testing.T) {
	g := newICGateway(t, nil, nil)
	dir := t.TempDir()
	if code, out, errOut := runCmd(t, g.env, "client-config", "--dir", dir); code != exitOK || !strings.Contains(out, "region us-ashburn-1") {
		t.Fatalf("client-config: %d %s %s", code, out, errOut)
	}
	out := runChildEnv(t, childOCISDK, filepath.Join(dir, throwawayConfig), []string{
		"HTTPS_PROXY=" + g.proxyURL(), "SSL_CERT_FILE=" + g.bundle, "OCI_SDK_DEFAULT_RETRY_ENABLED=false",
	})
	var res sdkResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	if res.Error != "" || res.Namespace != g.fx.oci.Namespace() {
		t.Fatalf("SDK: %+v", res)
	}
	for op, proto := range res.Protos {
		if proto != "HTTP/2.0" {
			t.Errorf("%s over %s, want HTTP/2.0", op, proto)
		}
	}
	rs := g.checkOCI(t, 3)
	if put := rs[1]; put.Method != http.MethodPut || put.BodyLength != sdkUploadSize || !put.OK {
		t.Errorf("PutObject reached OCI as %s with %d bytes", put.Method, put.BodyLength)
	}
	if post := rs[2]; post.Method != http.MethodPost || post.BodyLength == 0 || post.Header.Get("x-content-sha256") == "" {
		t.Errorf("CreateBucket reached OCI as %s %d bytes, x-content-sha256 %q", post.Method, post.BodyLength, post.Header.Get("x-content-sha256"))
	}
	// The upload streamed: ext_proc never got its body (mode override NONE).
	streamed := false
	for _, l := range strings.Split(g.logs.String(), "\n") {
		streamed = streamed || strings.Contains(l, "msg=signed") && strings.Contains(l, "method=PUT") && strings.Contains(l, "streamed=true")
	}
	if !streamed {
		t.Errorf("PutObject not streamed:\n%s", grepLines(g.logs.String(), "time="))
	}
	if v, _ := metricValue(g.metrics(t), `ocisigner_intercept_certificates_total{event="minted"}`); v != 1 {
		t.Errorf("%v certificates minted, want 1 (one host)", v)
	}
}

const (
	childOCISDK   = "oci-sdk"
	sdkUploadSize = 3<<20 + 17
)

func init() { childRoles[childOCISDK] = ociSDKClient }

type sdkResult struct {
	Namespace string
	Protos    map[string]string
	Error     string
}

// ociSDKClient is the SDK as any program uses it: nothing but its config
// file and the environment.
func ociSDKClient(config string) any {
	res := sdkResult{Protos: map[string]string{}}
	if err := sdkCalls(config, &res); err != nil {
		res.Error = err.Error()
	}
	return res
}

// runChildEnv runs role in a child process with env added to a minimal
// environment (no proxy settings of this machine's).
func runChildEnv(t *testing.T, role, arg string, env []string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append([]string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), envChild + "=" + role, envChild + "_ARG=" + arg}, env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s: %v", role, err)
	}
	return out
}

// Debian's curl, over HTTP/1.1 and HTTP/2: --proxy and --cacert, nothing else.
func TestInterceptCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is missing: apt-get install curl")
	}
	g := newICGateway(t, nil, nil)
	for i, tc := range []struct {
		args    []string
		version string
		want    string
	}{
		{[]string{"--http1.1", "https://" + icOSHost + "/n/"}, "1.1", `"` + g.fx.oci.Namespace() + `"`},
		{[]string{"--http2", "https://" + icOSHost + "/n/"}, "2", `"` + g.fx.oci.Namespace() + `"`},
		{[]string{"--http2", "-H", "content-type: application/json", "--data", `{"displayName":"x"}`, "https://" + icIaasHost + "/20160918/vcns"}, "2", `"bodyLength":19`},
	} {
		args := append([]string{"-sS", "--max-time", "60", "--proxy", g.proxyURL(), "--cacert", g.bundle,
			"-H", "Authorization: " + icThrowaway, "-w", "\n%{http_code} %{http_version}"}, tc.args...)
		cmd := exec.CommandContext(t.Context(), "curl", args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", tc.args, err, out)
		}
		body, status, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if status != "200 "+tc.version || !strings.Contains(body, tc.want) {
			t.Errorf("curl %v: %q %q", tc.args, status, body)
		}
		g.checkOCI(t, i+1)
	}
}

// Debian's python3-requests: HTTPS_PROXY and REQUESTS_CA_BUNDLE. The test
// fails (not skips) where it is missing: .ci/run installs it.
func TestInterceptPythonRequests(t *testing.T) {
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import requests").CombinedOutput(); err != nil {
		t.Fatalf("Debian's python3-requests is missing (%v: %s): apt-get install -y python3-requests (.ci/run does)", err, out)
	}
	g := newICGateway(t, nil, nil)
	script := `
import json, requests
auth = {"Authorization": ` + fmt.Sprintf("%q", icThrowaway) + `}
out = []
r = requests.get("https://` + icOSHost + `/n/", headers=auth, timeout=60)
out.append([r.status_code, r.text])
r = requests.post("https://` + icIaasHost + `/20160918/vcns", json={"displayName": "x"}, headers=auth, timeout=60)
out.append([r.status_code, r.text])
print(json.dumps(out))
`
	cmd := exec.CommandContext(t.Context(), python, "-c", script)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HTTPS_PROXY=" + g.proxyURL(), "REQUESTS_CA_BUNDLE=" + g.bundle}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var res [][2]any
	if err := json.Unmarshal(out, &res); err != nil || len(res) != 2 {
		t.Fatalf("python printed %s", out)
	}
	if res[0][0] != 200.0 || res[0][1] != `"`+g.fx.oci.Namespace()+`"` || res[1][0] != 200.0 || !strings.Contains(res[1][1].(string), `"method":"POST"`) {
		t.Errorf("python got %v", res)
	}
	g.checkOCI(t, 2)
}

// A Go client that offers no ALPN at all: Envoy's connection manager then
// speaks HTTP/1.1 (no HTTP/2 preface).
func TestInterceptGoWithoutALPN(t *testing.T) {
	g := newICGateway(t, nil, nil)
	proxy, _ := url.Parse(g.proxyURL())
	tr := &http.Transport{
		Proxy:           http.ProxyURL(proxy),
		TLSClientConfig: &tls.Config{RootCAs: g.pool},
		// A non-nil empty map turns HTTP/2 off, and with it the transport's
		// own ALPN: NextProtos stays empty.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "https://"+icOSHost+"/n/", nil)
	req.Header.Set("Authorization", icThrowaway)
	resp, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/1.1" || resp.TLS.NegotiatedProtocol != "" || string(b) != `"`+g.fx.oci.Namespace()+`"` {
		t.Fatalf("got %s %d ALPN %q: %s", resp.Proto, resp.StatusCode, resp.TLS.NegotiatedProtocol, b)
	}
	g.checkOCI(t, 1)
}

// tunnel opens a CONNECT to authority through the stand-in.
func (g *icGateway) tunnel(t *testing.T, authority string) (net.Conn, int) {
	t.Helper()
	c, err := net.Dial("tcp", g.envoy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(c, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n", authority, authority)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	return c, resp.StatusCode
}

// handshake runs a TLS handshake in a tunnel to connectTo, with sni.
func (g *icGateway) handshake(t *testing.T, connectTo string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	c, status := g.tunnel(t, connectTo)
	if status != 200 {
		t.Fatalf("CONNECT %s: %d", connectTo, status)
	}
	tc := tls.Client(c, cfg)
	return tc, tc.Handshake()
}

func isAlert(err error, name string) bool {
	return err != nil && strings.Contains(err.Error(), "remote error: tls: "+name)
}

func TestInterceptRefusals(t *testing.T) {
	g := newICGateway(t, nil, nil)
	m := func(series string) float64 { v, _ := metricValue(g.metrics(t), series); return v }

	t.Run("CONNECT to another host: 403, no SDS stream", func(t *testing.T) {
		_, status := g.tunnel(t, "example.com")
		if status != http.StatusForbidden {
			t.Fatalf("CONNECT example.com: %d", status)
		}
		if st := g.envoy.Stats(); st.CertRequested != 0 || st.SDSStreams != 0 {
			t.Errorf("Envoy asked SDS: %+v", st)
		}
		if v := m("ocisigner_intercept_sds_streams"); v != 0 {
			t.Errorf("%v SDS streams", v)
		}
	})
	// A handshake_failure alert is the SDS's removal: a timeout would close
	// the connection without one, after the 5 s connect timeout.
	for _, tc := range []struct{ name, sni string }{
		{"SNI of a host that is not OCI's", "example.com"},
		{"SNI of a realm name that is no API host", "www.oraclecloud.com"},
		{"no SNI", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := m(`ocisigner_intercept_refusals_total{reason="policy"}`)
			cfg := &tls.Config{RootCAs: g.pool, ServerName: tc.sni, NextProtos: []string{"http/1.1"}}
			if tc.sni == "" {
				cfg.InsecureSkipVerify = true // Go sends no SNI without a ServerName
			}
			_, err := g.handshake(t, icOSHost, cfg)
			if !isAlert(err, "handshake failure") {
				t.Fatalf("handshake: %v, want a handshake_failure alert", err)
			}
			if after := m(`ocisigner_intercept_refusals_total{reason="policy"}`); after != before+1 {
				t.Errorf("policy refusals %v → %v: the SDS did not refuse the name", before, after)
			}
			if st := g.envoy.Stats(); st.TransportSocketConnectTimeouts != 0 {
				t.Errorf("a connect timeout ended a handshake: %+v", st)
			}
		})
	}
	t.Run("SNI differs from :authority: 421", func(t *testing.T) {
		tc, err := g.handshake(t, icOSHost, &tls.Config{RootCAs: g.pool, ServerName: icOSHost, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(tc, "GET /20160918/vcns HTTP/1.1\r\nHost: %s\r\n\r\n", icIaasHost)
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusMisdirectedRequest || resp.Header.Get(extproc.HeaderRefused) != extproc.CodeMisdirected {
			t.Errorf("got %d %s", resp.StatusCode, b)
		}
	})
	t.Run("credential minting: 403 naming the flag", func(t *testing.T) {
		proxy, _ := url.Parse(g.proxyURL())
		c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{Proxy: http.ProxyURL(proxy), TLSClientConfig: &tls.Config{RootCAs: g.pool}, ForceAttemptHTTP2: true}}
		resp, err := c.Post("https://"+icIdentity+"/20160918/users/ocid1.user.oc1..me/authTokens", "application/json", strings.NewReader(`{"description":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "--allow-credential-minting") || !strings.Contains(string(b), "identity.CreateAuthToken") {
			t.Errorf("got %d %s", resp.StatusCode, b)
		}
		if v := m(`ocisigner_requests_total{method="POST",outcome="CredentialMintingNotAllowed",profile="(unknown)"}`); v != 1 {
			t.Errorf("minting refusals counted %v times:\n%s", v, grepLines(g.metrics(t), "ocisigner_requests_total"))
		}
	})
	if n := len(g.fx.oci.Requests()); n != 0 {
		t.Errorf("OCI received %d refused requests", n)
	}
	// Names a client chose are never metric labels.
	if text := g.metrics(t); strings.Contains(text, "example.com") || strings.Contains(text, "www.oraclecloud.com") {
		t.Errorf("a client's SNI became a label:\n%s", grepLines(text, "ocisigner_intercept"))
	}
}

// With the signer's SDS stopped, a name Envoy has a certificate for still
// works (ext_proc signs as before); a new name fails when the internal
// listener's connect timeout ends its handshake: no hang. The timeout is
// shortened from envoy.yaml's 5 s to keep the test quick.
func TestInterceptSDSDown(t *testing.T) {
	// The timeout bounds the cached name's whole handshake too: a second
	// leaves it room on two busy cores under the race detector.
	g := newICGateway(t, nil, func(c *extproctest.Config) { c.Intercept.TransportSocketConnectTimeout = time.Second })
	cfg := func(sni string) *tls.Config {
		return &tls.Config{RootCAs: g.pool, ServerName: sni, NextProtos: []string{"http/1.1"}}
	}
	if _, err := g.handshake(t, icOSHost, cfg(icOSHost)); err != nil {
		t.Fatal(err)
	}
	g.svc.icpt.sds.Close()
	tc, err := g.handshake(t, icOSHost, cfg(icOSHost))
	if err != nil {
		t.Fatalf("a name fetched before, SDS down: %v", err)
	}
	fmt.Fprintf(tc, "GET /n/ HTTP/1.1\r\nHost: %s\r\n\r\n", icOSHost)
	if resp, err := http.ReadResponse(bufio.NewReader(tc), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("signed request over the cached certificate: %v %v", resp, err)
	}
	_, err = g.handshake(t, icIaasHost, cfg(icIaasHost))
	if err == nil || isAlert(err, "") {
		t.Fatalf("a new name with SDS down: %v, want the connection closed at the connect timeout", err)
	}
	// The stand-in counts after it closed the connection the client saw closing.
	waitUntil(t, "the connect timeout", func() bool { return g.envoy.Stats().TransportSocketConnectTimeouts == 1 })
	g.checkOCI(t, 1)
}

// A seconds-long leaf TTL on a clock moved by hand: at every step the
// certificate served is valid at that time, never expired; it is replaced
// two thirds into its life.
func TestInterceptNoExpiredLeafServed(t *testing.T) {
	clk := newFakeClock()
	const ttl = 3 * time.Second
	g := newICGateway(t, func(o *serveOptions) { o.icpt.leafTTL, o.icpt.clock = ttl, clk }, nil)
	serials := map[string]bool{}
	for step := 0; step < 12; step++ {
		now := clk.Now()
		// The rotation is pushed to Envoy asynchronously; the clock does not
		// move meanwhile, so waiting for a fresh leaf cannot let one expire.
		var leaf *x509.Certificate
		waitUntil(t, "a certificate outside its last third", func() bool {
			tc, err := g.handshake(t, icOSHost, &tls.Config{RootCAs: g.pool, ServerName: icOSHost, NextProtos: []string{"http/1.1"}, Time: func() time.Time { return now }})
			if err != nil {
				t.Fatalf("step %d: handshake at %s: %v (an expired certificate?)", step, now.Format(time.RFC3339Nano), err)
			}
			leaf = tc.ConnectionState().PeerCertificates[0]
			tc.Close()
			return leaf.NotAfter.Sub(now) > ttl/3
		})
		serials[leaf.SerialNumber.String()] = true
		clk.Advance(ttl / 6)
	}
	if len(serials) < 3 {
		t.Errorf("%d certificates over 12 steps of %v with a %v TTL: no rotation", len(serials), ttl/6, ttl)
	}
}

// The CA key is 0600 and the certificate `ocisigner ca` prints is the one
// the admin port serves.
func TestInterceptCAFiles(t *testing.T) {
	g := newICGateway(t, nil, nil)
	fi, err := os.Stat(filepath.Join(g.stateDir, intercept.KeyFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key: %v %v", fi, err)
	}
	code, body := get(t, "http://"+g.svc.adminL.Addr().String()+"/ca.pem")
	if code != 200 || body != string(g.caPEM) {
		t.Errorf("/ca.pem: %d, same as `ocisigner ca`: %v", code, body == string(g.caPEM))
	}
	bundle, err := os.ReadFile(g.bundle)
	if err != nil || !strings.HasSuffix(string(bundle), string(g.caPEM)) || strings.Count(string(bundle), "BEGIN CERTIFICATE") < 2 {
		t.Errorf("bundle: %d certificates, ends with the CA: %v", strings.Count(string(bundle), "BEGIN CERTIFICATE"), strings.HasSuffix(string(bundle), string(g.caPEM)))
	}
	if strings.Contains(string(bundle), "PRIVATE KEY") {
		t.Error("the bundle holds a key")
	}
}

// Without --intercept the shipped envoy.yaml still terminates CONNECT for
// OCI hosts: the signer refuses every name, so the handshake fails with an
// alert at once (not at the connect timeout), and its log says why.
func TestInterceptionOffRefusesCertificates(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API"}
	logs := &signertest.LogBuffer{}
	svc := startService(t, env, serveOptions{profileHeader: "x-oci-profile"}, logs)
	cfg := shippedEnvoyConfig(t, svc.lis.Addr().String(), fx.oci.Addr)
	e, err := extproctest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	g := &icGateway{envoy: e}
	_, err = g.handshake(t, icOSHost, &tls.Config{ServerName: icOSHost, InsecureSkipVerify: true})
	if !isAlert(err, "handshake failure") {
		t.Fatalf("handshake: %v, want a handshake_failure alert", err)
	}
	if st := e.Stats(); st.TransportSocketConnectTimeouts != 0 {
		t.Errorf("the handshake waited for the connect timeout: %+v", st)
	}
	waitUntil(t, "the warning", func() bool { return strings.Contains(logs.String(), "HTTPS interception is off") })
	if code, _ := get(t, "http://"+svc.adminL.Addr().String()+"/ca.pem"); code != http.StatusNotFound {
		t.Errorf("/ca.pem with interception off: %d", code)
	}
}
