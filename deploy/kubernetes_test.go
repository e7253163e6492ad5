package deploy

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/ocisigner/ocisigner/signer"
)

// The Kubernetes manifests (deploy/kubernetes): two kustomize variants of the
// same pod, an example app with Envoy and ocisigner as native sidecars, that
// differ only in where the signer's credentials come from. Both include
// ../base (Envoy's ConfigMap, generated from a copy of the root envoy.yaml,
// and a NetworkPolicy).
const kubeDir = "deploy/kubernetes"

const (
	kubeSessionVariant  = "session"
	kubeWorkloadVariant = "workload-identity"

	kubeSignerContainer = "ocisigner"
	kubeEnvoyContainer  = "envoy"

	kubeSessionSecret = "oci-session"
	kubeSATokenDir    = "/var/run/secrets/kubernetes.io/serviceaccount"
	kubeRootCA        = "kube-root-ca.crt"
	kubeTmp           = "/tmp"
	kubeKustomizeAPI  = "kustomize.config.k8s.io/v1beta1"
)

var kubeVariants = []string{kubeSessionVariant, kubeWorkloadVariant}

// The signer image: any registry, but an exact release tag (optionally with
// its digest), never latest.
var kubeSignerImage = regexp.MustCompile(`^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*/ocisigner:v\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?$`)

// kubeRefs is what the manifests must agree with outside deploy/kubernetes:
// the root envoy.yaml and docker-compose.yml.
type kubeRefs struct {
	rootEnvoy    string // the root envoy.yaml, byte for byte
	composeImage string // docker-compose.yml's gateway image
	signerHost   string // envoy.yaml's signer cluster endpoint
	signerPort   int32
	listenerPort int32 // envoy.yaml's listener
	envoyAdmin   int32 // envoy.yaml's admin port (loopback only)
}

func loadKubeRefs(t *testing.T) kubeRefs {
	t.Helper()
	root := readRepoFile(t, "envoy.yaml")
	c, err := parseEnvoy(root)
	if err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	cl := c.clusters[signerClusterName]
	if cl == nil {
		t.Fatal("envoy.yaml has no signer cluster")
	}
	sa := cl.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	// docker-compose.yml is read for one plain string, without interpolation:
	// the gateway's image has no variables in it.
	var compose struct {
		Services map[string]struct {
			Image string `json:"image"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal([]byte(readRepoFile(t, "docker-compose.yml")), &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	img := compose.Services[gatewayService].Image
	if img == "" || strings.Contains(img, "$") {
		t.Fatalf("docker-compose.yml: gateway image %q is not a literal", img)
	}
	return kubeRefs{
		rootEnvoy:    root,
		composeImage: img,
		signerHost:   sa.GetAddress(),
		signerPort:   int32(sa.GetPortValue()),
		listenerPort: int32(c.bs.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetPortValue()),
		envoyAdmin:   int32(c.bs.GetAdmin().GetAddress().GetSocketAddress().GetPortValue()),
	}
}

// readKubeFiles returns every file under deploy/kubernetes by its slash path
// relative to that folder (base/envoy.yaml, session/deployment.yaml, ...).
func readKubeFiles(t *testing.T) map[string]string {
	t.Helper()
	return readTree(t, kubeDir)
}

// readTree returns every file under the repository folder dir (a slash
// path) by its slash path relative to dir.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	dir = filepath.Join(repoRoot, filepath.FromSlash(dir))
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// kustomization is the subset of kustomize's Kustomization the manifests use.
// It is decoded strictly: a field outside it (patches, replacements,
// generatorOptions, images, ...) could make what `kubectl apply -k` applies
// differ from the files checked here, so it fails the load until this test
// learns it.
type kustomization struct {
	APIVersion         string   `json:"apiVersion"`
	Kind               string   `json:"kind"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `json:"name"`
		Files []string `json:"files"`
	} `json:"configMapGenerator"`
	// Patches: strategic merge patches from files only (no target, no
	// inline patch, no JSON 6902), applied by applyPatch.
	Patches []struct {
		Path string `json:"path"`
	} `json:"patches"`
}

// kubeVariant is one variant as `kubectl apply -k` would see it: every
// manifest of its kustomization and of the bases it includes, decoded into
// the Kubernetes API types.
type kubeVariant struct {
	name   string
	refs   kubeRefs
	deploy *appsv1.Deployment
	// configMaps holds ConfigMap manifests and generated ConfigMaps (by the
	// generator's name, which kustomize rewrites in the references).
	configMaps      map[string]map[string]string
	serviceAccounts map[string]*corev1.ServiceAccount
	secrets         []*corev1.Secret
	netpols         []*networkingv1.NetworkPolicy
	// intercept: HTTPS interception is meant to be on (the intercept
	// overlay, the chart's intercept.enabled).
	intercept bool
}

func loadKubeVariant(files map[string]string, refs kubeRefs, name string) (*kubeVariant, error) {
	return loadKubeVariantAt(files, refs, name, name)
}

// loadKubeVariantAt loads the kustomization in dir, whose credentials are
// those of the variant name (an overlay names the variant it patches).
func loadKubeVariantAt(files map[string]string, refs kubeRefs, dir, name string) (*kubeVariant, error) {
	v := &kubeVariant{
		name:            name,
		refs:            refs,
		configMaps:      map[string]map[string]string{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
	}
	if err := v.loadKustomization(files, dir, map[string]bool{}); err != nil {
		return nil, err
	}
	if v.deploy == nil {
		return nil, fmt.Errorf("%s: no Deployment", dir)
	}
	return v, nil
}

// inKubeTree cleans p (relative to deploy/kubernetes) and refuses a path
// that leaves the folder.
func inKubeTree(p string) (string, error) {
	p = path.Clean(p)
	if p == ".." || strings.HasPrefix(p, "../") || path.IsAbs(p) {
		return "", fmt.Errorf("%s is outside %s", p, kubeDir)
	}
	return p, nil
}

func (v *kubeVariant) loadKustomization(files map[string]string, dir string, seen map[string]bool) error {
	if seen[dir] {
		return fmt.Errorf("%s: included twice", dir)
	}
	seen[dir] = true
	kpath := path.Join(dir, "kustomization.yaml")
	text, ok := files[kpath]
	if !ok {
		return fmt.Errorf("%s: no kustomization.yaml", dir)
	}
	var k kustomization
	if err := kubeDecodeStrict([]byte(text), &k); err != nil {
		return fmt.Errorf("%s: %w", kpath, err)
	}
	if k.APIVersion != kubeKustomizeAPI || k.Kind != "Kustomization" {
		return fmt.Errorf("%s: %s %s, want %s Kustomization", kpath, k.APIVersion, k.Kind, kubeKustomizeAPI)
	}
	used := map[string]bool{kpath: true}
	for _, r := range k.Resources {
		p, err := inKubeTree(path.Join(dir, r))
		if err != nil {
			return fmt.Errorf("%s: resource %s: %w", kpath, r, err)
		}
		if _, isDir := files[path.Join(p, "kustomization.yaml")]; isDir {
			if err := v.loadKustomization(files, p, seen); err != nil {
				return err
			}
			continue
		}
		text, ok := files[p]
		if !ok {
			return fmt.Errorf("%s: resource %s does not exist", kpath, r)
		}
		used[p] = true
		if err := v.addManifests(p, text); err != nil {
			return err
		}
	}
	for _, g := range k.ConfigMapGenerator {
		if g.Name == "" {
			return fmt.Errorf("%s: configMapGenerator without a name", kpath)
		}
		if _, dup := v.configMaps[g.Name]; dup {
			return fmt.Errorf("%s: ConfigMap %s defined twice", kpath, g.Name)
		}
		data := map[string]string{}
		for _, f := range g.Files {
			key, src, renamed := strings.Cut(f, "=")
			if !renamed {
				src, key = f, path.Base(f)
			}
			p, err := inKubeTree(path.Join(dir, src))
			if err != nil || !strings.HasPrefix(p, dir+"/") {
				return fmt.Errorf("%s: generator file %s must be inside %s", kpath, src, dir)
			}
			content, ok := files[p]
			if !ok {
				return fmt.Errorf("%s: generator file %s does not exist", kpath, src)
			}
			used[p] = true
			data[key] = content
		}
		v.configMaps[g.Name] = data
	}
	for _, pt := range k.Patches {
		p, err := inKubeTree(path.Join(dir, pt.Path))
		if err != nil || !strings.HasPrefix(p, dir+"/") {
			return fmt.Errorf("%s: patch %s must be inside %s", kpath, pt.Path, dir)
		}
		text, ok := files[p]
		if !ok {
			return fmt.Errorf("%s: patch %s does not exist", kpath, pt.Path)
		}
		used[p] = true
		if err := v.applyPatch(p, text); err != nil {
			return err
		}
	}
	// A manifest in the folder that kustomize does not apply is a mistake
	// (a forgotten ServiceAccount, a stale copy).
	for f := range files {
		if path.Dir(f) == dir && (strings.HasSuffix(f, ".yaml") || strings.HasSuffix(f, ".yml")) && !used[f] {
			return fmt.Errorf("%s is not used by %s", f, kpath)
		}
	}
	return nil
}

// kubeDecodeStrict decodes one YAML document the way the API server does
// with strict field validation: duplicate keys, unknown fields and field
// names in the wrong case are errors (encoding/json would match `readonly`
// to readOnly).
func kubeDecodeStrict(doc []byte, obj any) error {
	js, err := yamlToJSON(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(js, obj)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// yamlToJSON is yaml.YAMLToJSONStrict (a duplicate key is an error),
// converted once per distinct document: the chart's matrix, its mutations
// and the kustomize variants decode the same documents many times, and
// under -race the YAML parser was most of this package's time. Callers
// must not modify the bytes returned.
func yamlToJSON(doc []byte) ([]byte, error) {
	if v, ok := yamlJSONs.Load(string(doc)); ok {
		r := v.(yamlJSONResult)
		return r.js, r.err
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	yamlJSONs.Store(string(doc), yamlJSONResult{js, err})
	return js, err
}

type yamlJSONResult struct {
	js  []byte
	err error
}

var yamlJSONs sync.Map

// typeMetaOf reads a document's apiVersion and kind; nil is a document of
// comments only.
func typeMetaOf(doc []byte) (*metav1.TypeMeta, error) {
	js, err := yamlToJSON(doc)
	if err != nil {
		return nil, err
	}
	var tm *metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, err
	}
	return tm, nil
}

// addManifests decodes every YAML document of a file strictly into the API
// type its apiVersion and kind name.
func (v *kubeVariant) addManifests(file, text string) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(text)))
	for n := 1; ; n++ {
		doc, err := r.Read()
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
			continue // only comments
		}
		where := fmt.Sprintf("%s document %d (%s)", file, n, tm.Kind)
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			if v.deploy != nil {
				return fmt.Errorf("%s: a second Deployment", where)
			}
			d := &appsv1.Deployment{}
			if err := kubeDecodeStrict(doc, d); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			v.deploy = d
		case "v1 ConfigMap":
			cm := &corev1.ConfigMap{}
			if err := kubeDecodeStrict(doc, cm); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			if _, dup := v.configMaps[cm.Name]; dup {
				return fmt.Errorf("%s: ConfigMap %s defined twice", where, cm.Name)
			}
			v.configMaps[cm.Name] = cm.Data
		case "v1 ServiceAccount":
			sa := &corev1.ServiceAccount{}
			if err := kubeDecodeStrict(doc, sa); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			v.serviceAccounts[sa.Name] = sa
		case "v1 Secret":
			sec := &corev1.Secret{}
			if err := kubeDecodeStrict(doc, sec); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			v.secrets = append(v.secrets, sec)
		case "networking.k8s.io/v1 NetworkPolicy":
			np := &networkingv1.NetworkPolicy{}
			if err := kubeDecodeStrict(doc, np); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			v.netpols = append(v.netpols, np)
		default:
			return fmt.Errorf("%s document %d: unexpected apiVersion %q kind %q", file, n, tm.APIVersion, tm.Kind)
		}
	}
}

