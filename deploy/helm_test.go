package deploy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// The Helm chart (deploy/helm/ocisigner) is rendered with Helm's own Go
// library (loader, values coalescing and schema validation, template engine)
// for each mode and credential source and a matrix of values. Every rendered
// document is decoded strictly into its API type (Kubernetes, Istio, Envoy
// Gateway, Gateway API); the pod then goes through kubernetes_test.go's
// checks where they apply to the mode, and through the checks below; the
// mutation test proves each of them fails when a template regresses.
const chartDir = "deploy/helm/ocisigner"

// The chart's modes and credential sources (values.yaml mode, credentials.type).
const (
	modeSidecar      = "sidecar"
	modeGateway      = "gateway"
	modeIstio        = "istio"
	modeEnvoyGateway = "envoyGateway"
)

var (
	chartModes = []string{modeSidecar, modeGateway, modeIstio, modeEnvoyGateway}
	// Each credential source and the kustomize variant with the same pod.
	chartCredentials = map[string]string{
		"session":          kubeSessionVariant,
		"workloadIdentity": kubeWorkloadVariant,
		"tokenExchange":    kubeTokenExchangeVariant,
	}
)

// exampleClients is a gateway.clients value: mode gateway needs one.
var exampleClients = []any{map[string]any{
	"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "team-a"}},
	"podSelector":       map[string]any{"matchLabels": map[string]any{"app": "batch"}},
}}

// readChartFiles returns the chart's files by slash path relative to the chart.
func readChartFiles(t *testing.T) map[string]string {
	t.Helper()
	return readTree(t, chartDir)
}

// chartCase is one install: a release name and the values given with -f/--set.
type chartCase struct {
	name    string
	release string
	values  map[string]any
}

// chartMatrix is every mode with every credential source, and the values
// that change what is rendered (autoscaling off, several Istio hosts, a
// listener section, extra signer settings, another name).
func chartMatrix() []chartCase {
	var out []chartCase
	creds := make([]string, 0, len(chartCredentials))
	for c := range chartCredentials {
		creds = append(creds, c)
	}
	sort.Strings(creds)
	for _, m := range chartModes {
		for _, c := range creds {
			v := map[string]any{"mode": m, "credentials": map[string]any{"type": c}}
			if m == modeGateway {
				v["gateway"] = map[string]any{"clients": exampleClients}
			}
			out = append(out, chartCase{name: m + "/" + c, release: "example-app", values: v})
		}
	}
	return append(out,
		chartCase{"gateway without autoscaling", "oci-gw", map[string]any{"mode": modeGateway,
			"gateway": map[string]any{"clients": exampleClients, "replicas": 3, "autoscaling": map[string]any{"enabled": false}}}},
		chartCase{"envoyGateway without autoscaling", "signer", map[string]any{"mode": modeEnvoyGateway,
			"gateway":      map[string]any{"autoscaling": map[string]any{"enabled": false}},
			"envoyGateway": map[string]any{"gateway": map[string]any{"sectionName": "http"}, "hostnames": []any{"*.oraclecloud.com", "*.oraclecloud.eu"}}}},
		chartCase{"gateway with a policy and keys", "shared", map[string]any{"mode": modeGateway,
			"gateway": map[string]any{"clients": exampleClients, "policy": examplePolicy, "keys": exampleKeys}}},
		chartCase{"gateway with identity", "shared", map[string]any{"mode": modeGateway,
			"gateway": map[string]any{"clients": exampleClients, "policy": exampleIdentityPolicy, "keys": exampleKeys, "identity": exampleIdentity()}}},
		chartCase{"gateway with identity for another issuer", "oci-gw", map[string]any{"mode": modeGateway, "credentials": map[string]any{"type": "workloadIdentity"},
			"gateway": map[string]any{"clients": exampleClients, "policy": exampleIdentityPolicy, "autoscaling": map[string]any{"enabled": false},
				"identity": map[string]any{"mtls": map[string]any{"secretName": "oci-gw-tls"}, "serviceAccountTokens": map[string]any{
					"jwksConfigMap": "cluster-jwks", "issuer": "https://oidc.example.com/clusters/prod", "audience": "oci-gateway"}}}}},
		chartCase{"envoyGateway with a policy", "signer", map[string]any{"mode": modeEnvoyGateway, "credentials": map[string]any{"type": "workloadIdentity"},
			"gateway": map[string]any{"policy": examplePolicy}}},
		chartCase{"istio with three hosts", "batch", map[string]any{"mode": modeIstio, "istio": map[string]any{"hosts": []any{
			"objectstorage.us-ashburn-1.oraclecloud.com", "inference.generativeai.eu-frankfurt-1.oci.oraclecloud.com",
			"objectstorage.eu-frankfurt-2.oraclecloud.eu"}}}},
		chartCase{"sidecar with extra settings", "web", map[string]any{"fullnameOverride": "web-signed", "replicas": 3,
			"signer": map[string]any{"extraEnv": []any{map[string]any{"name": "OCISIGNER_PROFILES", "value": "DEFAULT"}}},
			"app":    map[string]any{"image": "registry.example/web:1.2.3", "command": []any{"/web"}, "args": []any{"--port", "8080"}, "runAsUser": 1000}}},
		chartCase{onIntercept, "agent", map[string]any{"replicas": 2,
			"intercept": map[string]any{"enabled": true, "caSecret": "agent-ca", "noProxy": []any{".corp.example", "10.0.0.0/8"}},
			"app":       map[string]any{"env": []any{map[string]any{"name": "OCI_CLI_CONFIG_FILE", "value": "/workspace/.oci/config"}}}}},
	)
}

