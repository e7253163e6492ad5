package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/ocisigner/ocisigner/policy"
)

// The chart's shared gateway that knows its callers (mode gateway with
// gateway.identity, templates/_identity.tpl): Envoy runs
// deploy/shared-gateway/envoy.yaml instead of the root envoy.yaml, with the
// gateway's TLS Secret and the cluster's JWKS mounted in Envoy alone. What
// Envoy runs is checked here by sharedgateway_test.go's own checks, so the
// chart can only deploy a file those checks pass; the pod, Service and
// NetworkPolicy by kubernetes_test.go's and the chart's checks, with the
// shared gateway's listener (10443) in place of envoy.yaml's.

// modeGatewayIdentity is the pseudo-mode of the checks that apply to mode
// gateway with gateway.identity on (chartChecksFor).
const modeGatewayIdentity = "gateway with identity"

// The file's provider says what the chart's values.yaml says by default;
// _identity.tpl replaces them only when the values differ.
const (
	identityFileIssuer   = "https://kubernetes.default.svc.cluster.local"
	identityFileAudience = "ocisigner"
)

// chartIdentity is gateway.identity as an install sets it.
type chartIdentity struct {
	secretName, jwksConfigMap, issuer, audience string
}

// exampleIdentity is a gateway.identity value: a cert-manager Secret and a
// JWKS ConfigMap, the file's issuer and audience.
func exampleIdentity() map[string]any {
	return map[string]any{
		"mtls":                 map[string]any{"secretName": "oci-gw-tls"},
		"serviceAccountTokens": map[string]any{"jwksConfigMap": "k8s-jwks"},
	}
}

// exampleIdentityPolicy names a caller of each kind the gateway verifies.
const exampleIdentityPolicy = `version: 1
rules:
  - name: builders
    callers:
      - spiffe: spiffe://cluster.local/ns/team-a/sa/*
    profiles: [DEFAULT]
    services: [objectstorage]
    methods: [GET, PUT]
  - name: reporters
    callers:
      - jwt:
          issuer: https://kubernetes.default.svc.cluster.local
          subject: system:serviceaccount:team-b:*
    profiles: [DEFAULT]
    services: [core]
    methods: [GET]
  - name: team-c-chat
    callers:
      - key: team-c-*
    profiles: [DEFAULT]
    services: [genai]
    methods: [POST]
`

// identityOf reads gateway.identity from a case's values (defaults as in
// values.yaml); nil when it is off.
func identityOf(values map[string]any) *chartIdentity {
	g, _ := values["gateway"].(map[string]any)
	i, _ := g["identity"].(map[string]any)
	mtls, _ := i["mtls"].(map[string]any)
	sa, _ := i["serviceAccountTokens"].(map[string]any)
	id := &chartIdentity{issuer: identityFileIssuer, audience: identityFileAudience}
	id.secretName, _ = mtls["secretName"].(string)
	id.jwksConfigMap, _ = sa["jwksConfigMap"].(string)
	if s, ok := sa["issuer"].(string); ok {
		id.issuer = s
	}
	if s, ok := sa["audience"].(string); ok {
		id.audience = s
	}
	if values["mode"] != modeGateway || (id.secretName == "" && id.jwksConfigMap == "") {
		return nil
	}
	return id
}

// sharedGatewayText is deploy/shared-gateway/envoy.yaml, read once.
var sharedGatewayText = sync.OnceValues(func() (string, error) {
	b, err := os.ReadFile(filepath.Join(repoRoot, sharedGatewayFile))
	return string(b), err
})

// envoyYAML is the shared-gateway file as Envoy must get it: the file
// byte for byte, its provider's issuer and audience set to the values
// (JSON-quoted, as sprig's toJson writes them) where they differ.
func (id *chartIdentity) envoyYAML(file string) string {
	quote := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	if id.issuer != identityFileIssuer {
		file = strings.Replace(file, "issuer: "+identityFileIssuer+"\n", "issuer: "+quote(id.issuer)+"\n", 1)
	}
	if id.audience != identityFileAudience {
		file = strings.Replace(file, "audiences: ["+identityFileAudience+"]\n", "audiences: ["+quote(id.audience)+"]\n", 1)
	}
	return file
}