// --- helpers over the pod -----------------------------------------------------

func (v *kubeVariant) pod() *corev1.PodSpec { return &v.deploy.Spec.Template.Spec }

// allContainers lists init containers (the native sidecars) and containers.
func (v *kubeVariant) allContainers() []*corev1.Container {
	var out []*corev1.Container
	for i := range v.pod().InitContainers {
		out = append(out, &v.pod().InitContainers[i])
	}
	for i := range v.pod().Containers {
		out = append(out, &v.pod().Containers[i])
	}
	return out
}

func (v *kubeVariant) container(name string) (*corev1.Container, error) {
	for _, c := range v.allContainers() {
		if c.Name == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("no container %q", name)
}

func (v *kubeVariant) volume(name string) *corev1.Volume {
	for i, vol := range v.pod().Volumes {
		if vol.Name == name {
			return &v.pod().Volumes[i]
		}
	}
	return nil
}

func kubeMountAt(c *corev1.Container, mountPath string) *corev1.VolumeMount {
	for i, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) == mountPath {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

// kubeEnv returns a literal environment value; a value from a reference
// (valueFrom) counts as not set.
func kubeEnv(c *corev1.Container, name string) (string, bool) {
	val, found := "", false
	for _, e := range c.Env {
		if e.Name == name { // the last one wins, as in the kubelet
			val, found = e.Value, e.ValueFrom == nil
		}
	}
	return val, found
}

// kubePort resolves a probe's or policy's port (number or name) against a
// container's ports.
func kubePort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	if p.Type == intstr.Int {
		return p.IntVal, true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

func kubeCmdline(c *corev1.Container) []string { return slices.Concat(c.Command, c.Args) }

func kubeFlagValue(args []string, flag string) (string, bool) {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return "", false
	}
	return args[i+1], true
}

// kubeTokenAutomounted reports whether the service-account admission would
// mount the API token into every container.
func (v *kubeVariant) kubeTokenAutomounted() bool {
	if a := v.pod().AutomountServiceAccountToken; a != nil {
		return *a
	}
	name := v.pod().ServiceAccountName
	if name == "" {
		name = "default"
	}
	if sa := v.serviceAccounts[name]; sa != nil && sa.AutomountServiceAccountToken != nil {
		return *sa.AutomountServiceAccountToken
	}
	return true
}

func kubeHTTPProbe(p *problems, c *corev1.Container, what string, pr *corev1.Probe, wantPath string, wantPort int32) {
	if pr == nil || pr.HTTPGet == nil {
		p.addf("%s: no httpGet %s", what, wantPath)
		return
	}
	if pr.HTTPGet.Path != wantPath {
		p.addf("%s: path %q, want %q", what, pr.HTTPGet.Path, wantPath)
	}
	if port, ok := kubePort(c, pr.HTTPGet.Port); !ok || port != wantPort {
		p.addf("%s: port %s is not the admin port %d", what, pr.HTTPGet.Port.String(), wantPort)
	}
	if pr.HTTPGet.Scheme != "" && pr.HTTPGet.Scheme != corev1.URISchemeHTTP {
		p.addf("%s: scheme %s, the admin server speaks HTTP", what, pr.HTTPGet.Scheme)
	}
	if pr.TimeoutSeconds != 0 && pr.PeriodSeconds != 0 && pr.TimeoutSeconds > pr.PeriodSeconds {
		p.addf("%s: timeout %ds longer than the period %ds", what, pr.TimeoutSeconds, pr.PeriodSeconds)
	}
}

// --- checks -------------------------------------------------------------------

// kubeChecks: the pod's checks, and interception's
// (kubernetes_intercept_test.go).
var kubeChecks = slices.Concat(kubePodChecks, kubeInterceptChecks)

var kubePodChecks = []namedCheck[*kubeVariant]{
	{"signer image and command", func(v *kubeVariant) error {
		var p problems
		c, err := v.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		if !kubeSignerImage.MatchString(c.Image) {
			p.addf("image %q is not pinned to a release (…/ocisigner:vX.Y.Z)", c.Image)
		}
		// The image has no shell: the entrypoint must stay the binary.
		if len(c.Command) > 0 {
			p.addf("command %q replaces the image's entrypoint %s", c.Command, signerBinary)
		}
		if len(c.Args) > 0 && !slices.Equal(c.Args, []string{"serve"}) {
			p.addf("args %q, want [serve] (or the image's default)", c.Args)
		}
		return p.err()
	}},
	{"signer ports", func(v *kubeVariant) error {
		c, err := v.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		var got []string
		for _, cp := range c.Ports {
			proto := cp.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			got = append(got, fmt.Sprintf("%s=%d/%s hostPort=%d", cp.Name, cp.ContainerPort, proto, cp.HostPort))
		}
		want := []string{
			fmt.Sprintf("grpc=%d/TCP hostPort=0", v.refs.signerPort),
			fmt.Sprintf("admin=%d/TCP hostPort=0", adminPort),
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("ports %q, want %q", got, want)
		}
		return nil
	}},
	{"signer probes", func(v *kubeVariant) error {
		var p problems
		c, err := v.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		kubeHTTPProbe(&p, c, "readinessProbe", c.ReadinessProbe, "/readyz", adminPort)
		// Liveness (and startup, which restarts the container just the same)
		// must not depend on credentials: a restart never fixes them.
		kubeHTTPProbe(&p, c, "livenessProbe", c.LivenessProbe, "/healthz", adminPort)
		if c.StartupProbe != nil {
			kubeHTTPProbe(&p, c, "startupProbe", c.StartupProbe, "/healthz", adminPort)
		}
		if lp := c.LivenessProbe; lp != nil {
			if lp.FailureThreshold != 0 && lp.FailureThreshold < 3 {
				p.addf("livenessProbe.failureThreshold %d: one slow answer must not restart the signer", lp.FailureThreshold)
			}
			if lp.PeriodSeconds != 0 && lp.PeriodSeconds < 5 {
				p.addf("livenessProbe.periodSeconds %d is too eager", lp.PeriodSeconds)
			}
		}
		return p.err()
	}},
	{"signer addresses", func(v *kubeVariant) error {
		var p problems
		c, err := v.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		// Envoy reaches the signer through hostAliases on loopback, and
		// nothing else may: the signer must not listen on the pod IP.
		listen, _ := kubeEnv(c, "OCISIGNER_LISTEN")
		ap, err := netip.ParseAddrPort(listen)
		if err != nil || !ap.Addr().IsLoopback() || int32(ap.Port()) != v.refs.signerPort {
			p.addf("OCISIGNER_LISTEN = %q, want a loopback address on envoy.yaml's signer port %d", listen, v.refs.signerPort)
		} else if ip := kubeAliasIP(v, v.refs.signerHost); ip != ap.Addr().String() {
			p.addf("OCISIGNER_LISTEN = %q, but hostAliases maps %s to %q", listen, v.refs.signerHost, ip)
		}
		if a, _ := kubeEnv(c, "OCISIGNER_ADMIN"); a != fmt.Sprintf(":%d", adminPort) {
			p.addf("OCISIGNER_ADMIN = %q, want :%d (kubelet probes and scrapes on the pod IP)", a, adminPort)
		}
		if f, _ := kubeEnv(c, "OCISIGNER_LOG_FORMAT"); f != "json" {
			p.addf("OCISIGNER_LOG_FORMAT = %q, want json", f)
		}
		return p.err()
	}},
	{"session credentials", func(v *kubeVariant) error {
		if v.name != kubeSessionVariant {
			return nil
		}
		var p problems
		c, err := v.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		if cfg, _ := kubeEnv(c, "OCI_CLI_CONFIG_FILE"); cfg != path.Join(ociMountPoint, "config") {
			p.addf("OCI_CLI_CONFIG_FILE = %q, want %s/config", cfg, ociMountPoint)
		}
		if prof, _ := kubeEnv(c, "OCI_CLI_PROFILE"); prof == "" {
			p.addf("OCI_CLI_PROFILE is not set")
		}
		if pr, _ := kubeEnv(c, "OCISIGNER_PRINCIPAL"); pr != "" {
			p.addf("OCISIGNER_PRINCIPAL = %q: the session profile comes from the config file", pr)
		}
		if r, ok := kubeEnv(c, "OCISIGNER_SESSION_REFRESH"); ok && r != "true" {
			p.addf("OCISIGNER_SESSION_REFRESH = %q: the token in the Secret expires within the hour", r)
		}
		if w, ok := kubeEnv(c, "OCISIGNER_WRITE_BACK"); ok && w != "false" {
			p.addf("OCISIGNER_WRITE_BACK = %q: the Secret mount is read-only", w)
		}
		m := kubeMountAt(c, ociMountPoint)
		if m == nil {
			return errors.Join(p.err(), fmt.Errorf("nothing mounted at %s", ociMountPoint))
		}
		if !m.ReadOnly || m.SubPath != "" || m.SubPathExpr != "" {
			p.addf("%s must be the whole volume, read-only (readOnly %v, subPath %q)", ociMountPoint, m.ReadOnly, m.SubPath+m.SubPathExpr)
		}
		vol := v.volume(m.Name)
		switch {
		case vol == nil || vol.Secret == nil:
			p.addf("%s is not a Secret volume", ociMountPoint)
		default:
			s := vol.Secret
			if s.SecretName != kubeSessionSecret {
				p.addf("%s mounts Secret %q, want %q", ociMountPoint, s.SecretName, kubeSessionSecret)
			}
			if s.DefaultMode == nil {
				p.addf("Secret defaultMode not set, want 0400")
			} else if *s.DefaultMode != 0o400 {
				p.addf("Secret defaultMode %#o, want 0400 (an octal YAML literal: 400 is decimal)", *s.DefaultMode)
			}
			if s.Optional != nil && *s.Optional {
				p.addf("the Secret must not be optional: without it the signer cannot sign")
			}
		}
		// kubelet makes the Secret's files readable by the fsGroup (0400
		// becomes 0440); without it only root could read them.
		sc := v.pod().SecurityContext
		if sc == nil || sc.FSGroup == nil || *sc.FSGroup == 0 {
			p.addf("the pod needs a non-root fsGroup so the non-root signer can read the Secret's files")
		}
		return p.err()
	}},
	{"workload identity credentials", func(v *kubeVariant) error {
		if v.name != kubeWorkloadVariant {
			return nil
		}
		var p problems
		c, err := v.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		if pr, _ := kubeEnv(c, "OCISIGNER_PRINCIPAL"); pr != "workload" {
			p.addf("OCISIGNER_PRINCIPAL = %q, want workload", pr)
		}
		if ver, _ := kubeEnv(c, "OCI_RESOURCE_PRINCIPAL_VERSION"); ver != "2.2" {
			p.addf("OCI_RESOURCE_PRINCIPAL_VERSION = %q, want 2.2", ver)
		}
		if r, _ := kubeEnv(c, "OCI_RESOURCE_PRINCIPAL_REGION"); !slices.Contains(signer.KnownRegions(), r) {
			p.addf("OCI_RESOURCE_PRINCIPAL_REGION = %q is not a region identifier", r)
		}
		sa := v.pod().ServiceAccountName
		switch {
		case sa == "" || sa == "default":
			p.addf("serviceAccountName %q: the workload needs its own service account for IAM policies to name", sa)
		case v.serviceAccounts[sa] == nil:
			p.addf("serviceAccountName %q has no ServiceAccount manifest", sa)
		}
		// The token (and the cluster CA) must be at the standard path in the
		// signer: automounted, or a projected volume there.
		if m := kubeMountAt(c, kubeSATokenDir); m != nil {
			if !m.ReadOnly || m.SubPath != "" || m.SubPathExpr != "" {
				p.addf("%s must be mounted whole and read-only", kubeSATokenDir)
			}
			vol := v.volume(m.Name)
			if vol == nil || vol.Projected == nil {
				p.addf("%s is not a projected volume", kubeSATokenDir)
				return p.err()
			}
			var token, ca bool
			for _, src := range vol.Projected.Sources {
				if t := src.ServiceAccountToken; t != nil && t.Path == "token" {
					// The token exchange expects the API server's audience.
					token = t.Audience == ""
				}
				if cm := src.ConfigMap; cm != nil && cm.Name == kubeRootCA {
					ca = len(cm.Items) == 0 || slices.ContainsFunc(cm.Items, func(k corev1.KeyToPath) bool { return k.Key == "ca.crt" && k.Path == "ca.crt" })
				}
			}
			if !token {
				p.addf("the projected volume has no service-account token at %s/token with the default audience", kubeSATokenDir)
			}
			if !ca {
				p.addf("the projected volume has no %s/ca.crt from ConfigMap %s", kubeSATokenDir, kubeRootCA)
			}
		} else if !v.kubeTokenAutomounted() {
			p.addf("no service-account token at %s: not automounted and no projected volume there", kubeSATokenDir)
		}
		return p.err()
	}},
	{"no Secret committed", func(v *kubeVariant) error {
		// The chart's gateway keys Secret holds hashes, no credential
		// (helm_policy_test.go); any other Secret is one.
		for _, s := range v.secrets {
			if err := keysSecretAllowed(s); err != nil {
				return err
			}
		}
		return nil
	}},
	{"service-account token only in the signer", func(v *kubeVariant) error {
		var p problems
		if v.kubeTokenAutomounted() {
			p.addf("the service-account token is automounted into every container; set automountServiceAccountToken: false")
		}
		for _, c := range v.allContainers() {
			if v.name == kubeWorkloadVariant && c.Name == kubeSignerContainer {
				continue
			}
			for _, m := range c.VolumeMounts {
				if mp := path.Clean(m.MountPath); mp == kubeSATokenDir || strings.HasPrefix(mp, kubeSATokenDir+"/") {
					p.addf("container %s mounts %s", c.Name, mp)
				}
			}
		}
		return p.err()
	}},
	{"container hardening", func(v *kubeVariant) error {
		var p problems
		ps := v.pod().SecurityContext
		if ps == nil {
			ps = &corev1.PodSecurityContext{}
		}
		if v.pod().HostNetwork || v.pod().HostPID || v.pod().HostIPC {
			p.addf("the pod must not share the node's network, PID or IPC namespace")
		}
		for _, c := range v.allContainers() {
			sc := c.SecurityContext
			if sc == nil {
				p.addf("%s: no securityContext", c.Name)
				continue
			}
			nonRoot := cmpOr(sc.RunAsNonRoot, ps.RunAsNonRoot)
			if nonRoot == nil || !*nonRoot {
				p.addf("%s: runAsNonRoot is not true", c.Name)
			}
			// A numeric uid: kubelet cannot verify runAsNonRoot against an
			// image's named user (distroless's nonroot).
			if uid := cmpOr(sc.RunAsUser, ps.RunAsUser); uid == nil || *uid == 0 {
				p.addf("%s: runAsUser must be a non-zero uid", c.Name)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				p.addf("%s: readOnlyRootFilesystem is not true", c.Name)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				p.addf("%s: allowPrivilegeEscalation is not false", c.Name)
			}
			if sc.Privileged != nil && *sc.Privileged {
				p.addf("%s: privileged", c.Name)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				p.addf("%s: capabilities must drop ALL and add none", c.Name)
			}
			seccomp := sc.SeccompProfile
			if seccomp == nil {
				seccomp = ps.SeccompProfile
			}
			if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
				p.addf("%s: seccompProfile is not RuntimeDefault", c.Name)
			}
		}
		return p.err()
	}},
	{"resources", func(v *kubeVariant) error {
		var p problems
		for _, c := range v.allContainers() {
			req, lim := c.Resources.Requests, c.Resources.Limits
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				q, ok := req[r]
				if !ok || q.Sign() <= 0 {
					p.addf("%s: no %s request", c.Name, r)
				}
				if l, ok := lim[r]; ok && q.Cmp(l) > 0 {
					p.addf("%s: %s request %s above its limit %s", c.Name, r, q.String(), l.String())
				}
			}
			if _, ok := lim[corev1.ResourceMemory]; !ok {
				p.addf("%s: no memory limit", c.Name)
			}
		}
		return p.err()
	}},
	{"hostAliases map the signer to loopback", func(v *kubeVariant) error {
		ip := kubeAliasIP(v, v.refs.signerHost)
		if ip == "" {
			return fmt.Errorf("no hostAliases entry for %q, the host envoy.yaml sends ext_proc to", v.refs.signerHost)
		}
		if a, err := netip.ParseAddr(ip); err != nil || !a.IsLoopback() {
			return fmt.Errorf("hostAliases map %s to %q, want a loopback address (the signer is in this pod)", v.refs.signerHost, ip)
		}
		return nil
	}},
	{"envoy image matches docker-compose.yml", func(v *kubeVariant) error {
		c, err := v.container(kubeEnvoyContainer)
		if err != nil {
			return err
		}
		if c.Image != v.refs.composeImage || !envoyImage.MatchString(c.Image) {
			return fmt.Errorf("image %q, want docker-compose.yml's pinned gateway image %q", c.Image, v.refs.composeImage)
		}
		return nil
	}},
	{"envoy runs the ConfigMap's envoy.yaml", func(v *kubeVariant) error {
		var p problems
		c, err := v.container(kubeEnvoyContainer)
		if err != nil {
			return err
		}
		if cfg, _ := kubeFlagValue(kubeCmdline(c), "-c"); cfg != envoyConfigIn {
			p.addf("Envoy runs with -c %q, want %s", cfg, envoyConfigIn)
		}
		m := kubeMountAt(c, path.Dir(envoyConfigIn))
		if m == nil {
			return errors.Join(p.err(), fmt.Errorf("nothing mounted at %s", path.Dir(envoyConfigIn)))
		}
		if !m.ReadOnly || m.SubPath != "" || m.SubPathExpr != "" {
			p.addf("%s must be the whole ConfigMap, read-only", m.MountPath)
		}
		vol := v.volume(m.Name)
		if vol == nil || vol.ConfigMap == nil {
			return errors.Join(p.err(), fmt.Errorf("%s is not a ConfigMap volume", m.MountPath))
		}
		data, ok := v.configMaps[vol.ConfigMap.Name]
		if !ok {
			return errors.Join(p.err(), fmt.Errorf("ConfigMap %q is neither generated nor a manifest", vol.ConfigMap.Name))
		}
		key := path.Base(envoyConfigIn)
		if _, ok := data[key]; !ok {
			p.addf("ConfigMap %q has no key %s", vol.ConfigMap.Name, key)
		}
		if len(vol.ConfigMap.Items) > 0 && !slices.Contains(vol.ConfigMap.Items, corev1.KeyToPath{Key: key, Path: key}) {
			p.addf("ConfigMap volume items do not place %s at %s", key, envoyConfigIn)
		}
		return p.err()
	}},
	{"envoy.yaml copy identical", func(v *kubeVariant) error {
		c, err := v.container(kubeEnvoyContainer)
		if err != nil {
			return err
		}
		m := kubeMountAt(c, path.Dir(envoyConfigIn))
		if m == nil || v.volume(m.Name) == nil || v.volume(m.Name).ConfigMap == nil {
			return errors.New("Envoy's ConfigMap not found")
		}
		name := v.volume(m.Name).ConfigMap.Name
		got := v.configMaps[name][path.Base(envoyConfigIn)]
		if got != v.refs.rootEnvoy {
			return fmt.Errorf("ConfigMap %s's envoy.yaml differs from the root envoy.yaml: from the repository root run `cp envoy.yaml %s/base/envoy.yaml`", name, kubeDir)
		}
		return nil
	}},
	{"envoy ports and probes", func(v *kubeVariant) error {
		var p problems
		c, err := v.container(kubeEnvoyContainer)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.ContainerPort == v.refs.listenerPort }) {
			p.addf("Envoy does not declare its listener port %d", v.refs.listenerPort)
		}
		for _, cc := range v.allContainers() {
			for _, cp := range cc.Ports {
				if cp.ContainerPort == v.refs.envoyAdmin || cp.HostPort != 0 {
					p.addf("%s declares port %d (hostPort %d): Envoy's admin %d stays on loopback, nothing on the node", cc.Name, cp.ContainerPort, cp.HostPort, v.refs.envoyAdmin)
				}
			}
		}
		// kubelet probes the pod IP: the admin (loopback) is unreachable, the
		// listener is not.
		for what, pr := range map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe} {
			if pr == nil {
				if what == "readinessProbe" {
					p.addf("Envoy has no readinessProbe")
				}
				continue
			}
			var port intstr.IntOrString
			switch {
			case pr.TCPSocket != nil:
				port = pr.TCPSocket.Port
			case pr.HTTPGet != nil:
				port = pr.HTTPGet.Port
			default:
				p.addf("%s: want a tcpSocket (or httpGet) probe on the listener", what)
				continue
			}
			if n, ok := kubePort(c, port); !ok || n != v.refs.listenerPort {
				p.addf("%s on port %s, want the listener %d", what, port.String(), v.refs.listenerPort)
			}
		}
		return p.err()
	}},
	{"only /tmp emptyDirs writable", func(v *kubeVariant) error {
		var p problems
		for _, vol := range v.pod().Volumes {
			if vol.HostPath != nil {
				p.addf("volume %s is a hostPath", vol.Name)
			}
		}
		for _, c := range v.allContainers() {
			for _, m := range c.VolumeMounts {
				if m.ReadOnly {
					continue
				}
				if vol := v.volume(m.Name); path.Clean(m.MountPath) != kubeTmp || vol == nil || vol.EmptyDir == nil {
					p.addf("%s: %s (volume %s) is writable; only a /tmp emptyDir may be", c.Name, m.MountPath, m.Name)
				}
			}
		}
		for _, name := range []string{kubeSignerContainer, kubeEnvoyContainer} {
			c, err := v.container(name)
			if err != nil {
				return err
			}
			if m := kubeMountAt(c, kubeTmp); m == nil || v.volume(m.Name) == nil || v.volume(m.Name).EmptyDir == nil {
				p.addf("%s: no emptyDir at /tmp (the root filesystem is read-only)", name)
			}
		}
		return p.err()
	}},
	{"native sidecars in order", func(v *kubeVariant) error {
		var p problems
		idx := map[string]int{}
		for i, c := range v.pod().InitContainers {
			idx[c.Name] = i
		}
		for _, name := range []string{kubeSignerContainer, kubeEnvoyContainer} {
			i, ok := idx[name]
			if !ok {
				p.addf("%s is not an init container (native sidecar)", name)
				continue
			}
			c := v.pod().InitContainers[i]
			if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				p.addf("%s: restartPolicy must be Always (a native sidecar, not a run-to-completion init container)", name)
			}
			// kubelet starts the next container once this one's startup
			// probe passes; without one, as soon as the process is created.
			if c.StartupProbe == nil {
				p.addf("%s: no startupProbe, so what follows does not wait for it", name)
			}
		}
		if si, ok := idx[kubeSignerContainer]; ok {
			if ei, ok := idx[kubeEnvoyContainer]; ok && si > ei {
				p.addf("ocisigner must come before envoy: Envoy starts only once the signer serves")
			}
		}
		if len(v.pod().Containers) == 0 {
			p.addf("no app container")
		}
		return p.err()
	}},
	{"network policy keeps the gateway private", func(v *kubeVariant) error {
		var p problems
		podLabels := labels.Set(v.deploy.Spec.Template.Labels)
		if sel, err := metav1.LabelSelectorAsSelector(v.deploy.Spec.Selector); err != nil || sel.Empty() || !sel.Matches(podLabels) {
			p.addf("the Deployment's selector does not select its pods (%v)", err)
		}
		private := []int32{v.refs.listenerPort, v.refs.signerPort}
		isolated := false
		for _, np := range v.netpols {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || !sel.Matches(podLabels) {
				continue
			}
			if slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
				isolated = true
			}
			for _, rule := range np.Spec.Ingress {
				if len(rule.Ports) == 0 {
					p.addf("NetworkPolicy %s lets in every port", np.Name)
				}
				for _, pp := range rule.Ports {
					if pp.Port == nil {
						p.addf("NetworkPolicy %s lets in every port", np.Name)
						continue
					}
					lo, ok := int32(0), false
					if pp.Port.Type == intstr.String {
						for _, c := range v.allContainers() {
							if n, found := kubePort(c, *pp.Port); found {
								lo, ok = n, true
							}
						}
					} else {
						lo, ok = pp.Port.IntVal, true
					}
					hi := lo
					if pp.EndPort != nil {
						hi = *pp.EndPort
					}
					for _, priv := range private {
						if ok && lo <= priv && priv <= hi {
							p.addf("NetworkPolicy %s lets other pods reach port %d", np.Name, priv)
						}
					}
				}
			}
		}
		if !isolated {
			p.addf("no NetworkPolicy isolates the pod for ingress: any pod could use the gateway on %d", v.refs.listenerPort)
		}
		return p.err()
	}},
}

