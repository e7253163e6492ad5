package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ocisigner/ocisigner/extproc"
	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/signer"
	"github.com/ocisigner/ocisigner/signer/credentials/credentialstest"
	"github.com/ocisigner/ocisigner/signer/signertest"
)

// startService runs a service on loopback ports chosen by the system.
func startService(t *testing.T, env map[string]string, o serveOptions, logs io.Writer) *service {
	t.Helper()
	if o.listen == "" {
		o.listen = "127.0.0.1:0"
	}
	if o.admin == "" {
		o.admin = "127.0.0.1:0"
	}
	if o.healthInterval == 0 {
		o.healthInterval = time.Hour // tests call checkHealth themselves
	}
	if o.drainTimeout == 0 {
		o.drainTimeout = 10 * time.Second
	}
	if logs == nil {
		logs = io.Discard
	}
	svc, err := newService(o, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), mapEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	svc.start()
	t.Cleanup(func() { svc.shutdown(5 * time.Second) })
	return svc
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func healthStatus(t *testing.T, addr string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Status
}

func TestAdminEndpointsAndReadinessFlipOnExpiry(t *testing.T) {
	fx := newFixture(t)
	clk := credentialstest.NewClock(time.Now())
	svc := startService(t, map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "SESSION"},
		serveOptions{clock: clk, maxBodyBytes: 1 << 20, profileHeader: "x-oci-profile"}, nil)
	admin := "http://" + svc.adminL.Addr().String()

	if code, body := get(t, admin+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	code, body := get(t, admin+"/readyz")
	var rd readiness
	if err := json.Unmarshal([]byte(body), &rd); err != nil || code != 200 || !rd.Ready || rd.Principal != "security_token" || rd.Expires == nil {
		t.Fatalf("/readyz before expiry: %d %s", code, body)
	}
	if st := healthStatus(t, svc.lis.Addr().String()); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health before expiry: %v", st)
	}
	_, metricsText := get(t, admin+"/metrics")
	if v, ok := metricValue(metricsText, `ocisigner_token_expiry_timestamp_seconds{profile="SESSION"}`); !ok || int64(v) != rd.Expires.Unix() {
		t.Fatalf("token expiry gauge missing:\n%s", grepLines(metricsText, "ocisigner_"))
	}

	clk.Advance(2 * time.Hour)
	code, body = get(t, admin+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "expired at") || !strings.Contains(body, "oci session refresh --profile SESSION") {
		t.Fatalf("/readyz after expiry: %d %s", code, body)
	}
	svc.checkHealth()
	if st := healthStatus(t, svc.lis.Addr().String()); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("gRPC health after expiry: %v", st)
	}
	if code, _ := get(t, admin+"/healthz"); code != 200 {
		t.Fatal("liveness must not follow the credentials")
	}
}

func TestReadinessFollowsPeriodicProbe(t *testing.T) {
	fx := newFixture(t)
	for _, tc := range []struct {
		profile string
		ready   bool
	}{{"API", true}, {"UNREGISTERED", false}} {
		t.Run(tc.profile, func(t *testing.T) {
			svc := startService(t, map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": tc.profile},
				serveOptions{probeInterval: time.Hour, probeEndpoint: urlFlag{value: fx.oci.URL}}, nil)
			admin := "http://" + svc.adminL.Addr().String()
			var (
				code int
				body string
			)
			// The first probe runs at start; wait for it to be recorded.
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if code, body = get(t, admin+"/readyz"); !strings.Contains(body, "waiting for the first namespace probe") {
					break
				}
			}
			if (code == 200) != tc.ready || !strings.Contains(body, `"endpoint": "`+fx.oci.URL) {
				t.Fatalf("/readyz: %d %s", code, body)
			}
			_, m := get(t, admin+"/metrics")
			want := "ocisigner_probe_success 0"
			if tc.ready {
				want = "ocisigner_probe_success 1"
			}
			if !strings.Contains(m, want) {
				t.Fatalf("metrics lack %q:\n%s", want, grepLines(m, "ocisigner_probe"))
			}
		})
	}
}

type startupCase struct {
	name string
	env  map[string]string
	args []string
	exit int
	msg  string
}

