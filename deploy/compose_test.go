package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

const (
	gatewayService = "gateway"
	signerService  = "signer"

	signerBinary  = "/usr/local/bin/ocisigner"
	ociMountPoint = "/oci"
	envoyConfigIn = "/etc/envoy/envoy.yaml"
	adminPort     = 9465

	// minEnvoy is the oldest Envoy that applies a route's
	// request_body_buffer_limit when the route is matched, before ext_proc
	// buffers the body (1.36 applied it only in the router: every signed body
	// over 1 MiB got 413).
	minEnvoyMinor = 37
)

// A composeScenario is one environment `docker compose` may run in. HOME is
// always a fresh temporary folder, so `~` resolves deterministically.
type composeScenario struct {
	name       string
	env        map[string]string
	wantOCIDir func(home string) string
	wantProf   string
	wantUser   string
	wantHostIP string
}

var composeScenarios = []composeScenario{
	{
		name:       "defaults",
		env:        map[string]string{},
		wantOCIDir: func(home string) string { return filepath.Join(home, ".oci") },
		wantProf:   "DEFAULT",
		wantUser:   "1000:1000",
		wantHostIP: "127.0.0.1",
	},
	{
		name: "overrides",
		env: map[string]string{
			"OCI_CONFIG_DIR":  "/srv/oci-conf",
			"OCI_CLI_PROFILE": "PROD",
			"OCISIGNER_UID":   "1234",
			"OCISIGNER_GID":   "2345",
			"GATEWAY_HOST_IP": "0.0.0.0",
		},
		wantOCIDir: func(string) string { return "/srv/oci-conf" },
		wantProf:   "PROD",
		wantUser:   "1234:2345",
		wantHostIP: "0.0.0.0",
	},
	{
		name:       "config dir under home",
		env:        map[string]string{"OCI_CONFIG_DIR": "~/work/oci", "OCI_CLI_PROFILE": "TEST123"},
		wantOCIDir: func(home string) string { return filepath.Join(home, "work", "oci") },
		wantProf:   "TEST123",
		wantUser:   "1000:1000",
		wantHostIP: "127.0.0.1",
	},
}

// composeCase is the project as loaded in one scenario.
type composeCase struct {
	p    *types.Project
	sc   composeScenario
	home string
	root string
}

// loadCompose loads the Compose file the way `docker compose` does (compose-go:
// schema validation, interpolation, normalisation, path resolution) with only
// the given environment: nothing from the machine running the test leaks in.
// `~` is resolved from the process's HOME, which the caller sets.
func loadCompose(root, home, content string, env map[string]string) (*types.Project, error) {
	e := types.Mapping{"HOME": home}
	for k, v := range env {
		e[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml"), Content: []byte(content)}},
		Environment: e,
	}, func(o *loader.Options) { o.ResolvePaths = true })
}

// netnsOwner is the service whose network namespace Envoy runs in.
func netnsOwner(p *types.Project) (types.ServiceConfig, error) {
	g, err := service(p, gatewayService)
	if err != nil {
		return g, err
	}
	if owner, ok := strings.CutPrefix(g.NetworkMode, "service:"); ok {
		return service(p, owner)
	}
	return g, nil
}

func service(p *types.Project, name string) (types.ServiceConfig, error) {
	s, ok := p.Services[name]
	if !ok {
		return s, fmt.Errorf("no service %q", name)
	}
	return s, nil
}

func volumeAt(s types.ServiceConfig, target string) (types.ServiceVolumeConfig, bool) {
	for _, v := range s.Volumes {
		if v.Target == target {
			return v, true
		}
	}
	return types.ServiceVolumeConfig{}, false
}

// checkBindRO asserts a read-only bind mount that does not create a missing
// host path (the folder or file must exist).
func checkBindRO(p *problems, v types.ServiceVolumeConfig, wantSource string) {
	if v.Type != types.VolumeTypeBind {
		p.addf("%s: type %q, want bind", v.Target, v.Type)
	}
	if v.Source != wantSource {
		p.addf("%s: source %q, want %q", v.Target, v.Source, wantSource)
	}
	if !v.ReadOnly {
		p.addf("%s must be read-only", v.Target)
	}
	if v.Bind == nil || bool(v.Bind.CreateHostPath) {
		p.addf("%s: bind.create_host_path must be false (a missing source must fail, not be created)", v.Target)
	}
}

