package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The GitHub Actions example (deploy/github-actions/oci-gateway.yml): a job
// whose services are the gateway (ocisigner and Envoy) and whose steps get
// the job's OIDC token, hand it to the signer through a file in the
// workspace, and call OCI through Envoy. No GitHub runner is needed: the
// workflow is decoded strictly into the subset of the workflow syntax it
// uses, and the checks below follow the wiring from one end to the other.
//
// What the wiring relies on, from actions/runner's source:
// PipelineDirectoryManager.PrepareDirectory creates the workspace before
// any container starts, so it can be bind-mounted empty;
// ContainerOperationProvider.StartContainerAsync only warns when a service
// container is not running after its start (Envoy, before envoy.yaml is
// checked out), and ContainerHealthcheck waits only for services with a
// HEALTHCHECK (ocisigner has none: its subject token file does not exist
// yet); service containers join the job's network under their service id.
const ghWorkflowFile = "deploy/github-actions/oci-gateway.yml"

const (
	ghWorkspace   = "${{ github.workspace }}"
	ghEnvoyID     = `"${{ job.services.envoy.id }}"`
	ghEnvoyName   = "envoy"
	ghSignerPrinc = "token-exchange"
)

// ghWorkflow is the subset of GitHub's workflow syntax the example uses.
// Decoding is strict: a key outside it (a typo GitHub would reject, or a
// feature these checks do not understand) fails the load.
type ghWorkflow struct {
	Name        string            `json:"name"`
	On          map[string]any    `json:"on"`
	Permissions map[string]string `json:"permissions"`
	Jobs        map[string]*ghJob `json:"jobs"`
}

type ghJob struct {
	RunsOn      string                `json:"runs-on"`
	Permissions map[string]string     `json:"permissions"`
	Services    map[string]*ghService `json:"services"`
	Steps       []ghStep              `json:"steps"`
}

type ghService struct {
	Image   string            `json:"image"`
	Env     map[string]string `json:"env"`
	Ports   []string          `json:"ports"`
	Volumes []string          `json:"volumes"`
	Options string            `json:"options"`
}

type ghStep struct {
	Name string            `json:"name"`
	Uses string            `json:"uses"`
	With map[string]any    `json:"with"`
	If   string            `json:"if"`
	Env  map[string]string `json:"env"`
	Run  string            `json:"run"`
}

// ghLoaded is the workflow, its one job, and what it must agree with.
type ghLoaded struct {
	wf   *ghWorkflow
	job  *ghJob
	refs kubeRefs
}

func loadWorkflow(text string, refs kubeRefs) (*ghLoaded, error) {
	js, err := yaml.YAMLToJSONStrict([]byte(text))
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var wf ghWorkflow
	if err := dec.Decode(&wf); err != nil {
		return nil, err
	}
	if len(wf.On) == 0 {
		return nil, errors.New(`no "on": the workflow never runs`)
	}
	if len(wf.Jobs) != 1 {
		return nil, fmt.Errorf("%d jobs, want the one job the services belong to", len(wf.Jobs))
	}
	l := &ghLoaded{wf: &wf, refs: refs}
	for _, j := range wf.Jobs {
		l.job = j
	}
	return l, nil
}

func (l *ghLoaded) service(name string) (*ghService, error) {
	if s := l.job.Services[name]; s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("no service %q", name)
}

// step returns the index and the step whose run holds s, or -1.
func (l *ghLoaded) step(s string) (int, *ghStep) {
	for i := range l.job.Steps {
		if strings.Contains(l.job.Steps[i].Run, s) {
			return i, &l.job.Steps[i]
		}
	}
	return -1, nil
}

// ghVolume finds the bind mount of source in s: its target and whether it
// is read-only.
func ghVolume(s *ghService, source string) (target string, ro, ok bool) {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[0] == source {
			return parts[1], len(parts) == 3 && parts[2] == "ro", true
		}
	}
	return "", false, false
}

func ghOptions(p *problems, s *ghService, what string, want ...string) {
	fields := strings.Fields(s.Options)
	for _, w := range want {
		if !strings.Contains(" "+strings.Join(fields, " ")+" ", " "+w+" ") {
			p.addf("%s: options lack %q", what, w)
		}
	}
}