// envoyConfig is the envoy.yaml of the ConfigMap Envoy runs.
func (r *chartRender) envoyConfig() (string, error) {
	c, err := r.container(kubeEnvoyContainer)
	if err != nil {
		return "", err
	}
	m := kubeMountAt(c, path.Dir(envoyConfigIn))
	if m == nil || r.volume(m.Name) == nil || r.volume(m.Name).ConfigMap == nil {
		return "", errors.New("Envoy's ConfigMap not found")
	}
	text, ok := r.configMaps[r.volume(m.Name).ConfigMap.Name][path.Base(envoyConfigIn)]
	if !ok {
		return "", errors.New("Envoy's ConfigMap has no envoy.yaml")
	}
	return text, nil
}

// sharedGatewayOf parses what Envoy runs as a shared-gateway file, once per
// text (the checks only read it).
func (r *chartRender) sharedGatewayOf() (*sharedGateway, error) {
	text, err := r.envoyConfig()
	if err != nil {
		return nil, err
	}
	if v, ok := parsedSharedGateways.Load(text); ok {
		res := v.(parsedSharedGatewayResult)
		return res.g, res.err
	}
	g, err := parseSharedGateway(text, r.refs.rootEnvoy)
	if err == nil && (g.tls == nil || g.jwt == nil) {
		err = errors.New("Envoy's envoy.yaml has no TLS listener or no jwt_authn filter: not a shared-gateway file")
	}
	parsedSharedGateways.Store(text, parsedSharedGatewayResult{g, err})
	return g, err
}

type parsedSharedGatewayResult struct {
	g   *sharedGateway
	err error
}

var parsedSharedGateways sync.Map

var chartIdentityChecks = []modeCheck{
	{[]string{modeGatewayIdentity}, namedCheck[*chartRender]{"identity: Envoy runs the shared-gateway file", checkIdentityEnvoy}},
	{[]string{modeGatewayIdentity}, namedCheck[*chartRender]{"identity: the TLS Secret and the JWKS reach Envoy alone, read-only", checkIdentityFiles}},
	{[]string{modeGatewayIdentity}, namedCheck[*chartRender]{"identity: the signer enforces a policy", func(r *chartRender) error {
		signer, err := r.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		// Without a policy the signer reads no identity: every caller
		// with a certificate would sign as any profile.
		if file, set := kubeEnv(signer, "OCISIGNER_POLICY"); !set || file == "" {
			return errors.New("the signer runs without --policy (OCISIGNER_POLICY): the callers' identities decide nothing")
		}
		p, err := policy.Parse([]byte(r.configMaps[r.fullname+"-policy"]["policy.yaml"]), "policy.yaml")
		if err != nil || len(p.RuleNames()) == 0 {
			return fmt.Errorf("the policy ConfigMap holds no rules (%v)", err)
		}
		return nil
	}}},
	{[]string{modeGatewayIdentity}, namedCheck[*chartRender]{"identity: clients reach the mTLS listener alone", checkIdentityListener}},
}

func checkIdentityEnvoy(r *chartRender) error {
	text, err := r.envoyConfig()
	if err != nil {
		return err
	}
	var p problems
	if text != r.envoyWant {
		p.addf("Envoy's envoy.yaml is not %s with issuer %q and audience %q: run `cp %s %s/files/shared-gateway.yaml`",
			sharedGatewayFile, r.identity.issuer, r.identity.audience, sharedGatewayFile, chartDir)
	}
	g, err := r.sharedGatewayOf()
	if err != nil {
		return errors.Join(p.err(), err)
	}
	for _, c := range sharedGatewayChecks {
		if err := c.fn(g); err != nil {
			p.addf("%s: %v", c.name, err)
		}
	}
	// What the values say, independently of the derivation above.
	providers := g.jwt.GetProviders()
	if len(providers) != 1 {
		p.addf("%d jwt_authn providers, want the one the values configure", len(providers))
	}
	for name, pr := range providers {
		if pr.GetIssuer() != r.identity.issuer || !slices.Equal(pr.GetAudiences(), []string{r.identity.audience}) {
			p.addf("provider %s takes issuer %q and audiences %q, want the values' %q and [%q]",
				name, pr.GetIssuer(), pr.GetAudiences(), r.identity.issuer, r.identity.audience)
		}
	}
	return p.err()
}

// identityFile is a file Envoy reads and where it must come from.
type identityFile struct {
	path, what string
	secret     bool   // from the TLS Secret (else the JWKS ConfigMap)
	key        string // its key there
}