func envValue(s types.ServiceConfig, key string) (string, bool) {
	v, ok := s.Environment[key]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

var envoyImage = regexp.MustCompile(`^envoyproxy/envoy:v(\d+)\.(\d+)\.(\d+)(@sha256:[0-9a-f]{64})?$`)

var composeChecks = []namedCheck[composeCase]{
	{"gateway waits for a healthy signer", func(c composeCase) error {
		var p problems
		g, err := service(c.p, gatewayService)
		if err != nil {
			return err
		}
		dep, ok := g.DependsOn[signerService]
		if !ok {
			return errors.New("gateway does not depend on signer")
		}
		if dep.Condition != types.ServiceConditionHealthy {
			p.addf("depends_on.signer.condition = %q, want %q", dep.Condition, types.ServiceConditionHealthy)
		}
		if !dep.Required {
			p.addf("depends_on.signer must be required")
		}
		for _, name := range []string{gatewayService, signerService} {
			if s, err := service(c.p, name); err != nil || len(s.Profiles) > 0 {
				p.addf("%s must exist outside any profile so `docker compose up gateway` starts it (%v)", name, err)
			}
		}
		return p.err()
	}},
	{"gateway published on 10000", func(c composeCase) error {
		// Envoy runs in the signer's network namespace, whose ports the
		// signer service publishes.
		g, err := netnsOwner(c.p)
		if err != nil {
			return err
		}
		want := fmt.Sprintf("%s:%d:%d/tcp", c.sc.wantHostIP, listenerPort, listenerPort)
		var got []string
		for _, pc := range g.Ports {
			got = append(got, fmt.Sprintf("%s:%s:%d/%s", pc.HostIP, pc.Published, pc.Target, pc.Protocol))
		}
		if !slices.Equal(got, []string{want}) {
			return fmt.Errorf("ports = %q, want [%q]", got, want)
		}
		return nil
	}},
	{"Envoy image pinned to 1.37 or newer", func(c composeCase) error {
		g, err := service(c.p, gatewayService)
		if err != nil {
			return err
		}
		m := envoyImage.FindStringSubmatch(g.Image)
		if m == nil {
			return fmt.Errorf("image %q is not an exact envoyproxy/envoy:vX.Y.Z tag", g.Image)
		}
		major, _ := strconv.Atoi(m[1])
		minor, _ := strconv.Atoi(m[2])
		if major != 1 || minor < minEnvoyMinor {
			return fmt.Errorf("image %q: need Envoy 1.%d or newer", g.Image, minEnvoyMinor)
		}
		return nil
	}},
	{"envoy.yaml mounted read-only", func(c composeCase) error {
		var p problems
		g, err := service(c.p, gatewayService)
		if err != nil {
			return err
		}
		v, ok := volumeAt(g, envoyConfigIn)
		if !ok {
			return fmt.Errorf("nothing mounted at %s", envoyConfigIn)
		}
		checkBindRO(&p, v, filepath.Join(c.root, "envoy.yaml"))
		if i := slices.Index(g.Command, "-c"); i < 0 || i+1 >= len(g.Command) || g.Command[i+1] != envoyConfigIn {
			p.addf("command %q does not run Envoy with -c %s", g.Command, envoyConfigIn)
		}
		return p.err()
	}},
	{"signer mounts the OCI folder read-only", func(c composeCase) error {
		var p problems
		s, err := service(c.p, signerService)
		if err != nil {
			return err
		}
		v, ok := volumeAt(s, ociMountPoint)
		if !ok {
			return fmt.Errorf("nothing mounted at %s", ociMountPoint)
		}
		checkBindRO(&p, v, c.sc.wantOCIDir(c.home))
		return p.err()
	}},
	{"signer environment", func(c composeCase) error {
		var p problems
		s, err := service(c.p, signerService)
		if err != nil {
			return err
		}
		if cfg, _ := envValue(s, "OCI_CLI_CONFIG_FILE"); cfg != path.Join(ociMountPoint, "config") {
			p.addf("OCI_CLI_CONFIG_FILE = %q, want %s/config (inside the mount)", cfg, ociMountPoint)
		}
		if prof, ok := envValue(s, "OCI_CLI_PROFILE"); !ok || prof != c.sc.wantProf {
			p.addf("OCI_CLI_PROFILE = %q, want %q (passed through, default DEFAULT)", prof, c.sc.wantProf)
		}
		// The addresses Envoy uses must be the ones the signer listens on:
		// loopback, in the namespace Envoy shares.
		if l, _ := envValue(s, "OCISIGNER_LISTEN"); l != fmt.Sprintf("127.0.0.1:%d", signerPort) {
			p.addf("OCISIGNER_LISTEN = %q, want 127.0.0.1:%d (envoy.yaml's signer cluster, on loopback)", l, signerPort)
		}
		if a, _ := envValue(s, "OCISIGNER_ADMIN"); !strings.HasSuffix(a, fmt.Sprintf(":%d", adminPort)) {
			p.addf("OCISIGNER_ADMIN = %q, want port %d", a, adminPort)
		}
		return p.err()
	}},
	{"signer runs as the host user", func(c composeCase) error {
		s, err := service(c.p, signerService)
		if err != nil {
			return err
		}
		if s.User != c.sc.wantUser {
			return fmt.Errorf("user = %q, want %q", s.User, c.sc.wantUser)
		}
		return nil
	}},
	{"signer healthcheck is the probe", func(c composeCase) error {
		var p problems
		s, err := service(c.p, signerService)
		if err != nil {
			return err
		}
		hc := s.HealthCheck
		if hc == nil || hc.Disable {
			return errors.New("signer has no healthcheck")
		}
		if want := []string{"CMD", signerBinary, "probe"}; !slices.Equal(hc.Test, want) {
			p.addf("healthcheck.test = %q, want %q (the binary; the image has no shell or curl)", hc.Test, want)
		}
		if hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil || hc.StartPeriod == nil {
			p.addf("healthcheck interval, timeout, retries and start_period must all be set")
		} else {
			if *hc.Timeout >= *hc.Interval {
				p.addf("healthcheck timeout %v must be shorter than interval %v", time.Duration(*hc.Timeout), time.Duration(*hc.Interval))
			}
			if *hc.Retries < 1 {
				p.addf("healthcheck retries must be >= 1")
			}
		}
		return p.err()
	}},
	{"signer built from deploy/Dockerfile", func(c composeCase) error {
		var p problems
		s, err := service(c.p, signerService)
		if err != nil {
			return err
		}
		if s.Build == nil {
			return errors.New("signer has no build section")
		}
		if s.Build.Context != c.root {
			p.addf("build.context = %q, want the repository root %q", s.Build.Context, c.root)
		}
		if s.Build.Dockerfile != "deploy/Dockerfile" {
			p.addf("build.dockerfile = %q, want deploy/Dockerfile", s.Build.Dockerfile)
		}
		if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			p.addf("Dockerfile not found relative to the build context: %v", err)
		}
		return p.err()
	}},
	{"signer reachable only by Envoy", func(c composeCase) error {
		// ext_proc and SDS (which carries the interception leaves' private
		// keys) on loopback of the namespace Envoy shares, and the name
		// envoy.yaml uses for them mapped there; the admin port on the
		// compose network.
		var p problems
		s, err := service(c.p, signerService)
		if err != nil {
			return err
		}
		g, err := service(c.p, gatewayService)
		if err != nil {
			return err
		}
		if g.NetworkMode != "service:"+signerService {
			p.addf("gateway network_mode = %q, want service:%s (Envoy reaches the signer on loopback)", g.NetworkMode, signerService)
		}
		if ip := s.ExtraHosts[signerService]; !slices.Equal(ip, []string{"127.0.0.1"}) {
			p.addf("signer extra_hosts maps %s to %v, want 127.0.0.1", signerService, ip)
		}
		for _, pc := range s.Ports {
			if pc.Target != listenerPort {
				p.addf("signer publishes port %d: only Envoy's listener may be reachable from the host", pc.Target)
			}
		}
		if want := []string{strconv.Itoa(adminPort)}; !slices.Equal([]string(s.Expose), want) {
			p.addf("signer exposes %v, want %v", s.Expose, want)
		}
		return p.err()
	}},
	{"interception CA kept in a volume", func(c composeCase) error {
		var p problems
		s, err := service(c.p, signerService)
		if err != nil {
			return err
		}
		if v, _ := envValue(s, "OCISIGNER_INTERCEPT"); v != "true" {
			p.addf("OCISIGNER_INTERCEPT = %q, want true (interception is on in the shipped compose file)", v)
		}
		dir, _ := envValue(s, "OCISIGNER_STATE_DIR")
		v, ok := volumeAt(s, dir)
		switch {
		case dir == "" || !ok:
			p.addf("OCISIGNER_STATE_DIR %q is not a mount: the read-only root cannot hold the CA", dir)
		case v.Type != types.VolumeTypeVolume || v.ReadOnly:
			p.addf("%s: a writable named volume, so the CA clients trust outlives the container (type %q, read-only %v)", dir, v.Type, v.ReadOnly)
		case c.p.Volumes[v.Source].Name == "":
			p.addf("volume %q is not declared", v.Source)
		}
		return p.err()
	}},
	{"restart policy", func(c composeCase) error {
		var p problems
		for _, name := range []string{gatewayService, signerService} {
			if s, err := service(c.p, name); err != nil || s.Restart != types.RestartPolicyUnlessStopped {
				p.addf("%s: restart = %q, want unless-stopped (%v)", name, s.Restart, err)
			}
		}
		return p.err()
	}},
	{"signer hardening", func(c composeCase) error {
		var p problems
		s, err := service(c.p, signerService)
		if err != nil {
			return err
		}
		if !s.ReadOnly {
			p.addf("signer root filesystem must be read_only")
		}
		if !slices.Contains(s.CapDrop, "ALL") {
			p.addf("signer must drop all capabilities")
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			p.addf("signer must set no-new-privileges")
		}
		return p.err()
	}},
}