// opensslBuilt reports whether this build has the OpenSSL backend, leaving
// the process on its default backend.
func opensslBuilt(t *testing.T) bool {
	t.Helper()
	ok := signer.SetBackend(signer.BackendOpenSSL) == nil
	if err := signer.SetBackend(signer.BackendAuto); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestServeStartupErrors(t *testing.T) {
	t.Cleanup(func() { _ = signer.SetBackend(signer.BackendAuto) })
	fx := newFixture(t)
	cfgEnv := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API", "OCISIGNER_ADMIN": "127.0.0.1:0", "OCISIGNER_LISTEN": "127.0.0.1:0"}
	cases := []startupCase{
		{"config file missing", map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.Path("nope")}, nil, exitConfig, "does not exist"},
		{"bad log level", map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath()}, []string{"--log-level", "loud"}, exitUsage, "--log-level"},
		{"bad allow-host", map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCISIGNER_ALLOW_HOST": "a*b"}, nil, exitUsage, "allow-host"},
		{"unusable listen address", map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API", "OCISIGNER_ADMIN": "127.0.0.1:0"}, []string{"--listen", "256.0.0.1:1"}, exitFailure, "listen 256.0.0.1:1"},
		{"unknown RSA backend", map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCISIGNER_RSA_BACKEND": "boringssl"}, nil, exitUsage, `unknown RSA backend "boringssl"`},
		// A default profile the config lacks: exit 3, as the table says,
		// pointing at the one meant.
		{"no such default profile", map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath()}, []string{"--profile", "SESSIO"}, exitConfig, "did you mean SESSION?"},
		{"a compartment that is not an OCID", cfgEnv, []string{"--genai-compartment", "\r\nocid1.compartment.oc1..aaaa"}, exitUsage, "--genai-compartment: invalid OCID"},
		{"a region that is not a region", cfgEnv, []string{"--region", "x@127.0.0.1:8443/"}, exitUsage, "invalid region"},
	}
	// --profiles that names no profile must not mean every profile.
	for _, v := range []string{",", " ", " , ", ",,"} {
		cases = append(cases, startupCase{"--profiles " + strconv.Quote(v), cfgEnv, []string{"--profiles", v}, exitUsage, "names no profile"})
		env := maps.Clone(cfgEnv)
		env["OCISIGNER_PROFILES"] = v
		cases = append(cases, startupCase{"OCISIGNER_PROFILES=" + strconv.Quote(v), env, nil, exitUsage, "names no profile"})
	}
	if !opensslBuilt(t) {
		cases = append(cases, startupCase{"OpenSSL forced in a build without cgo", map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath()}, []string{"--rsa-backend", "openssl"}, exitUsage, "CGO_ENABLED=0"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // any server that did start stops at once
			var out, errb strings.Builder
			code := run(ctx, append([]string{"serve"}, tc.args...), &out, &errb, mapEnv(tc.env))
			if code != tc.exit || !strings.Contains(errb.String(), tc.msg) {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.exit, errb.String())
			}
		})
	}
}

// The RSA backend chosen by flag or environment is the one the service
// signs with, and the start-up line, the version and ocisigner_build_info
// name it.
func TestServeRSABackend(t *testing.T) {
	t.Cleanup(func() { _ = signer.SetBackend(signer.BackendAuto) })
	fx := newFixture(t)
	backends := []string{signer.BackendGo}
	if opensslBuilt(t) {
		backends = append(backends, signer.BackendOpenSSL)
	}
	for _, be := range backends {
		for _, from := range []string{"flag", "environment"} {
			t.Run(be+"/"+from, func(t *testing.T) {
				env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API", "OCISIGNER_ADMIN": "127.0.0.1:0", "OCISIGNER_LISTEN": "127.0.0.1:0"}
				// The other backend first, so the run must switch.
				other := signer.BackendGo
				if be == signer.BackendGo {
					other = signer.BackendAuto
				}
				if err := signer.SetBackend(other); err != nil {
					t.Fatal(err)
				}
				args := []string{"serve"}
				if from == "flag" {
					args = append(args, "--rsa-backend", be)
				} else {
					env["OCISIGNER_RSA_BACKEND"] = be
				}
				ctx, cancel := context.WithCancel(context.Background())
				cancel() // the server stops as soon as it has started
				var out, errb strings.Builder
				if code := run(ctx, args, &out, &errb, mapEnv(env)); code != exitOK {
					t.Fatalf("exit %d; stderr:\n%s", code, errb.String())
				}
				if !strings.HasPrefix(signer.Backend(), be) {
					t.Fatalf("the process signs with %q, want %s", signer.Backend(), be)
				}
				// slog quotes a value with a space ("openssl 3.0.19"), not "go".
				if want := regexp.MustCompile(`msg="ocisigner serving" .*rsa="?` + regexp.QuoteMeta(signer.Backend()) + `"?( |$)`); !want.MatchString(errb.String()) {
					t.Fatalf("start-up log lacks rsa=%s:\n%s", signer.Backend(), errb.String())
				}
				out.Reset()
				if run(context.Background(), []string{"version"}, &out, &errb, mapEnv(nil)) != exitOK ||
					!strings.Contains(out.String(), "RSA: "+signer.Backend()) {
					t.Fatalf("version: %q", out.String())
				}
				_, m := get(t, "http://"+startService(t, env, serveOptions{}, nil).adminL.Addr().String()+"/metrics")
				if !strings.Contains(m, `rsa_backend="`+signer.Backend()+`"`) {
					t.Fatalf("ocisigner_build_info lacks the backend:\n%s", grepLines(m, "ocisigner_build_info"))
				}
			})
		}
	}
}