// ghLoopbackPort checks a published port is host-loopback:port:port.
func ghLoopbackPort(spec string, port int32) bool {
	parts := strings.Split(spec, ":")
	if len(parts) != 3 {
		return false
	}
	a, err := netip.ParseAddr(parts[0])
	return err == nil && a.IsLoopback() && parts[1] == fmt.Sprint(port) && parts[2] == fmt.Sprint(port)
}

var (
	ghSecretRef = regexp.MustCompile(`^\$\{\{\s*secrets\.[A-Za-z_][A-Za-z0-9_]*\s*\}\}$`)
	ghVarRef    = regexp.MustCompile(`^\$\{\{\s*vars\.[A-Za-z_][A-Za-z0-9_]*\s*\}\}$`)
)

var ghChecks = []namedCheck[*ghLoaded]{
	{"permissions: an OIDC token, nothing written", func(l *ghLoaded) error {
		var p problems
		perms := l.wf.Permissions
		if l.job.Permissions != nil {
			perms = l.job.Permissions
		}
		if perms["id-token"] != "write" {
			p.addf("permissions id-token = %q: without write GitHub gives the job no OIDC token", perms["id-token"])
		}
		for scope, v := range perms {
			if scope != "id-token" && v != "read" && v != "none" {
				p.addf("permissions %s = %q: the job writes nothing", scope, v)
			}
		}
		return p.err()
	}},
	{"signer service", func(l *ghLoaded) error {
		var p problems
		s, err := l.service(l.refs.signerHost)
		if err != nil {
			return fmt.Errorf("%w: envoy.yaml sends ext_proc to %s:%d, the signer's service id", err, l.refs.signerHost, l.refs.signerPort)
		}
		if !kubeSignerImage.MatchString(s.Image) {
			p.addf("image %q is not pinned to a release (…/ocisigner:vX.Y.Z)", s.Image)
		}
		if pr := s.Env["OCISIGNER_PRINCIPAL"]; pr != ghSignerPrinc {
			p.addf("OCISIGNER_PRINCIPAL = %q, want %s", pr, ghSignerPrinc)
		}
		for _, k := range []string{"OCISIGNER_TOKEN_EXCHANGE_URL", "OCISIGNER_CLIENT_ID", "OCISIGNER_REGION"} {
			if !ghVarRef.MatchString(s.Env[k]) {
				p.addf("%s = %q: want a repository variable, ${{ vars.NAME }}", k, s.Env[k])
			}
		}
		if v := s.Env["OCISIGNER_CLIENT_SECRET"]; !ghSecretRef.MatchString(v) {
			p.addf("OCISIGNER_CLIENT_SECRET must come from a repository secret, ${{ secrets.NAME }}")
		}
		if _, set := s.Env["OCISIGNER_CLIENT_SECRET_FILE"]; set {
			p.addf("OCISIGNER_CLIENT_SECRET_FILE is set: the secret would have to sit in the workspace")
		}
		if _, set := s.Env["OCISIGNER_SUBJECT_TOKEN"]; set {
			p.addf("OCISIGNER_SUBJECT_TOKEN is set: a value cannot be renewed; the token comes as a file")
		}
		if ap, err := netip.ParseAddrPort("0.0.0.0" + s.Env["OCISIGNER_LISTEN"]); err != nil || int32(ap.Port()) != l.refs.signerPort {
			p.addf("OCISIGNER_LISTEN = %q, want :%d on the job's network (envoy.yaml's signer port)", s.Env["OCISIGNER_LISTEN"], l.refs.signerPort)
		}
		if a := s.Env["OCISIGNER_ADMIN"]; a != fmt.Sprintf(":%d", adminPort) {
			p.addf("OCISIGNER_ADMIN = %q, want :%d", a, adminPort)
		}
		// Only the admin port, on the runner's loopback: the signer signs
		// for whoever reaches its ext_proc port.
		if !slices.Equal(s.Ports, []string{fmt.Sprintf("127.0.0.1:%d:%d", adminPort, adminPort)}) {
			p.addf("ports %q, want only the admin port on loopback, 127.0.0.1:%d:%d", s.Ports, adminPort, adminPort)
		}
		ghOptions(&p, s, "signer", "--read-only", "--tmpfs /tmp", "--cap-drop ALL", "--security-opt no-new-privileges")
		return p.err()
	}},
	{"subject token file wiring", func(l *ghLoaded) error {
		var p problems
		s, err := l.service(l.refs.signerHost)
		if err != nil {
			return err
		}
		_, st := l.step("$ACTIONS_ID_TOKEN_REQUEST_URL")
		if st == nil {
			return errors.New("no step requests the job's OIDC token ($ACTIONS_ID_TOKEN_REQUEST_URL)")
		}
		hostFile := st.Env["TOKEN_FILE"]
		rel, inWorkspace := strings.CutPrefix(hostFile, ghWorkspace+"/")
		target, ro, mounted := ghVolume(s, ghWorkspace)
		switch {
		case !inWorkspace:
			p.addf("the token step writes %q, not a file in %s", hostFile, ghWorkspace)
		case !mounted:
			p.addf("the signer does not mount %s", ghWorkspace)
		default:
			if want := path.Join(target, rel); s.Env["OCISIGNER_SUBJECT_TOKEN_FILE"] != want {
				p.addf("OCISIGNER_SUBJECT_TOKEN_FILE = %q, but the step writes %s, which the signer sees as %s",
					s.Env["OCISIGNER_SUBJECT_TOKEN_FILE"], hostFile, want)
			}
			if !ro {
				p.addf("the signer mounts %s writable", ghWorkspace)
			}
		}
		// The token alone, written whole: a rename, never a file the signer
		// could read half-written.
		if !strings.Contains(st.Run, "jq -er .value") {
			p.addf("the token step does not extract the token (jq -er .value) from GitHub's JSON answer")
		}
		if !strings.Contains(st.Run, `> "$TOKEN_FILE.tmp"`) || !strings.Contains(st.Run, `mv "$TOKEN_FILE.tmp" "$TOKEN_FILE"`) ||
			strings.Contains(st.Run, `> "$TOKEN_FILE"`) {
			p.addf(`the token step must write "$TOKEN_FILE.tmp" and rename it (mv "$TOKEN_FILE.tmp" "$TOKEN_FILE"), never write the file in place`)
		}
		if !ghVarRef.MatchString(st.Env["AUDIENCE"]) || !strings.Contains(st.Run, `"audience=$AUDIENCE"`) {
			p.addf("the token step must ask for the trust's audience (AUDIENCE from a repository variable)")
		}
		if !strings.Contains(st.Run, "::add-mask::$token") {
			p.addf("the token step does not mask the token in the job's log")
		}
		_, cleanup := l.step(`rm -f "$TOKEN_FILE"`)
		if cleanup == nil || cleanup.If != "always()" || cleanup.Env["TOKEN_FILE"] != hostFile {
			p.addf("no step removes %s at the end whatever happened (if: always())", hostFile)
		}
		return p.err()
	}},
	{"envoy service", func(l *ghLoaded) error {
		var p problems
		s, err := l.service(ghEnvoyName)
		if err != nil {
			return err
		}
		if s.Image != l.refs.composeImage || !envoyImage.MatchString(s.Image) {
			p.addf("image %q, want docker-compose.yml's pinned gateway image %q", s.Image, l.refs.composeImage)
		}
		if len(s.Ports) != 1 || !ghLoopbackPort(s.Ports[0], l.refs.listenerPort) {
			p.addf("ports %q, want only the listener on the runner's loopback, 127.0.0.1:%d:%d", s.Ports, l.refs.listenerPort, l.refs.listenerPort)
		}
		// envoy.yaml at the workspace's root is the repository's (checked
		// out there), mounted where the image's command reads it.
		target, ro, ok := ghVolume(s, ghWorkspace)
		if !ok || target != path.Dir(envoyConfigIn) || !ro {
			p.addf("volumes %q: want %s:%s:ro (Envoy runs %s)", s.Volumes, ghWorkspace, path.Dir(envoyConfigIn), envoyConfigIn)
		}
		if len(s.Env) > 0 {
			p.addf("Envoy gets environment %v: it needs none", s.Env)
		}
		ghOptions(&p, s, "envoy", "--user 101:101", "--read-only", "--tmpfs /tmp", "--cap-drop ALL", "--security-opt no-new-privileges")
		return p.err()
	}},
	{"steps in order", func(l *ghLoaded) error {
		var p problems
		checkout := slices.IndexFunc(l.job.Steps, func(s ghStep) bool { return strings.HasPrefix(s.Uses, "actions/checkout@") })
		restart, _ := l.step("docker restart " + ghEnvoyID)
		token, _ := l.step("$ACTIONS_ID_TOKEN_REQUEST_URL")
		wait, _ := l.step(fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
		call, _ := l.step(fmt.Sprintf("--proxy http://127.0.0.1:%d ", l.refs.listenerPort))
		for what, i := range map[string]int{"checkout": checkout, "restart Envoy": restart, "get the OIDC token": token, "wait for /readyz": wait, "call OCI through the gateway": call} {
			if i < 0 {
				p.addf("no step to %s", what)
			}
		}
		if checkout >= 0 {
			if st := l.job.Steps[checkout]; st.With["path"] != nil {
				p.addf("checkout into %v: envoy.yaml must land at the workspace's root", st.With["path"])
			} else if st.With["persist-credentials"] != false {
				p.addf("checkout must set persist-credentials: false: the workspace, .git/config included, is mounted into the gateway's containers")
			}
		}
		order := []struct {
			a, b   int
			reason string
		}{
			{checkout, restart, "Envoy is restarted once envoy.yaml is checked out"},
			{checkout, token, "the checkout empties the workspace, token file included"},
			{restart, call, "Envoy must be running for the call"},
			{token, wait, "the signer is ready only once it has a token"},
			{wait, call, "the call waits for the signer"},
		}
		for _, o := range order {
			if o.a >= 0 && o.b >= 0 && o.a >= o.b {
				p.addf("steps %d and %d in the wrong order: %s", o.a+1, o.b+1, o.reason)
			}
		}
		return p.err()
	}},
}

func loadWorkflowFile(t *testing.T) (string, kubeRefs) {
	t.Helper()
	return readRepoFile(t, ghWorkflowFile), loadKubeRefs(t)
}

func TestGitHubActionsWorkflow(t *testing.T) {
	t.Parallel()
	text, refs := loadWorkflowFile(t)
	l, err := loadWorkflow(text, refs)
	if err != nil {
		t.Fatal(err)
	}
	runChecks(t, ghChecks, l, true)
}

var ghMutations = []mutation{
	// Must not load.
	{"bare on", replaceFirst(`"on":`, "on:"), ""},
	{"misspelt key", replaceFirst("    services:\n", "    service:\n"), ""},
	{"duplicate key", replaceFirst("          OCISIGNER_LISTEN: \":50051\"\n", "          OCISIGNER_LISTEN: \":50051\"\n          OCISIGNER_LISTEN: \":50052\"\n"), ""},
	{"YAML syntax", replaceFirst("jobs:\n", "jobs: [\n"), ""},

	{"no id-token", replaceFirst("  id-token: write\n", ""), "permissions: an OIDC token, nothing written"},
	{"contents written", replaceFirst("  contents: read\n", "  contents: write\n"), "permissions: an OIDC token, nothing written"},
	{"job drops id-token", replaceFirst("    runs-on: ubuntu-latest\n", "    runs-on: ubuntu-latest\n    permissions:\n      contents: read\n"), "permissions: an OIDC token, nothing written"},

	{"signer renamed", replaceFirst("      signer:\n", "      ocisigner:\n"), "signer service"},
	{"signer latest", replaceFirst("ghcr.io/ocisigner/ocisigner:v0.1.0", "ghcr.io/ocisigner/ocisigner:latest"), "signer service"},
	{"other principal", replaceFirst("OCISIGNER_PRINCIPAL: token-exchange", "OCISIGNER_PRINCIPAL: instance"), "signer service"},
	{"secret inline", replaceFirst("${{ secrets.OCI_CLIENT_SECRET }}", "s3cr3t"), "signer service"},
	{"secret from a variable", replaceFirst("${{ secrets.OCI_CLIENT_SECRET }}", "${{ vars.OCI_CLIENT_SECRET }}"), "signer service"},
	{"URL hard-coded", replaceFirst("${{ vars.OCI_IDENTITY_DOMAIN_URL }}", "https://idcs-x.identity.oraclecloud.com"), "signer service"},
	{"subject token as a value", replaceFirst("          OCISIGNER_REGION:", "          OCISIGNER_SUBJECT_TOKEN: x\n          OCISIGNER_REGION:"), "signer service"},
	{"ext_proc published", replaceFirst(`"127.0.0.1:9465:9465"`, `"127.0.0.1:9465:9465"`+"\n          - \"50051:50051\""), "signer service"},
	{"admin on every interface", replaceFirst(`"127.0.0.1:9465:9465"`, `"9465:9465"`), "signer service"},
	{"signer writable", replaceNth("options: --read-only --tmpfs /tmp", "options: --tmpfs /tmp", 1), "signer service"},
	{"listen elsewhere", replaceFirst(`OCISIGNER_LISTEN: ":50051"`, `OCISIGNER_LISTEN: ":50052"`), "signer service"},

	{"signer reads another file", replaceFirst("OCISIGNER_SUBJECT_TOKEN_FILE: /workspace/.ocisigner/oidc-token", "OCISIGNER_SUBJECT_TOKEN_FILE: /workspace/oidc-token"), "subject token file wiring"},
	{"step writes elsewhere", replaceNth("TOKEN_FILE: ${{ github.workspace }}/.ocisigner/oidc-token", "TOKEN_FILE: ${{ runner.temp }}/oidc-token", 1), "subject token file wiring"},
	{"workspace mounted elsewhere", replaceFirst("${{ github.workspace }}:/workspace:ro", "${{ github.workspace }}:/ws:ro"), "subject token file wiring"},
	{"workspace writable", replaceFirst("${{ github.workspace }}:/workspace:ro", "${{ github.workspace }}:/workspace"), "subject token file wiring"},
	{"JSON written", replaceFirst(` | jq -er .value)`, `)`), "subject token file wiring"},
	{"written in place", replaceFirst(`printf '%s' "$token" > "$TOKEN_FILE.tmp"`, `printf '%s' "$token" > "$TOKEN_FILE"`), "subject token file wiring"},
	{"no audience", replaceFirst(`-G --data-urlencode "audience=$AUDIENCE" `, ``), "subject token file wiring"},
	{"token in the log", replaceFirst("          echo \"::add-mask::$token\"\n", ""), "subject token file wiring"},
	{"token left behind", replaceFirst("        if: always()\n", ""), "subject token file wiring"},

	{"envoy drifts from compose", replaceFirst("envoyproxy/envoy:v1.40.0", "envoyproxy/envoy:v1.39.1"), "envoy service"},
	{"gateway on every interface", replaceFirst(`"127.0.0.1:10000:10000"`, `"10000:10000"`), "envoy service"},
	{"envoy config elsewhere", replaceFirst("${{ github.workspace }}:/etc/envoy:ro", "${{ github.workspace }}:/config:ro"), "envoy service"},
	{"envoy as root", replaceFirst("--user 101:101 ", ""), "envoy service"},

	{"no restart", replaceFirst(`docker restart "${{ job.services.envoy.id }}"`, `docker ps`), "steps in order"},
	{"token before checkout", moveStep("Get the job's OIDC token for the identity domain", 0), "steps in order"},
	{"call before the wait", moveStep("Call OCI through the gateway", 3), "steps in order"},
	{"checkout keeps the GitHub token", replaceFirst("          persist-credentials: false\n", "          persist-credentials: true\n"), "steps in order"},
	{"checkout elsewhere", replaceFirst("          persist-credentials: false\n", "          path: src\n"), "steps in order"},
}

// moveStep moves the step named name to position to (0-based) among the
// job's steps.
func moveStep(name string, to int) func(string) (string, error) {
	return func(s string) (string, error) {
		const marker = "\n    steps:\n"
		i := strings.Index(s, marker)
		if i < 0 {
			return "", errors.New("no steps")
		}
		head, body := s[:i+len(marker)], s[i+len(marker):]
		steps := strings.SplitAfter(body, "\n\n")
		from := slices.IndexFunc(steps, func(st string) bool { return strings.Contains(st, "name: "+name+"\n") })
		if from < 0 {
			return "", fmt.Errorf("no step %q", name)
		}
		st := steps[from]
		steps = slices.Delete(steps, from, from+1)
		if !strings.HasSuffix(st, "\n\n") {
			st += "\n"
		}
		steps = slices.Insert(steps, to, st)
		return head + strings.Join(steps, ""), nil
	}
}

func TestGitHubActionsChecksCatchRegressions(t *testing.T) {
	t.Parallel()
	orig, refs := loadWorkflowFile(t)
	mutationProof{
		files:     map[string]string{ghWorkflowFile: orig},
		mutations: inFile(ghWorkflowFile, ghMutations),
		known:     checkNamesUnique(t, ghChecks),
		load: func(t *testing.T, f map[string]string) (map[string]error, error) {
			l, err := loadWorkflow(f[ghWorkflowFile], refs)
			if err != nil {
				return nil, err
			}
			return runChecks(t, ghChecks, l, false), nil
		},
	}.run(t)
}