// checkIdentityFiles: every file the shared-gateway file names (the
// certificate, key and CA, the JWKS) is a key of the Secret or ConfigMap
// the values name, mounted read-only and whole-volume (no subPath) in
// Envoy, and in nothing else.
func checkIdentityFiles(r *chartRender) error {
	g, err := r.sharedGatewayOf()
	if err != nil {
		return err
	}
	envoy, err := r.container(kubeEnvoyContainer)
	if err != nil {
		return err
	}
	cc := g.tls.GetCommonTlsContext()
	var files []identityFile
	for _, c := range cc.GetTlsCertificates() {
		files = append(files, identityFile{c.GetCertificateChain().GetFilename(), "certificate", true, "tls.crt"},
			identityFile{c.GetPrivateKey().GetFilename(), "private key", true, "tls.key"})
	}
	files = append(files, identityFile{cc.GetValidationContext().GetTrustedCa().GetFilename(), "client CA", true, "ca.crt"})
	for _, pr := range g.jwt.GetProviders() {
		files = append(files, identityFile{pr.GetLocalJwks().GetFilename(), "JWKS", false, "jwks.json"})
	}
	var p problems
	volumes := map[string]bool{}
	for _, f := range files {
		m, rel := mountOver(envoy, f.path)
		if m == nil {
			p.addf("nothing is mounted in Envoy over the %s %q", f.what, f.path)
			continue
		}
		if !volumes[m.Name] && (!m.ReadOnly || m.SubPath != "" || m.SubPathExpr != "") {
			p.addf("%s at %s is mounted writable or by subPath", m.Name, m.MountPath)
		}
		volumes[m.Name] = true
		if err := r.identitySource(m.Name, f, rel); err != nil {
			p.addf("the %s %s: %v", f.what, f.path, err)
		}
	}
	for _, c := range r.allContainers() {
		for _, m := range c.VolumeMounts {
			if volumes[m.Name] && c.Name != kubeEnvoyContainer {
				p.addf("container %s mounts %s: the gateway's TLS key and the JWKS are Envoy's alone", c.Name, m.Name)
			}
		}
	}
	return p.err()
}

// mountOver is the deepest mount of c over file, and file's path in it.
func mountOver(c *corev1.Container, file string) (*corev1.VolumeMount, string) {
	var best *corev1.VolumeMount
	rel := ""
	for i, m := range c.VolumeMounts {
		dir := path.Clean(m.MountPath) + "/"
		if strings.HasPrefix(file, dir) && (best == nil || len(dir) > len(path.Clean(best.MountPath))+1) {
			best, rel = &c.VolumeMounts[i], strings.TrimPrefix(file, dir)
		}
	}
	return best, rel
}

// identitySource: volume puts f's key of the values' Secret (mode 0400) or
// ConfigMap at rel, and is not optional.
func (r *chartRender) identitySource(volume string, f identityFile, rel string) error {
	v := r.volume(volume)
	if v == nil {
		return fmt.Errorf("no volume %s", volume)
	}
	var items []corev1.KeyToPath
	switch {
	case f.secret && v.Secret != nil && v.Secret.SecretName == r.identity.secretName:
		if v.Secret.Optional != nil && *v.Secret.Optional {
			return errors.New("the TLS Secret is optional: without it Envoy would start on another file or not at all")
		}
		if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400 {
			return fmt.Errorf("the TLS Secret's files are mode %s, want 0400", octal(v.Secret.DefaultMode))
		}
		items = v.Secret.Items
	case !f.secret && v.ConfigMap != nil && v.ConfigMap.Name == r.identity.jwksConfigMap:
		if v.ConfigMap.Optional != nil && *v.ConfigMap.Optional {
			return errors.New("the JWKS ConfigMap is optional")
		}
		items = v.ConfigMap.Items
	default:
		want := "ConfigMap " + r.identity.jwksConfigMap
		if f.secret {
			want = "Secret " + r.identity.secretName
		}
		return fmt.Errorf("volume %s is not the %s", volume, want)
	}
	if len(items) == 0 {
		if rel != f.key {
			return fmt.Errorf("the whole volume holds no %s (it would be the key %s)", rel, rel)
		}
		return nil
	}
	for _, it := range items {
		if it.Path == rel {
			if it.Key != f.key || (it.Mode != nil && *it.Mode != 0o400) {
				return fmt.Errorf("%s is the key %s (mode %s), want %s with the volume's mode", rel, it.Key, octal(it.Mode), f.key)
			}
			return nil
		}
	}
	return fmt.Errorf("volume %s places nothing at %s", volume, rel)
}