// metricValue reads one sample of the Prometheus text format.
func metricValue(text, series string) (float64, bool) {
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			return f, err == nil
		}
	}
	return 0, false
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// probe --via sends the probe unsigned through a running gateway: here the
// Envoy stand-in in front of a real `serve`, forwarding to the OCI stand-in.
func TestProbeViaGateway(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API"}
	svc := startService(t, env, serveOptions{profileHeader: "x-oci-profile"}, nil)
	envoy, err := extproctest.New(extproctest.Config{
		Processor: svc.lis.Addr().String(), Upstream: fx.oci.Addr,
		AllowModeOverride: true, MessageTimeout: 5 * time.Second, StripAnyHostPort: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer envoy.Close()
	for _, tc := range []struct {
		profile string
		exit    int
		want    string
	}{
		{"SESSION", exitOK, "namespace:      axaxnpcrorw5"},
		{"UNREGISTERED", exitCredentials, "http status:    401"},
		{"NOPE", exitConfig, "error code:     UnknownProfile"},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			code, out, errOut := runCmd(t, env, "probe", "--via", envoy.URL(), "--profile", tc.profile, "--region", "phx")
			if code != tc.exit || !strings.Contains(out, tc.want) || !strings.Contains(out, "via:") {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.exit, out, errOut)
			}
		})
	}
	post, _ := http.NewRequest("POST", envoy.URL()+"/20160918/x", strings.NewReader(`{"a":1}`))
	post.Host = "iaas.us-phoenix-1.oraclecloud.com"
	if resp, err := http.DefaultClient.Do(post); err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST through the gateway: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// The service counted what it did, by profile, method and outcome; a
	// profile the config lacks is not a label of its own.
	_, m := get(t, "http://"+svc.adminL.Addr().String()+"/metrics")
	for series, want := range map[string]float64{
		`ocisigner_requests_total{method="GET",outcome="signed",profile="SESSION"}`:           1,
		`ocisigner_requests_total{method="GET",outcome="signed",profile="UNREGISTERED"}`:      1,
		`ocisigner_requests_total{method="GET",outcome="UnknownProfile",profile="(unknown)"}`: 1,
		`ocisigner_requests_total{method="POST",outcome="signed",profile="API"}`:              1,
		`ocisigner_signing_duration_seconds_count`:                                            3,
		`ocisigner_body_bytes_hashed_total`:                                                   7,
	} {
		if got, ok := metricValue(m, series); !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	// The probe left this machine unsigned; what reached OCI was signed by the service.
	for _, r := range fx.oci.Requests() {
		if r.RequestURI == "/n/" && (r.KeyID == "" || r.Host != "objectstorage.us-phoenix-1.oraclecloud.com") {
			t.Errorf("OCI saw %+v", r)
		}
	}
}

// On SIGTERM (run cancels and calls shutdown) a stream Envoy has open keeps
// being served: health turns NOT_SERVING, the drain waits for the stream,
// and the request on it is still signed, never cut short.
func TestShutdownDrainsOpenStreams(t *testing.T) {
	fx := newFixture(t)
	svc := startService(t, map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API"}, serveOptions{}, nil)
	conn, err := grpc.NewClient(svc.lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := extprocv3.NewExternalProcessorClient(conn).Process(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A POST whose body Envoy is still buffering: the stream stays open
	// until the body arrives and is signed.
	hv := func(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, RawValue: []byte(v)} }
	if err := st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			hv(":method", "POST"), hv(":path", "/20160918/instances"), hv(":authority", "iaas.us-phoenix-1.oraclecloud.com"), hv(":scheme", "http"),
			hv("content-type", "application/json"),
		}},
	}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := st.Recv(); err != nil || resp.GetRequestHeaders() == nil {
		t.Fatalf("headers not answered before the drain: %v %v", resp, err)
	}

	drained := make(chan struct{})
	go func() { svc.shutdown(10 * time.Second); close(drained) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		resp, err := svc.health.Check(t.Context(), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("health still SERVING while draining: Envoy would keep sending new streams")
		}
	}
	select {
	case <-drained:
		t.Fatal("the drain finished while Envoy still had a stream open")
	default:
	}
	if err := st.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{
		Body: []byte(`{"a":1}`), EndOfStream: true,
	}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := st.Recv(); err != nil || len(resp.GetRequestBody().GetResponse().GetHeaderMutation().GetSetHeaders()) == 0 {
		t.Fatalf("not signed during the drain: %v %v", resp, err)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("stream ended with %v, want OK once the request was signed", err)
	}
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("the drain did not finish once the last stream closed")
	}
}