// renderChart renders the chart in files for one install: values
// coalesced over values.yaml and validated against values.schema.json,
// templates executed in strict mode (a missing value is an error), as
// `helm template` does.
func renderChart(files map[string]string, c chartCase) (map[string]string, error) {
	return renderChartSchema(files, c, false)
}

// renderChartSchema renders as `helm template`, or, with skipSchema, as
// `helm template --skip-schema-validation`.
func renderChartSchema(files map[string]string, c chartCase, skipSchema bool) (map[string]string, error) {
	var bf []*archive.BufferedFile
	for name, text := range files {
		bf = append(bf, &archive.BufferedFile{Name: name, ModTime: time.Unix(0, 0), Data: []byte(text)})
	}
	ch, err := loader.LoadFiles(bf)
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	if err := ch.Validate(); err != nil {
		return nil, fmt.Errorf("chart: %w", err)
	}
	vals, err := chartutil.ToRenderValuesWithSchemaValidation(ch, c.values,
		common.ReleaseOptions{Name: c.release, Namespace: "apps", IsInstall: true}, nil, skipSchema)
	if err != nil {
		return nil, err
	}
	return engine.Engine{Strict: true}.RenderWithContext(context.Background(), ch, vals)
}

// chartRender is one rendered install, decoded. The embedded kubeVariant
// holds the kinds kubernetes_test.go checks, so its checks run unchanged.
type chartRender struct {
	*kubeVariant
	mode, creds string
	// fullname is the name of the chart's objects; policy and keys are the
	// gateway.policy and gateway.keys given.
	fullname, policy, keys string
	services               []*corev1.Service
	hpas                   []*autoscalingv2.HorizontalPodAutoscaler
	pdbs                   []*policyv1.PodDisruptionBudget
	istio                  istioObjects
	eg                     egObjects
	sidecar                *patched // the Istio sidecar with the EnvoyFilter applied, once computed

	// identity is gateway.identity when it is on; envoyWant is the
	// envoy.yaml Envoy must run (the root file, or the shared-gateway file).
	identity  *chartIdentity
	envoyWant string
}

// parsedEnvoy parses envoy.yaml once per text: every render's checks compare
// with the same root file.
func parsedEnvoy(text string) (*envoyConfig, error) {
	if v, ok := parsedEnvoys.Load(text); ok {
		r := v.(parsedEnvoyResult)
		return r.c, r.err
	}
	c, err := parseEnvoy(text)
	parsedEnvoys.Store(text, parsedEnvoyResult{c, err})
	return c, err
}

type parsedEnvoyResult struct {
	c   *envoyConfig
	err error
}

var parsedEnvoys sync.Map