func octal(mode *int32) string {
	if mode == nil {
		return "unset"
	}
	return fmt.Sprintf("%#o", *mode)
}

// checkIdentityListener: the Service's port, Envoy's declared port and the
// NetworkPolicy's port for gateway.clients are all the shared gateway's
// mTLS listener, and nothing offers envoy.yaml's plain one.
func checkIdentityListener(r *chartRender) error {
	g, err := r.sharedGatewayOf()
	if err != nil {
		return err
	}
	envoy, err := r.container(kubeEnvoyContainer)
	if err != nil {
		return err
	}
	var p problems
	port := int32(g.listener.GetAddress().GetSocketAddress().GetPortValue())
	for _, cp := range envoy.Ports {
		if cp.ContainerPort != port {
			p.addf("Envoy declares port %d; its configuration listens on %d alone", cp.ContainerPort, port)
		}
	}
	for _, s := range r.services {
		for _, sp := range s.Spec.Ports {
			target := sp.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(sp.Port)
			}
			if n, ok := kubePort(envoy, target); sp.Port != port || !ok || n != port {
				p.addf("Service %s port %d targets %s: clients connect to %d, Envoy's mTLS listener", s.Name, sp.Port, target.String(), port)
			}
		}
	}
	rules, _ := r.ingressRules()
	admitted := false
	for _, rule := range rules {
		if rule.admits(r, listenerPort) {
			p.addf("NetworkPolicy %s admits envoy.yaml's plain port %d", rule.policy, listenerPort)
		}
		if rule.admits(r, port) {
			admitted = true
			namedPeers(&p, rule, port)
		}
	}
	if !admitted {
		p.addf("no NetworkPolicy rule lets gateway.clients reach the mTLS listener %d", port)
	}
	return p.err()
}

const onIdentity, onIdentityIssuer = "gateway with identity", "gateway with identity for another issuer"

const identityCheckEnvoy, identityCheckFiles, identityCheckPolicy, identityCheckListener = "identity: Envoy runs the shared-gateway file",
	"identity: the TLS Secret and the JWKS reach Envoy alone, read-only", "identity: the signer enforces a policy",
	"identity: clients reach the mTLS listener alone"