// A failing refresh is counted, the count goes back to 0 once one works,
// and the last good token stays in use meanwhile.
func TestRefreshFailuresAreMetrics(t *testing.T) {
	clk := credentialstest.NewClock(time.Now())
	rec := credentialstest.NewRefreshes()
	is := signertest.NewIssuer(t)
	auth := signertest.NewAuthService(t, is)
	auth.SetClock(clk.Now)
	auth.FailNext(1, 503)
	f := signertest.NewFolder(t)
	key := signertest.Key(t, 2)
	f.SessionProfile("S", key, is.Mint(t, &key.PublicKey, signertest.TokenOptions{IssuedAt: clk.Now().Add(-57 * time.Minute)}))
	svc := startService(t, map[string]string{"OCI_CLI_CONFIG_FILE": f.ConfigPath(), "OCI_CLI_PROFILE": "S"},
		serveOptions{clock: clk, observe: rec.Observe, creds: credentialFlags{authURL: urlFlag{value: auth.URL}, sessionRefresh: true}}, nil)
	admin := "http://" + svc.adminL.Addr().String()
	ev := rec.WaitRefresh(t, "S", 1)
	if ev.Err == nil {
		t.Fatal("the refresh did not fail as the auth service was told to")
	}
	_, text := get(t, admin+"/metrics")
	for _, want := range []string{`ocisigner_credential_fetch_failures{source="S"} 1`, `ocisigner_credential_fetches_total{outcome="failed",source="S"} 1`} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(text, "ocisigner_credential"))
		}
	}
	clk.Advance(ev.RetryIn)
	if ev := rec.WaitRefresh(t, "S", 2); ev.Err != nil {
		t.Fatal(ev.Err)
	}
	_, text = get(t, admin+"/metrics")
	if !strings.Contains(text, `ocisigner_credential_fetch_failures{source="S"} 0`) {
		t.Errorf("failures not back to 0:\n%s", grepLines(text, "ocisigner_credential"))
	}
}

// A client on the LAN must not get signatures from a default start: both
// ports listen on loopback unless the operator names an address (the
// shipped deployments do; deploy/ checks each).
func TestServeListensOnLoopbackByDefault(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var o serveOptions
	o.register(fs)
	if _, err := parseFlags(fs, nil, mapEnv(nil)); err != nil {
		t.Fatal(err)
	}
	for name, addr := range map[string]string{"--listen": o.listen, "--admin": o.admin} {
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			t.Errorf("%s defaults to %q: not a loopback address", name, addr)
		}
	}
}

// An empty OCISIGNER_PROFILE_HEADER turns per-request selection off, as
// --profile-header "" does; the start-up line shows the profiles served;
// a profile that cannot sign gets a line with its fix at every start; and
// no probe metric is exported while probing is off.
func TestServeSettingsAsTheOperatorMeantThem(t *testing.T) {
	fx := newFixture(t)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"environment", map[string]string{"OCISIGNER_PROFILE_HEADER": "", "OCISIGNER_PROFILES": "API,SESSION"}, nil},
		{"flags", nil, []string{"--profile-header", "", "--profiles", "API, SESSION"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API",
				"OCISIGNER_ADMIN": "127.0.0.1:0", "OCISIGNER_LISTEN": "127.0.0.1:0"}
			maps.Copy(env, tc.env)
			o, exit, ok := parseServe(tc.args, mapEnv(env), io.Discard, io.Discard)
			if !ok {
				t.Fatalf("exit %d", exit)
			}
			var logs signertest.LogBuffer
			svc := startService(t, env, o, &logs)
			resp := previewRefusal(t, svc, "SESSION")
			if resp == nil || resp.Code != extproc.CodeProfileNotServed || !strings.Contains(resp.Message, "--profile-header") {
				t.Fatalf("a request naming its profile with selection off: %+v", resp)
			}
			text := logs.String()
			if !strings.Contains(text, `serves=API,SESSION`) {
				t.Errorf("the start-up line does not show the profiles served:\n%s", text)
			}
			if !strings.Contains(text, `msg="profile cannot sign" profile=EXPIRED`) || !strings.Contains(text, "oci session refresh --profile EXPIRED") {
				t.Errorf("no line with EXPIRED's fix:\n%s", text)
			}
			_, metricsText := get(t, "http://"+svc.adminL.Addr().String()+"/metrics")
			if strings.Contains(metricsText, "ocisigner_probe_") {
				t.Errorf("probe metrics exported while probing is off:\n%s", grepLines(metricsText, "ocisigner_probe"))
			}
		})
	}
}