func kubeAliasIP(v *kubeVariant, host string) string {
	ip := ""
	for _, ha := range v.pod().HostAliases {
		if slices.Contains(ha.Hostnames, host) {
			if ip != "" && ip != ha.IP {
				return "conflicting entries"
			}
			ip = ha.IP
		}
	}
	return ip
}

func cmpOr[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

// kubeResults loads every variant from files, and the intercept overlay
// over the variants given, and runs every check. A failed check is
// reported once, with the variant in the message.
func kubeResults(t *testing.T, files map[string]string, refs kubeRefs, intercepted []string, report bool) (map[string]error, error) {
	t.Helper()
	failed := map[string]error{}
	loads := []func() (*kubeVariant, error){}
	for _, name := range kubeVariants {
		loads = append(loads, func() (*kubeVariant, error) { return loadKubeVariant(files, refs, name) })
	}
	for _, name := range intercepted {
		loads = append(loads, func() (*kubeVariant, error) { return loadKubeIntercepted(files, refs, name) })
	}
	for _, load := range loads {
		v, err := load()
		if err != nil {
			return nil, err
		}
		where := v.name
		if v.intercept {
			where = kubeInterceptOverlay + " over " + v.name
		}
		checks := kubeChecks
		if v.name == kubeTokenExchangeVariant {
			checks = allTokenExchangeChecks()
		}
		for _, c := range checks {
			if err := c.fn(v); err != nil {
				if report {
					t.Errorf("%s [%s]: %v", c.name, where, err)
				}
				if _, dup := failed[c.name]; !dup {
					failed[c.name] = fmt.Errorf("[%s] %w", where, err)
				}
			}
		}
	}
	return failed, nil
}

// TestKubernetesManifests loads both variants, and the intercept overlay
// over every variant, and runs every check.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	if _, err := kubeResults(t, readKubeFiles(t), loadKubeRefs(t), kubeInterceptedVariants, true); err != nil {
		t.Fatal(err)
	}
}