// loadChartCase renders and decodes one install.
func loadChartCase(files map[string]string, refs kubeRefs, c chartCase) (*chartRender, error) {
	out, err := renderChart(files, c)
	if err != nil {
		return nil, err
	}
	mode, creds := modeSidecar, "session"
	if m, ok := c.values["mode"].(string); ok {
		mode = m
	}
	if cr, ok := c.values["credentials"].(map[string]any); ok {
		creds, _ = cr["type"].(string)
	}
	r := &chartRender{mode: mode, creds: creds, fullname: c.release, kubeVariant: &kubeVariant{
		name: chartCredentials[creds], refs: refs,
		configMaps: map[string]map[string]string{}, serviceAccounts: map[string]*corev1.ServiceAccount{},
	}}
	if f, ok := c.values["fullnameOverride"].(string); ok && f != "" {
		r.fullname = f
	}
	if g, ok := c.values["gateway"].(map[string]any); ok {
		r.policy, _ = g["policy"].(string)
		r.keys, _ = g["keys"].(string)
	}
	r.envoyWant = refs.rootEnvoy
	if r.identity = identityOf(c.values); r.identity != nil {
		file, err := sharedGatewayText()
		if err != nil {
			return nil, err
		}
		// Envoy runs the shared-gateway file: its listener is the one
		// the kustomize checks and the chart's look for.
		r.refs.listenerPort, r.envoyWant = sharedGatewayPort, r.identity.envoyYAML(file)
	}
	if ic, ok := c.values["intercept"].(map[string]any); ok {
		r.intercept, _ = ic["enabled"].(bool)
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := r.addRendered(n, out[n]); err != nil {
			return nil, err
		}
	}
	if r.deploy == nil {
		return nil, fmt.Errorf("%s: no Deployment rendered", c.name)
	}
	return r, nil
}

// addRendered decodes every document of one rendered template strictly,
// by apiVersion and kind; a kind nobody expects is an error.
func (r *chartRender) addRendered(file, text string) error {
	rd := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(text)))
	for n := 1; ; n++ {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		tm, err := typeMetaOf(doc)
		if err != nil {
			return fmt.Errorf("%s document %d: %w", file, n, err)
		}
		if tm == nil {
			continue
		}
		where := fmt.Sprintf("%s document %d (%s)", file, n, tm.Kind)
		if err := r.decode(tm.APIVersion+" "+tm.Kind, doc); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
}

func (r *chartRender) decode(kind string, doc []byte) error {
	switch kind {
	case "apps/v1 Deployment", "v1 ConfigMap", "v1 ServiceAccount", "v1 Secret", "networking.k8s.io/v1 NetworkPolicy":
		return r.addManifests(kind, string(doc))
	case "v1 Service":
		return decodeInto(doc, &r.services)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return decodeInto(doc, &r.hpas)
	case "policy/v1 PodDisruptionBudget":
		return decodeInto(doc, &r.pdbs)
	}
	if ok, err := r.istio.decode(kind, doc); ok {
		return err
	}
	if ok, err := r.eg.decode(kind, doc); ok {
		return err
	}
	return fmt.Errorf("unexpected apiVersion and kind %q", kind)
}

// decodeInto decodes doc strictly into a new T and appends it.
func decodeInto[T any](doc []byte, list *[]*T) error {
	obj := new(T)
	if err := kubeDecodeStrict(doc, obj); err != nil {
		return err
	}
	*list = append(*list, obj)
	return nil
}

// --- which checks hold in which mode ------------------------------------------

// kubeChecksByMode: the checks of kubernetes_test.go that hold for a mode's
// pod. The others assume a pod the mode does not have (an Envoy container,
// hostAliases, a private listener) and are replaced by the chart checks.
var kubeChecksByMode = map[string][]string{
	modeSidecar: nil, // all of them
	modeGateway: {"signer image and command", "signer ports", "signer probes", "signer addresses", "session credentials",
		"workload identity credentials", "no Secret committed", "service-account token only in the signer",
		"container hardening", "resources", "hostAliases map the signer to loopback", "envoy image matches docker-compose.yml",
		"envoy runs the ConfigMap's envoy.yaml", "envoy.yaml copy identical", "envoy ports and probes", "only /tmp emptyDirs writable"},
	modeIstio: {"signer image and command", "signer ports", "signer probes", "session credentials",
		"workload identity credentials", "no Secret committed", "service-account token only in the signer",
		"container hardening", "resources", "network policy keeps the gateway private"},
	modeEnvoyGateway: {"signer image and command", "signer ports", "signer probes", "session credentials",
		"workload identity credentials", "no Secret committed", "service-account token only in the signer",
		"container hardening", "resources"},
}