// composeResults loads content in every scenario and returns the failed
// checks, by name, with the scenario in the message.
func composeResults(t *testing.T, content string, report bool) (map[string]error, error) {
	t.Helper()
	root := absRepoRoot(t)
	failed := map[string]error{}
	for _, sc := range composeScenarios {
		home := t.TempDir()
		t.Setenv("HOME", home) // compose-go expands ~ with os.UserHomeDir
		p, err := loadCompose(root, home, content, sc.env)
		if err != nil {
			return nil, fmt.Errorf("scenario %s: %w", sc.name, err)
		}
		for _, c := range composeChecks {
			if err := c.fn(composeCase{p: p, sc: sc, home: home, root: root}); err != nil {
				if report {
					t.Errorf("%s [%s]: %v", c.name, sc.name, err)
				}
				if _, dup := failed[c.name]; !dup {
					failed[c.name] = fmt.Errorf("[%s] %w", sc.name, err)
				}
			}
		}
	}
	return failed, nil
}

// TestComposeProject loads docker-compose.yml with compose-go in each
// scenario and runs every check. (Not parallel: it sets HOME.)
func TestComposeProject(t *testing.T) {
	if _, err := composeResults(t, readRepoFile(t, "docker-compose.yml"), true); err != nil {
		t.Fatal(err)
	}
}