var chartIdentityMutations = []chartMutation{
	{"files/shared-gateway.yaml", onIdentity, mutation{"shared-gateway copy drifted", replaceFirst("require_client_certificate: true", "require_client_certificate: false"), identityCheckEnvoy}},
	{"files/shared-gateway.yaml", onIdentity, mutation{"copy drifted by a newline", appendText("\n"), identityCheckEnvoy}},
	{"templates/configmap.yaml", onIdentity, mutation{"Envoy gets envoy.yaml", replaceFirst(`(include "ocisigner.envoyConfig" .)`, `(.Files.Get "files/envoy.yaml")`), identityCheckEnvoy}},
	{"templates/_identity.tpl", onIdentityIssuer, mutation{"issuer of the file kept", replaceFirst("{{- if ne $sa.issuer $fileIssuer -}}", "{{- if false -}}"), identityCheckEnvoy}},
	{"templates/_identity.tpl", onIdentityIssuer, mutation{"any audience", replaceFirst(`(printf "audiences: [%s]\n" (toJson $sa.audience))`, `"audiences: []\n"`), identityCheckEnvoy}},
	{"templates/_identity.tpl", onIdentity, mutation{"TLS Secret writable", replaceFirst("  mountPath: /etc/envoy/tls\n  readOnly: true\n", "  mountPath: /etc/envoy/tls\n"), identityCheckFiles}},
	{"templates/_identity.tpl", onIdentity, mutation{"TLS Secret elsewhere", replaceFirst("mountPath: /etc/envoy/tls\n", "mountPath: /etc/envoy/certs\n"), identityCheckFiles}},
	{"templates/_identity.tpl", onIdentity, mutation{"certificate and key swapped", replaceFirst("- {key: tls.crt, path: tls.crt}\n      - {key: tls.key, path: tls.key}", "- {key: tls.key, path: tls.crt}\n      - {key: tls.crt, path: tls.key}"), identityCheckFiles}},
	{"templates/_identity.tpl", onIdentity, mutation{"no CA file", replaceFirst("      - {key: ca.crt, path: ca.crt}\n", ""), identityCheckFiles}},
	{"templates/_identity.tpl", onIdentityIssuer, mutation{"JWKS of another ConfigMap", replaceFirst("    name: {{ $i.serviceAccountTokens.jwksConfigMap }}", "    name: kube-root-ca.crt"), identityCheckFiles}},
	{"templates/_identity.tpl", onIdentity, mutation{"TLS Secret optional", replaceFirst("    secretName: {{ $i.mtls.secretName }}\n", "    secretName: {{ $i.mtls.secretName }}\n    optional: true\n"), identityCheckFiles}},
	{"templates/_identity.tpl", onIdentity, mutation{"private key readable by all", replaceFirst("    secretName: {{ $i.mtls.secretName }}\n    defaultMode: 0400", "    secretName: {{ $i.mtls.secretName }}\n    defaultMode: 0444"), identityCheckFiles}},
	{"templates/_helpers.tpl", onIdentity, mutation{"TLS key in the signer too", replaceFirst(`    {{- include "ocisigner.policyMounts" . | nindent 4 }}`, "    {{- include \"ocisigner.policyMounts\" . | nindent 4 }}\n    {{- include \"ocisigner.identityMounts\" . | nindent 4 }}"), identityCheckFiles}},
	{"templates/_helpers.tpl", onIdentity, mutation{"identity without --policy", replaceFirst("- name: OCISIGNER_POLICY\n  value: /etc/ocisigner/policy/policy.yaml\n", ""), identityCheckPolicy}},
	{"templates/service.yaml", onIdentity, mutation{"Service on the plain port", replaceFirst(`      port: {{ include "ocisigner.gatewayPort" . }}`, "      port: 10000"), identityCheckListener}},
	{"templates/networkpolicy.yaml", onIdentity, mutation{"clients let in on the plain port", replaceFirst(`          port: {{ include "ocisigner.gatewayPort" . }}`, "          port: 10000"), identityCheckListener}},
	{"templates/networkpolicy.yaml", onIdentityIssuer, mutation{"every pod may call the mTLS listener", replaceFirst("    - from:\n        {{- toYaml .Values.gateway.clients | nindent 8 }}\n      ports:", "    - ports:"), identityCheckListener}},
	{"templates/_helpers.tpl", onIdentity, mutation{"Envoy declares the plain port", replaceFirst("      containerPort: {{ include \"ocisigner.gatewayPort\" . }}\n      protocol: TCP\n", "      containerPort: {{ include \"ocisigner.gatewayPort\" . }}\n      protocol: TCP\n    - name: http\n      containerPort: 10000\n      protocol: TCP\n"), identityCheckListener}},
	{"templates/deployment.yaml", onIdentityIssuer, mutation{"a new issuer does not roll", replaceFirst(`checksum/envoy: {{ include "ocisigner.envoyConfig" . | sha256sum }}`, `checksum/envoy: {{ .Files.Get "files/envoy.yaml" | sha256sum }}`), "a changed envoy.yaml rolls the pods"}},
}

// identityValues is an install of mode gateway with a policy and the
// identity given.
func identityValues(identity map[string]any) map[string]any {
	return map[string]any{"mode": modeGateway, "gateway": map[string]any{"clients": exampleClients, "policy": exampleIdentityPolicy, "identity": identity}}
}