// TestKubernetesVariantsShareThePod makes sure the variants differ only in
// credentials: with the signer's credential environment and mounts, their
// volumes and the service account set aside, the Deployments are equal
// field for field.
func TestKubernetesVariantsShareThePod(t *testing.T) {
	t.Parallel()
	files, refs := readKubeFiles(t), loadKubeRefs(t)
	shared := []string{"OCISIGNER_LISTEN", "OCISIGNER_ADMIN", "OCISIGNER_LOG_FORMAT"}
	shape := func(name string) []string {
		v, err := loadKubeVariant(files, refs, name)
		if err != nil {
			t.Fatal(err)
		}
		d := v.deploy.DeepCopy()
		spec := &d.Spec.Template.Spec
		spec.ServiceAccountName = ""
		credentials := map[string]bool{}
		for i := range spec.InitContainers {
			c := &spec.InitContainers[i]
			if c.Name != kubeSignerContainer {
				continue
			}
			c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return !slices.Contains(shared, e.Name) })
			c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
				credentials[m.Name] = m.MountPath != kubeTmp
				return credentials[m.Name]
			})
		}
		spec.Volumes = slices.DeleteFunc(spec.Volumes, func(vol corev1.Volume) bool { return credentials[vol.Name] })
		b, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(string(b), "\n")
	}
	a := shape(kubeSessionVariant)
	for _, other := range []string{kubeWorkloadVariant, kubeTokenExchangeVariant} {
		b := shape(other)
		for i := range min(len(a), len(b)) {
			if a[i] != b[i] {
				t.Fatalf("the variants' pods differ beyond credentials at line %d of their JSON:\n%s: %s\n%s: %s",
					i+1, kubeSessionVariant, a[i], other, b[i])
			}
		}
		if len(a) != len(b) {
			t.Fatalf("%s and %s differ beyond credentials (%d vs %d lines of JSON)", kubeSessionVariant, other, len(a), len(b))
		}
	}
}