// TestComposeMatchesEnvoy ties the two files together: the cluster Envoy
// sends ext_proc to is the signer service on the port it listens on, and the
// port compose publishes is Envoy's listener.
func TestComposeMatchesEnvoy(t *testing.T) {
	c := loadEnvoy(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	p, err := loadCompose(absRepoRoot(t), home, readRepoFile(t, "docker-compose.yml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cl := c.clusters[signerClusterName]
	if cl == nil {
		t.Fatal("envoy.yaml has no signer cluster")
	}
	sa := cl.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	s, err := service(p, sa.GetAddress())
	if err != nil {
		t.Fatalf("envoy.yaml's signer endpoint %q is not a compose service: %v", sa.GetAddress(), err)
	}
	// Envoy shares the signer's network namespace, where the endpoint's name
	// is loopback and the signer listens on it.
	if l, _ := envValue(s, "OCISIGNER_LISTEN"); !slices.Equal(s.ExtraHosts[sa.GetAddress()], []string{"127.0.0.1"}) || l != fmt.Sprintf("127.0.0.1:%d", sa.GetPortValue()) {
		t.Errorf("envoy.yaml sends ext_proc to %s:%d, which service %s maps to %v and listens on %q", sa.GetAddress(), sa.GetPortValue(), s.Name, s.ExtraHosts[sa.GetAddress()], l)
	}
	g, err := netnsOwner(p)
	if err != nil {
		t.Fatal(err)
	}
	lp := c.bs.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetPortValue()
	if len(g.Ports) == 0 || g.Ports[0].Target != lp {
		t.Errorf("gateway ports %+v do not target Envoy's listener port %d", g.Ports, lp)
	}
}

var composeMutations = []mutation{
	{"schema violation", replaceFirst("depends_on:", "depend_on:"), ""},
	{"gateway starts early", replaceFirst("condition: service_healthy", "condition: service_started"), "gateway waits for a healthy signer"},
	{"signer behind a profile", replaceFirst("  signer:\n    build:", "  signer:\n    profiles: [extra]\n    build:"), ""},
	{"gateway on all interfaces", replaceFirst(`"${GATEWAY_HOST_IP:-127.0.0.1}:10000:10000"`, `"10000:10000"`), "gateway published on 10000"},
	{"gateway port", replaceFirst(`:10000:10000"`, `:10001:10000"`), "gateway published on 10000"},
	{"envoy latest", replaceFirst("envoyproxy/envoy:v1.40.0", "envoyproxy/envoy:latest"), "Envoy image pinned to 1.37 or newer"},
	{"envoy too old", replaceFirst("envoyproxy/envoy:v1.40.0", "envoyproxy/envoy:v1.36.6"), "Envoy image pinned to 1.37 or newer"},
	{"envoy.yaml writable", replaceNth("read_only: true", "read_only: false", 1), "envoy.yaml mounted read-only"},
	{"envoy.yaml created if missing", replaceNth("create_host_path: false", "create_host_path: true", 1), "envoy.yaml mounted read-only"},
	{"other envoy config", replaceFirst("source: ./envoy.yaml", "source: ./envoy-dev.yaml"), "envoy.yaml mounted read-only"},
	{"envoy runs another config", replaceFirst(`"-c", "/etc/envoy/envoy.yaml"`, `"-c", "/etc/envoy/other.yaml"`), "envoy.yaml mounted read-only"},
	{"OCI folder writable", replaceNth("read_only: true", "read_only: false", 2), "signer mounts the OCI folder read-only"},
	{"OCI folder created if missing", replaceNth("create_host_path: false", "create_host_path: true", 2), "signer mounts the OCI folder read-only"},
	{"OCI_CONFIG_DIR ignored", replaceFirst("${OCI_CONFIG_DIR:-~/.oci}", "~/.oci"), "signer mounts the OCI folder read-only"},
	{"profile not passed through", replaceFirst("OCI_CLI_PROFILE: ${OCI_CLI_PROFILE:-DEFAULT}", "OCI_CLI_PROFILE: DEFAULT"), "signer environment"},
	{"profile default", replaceFirst("${OCI_CLI_PROFILE:-DEFAULT}", "${OCI_CLI_PROFILE:-}"), "signer environment"},
	{"config outside the mount", replaceFirst("OCI_CLI_CONFIG_FILE: /oci/config", "OCI_CLI_CONFIG_FILE: /home/me/.oci/config"), "signer environment"},
	{"signer port", replaceFirst(`OCISIGNER_LISTEN: "127.0.0.1:50051"`, `OCISIGNER_LISTEN: "127.0.0.1:9000"`), "signer environment"},
	{"signer on every interface", replaceFirst(`OCISIGNER_LISTEN: "127.0.0.1:50051"`, `OCISIGNER_LISTEN: ":50051"`), "signer environment"},
	{"fixed user", replaceFirst(`user: "${OCISIGNER_UID:-1000}:${OCISIGNER_GID:-1000}"`, `user: "1000:1000"`), "signer runs as the host user"},
	{"curl healthcheck", replaceFirst(`test: ["CMD", "/usr/local/bin/ocisigner", "probe"]`, `test: ["CMD", "curl", "-f", "http://localhost:9465/healthz"]`), "signer healthcheck is the probe"},
	{"shell healthcheck", replaceFirst(`test: ["CMD", "/usr/local/bin/ocisigner", "probe"]`, `test: ["CMD-SHELL", "/usr/local/bin/ocisigner probe"]`), "signer healthcheck is the probe"},
	{"healthcheck timeout", replaceFirst("timeout: 15s", "timeout: 90s"), "signer healthcheck is the probe"},
	{"no start period", replaceFirst("      start_period: 30s\n", ""), "signer healthcheck is the probe"},
	{"other Dockerfile", replaceFirst("dockerfile: deploy/Dockerfile", "dockerfile: deploy/Dockerfile.signer"), "signer built from deploy/Dockerfile"},
	{"narrow context", replaceFirst("context: .\n", "context: ./deploy\n"), "signer built from deploy/Dockerfile"},
	{"signer published", replaceFirst(`      - "${GATEWAY_HOST_IP:-127.0.0.1}:10000:10000"`+"\n", `      - "${GATEWAY_HOST_IP:-127.0.0.1}:10000:10000"`+"\n      - \"50051:50051\"\n"), "signer reachable only by Envoy"},
	{"gRPC on the compose network", replaceFirst(`      - "9465"`+"\n", `      - "9465"`+"\n      - \"50051\"\n"), "signer reachable only by Envoy"},
	{"admin not exposed", replaceFirst(`      - "9465"`+"\n", `      - "9466"`+"\n"), "signer reachable only by Envoy"},
	{"Envoy on the compose network", replaceFirst(`    network_mode: "service:signer"`+"\n", ""), "signer reachable only by Envoy"},
	{"signer name resolved by DNS", replaceFirst(`      - "signer:127.0.0.1"`, `      - "signer-local:127.0.0.1"`), "signer reachable only by Envoy"},
	{"interception off", replaceFirst(`OCISIGNER_INTERCEPT: "true"`, `OCISIGNER_INTERCEPT: "false"`), "interception CA kept in a volume"},
	{"CA on the read-only root", replaceFirst("        target: /var/lib/ocisigner\n", "        target: /var/lib/other\n"), "interception CA kept in a volume"},
	{"CA in a tmpfs", replaceFirst("      - type: volume\n        source: state\n        target: /var/lib/ocisigner\n", "      - type: tmpfs\n        target: /var/lib/ocisigner\n"), "interception CA kept in a volume"},
	{"no restart", replaceLast("restart: unless-stopped", `restart: "no"`), "restart policy"},
	{"capabilities kept", replaceFirst("cap_drop: [ALL]", "cap_drop: [NET_RAW]"), "signer hardening"},
}

// TestComposeChecksCatchRegressions applies each mutation and requires the
// named check (or, for want == "", the load) to fail in some scenario.
func TestComposeChecksCatchRegressions(t *testing.T) {
	const file = "docker-compose.yml"
	mutationProof{
		files:     map[string]string{file: readRepoFile(t, file)},
		mutations: inFile(file, composeMutations),
		known:     checkNamesUnique(t, composeChecks),
		load: func(t *testing.T, files map[string]string) (map[string]error, error) {
			return composeResults(t, files[file], false)
		},
		serial: true, // composeResults sets HOME for compose-go
	}.run(t)
}