// chartChecksFor is every check that must hold for r.
func chartChecksFor(r *chartRender) []namedCheck[*chartRender] {
	var out []namedCheck[*chartRender]
	names := kubeChecksByMode[r.mode]
	kube := kubeChecks
	if r.creds == "tokenExchange" {
		kube = allTokenExchangeChecks()
	}
	for _, c := range kube {
		if names != nil && !containsString(names, c.name) && !isTokenExchangeCheck(c.name) && !isInterceptCheck(c.name) {
			continue
		}
		if r.identity != nil && c.name == "envoy.yaml copy identical" {
			continue // Envoy runs the shared-gateway file: "identity: Envoy runs the shared-gateway file"
		}
		out = append(out, namedCheck[*chartRender]{c.name, func(r *chartRender) error { return c.fn(r.kubeVariant) }})
	}
	for _, c := range chartChecks {
		if containsString(c.modes, r.mode) || (r.identity != nil && containsString(c.modes, modeGatewayIdentity)) {
			out = append(out, c.check)
		}
	}
	return out
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// isInterceptCheck: interception's checks hold in every mode (where the
// signer does not intercept they say nothing half-wires it).
func isInterceptCheck(name string) bool {
	return slices.ContainsFunc(kubeInterceptChecks, func(c namedCheck[*kubeVariant]) bool { return c.name == name })
}

func isTokenExchangeCheck(name string) bool {
	for _, c := range kubeTokenExchangeChecks {
		if c.name == name {
			return true
		}
	}
	return false
}

// modeCheck is a chart check and the modes it applies to.
type modeCheck struct {
	modes []string
	check namedCheck[*chartRender]
}

// chartResults renders every case of the matrix and runs its checks. A
// failed check is reported once, with the case in the message.
func chartResults(t *testing.T, files map[string]string, refs kubeRefs, cases []chartCase, report bool) (map[string]error, error) {
	t.Helper()
	failed := map[string]error{}
	for _, c := range cases {
		r, err := loadChartCase(files, refs, c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		for _, ck := range chartChecksFor(r) {
			if err := ck.fn(r); err != nil {
				if report {
					t.Errorf("%s [%s]: %v", ck.name, c.name, err)
				}
				if _, dup := failed[ck.name]; !dup {
					failed[ck.name] = fmt.Errorf("[%s] %w", c.name, err)
				}
			}
		}
	}
	return failed, nil
}

// TestHelmChart renders every case of the matrix and runs every check that
// applies to its mode.
func TestHelmChart(t *testing.T) {
	t.Parallel()
	if _, err := chartResults(t, readChartFiles(t), loadKubeRefs(t), chartMatrix(), true); err != nil {
		t.Fatal(err)
	}
}

// TestHelmChartSidecarIsTheKustomizePod: for each credential source the
// chart's sidecar pod is the kustomize variant's, field for field (the
// ConfigMap's name aside: kustomize suffixes a hash, the chart rolls the
// pods with an annotation); with intercept.enabled, it is the intercept
// overlay's over that variant. The kustomize folders stay the
// copy-and-paste reference; this keeps the two from drifting.
func TestHelmChartSidecarIsTheKustomizePod(t *testing.T) {
	t.Parallel()
	files, kfiles, refs := readChartFiles(t), readKubeFiles(t), loadKubeRefs(t)
	for _, intercepted := range []bool{false, true} {
		for creds, variant := range chartCredentials {
			sameSidecarPod(t, files, kfiles, refs, creds, variant, intercepted)
		}
	}
}

func sameSidecarPod(t *testing.T, files, kfiles map[string]string, refs kubeRefs, creds, variant string, intercepted bool) {
	t.Helper()
	vals := map[string]any{"credentials": map[string]any{"type": creds}}
	load := loadKubeVariant
	if intercepted {
		vals["intercept"] = map[string]any{"enabled": true}
		load = loadKubeIntercepted
		creds += " intercepting"
	}
	r, err := loadChartCase(files, refs, chartCase{name: creds, release: "example-app", values: vals})
	if err != nil {
		t.Fatal(err)
	}
	k, err := load(kfiles, refs, variant)
	if err != nil {
		t.Fatal(err)
	}
	chartPod, kubePod := r.deploy.Spec.Template.Spec.DeepCopy(), k.deploy.Spec.Template.Spec.DeepCopy()
	for _, pod := range []*corev1.PodSpec{chartPod, kubePod} {
		for i := range pod.Volumes {
			if cm := pod.Volumes[i].ConfigMap; cm != nil {
				cm.Name = "envoy-config"
			}
		}
	}
	a, _ := yaml.Marshal(chartPod)
	b, _ := yaml.Marshal(kubePod)
	if string(a) != string(b) {
		t.Errorf("%s: the chart's sidecar pod differs from deploy/kubernetes/%s (intercept overlay: %v):\n--- chart\n%s\n--- kustomize\n%s", creds, variant, intercepted, a, b)
	}
}

// TestHelmChartLint runs Helm's linter (the rules of `helm lint`: Chart.yaml,
// values against the schema, every template rendered and parsed, the
// Kubernetes API versions) for each mode; any message fails but one: the
// project has no icon to point Chart.yaml at (INFO "icon is recommended").
func TestHelmChartLint(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(absRepoRoot(t), filepath.FromSlash(chartDir))
	identity := map[string]any{"mode": modeGateway, "gateway": map[string]any{"clients": exampleClients,
		"policy": exampleIdentityPolicy, "identity": exampleIdentity()}}
	for _, m := range append(slices.Clone(chartModes), "gateway with identity") {
		vals := map[string]any{"mode": m}
		switch m {
		case modeGateway:
			vals["gateway"] = map[string]any{"clients": exampleClients}
		case "gateway with identity":
			vals = identity
		}
		res := lint.RunAll(dir, vals, "apps")
		for _, msg := range res.Messages {
			if msg.Severity == support.InfoSev && msg.Path == "Chart.yaml" && msg.Err.Error() == "icon is recommended" {
				continue
			}
			t.Errorf("%s: helm lint: %s", m, msg)
		}
	}
}

// TestHelmChartSchemaRejects: values.schema.json refuses what would weaken
// the pod or point the signer somewhere it must not go, before anything is
// rendered.
func TestHelmChartSchemaRejects(t *testing.T) {
	t.Parallel()
	files := readChartFiles(t)
	for _, tc := range []struct {
		name   string
		values map[string]any
	}{
		{"unknown mode", map[string]any{"mode": "daemonset"}},
		{"unknown top-level value", map[string]any{"hostNetwork": true}},
		{"signer latest", map[string]any{"image": map[string]any{"signer": "ghcr.io/ocisigner/ocisigner:latest"}}},
		{"envoy before 1.37", map[string]any{"image": map[string]any{"envoy": "envoyproxy/envoy:v1.36.2"}}},
		{"app as root", map[string]any{"app": map[string]any{"runAsUser": 0}}},
		{"app security context", map[string]any{"app": map[string]any{"securityContext": map[string]any{"privileged": true}}}},
		{"no signer memory limit", map[string]any{"signer": map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": nil}}}}},
		{"listen address overridden", map[string]any{"signer": map[string]any{"extraEnv": []any{map[string]any{"name": "OCISIGNER_LISTEN", "value": ":50051"}}}}},
		{"secret in the environment", map[string]any{"signer": map[string]any{"extraEnv": []any{map[string]any{"name": "OCISIGNER_CLIENT_SECRET", "value": "x"}}}}},
		{"not a signer setting", map[string]any{"signer": map[string]any{"extraEnv": []any{map[string]any{"name": "LD_PRELOAD", "value": "/tmp/x.so"}}}}},
		{"unknown credentials", map[string]any{"credentials": map[string]any{"type": "apiKeyInline"}}},
		{"bad region", map[string]any{"credentials": map[string]any{"workloadIdentity": map[string]any{"region": "ashburn"}}}},
		{"identity domain over http", map[string]any{"credentials": map[string]any{"tokenExchange": map[string]any{"url": "http://idcs-0123456789abcdef0123456789abcdef.identity.oraclecloud.com"}}}},
		{"token for a week", map[string]any{"credentials": map[string]any{"tokenExchange": map[string]any{"expirationSeconds": 604800}}}},
		{"gateway open to all", map[string]any{"mode": modeGateway}},
		{"gateway client of every namespace", map[string]any{"mode": modeGateway, "gateway": map[string]any{"clients": []any{map[string]any{"namespaceSelector": map[string]any{}}}}}},
		{"gateway client by address", map[string]any{"mode": modeGateway, "gateway": map[string]any{"clients": []any{map[string]any{"ipBlock": map[string]any{"cidr": "0.0.0.0/0"}}}}}},
		{"gateway on the nodes", map[string]any{"gateway": map[string]any{"service": map[string]any{"type": "NodePort"}}}},
		{"one gateway pod", map[string]any{"gateway": map[string]any{"replicas": 1}}},
		{"no disruption allowed", map[string]any{"gateway": map[string]any{"podDisruptionBudget": map[string]any{"maxUnavailable": 0}}}},
		{"istio host not OCI", map[string]any{"istio": map[string]any{"hosts": []any{"objectstorage.us-ashburn-1.oraclecloud.com.evil.example"}}}},
		{"istio wildcard host", map[string]any{"istio": map[string]any{"hosts": []any{"*.oraclecloud.com"}}}},
		{"istio no hosts", map[string]any{"istio": map[string]any{"hosts": []any{}}}},
		{"route for another domain", map[string]any{"envoyGateway": map[string]any{"hostnames": []any{"*.example.com"}}}},
		{"Envoy Gateway's 200 ms", map[string]any{"envoyGateway": map[string]any{"messageTimeout": "200ms"}}},
		{"buffer in bytes", map[string]any{"envoyGateway": map[string]any{"requestBufferLimit": "33554432"}}},
		{"a policy on a sidecar", map[string]any{"gateway": map[string]any{"policy": examplePolicy}}},
		{"keys without a policy", map[string]any{"mode": modeGateway, "gateway": map[string]any{"clients": exampleClients, "keys": exampleKeys}}},
		{"a key itself in keys", map[string]any{"mode": modeGateway, "gateway": map[string]any{"clients": exampleClients, "policy": examplePolicy,
			"keys": "team-c-chat ocisk_" + strings.Repeat("A", 43) + "\n"}}},
		{"policy file set beside the chart's", map[string]any{"signer": map[string]any{"extraEnv": []any{map[string]any{"name": "OCISIGNER_POLICY", "value": "/tmp/p.yaml"}}}}},
		{"intercept in mode istio", map[string]any{"mode": modeIstio, "intercept": map[string]any{"enabled": true}}},
		{"intercept in mode envoyGateway", map[string]any{"mode": modeEnvoyGateway, "intercept": map[string]any{"enabled": true}}},
		{"intercept in mode gateway", map[string]any{"mode": modeGateway, "gateway": map[string]any{"clients": exampleClients}, "intercept": map[string]any{"enabled": true}}},
		{"intercept switched on by extraEnv", map[string]any{"signer": map[string]any{"extraEnv": []any{map[string]any{"name": "OCISIGNER_INTERCEPT", "value": "true"}}}}},
		{"CA key file by extraEnv", map[string]any{"signer": map[string]any{"extraEnv": []any{map[string]any{"name": "OCISIGNER_CA_KEY", "value": "/tmp/ca-key.pem"}}}}},
		{"CA key inline in values", map[string]any{"intercept": map[string]any{"enabled": true, "caKey": testPEMKey}}},
		{"a key in the app's environment", map[string]any{"app": map[string]any{"env": []any{map[string]any{"name": "CA_KEY", "value": testPEMKey}}}}},
		{"the app's proxy overridden", map[string]any{"intercept": map[string]any{"enabled": true},
			"app": map[string]any{"env": []any{map[string]any{"name": "HTTPS_PROXY", "value": "http://proxy.corp.example:3128"}}}}},
		{"no proxy for anything", map[string]any{"intercept": map[string]any{"noProxy": []any{"*"}}}},
		{"no proxy for a top-level domain", map[string]any{"intercept": map[string]any{"noProxy": []any{".com"}}}},
		{"no proxy for OCI", map[string]any{"intercept": map[string]any{"noProxy": []any{".oraclecloud.com"}}}},
	} {
		_, err := renderChart(files, chartCase{name: tc.name, release: "example-app", values: tc.values})
		if err == nil {
			t.Errorf("%s: values accepted", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), "schema") {
			t.Errorf("%s: refused, but not by the schema: %v", tc.name, err)
		}
	}
}

// TestHelmChartInterceptNeedsSidecar: the template refuses interception
// outside mode sidecar even when the schema is skipped (helm template
// --skip-schema-validation), since no other mode's Envoy terminates
// CONNECT.
func TestHelmChartInterceptNeedsSidecar(t *testing.T) {
	t.Parallel()
	files := readChartFiles(t)
	for _, m := range []string{modeGateway, modeIstio, modeEnvoyGateway} {
		vals := map[string]any{"mode": m, "intercept": map[string]any{"enabled": true}, "gateway": map[string]any{"clients": exampleClients}}
		_, err := renderChartSchema(files, chartCase{name: m, release: "example-app", values: vals}, true)
		if err == nil || !strings.Contains(err.Error(), "intercept.enabled needs mode sidecar") {
			t.Errorf("mode %s with interception, no schema: %v", m, err)
		}
	}
	if _, err := renderChartSchema(files, chartCase{name: "sidecar", release: "example-app",
		values: map[string]any{"intercept": map[string]any{"enabled": true}}}, true); err != nil {
		t.Errorf("mode sidecar with interception, no schema: %v", err)
	}
}