const kubeSecretDoc = `
---
apiVersion: v1
kind: Secret
metadata:
  name: oci-session
stringData:
  config: "[DEFAULT]\n"
`

func appendText(s string) func(string) (string, error) {
	return func(orig string) (string, error) { return orig + s, nil }
}

// kubeMutations: the pod's, and interception's
// (kubernetes_intercept_test.go).
var kubeMutations = slices.Concat(kubePodMutations, kubeInterceptMutations)

var kubePodMutations = []fileMutation{
	// Must not load.
	{"session/deployment.yaml", mutation{"field in the wrong case", replaceFirst("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"), ""}},
	{"session/deployment.yaml", mutation{"unknown field", replaceFirst("          restartPolicy: Always\n", "          restartPolicy: Always\n          restartPolicyy: Always\n"), ""}},
	{"session/deployment.yaml", mutation{"duplicate key", replaceFirst("  replicas: 1\n", "  replicas: 1\n  replicas: 2\n"), ""}},
	{"session/deployment.yaml", mutation{"YAML syntax", replaceFirst("spec:\n", "spec: [\n"), ""}},
	{"session/deployment.yaml", mutation{"old apiVersion", replaceFirst("apiVersion: apps/v1", "apiVersion: apps/v1beta2"), ""}},
	{"workload-identity/serviceaccount.yaml", mutation{"unknown kind", replaceFirst("kind: ServiceAccount", "kind: ServiceAcount"), ""}},
	{"session/kustomization.yaml", mutation{"resource missing", replaceFirst("- deployment.yaml", "- deployments.yaml"), ""}},
	{"session/kustomization.yaml", mutation{"resource outside the tree", replaceFirst("- ../base", "- ../../base"), ""}},
	{"workload-identity/kustomization.yaml", mutation{"manifest not listed", replaceFirst("  - serviceaccount.yaml\n", ""), ""}},
	{"base/kustomization.yaml", mutation{"patch the test cannot see", appendText("patches:\n  - target:\n      kind: Deployment\n    patch: |-\n      - op: replace\n        path: /spec/replicas\n        value: 3\n"), ""}},
	{"base/kustomization.yaml", mutation{"generator option", appendText("generatorOptions:\n  disableNameSuffixHash: true\n"), ""}},
	{"base/kustomization.yaml", mutation{"generator file missing", replaceFirst("      - envoy.yaml", "      - envoy-config.yaml"), ""}},

	{"session/deployment.yaml", mutation{"signer latest", replaceFirst("ghcr.io/ocisigner/ocisigner:v0.1.0", "ghcr.io/ocisigner/ocisigner:latest"), "signer image and command"}},
	{"workload-identity/deployment.yaml", mutation{"signer shell command", replaceFirst(`args: ["serve"]`, `command: ["sh", "-c", "ocisigner serve"]`), "signer image and command"}},
	{"session/deployment.yaml", mutation{"signer runs probe", replaceFirst(`args: ["serve"]`, `args: ["probe"]`), "signer image and command"}},

	{"session/deployment.yaml", mutation{"grpc port unnamed", replaceFirst("- name: grpc\n", "- name: ext-proc\n"), "signer ports"}},
	{"workload-identity/deployment.yaml", mutation{"admin port", replaceFirst("containerPort: 9465", "containerPort: 9466"), "signer ports"}},
	{"session/deployment.yaml", mutation{"signer hostPort", replaceFirst("containerPort: 50051\n", "containerPort: 50051\n              hostPort: 50051\n"), "signer ports"}},

	{"session/deployment.yaml", mutation{"readiness on healthz", replaceFirst("path: /readyz", "path: /healthz"), "signer probes"}},
	{"workload-identity/deployment.yaml", mutation{"liveness on credentials", replaceNth("path: /healthz", "path: /readyz", 2), "signer probes"}},
	{"session/deployment.yaml", mutation{"startup on credentials", replaceNth("path: /healthz", "path: /readyz", 1), "signer probes"}},
	{"session/deployment.yaml", mutation{"readiness on the grpc port", replaceFirst("path: /readyz\n              port: admin", "path: /readyz\n              port: grpc"), "signer probes"}},
	{"session/deployment.yaml", mutation{"liveness too eager", replaceNth("failureThreshold: 3\n", "failureThreshold: 1\n", 2), "signer probes"}},
	{"session/deployment.yaml", mutation{"liveness timeout", replaceNth("timeoutSeconds: 3", "timeoutSeconds: 30", 2), "signer probes"}},

	{"session/deployment.yaml", mutation{"signer on all interfaces", replaceFirst("value: 127.0.0.1:50051", `value: ":50051"`), "signer addresses"}},
	{"workload-identity/deployment.yaml", mutation{"signer on another port", replaceFirst("value: 127.0.0.1:50051", "value: 127.0.0.1:50052"), "signer addresses"}},
	{"session/deployment.yaml", mutation{"admin on loopback", replaceFirst(`value: ":9465"`, `value: 127.0.0.1:9465`), "signer addresses"}},
	{"session/deployment.yaml", mutation{"text logs", replaceFirst("value: json", "value: text"), "signer addresses"}},

	{"session/deployment.yaml", mutation{"config outside the mount", replaceFirst("value: /oci/config", "value: /home/me/.oci/config"), "session credentials"}},
	{"session/deployment.yaml", mutation{"no profile", replaceFirst("            - name: OCI_CLI_PROFILE\n              value: DEFAULT\n", ""), "session credentials"}},
	{"session/deployment.yaml", mutation{"decimal mode", replaceFirst("defaultMode: 0400", "defaultMode: 400"), "session credentials"}},
	{"session/deployment.yaml", mutation{"other Secret", replaceFirst("secretName: oci-session", "secretName: oci"), "session credentials"}},
	{"session/deployment.yaml", mutation{"Secret optional", replaceFirst("secretName: oci-session\n", "secretName: oci-session\n            optional: true\n"), "session credentials"}},
	{"session/deployment.yaml", mutation{"no refresh", replaceFirst(`OCISIGNER_SESSION_REFRESH
              value: "true"`, `OCISIGNER_SESSION_REFRESH
              value: "false"`), "session credentials"}},
	{"session/deployment.yaml", mutation{"write back", replaceFirst(`OCISIGNER_WRITE_BACK
              value: "false"`, `OCISIGNER_WRITE_BACK
              value: "true"`), "session credentials"}},
	{"session/deployment.yaml", mutation{"no fsGroup", replaceFirst("        fsGroup: 65532\n", ""), "session credentials"}},
	{"session/deployment.yaml", mutation{"Secret by subPath", replaceFirst("mountPath: /oci\n", "mountPath: /oci\n              subPath: config\n"), "session credentials"}},
	{"session/deployment.yaml", mutation{"principal set", replaceFirst("            - name: OCI_CLI_PROFILE\n", "            - name: OCISIGNER_PRINCIPAL\n              value: instance\n            - name: OCI_CLI_PROFILE\n"), "session credentials"}},

	{"workload-identity/deployment.yaml", mutation{"instance principal", replaceFirst("value: workload", "value: instance"), "workload identity credentials"}},
	{"workload-identity/deployment.yaml", mutation{"principal version", replaceFirst(`value: "2.2"`, `value: "2.1"`), "workload identity credentials"}},
	{"workload-identity/deployment.yaml", mutation{"region", replaceFirst("value: us-ashburn-1", "value: us-nowhere-1"), "workload identity credentials"}},
	{"workload-identity/deployment.yaml", mutation{"no service account", replaceFirst("      serviceAccountName: example-app\n", ""), "workload identity credentials"}},
	{"workload-identity/serviceaccount.yaml", mutation{"service account renamed", replaceFirst("  name: example-app\n", "  name: other\n"), "workload identity credentials"}},
	{"workload-identity/deployment.yaml", mutation{"token elsewhere", replaceFirst("path: token\n", "path: sa-token\n"), "workload identity credentials"}},
	{"workload-identity/deployment.yaml", mutation{"token audience", replaceFirst("path: token\n", "path: token\n                  audience: oci\n"), "workload identity credentials"}},
	{"workload-identity/deployment.yaml", mutation{"no CA", replaceFirst("name: kube-root-ca.crt", "name: other-ca"), "workload identity credentials"}},
	{"workload-identity/deployment.yaml", mutation{"token at another path", replaceFirst("mountPath: /var/run/secrets/kubernetes.io/serviceaccount", "mountPath: /var/run/secrets/tokens"), "workload identity credentials"}},

	{"session/deployment.yaml", mutation{"Secret committed", appendText(kubeSecretDoc), "no Secret committed"}},

	{"session/deployment.yaml", mutation{"token automounted", replaceFirst("automountServiceAccountToken: false", "automountServiceAccountToken: true"), "service-account token only in the signer"}},
	{"workload-identity/deployment.yaml", mutation{"token in every container", replaceFirst("automountServiceAccountToken: false", "automountServiceAccountToken: true"), "service-account token only in the signer"}},
	{"workload-identity/deployment.yaml", mutation{"token in the app", replaceLast("            - name: app-tmp\n", "            - name: oke-workload-identity\n              mountPath: /var/run/secrets/kubernetes.io/serviceaccount\n              readOnly: true\n            - name: app-tmp\n"), "service-account token only in the signer"}},

	{"session/deployment.yaml", mutation{"writable root", replaceNth("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", 1), "container hardening"}},
	{"workload-identity/deployment.yaml", mutation{"envoy escalates", replaceNth("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", 2), "container hardening"}},
	{"session/deployment.yaml", mutation{"capabilities kept", replaceFirst("drop: [ALL]", "drop: [NET_RAW]"), "container hardening"}},
	{"session/deployment.yaml", mutation{"capability added", replaceFirst("drop: [ALL]", "drop: [ALL]\n              add: [NET_ADMIN]"), "container hardening"}},
	{"session/deployment.yaml", mutation{"signer as root", replaceFirst("runAsUser: 65532", "runAsUser: 0"), "container hardening"}},
	{"workload-identity/deployment.yaml", mutation{"signer uid unset", replaceFirst("            runAsUser: 65532\n", ""), "container hardening"}},
	{"session/deployment.yaml", mutation{"unconfined", replaceFirst("type: RuntimeDefault", "type: Unconfined"), "container hardening"}},
	{"session/deployment.yaml", mutation{"root allowed", replaceNth("runAsNonRoot: true", "runAsNonRoot: false", 3), "container hardening"}},
	{"session/deployment.yaml", mutation{"host network", replaceFirst("      hostAliases:\n", "      hostNetwork: true\n      hostAliases:\n"), "container hardening"}},

	{"session/deployment.yaml", mutation{"no signer memory limit", replaceFirst("              memory: 512Mi\n", ""), "resources"}},
	{"workload-identity/deployment.yaml", mutation{"request above limit", replaceFirst("memory: 64Mi\n", "memory: 1Gi\n"), "resources"}},
	{"session/deployment.yaml", mutation{"no envoy cpu request", replaceFirst("              cpu: 100m\n", ""), "resources"}},

	{"session/deployment.yaml", mutation{"signer alias elsewhere", replaceFirst("ip: 127.0.0.1", "ip: 10.0.0.1"), "hostAliases map the signer to loopback"}},
	{"workload-identity/deployment.yaml", mutation{"alias for another name", replaceFirst("hostnames: [signer]", "hostnames: [ocisigner]"), "hostAliases map the signer to loopback"}},

	{"session/deployment.yaml", mutation{"envoy drifts from compose", replaceFirst("envoyproxy/envoy:v1.40.0", "envoyproxy/envoy:v1.39.1"), "envoy image matches docker-compose.yml"}},
	{"workload-identity/deployment.yaml", mutation{"envoy latest", replaceFirst("envoyproxy/envoy:v1.40.0", "envoyproxy/envoy:latest"), "envoy image matches docker-compose.yml"}},

	{"session/deployment.yaml", mutation{"envoy config elsewhere", replaceFirst("mountPath: /etc/envoy\n", "mountPath: /etc/envoy-config\n"), "envoy runs the ConfigMap's envoy.yaml"}},
	{"session/deployment.yaml", mutation{"envoy runs another file", replaceFirst(`"-c", "/etc/envoy/envoy.yaml"`, `"-c", "/etc/envoy/other.yaml"`), "envoy runs the ConfigMap's envoy.yaml"}},
	{"workload-identity/deployment.yaml", mutation{"unknown ConfigMap", replaceFirst("name: envoy-config\n            defaultMode", "name: envoy\n            defaultMode"), "envoy runs the ConfigMap's envoy.yaml"}},
	{"base/kustomization.yaml", mutation{"generated key renamed", replaceFirst("      - envoy.yaml", "      - bootstrap.yaml=envoy.yaml"), "envoy runs the ConfigMap's envoy.yaml"}},
	{"session/deployment.yaml", mutation{"envoy config by subPath", replaceFirst("mountPath: /etc/envoy\n", "mountPath: /etc/envoy\n              subPath: envoy.yaml\n"), "envoy runs the ConfigMap's envoy.yaml"}},

	{"base/envoy.yaml", mutation{"copy drifted", replaceFirst("port_value: 10000", "port_value: 10001"), "envoy.yaml copy identical"}},
	{"base/envoy.yaml", mutation{"copy drifted by a newline", appendText("\n"), "envoy.yaml copy identical"}},

	{"session/deployment.yaml", mutation{"listener port", replaceFirst("containerPort: 10000", "containerPort: 10001"), "envoy ports and probes"}},
	{"workload-identity/deployment.yaml", mutation{"admin exposed", replaceFirst("              containerPort: 10000\n              protocol: TCP\n", "              containerPort: 10000\n              protocol: TCP\n            - name: envoy-admin\n              containerPort: 9901\n"), "envoy ports and probes"}},
	{"session/deployment.yaml", mutation{"readiness on the admin", replaceFirst("          readinessProbe:\n            tcpSocket:\n              port: gateway", "          readinessProbe:\n            httpGet:\n              path: /ready\n              port: 9901"), "envoy ports and probes"}},
	{"session/deployment.yaml", mutation{"no envoy readiness", replaceFirst("          readinessProbe:\n            tcpSocket:\n              port: gateway\n            periodSeconds: 10\n            timeoutSeconds: 2\n            failureThreshold: 3\n", ""), "envoy ports and probes"}},

	{"session/deployment.yaml", mutation{"envoy config writable", replaceFirst("mountPath: /etc/envoy\n              readOnly: true\n", "mountPath: /etc/envoy\n"), "only /tmp emptyDirs writable"}},
	{"workload-identity/deployment.yaml", mutation{"scratch elsewhere", replaceFirst("mountPath: /tmp", "mountPath: /var/tmp"), "only /tmp emptyDirs writable"}},
	{"session/deployment.yaml", mutation{"tmp on the node", replaceFirst("emptyDir:\n            sizeLimit: 64Mi", "hostPath:\n            path: /tmp"), "only /tmp emptyDirs writable"}},

	{"session/deployment.yaml", mutation{"signer not a sidecar", replaceFirst("          restartPolicy: Always\n", ""), "native sidecars in order"}},
	{"workload-identity/deployment.yaml", mutation{"envoy without startup probe", replaceFirst("          startupProbe:\n            tcpSocket:\n              port: gateway\n            periodSeconds: 1\n            timeoutSeconds: 1\n            failureThreshold: 60\n", ""), "native sidecars in order"}},
	{"session/deployment.yaml", mutation{"envoy a regular container", moveEnvoyToContainers, "native sidecars in order"}},

	{"base/networkpolicy.yaml", mutation{"gateway allowed in", replaceFirst("port: 9465", "port: 10000"), "network policy keeps the gateway private"}},
	{"base/networkpolicy.yaml", mutation{"every port allowed", replaceFirst("    - ports:\n        - protocol: TCP\n          port: 9465\n", "    - {}\n"), "network policy keeps the gateway private"}},
	{"base/networkpolicy.yaml", mutation{"port range over the signer", replaceFirst("port: 9465", "port: 9465\n          endPort: 60000"), "network policy keeps the gateway private"}},
	{"base/networkpolicy.yaml", mutation{"other pods selected", replaceFirst("app.kubernetes.io/name: example-app", "app.kubernetes.io/name: other-app"), "network policy keeps the gateway private"}},
	{"base/networkpolicy.yaml", mutation{"egress only", replaceFirst("    - Ingress", "    - Egress"), "network policy keeps the gateway private"}},
}