// previewRefusal runs a request naming profile through the service's own
// code and returns its refusal, if any.
func previewRefusal(t *testing.T, svc *service, profile string) *extproc.Refusal {
	t.Helper()
	p := svc.ext.Preview(context.Background(), extproc.PreviewRequest{Method: "GET", Authority: realmHost, Path: "/n/",
		Header: []signer.Field{{Name: "x-oci-profile", Value: profile}}})
	return p.Refused
}

// Every flag that takes a URL is checked at start, by one parser: a typo
// exits 2 naming the flag, and a URL that a token or a signature goes to
// takes https but on loopback. A one-word --allow-host that an alias would
// hide is refused too.
func TestBadURLFlagsExitAtStart(t *testing.T) {
	fx := newFixture(t)
	env := map[string]string{"OCI_CLI_CONFIG_FILE": fx.folder.ConfigPath(), "OCI_CLI_PROFILE": "API", "OCISIGNER_ADMIN": "127.0.0.1:0", "OCISIGNER_LISTEN": "127.0.0.1:0"}
	for _, tc := range []struct {
		cmd, flag, value string
	}{
		{"serve", "--auth-url", "auth.us-ashburn-1.oraclecloud.com"},
		{"serve", "--auth-url", "http://auth.us-ashburn-1.oraclecloud.com"},
		{"serve", "--auth-url", "https://user:pw@auth.example/"},
		{"serve", "--metadata-url", "169.254.169.254/opc/v2"},
		{"serve", "--metadata-url", "http://169.254.169.254/opc/v2?x=1"},
		{"serve", "--probe-endpoint", "https://objectstorage.us-ashburn-1.oraclecloud.com#x"},
		{"serve", "--probe-endpoint", "http://objectstorage.us-ashburn-1.oraclecloud.com"},
		{"serve", "--token-exchange-url", "ftp://idcs-x.identity.oraclecloud.com"},
		{"probe", "--via", "localhost:10000"},
		{"probe", "--via", "http://bad host/"},
		{"probe", "--endpoint", "http://objectstorage.us-ashburn-1.oraclecloud.com"},
		{"serve", "--allow-host", "core"},
	} {
		t.Run(tc.cmd+" "+tc.flag+" "+tc.value, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var out, errb strings.Builder
			code := run(ctx, []string{tc.cmd, tc.flag, tc.value}, &out, &errb, mapEnv(env))
			if code != exitUsage || !strings.Contains(errb.String(), strings.TrimPrefix(tc.flag, "-")) {
				t.Fatalf("exit %d, want 2 naming %s:\n%s%s", code, tc.flag, out.String(), errb.String())
			}
		})
	}
	// Loopback may be plain http (a test or a local stand-in).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if code := run(ctx, []string{"serve", "--auth-url", "http://127.0.0.1:8080", "--probe-endpoint", "http://localhost:9000/"}, io.Discard, io.Discard, mapEnv(env)); code != exitOK {
		t.Fatalf("loopback http: exit %d", code)
	}
}

// A profile whose key the RSA backend leaves to crypto/rsa says so, and
// why, on the start-up line and in a warning; an ordinary key says nothing.
func TestStartupLineSaysWhyAKeyFallsBack(t *testing.T) {
	var logs signertest.LogBuffer
	s := &service{log: slog.New(slog.NewTextHandler(&logs, nil))}
	if note := s.rsaNote("API", &signer.Credentials{Key: signertest.Key(t, 1)}); note != "" {
		t.Fatalf("an ordinary key: %q", note)
	}
	note := s.rsaNote("NOKEY", &signer.Credentials{})
	if !strings.Contains(note, "rsa: crypto/rsa") || !strings.Contains(logs.String(), "profile=NOKEY") {
		t.Fatalf("note %q, log:\n%s", note, logs.String())
	}
}