// TestHelmChartIdentitySchemaRejects: values.schema.json refuses an identity
// the chart cannot deploy safely, before anything is rendered: outside mode
// gateway, without a policy, half of it, and anything that would weaken
// what Envoy verifies (no such option exists, so each is an unknown value).
func TestHelmChartIdentitySchemaRejects(t *testing.T) {
	t.Parallel()
	files := readChartFiles(t)
	with := func(mtls, sa map[string]any) map[string]any {
		i := exampleIdentity()
		for k, v := range mtls {
			i["mtls"].(map[string]any)[k] = v
		}
		for k, v := range sa {
			i["serviceAccountTokens"].(map[string]any)[k] = v
		}
		return identityValues(i)
	}
	sidecar := map[string]any{"gateway": map[string]any{"identity": exampleIdentity()}}
	eg := map[string]any{"mode": modeEnvoyGateway, "gateway": map[string]any{"policy": examplePolicy, "identity": exampleIdentity()}}
	noPolicy := identityValues(exampleIdentity())
	noPolicy["gateway"].(map[string]any)["policy"] = ""
	// The values every case changes one thing of render as they are.
	if _, err := renderChart(files, chartCase{name: "base", release: "example-app", values: identityValues(exampleIdentity())}); err != nil {
		t.Fatal(err)
	}
	const mtls, sa = "/gateway/identity/mtls", "/gateway/identity/serviceAccountTokens"
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   string // where the schema says the error is
	}{
		{"identity on a sidecar", sidecar, "/mode"},
		{"identity on an Envoy Gateway", eg, "/mode"},
		{"identity without a policy", noPolicy, "/gateway/policy"},
		{"certificates without tokens", with(nil, map[string]any{"jwksConfigMap": ""}), sa + "/jwksConfigMap"},
		{"tokens without certificates", with(map[string]any{"secretName": ""}, nil), mtls + "/secretName"},
		{"unverified client certificates", with(map[string]any{"trustChainVerification": "ACCEPT_UNTRUSTED"}, nil), mtls},
		{"client certificate optional", with(map[string]any{"requireClientCertificate": false}, nil), mtls},
		{"expired client certificates", with(map[string]any{"allowExpiredCertificate": true}, nil), mtls},
		{"token forwarded to OCI", with(nil, map[string]any{"forward": true}), sa},
		{"JWKS fetched", with(nil, map[string]any{"remoteJwks": "http://kubernetes.default.svc/openid/v1/jwks"}), sa},
		{"any audience", with(nil, map[string]any{"audience": ""}), sa + "/audience"},
		{"issuer over http", with(nil, map[string]any{"issuer": "http://kubernetes.default.svc.cluster.local"}), sa + "/issuer"},
		{"issuer that writes YAML", with(nil, map[string]any{"issuer": "https://x\n                          forward: true"}), sa + "/issuer"},
		{"audience that writes YAML", with(nil, map[string]any{"audience": "a]\n                          forward: true"}), sa + "/audience"},
		{"Secret name with a path", with(map[string]any{"secretName": "../tls"}, nil), mtls + "/secretName"},
	} {
		_, err := renderChart(files, chartCase{name: tc.name, release: "example-app", values: tc.values})
		switch {
		case err == nil:
			t.Errorf("%s: values accepted", tc.name)
		case !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), "'"+tc.want):
			t.Errorf("%s: refused, but not by the schema at %s: %v", tc.name, tc.want, err)
		}
	}
}

// TestHelmChartIdentityDocValues: the values docs/shared-gateway.md
// ("## Kubernetes") and docs/kubernetes.md ("## A shared gateway that
// knows its callers") show render with the identity on and pass every
// check of the chart.
func TestHelmChartIdentityDocValues(t *testing.T) {
	t.Parallel()
	files, refs := readChartFiles(t), loadKubeRefs(t)
	for _, d := range []struct{ doc, heading string }{
		{"shared-gateway.md", "## Kubernetes"},
		{"kubernetes.md", "## A shared gateway that knows its callers"},
	} {
		block := docValuesBlock(t, d.doc, d.heading, "  identity:")
		var values map[string]any
		if err := yaml.Unmarshal([]byte(block), &values); err != nil {
			t.Fatalf("%s: %v", d.doc, err)
		}
		r, err := loadChartCase(files, refs, chartCase{name: d.doc, release: "oci-gw", values: values})
		if err != nil {
			t.Fatalf("%s: %v", d.doc, err)
		}
		if r.identity == nil {
			t.Fatalf("%s: the values do not turn the identity on", d.doc)
		}
		for _, c := range chartChecksFor(r) {
			if err := c.fn(r); err != nil {
				t.Errorf("%s: %s: %v", d.doc, c.name, err)
			}
		}
	}
}

// docValuesBlock is the first "```yaml tested" block of docs/doc's section
// heading that holds marker.
func docValuesBlock(t *testing.T, doc, heading, marker string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "docs", doc))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s: no section %q", doc, heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	for rest := section; ; {
		_, after, ok := strings.Cut(rest, "```yaml tested\n")
		if !ok {
			t.Fatalf("%s %q: no yaml tested block with %q", doc, heading, marker)
		}
		block, more, _ := strings.Cut(after, "```")
		if strings.Contains(block, marker) {
			return block
		}
		rest = more
	}
}