// moveEnvoyToContainers turns the envoy native sidecar into a regular
// container (the shape before Kubernetes 1.29).
func moveEnvoyToContainers(s string) (string, error) {
	start := strings.Index(s, "        - name: envoy\n")
	end := strings.Index(s, "      containers:\n")
	if start < 0 || end < start {
		return "", errors.New("envoy init container not found before containers")
	}
	block := strings.Replace(s[start:end], "          restartPolicy: Always\n", "", 1)
	rest := s[end+len("      containers:\n"):]
	return s[:start] + "      containers:\n" + block + rest, nil
}

// TestKubernetesChecksCatchRegressions applies each mutation and requires the
// named check (or, for want == "", the load) to fail in some variant. Every
// check must be proved by at least one mutation.
func TestKubernetesChecksCatchRegressions(t *testing.T) {
	t.Parallel()
	refs := loadKubeRefs(t)
	mutationProof{
		files:     readKubeFiles(t),
		mutations: kubeMutations,
		known:     checkNamesUnique(t, kubeChecks),
		load: func(t *testing.T, files map[string]string) (map[string]error, error) {
			// The overlay as shipped, over session: its checks are the same
			// over every variant (TestKubernetesManifests runs them there).
			return kubeResults(t, files, refs, []string{kubeSessionVariant}, false)
		},
	}.run(t)
}

// TestKubernetesStrictDecoding pins what the loader rejects, independent of
// the manifests: the decoder must be as strict as the API server's.
func TestKubernetesStrictDecoding(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, doc string
		ok        bool
	}{
		{"plain", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n", true},
		{"comment-only document", "# nothing\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n", true},
		{"unknown field", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\nautomount: false\n", false},
		{"wrong case", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  Name: a\n", false},
		{"duplicate key", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  name: b\n", false},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n", false},
		{"wrong type", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: [a]\n", false},
	} {
		v := &kubeVariant{configMaps: map[string]map[string]string{}, serviceAccounts: map[string]*corev1.ServiceAccount{}}
		err := v.addManifests(tc.name, tc.doc)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok = %v", tc.name, err, tc.ok)
		}
	}
}
