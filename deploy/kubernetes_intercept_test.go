package deploy

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"

	"github.com/ocisigner/ocisigner/intercept"
	"github.com/ocisigner/ocisigner/signer"
)

// HTTPS interception in the Kubernetes pods (docs/intercept.md): the
// overlay deploy/kubernetes/intercept patches a variant's Deployment so the
// signer mints certificates from a CA in a Secret, and the app sends its
// HTTPS through the pod's Envoy (HTTPS_PROXY) trusting that CA. The chart's
// intercept values render the same pod (helm_test.go). The checks below run
// on every variant, overlay and rendered pod: on a pod that does not
// intercept they say that nothing half-wires it.
const (
	kubeInterceptOverlay = "intercept"
	kubeAppContainer     = "app"
	// The Secret's key for the bundle of the system roots and the CA
	// (ocisigner ca --bundle, as docs/kubernetes.md makes the Secret).
	kubeCABundleKey = "ca-bundle.pem"
)

// The variants the overlay is loaded over: it names ../session, and the
// others by the one-line change its kustomization.yaml describes.
var kubeInterceptedVariants = []string{kubeSessionVariant, kubeWorkloadVariant, kubeTokenExchangeVariant}

// loadKubeIntercepted loads the intercept overlay over the variant name.
func loadKubeIntercepted(files map[string]string, refs kubeRefs, name string) (*kubeVariant, error) {
	kpath := kubeInterceptOverlay + "/kustomization.yaml"
	text, ok := files[kpath]
	if !ok {
		return nil, fmt.Errorf("no %s", kpath)
	}
	const base = "  - ../" + kubeSessionVariant + "\n"
	if !strings.Contains(text, base) {
		return nil, fmt.Errorf("%s does not include %q", kpath, strings.TrimSpace(base))
	}
	over := make(map[string]string, len(files))
	for k, f := range files {
		over[k] = f
	}
	over[kpath] = strings.Replace(text, base, "  - ../"+name+"\n", 1)
	v, err := loadKubeVariantAt(over, refs, kubeInterceptOverlay, name)
	if err != nil {
		return nil, fmt.Errorf("%s over %s: %w", kubeInterceptOverlay, name, err)
	}
	v.intercept = true
	return v, nil
}

// applyPatch applies a strategic merge patch (one document, the
// Deployment) as kustomize's `patches: [{path: ...}]` does: lists merge by
// their Kubernetes patch keys (containers, env and volumes by name, mounts
// by mountPath), the patch's items first, in its order, then the others
// (kustomize merges with ListIncreaseDirection prepend:
// api/filters/patchstrategicmerge, kyaml/yaml/walk/associative_sequence.go).
// apimachinery's strategicpatch, which takes the same merge keys from the
// API types' tags and orders lists the same way, stands in for kustomize's
// kyaml merge. The patch is decoded strictly first, so a misspelt field
// fails instead of merging as nothing, and it must name the Deployment
// (kustomize refuses a patch that matches none).
func (v *kubeVariant) applyPatch(file, text string) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(text)))
	doc, err := r.Read()
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if _, err := r.Read(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: one document per patch file", file)
	}
	tm, err := typeMetaOf(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if tm == nil {
		return fmt.Errorf("%s: holds no object", file)
	}
	if tm.APIVersion != "apps/v1" || tm.Kind != "Deployment" {
		return fmt.Errorf("%s: patches %s %s; only the Deployment is patched", file, tm.APIVersion, tm.Kind)
	}
	var patch appsv1.Deployment
	if err := kubeDecodeStrict(doc, &patch); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if v.deploy == nil || patch.Name != v.deploy.Name {
		return fmt.Errorf("%s: patches Deployment %q, which is not in the kustomization", file, patch.Name)
	}
	orig, err := json.Marshal(v.deploy)
	if err != nil {
		return err
	}
	patchJSON, err := yamlToJSON(doc)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	merged, err := strategicpatch.StrategicMergePatch(orig, patchJSON, appsv1.Deployment{})
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	d := &appsv1.Deployment{}
	strict, err := sigsjson.UnmarshalStrict(merged, d)
	if err := errors.Join(append(strict, err)...); err != nil {
		return fmt.Errorf("%s: the patched Deployment: %w", file, err)
	}
	v.deploy = d
	return nil
}

// --- what the signer is told ---------------------------------------------------

// kubeServeSetting is the value a serve flag takes in c: the last
// --name VALUE or --name=VALUE on its command line, else OCISIGNER_NAME
// from its environment (cmd/ocisigner's applyEnv). A switch given as
// --name alone is "true".
func kubeServeSetting(c *corev1.Container, name string, isBool bool) string {
	val, found := "", false
	args := kubeCmdline(c)
	for i, a := range args {
		a = "--" + strings.TrimLeft(a, "-")
		switch {
		case strings.HasPrefix(a, "--"+name+"="):
			val, found = strings.TrimPrefix(a, "--"+name+"="), true
		case a == "--"+name && isBool:
			val, found = "true", true
		case a == "--"+name && i+1 < len(args):
			val, found = args[i+1], true
		}
	}
	if found {
		return val
	}
	env, _ := kubeEnv(c, "OCISIGNER_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
	return env
}

func kubeIntercepts(c *corev1.Container) bool {
	on, err := strconv.ParseBool(kubeServeSetting(c, "intercept", true))
	return err == nil && on
}

// kubeSecretFile is a file of a container that a Secret volume puts there.
type kubeSecretFile struct {
	mount  *corev1.VolumeMount
	volume *corev1.Volume
	secret string // the Secret's name
	key    string // the Secret's key
	mode   int32  // before kubelet adds the fsGroup's read (0440)
}

// kubeFileFromSecret finds which Secret, and which of its keys, is at file
// in c: the mount whose path holds it, a secret volume, the item (or, with
// no items, the key) at the path below the mount.
func kubeFileFromSecret(v *kubeVariant, c *corev1.Container, file string) (*kubeSecretFile, error) {
	var m *corev1.VolumeMount
	for i, vm := range c.VolumeMounts {
		dir := path.Clean(vm.MountPath)
		if strings.HasPrefix(path.Clean(file), dir+"/") && (m == nil || len(dir) > len(path.Clean(m.MountPath))) {
			m = &c.VolumeMounts[i]
		}
	}
	if m == nil {
		return nil, fmt.Errorf("%s is on no volume of the %s container", file, c.Name)
	}
	rel := strings.TrimPrefix(path.Clean(file), path.Clean(m.MountPath)+"/")
	vol := v.volume(m.Name)
	if vol == nil || vol.Secret == nil {
		return nil, fmt.Errorf("%s is not in a Secret volume (volume %s)", file, m.Name)
	}
	s := vol.Secret
	f := &kubeSecretFile{mount: m, volume: vol, secret: s.SecretName, key: rel, mode: 0o644}
	if s.DefaultMode != nil {
		f.mode = *s.DefaultMode
	}
	if len(s.Items) == 0 {
		return f, nil
	}
	for _, it := range s.Items {
		if path.Clean(it.Path) == rel {
			f.key = it.Key
			if it.Mode != nil {
				f.mode = *it.Mode
			}
			return f, nil
		}
	}
	return nil, fmt.Errorf("no item of volume %s puts a file at %s", vol.Name, file)
}

// kubeSignerCA is the CA the signer is given: --ca-cert and --ca-key, each
// a file of a Secret volume.
func kubeSignerCA(v *kubeVariant) (cert, key *kubeSecretFile, err error) {
	c, err := v.container(kubeSignerContainer)
	if err != nil {
		return nil, nil, err
	}
	certFile, keyFile := kubeServeSetting(c, "ca-cert", false), kubeServeSetting(c, "ca-key", false)
	if certFile == "" || keyFile == "" {
		return nil, nil, errors.New("--intercept without --ca-cert and --ca-key: a CA generated into each pod's --state-dir differs between replicas and after a restart, and the clients trust one CA")
	}
	if cert, err = kubeFileFromSecret(v, c, certFile); err != nil {
		return nil, nil, fmt.Errorf("--ca-cert: %w", err)
	}
	if key, err = kubeFileFromSecret(v, c, keyFile); err != nil {
		return nil, nil, fmt.Errorf("--ca-key: %w", err)
	}
	return cert, key, nil
}

// --- checks --------------------------------------------------------------------

var kubeInterceptChecks = []namedCheck[*kubeVariant]{
	{"signer intercepts with the CA from a read-only Secret", checkSignerCA},
	{"app proxies HTTPS through the pod's Envoy and trusts the CA", checkAppProxy},
	{"CA key only in the signer", checkCAKeyConfined},
}

func checkSignerCA(v *kubeVariant) error {
	c, err := v.container(kubeSignerContainer)
	if err != nil {
		return err
	}
	if !kubeIntercepts(c) {
		if v.intercept {
			return errors.New("interception is meant to be on, but the signer has no --intercept (OCISIGNER_INTERCEPT=true)")
		}
		return nil
	}
	cert, key, err := kubeSignerCA(v)
	if err != nil {
		return err
	}
	var p problems
	for _, f := range []*kubeSecretFile{cert, key} {
		if f == cert && f.mount == key.mount {
			continue // one mount, said once
		}
		kubeWholeReadOnly(&p, f.mount, "the CA")
		if o := f.volume.Secret.Optional; o != nil && *o {
			p.addf("Secret %s must not be optional: without it the signer cannot intercept", f.secret)
		}
	}
	if cert.secret != key.secret {
		p.addf("the CA certificate (Secret %s) and key (Secret %s) come from two Secrets", cert.secret, key.secret)
	}
	// The names ocisigner ca --init writes, which kubectl create secret
	// --from-file makes the keys (docs/kubernetes.md).
	if cert.key != intercept.CertFileName || key.key != intercept.KeyFileName {
		p.addf("the CA is the Secret's keys %s and %s, want %s and %s (ocisigner ca --init's files)",
			cert.key, key.key, intercept.CertFileName, intercept.KeyFileName)
	}
	// kubelet gives Secret files to root and the fsGroup and adds group
	// read; the signer accepts that, and nothing more, from root.
	if key.mode&0o037 != 0 {
		p.addf("the CA key's mode is %#o: want 0400 (0440 once kubelet adds the fsGroup's read), an octal YAML literal", key.mode)
	}
	if sc := v.pod().SecurityContext; sc == nil || sc.FSGroup == nil || *sc.FSGroup == 0 {
		p.addf("the pod needs a non-root fsGroup so the non-root signer can read the CA key")
	}
	return p.err()
}

// kubeProxiedURL reports whether an HTTPS_PROXY value is the pod's Envoy.
func kubeProxiedURL(v *kubeVariant, raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	ap, err := netip.ParseAddrPort(u.Host)
	return err == nil && ap.Addr().IsLoopback() && int32(ap.Port()) == v.refs.listenerPort
}

func checkAppProxy(v *kubeVariant) error {
	sc, err := v.container(kubeSignerContainer)
	if err != nil {
		return err
	}
	app, err := v.container(kubeAppContainer)
	if err != nil {
		if kubeIntercepts(sc) {
			return errors.New("the signer intercepts, but the pod has no app to send HTTPS through it")
		}
		return nil
	}
	proxy, _ := kubeEnv(app, "HTTPS_PROXY")
	if !kubeIntercepts(sc) {
		if kubeProxiedURL(v, proxy) {
			return fmt.Errorf("the app's HTTPS_PROXY is the pod's Envoy (%s), but the signer does not intercept: every handshake through it fails", proxy)
		}
		return nil
	}
	var p problems
	kubeCheckProxyURL(&p, v, proxy)
	for _, pair := range [][2]string{{"HTTPS_PROXY", "https_proxy"}, {"NO_PROXY", "no_proxy"}} {
		upper, _ := kubeEnv(app, pair[0])
		if lower, ok := kubeEnv(app, pair[1]); ok && lower != upper {
			p.addf("%s = %q differs from %s = %q (clients differ in which they read)", pair[1], lower, pair[0], upper)
		}
	}
	noProxy, _ := kubeEnv(app, "NO_PROXY")
	kubeCheckNoProxy(&p, noProxy)
	kubeCheckAppCA(&p, v, app)
	if n, _ := kubeEnv(app, "NODE_USE_ENV_PROXY"); n != "1" {
		p.addf("NODE_USE_ENV_PROXY = %q, want 1: Node.js ignores HTTPS_PROXY without it", n)
	}
	return p.err()
}

// kubeCheckProxyURL: plain HTTP (the proxy's own connection; the tunnel
// inside is TLS) to Envoy's listener on loopback, nothing else in the URL.
func kubeCheckProxyURL(p *problems, v *kubeVariant, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.User != nil || strings.Trim(u.Path, "/") != "" || !kubeProxiedURL(v, raw) {
		p.addf("HTTPS_PROXY = %q, want http://127.0.0.1:%d: the pod's Envoy, on loopback", raw, v.refs.listenerPort)
	}
}

// kubeCheckNoProxy: the pod and the cluster's services go direct (Envoy
// refuses CONNECT to anything but OCI), and no entry lets an OCI host
// bypass the signer.
func kubeCheckNoProxy(p *problems, noProxy string) {
	entries := map[string]bool{}
	for _, e := range strings.Split(noProxy, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		entries[e] = true
		domain := strings.TrimPrefix(strings.TrimPrefix(e, "*"), ".")
		if e == "" {
			continue
		}
		bypassed := domain == "" || signer.IsRealmHost(domain)
		for _, d := range signer.RealmDomains() {
			bypassed = bypassed || d == domain || strings.HasSuffix(d, "."+domain)
		}
		if bypassed {
			p.addf("NO_PROXY entry %q lets OCI hosts bypass the signer", e)
		}
	}
	for _, want := range []string{"localhost", "127.0.0.1", ".svc", ".cluster.local"} {
		if !entries[want] {
			p.addf("NO_PROXY = %q lacks %s: the pod itself and the cluster's services must not go to Envoy, which refuses them", noProxy, want)
		}
	}
}

// kubeCheckAppCA: each client family's variable names a file of the app's
// that the signer's CA Secret puts there: the bundle for those whose file
// replaces the system roots, the CA for Node's, which adds to them.
func kubeCheckAppCA(p *problems, v *kubeVariant, app *corev1.Container) {
	cert, _, err := kubeSignerCA(v)
	if err != nil {
		p.addf("%v", err)
		return
	}
	for _, want := range []struct{ env, key string }{
		{"SSL_CERT_FILE", kubeCABundleKey},
		{"REQUESTS_CA_BUNDLE", kubeCABundleKey},
		{"CURL_CA_BUNDLE", kubeCABundleKey},
		{"NODE_EXTRA_CA_CERTS", cert.key},
	} {
		file, _ := kubeEnv(app, want.env)
		f, err := kubeFileFromSecret(v, app, file)
		if err != nil {
			p.addf("%s = %q: %v", want.env, file, err)
			continue
		}
		if f.secret != cert.secret || f.key != want.key {
			p.addf("%s = %q is Secret %s's %s, want %s's %s", want.env, file, f.secret, f.key, cert.secret, want.key)
		}
		if !f.mount.ReadOnly {
			p.addf("%s: the CA's mount %s is writable", want.env, f.mount.MountPath)
		}
	}
}

func checkCAKeyConfined(v *kubeVariant) error {
	sc, err := v.container(kubeSignerContainer)
	if err != nil || !kubeIntercepts(sc) {
		return err
	}
	_, key, err := kubeSignerCA(v)
	if err != nil {
		return err
	}
	var p problems
	for _, c := range v.allContainers() {
		if c.Name == kubeSignerContainer {
			continue
		}
		for _, m := range c.VolumeMounts {
			if vol := v.volume(m.Name); vol != nil && kubeVolumeHolds(vol, key.secret, key.key) {
				p.addf("container %s mounts volume %s, which holds the CA key (Secret %s, key %s)", c.Name, vol.Name, key.secret, key.key)
			}
		}
		for _, e := range c.Env {
			if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && r.SecretKeyRef.Name == key.secret && r.SecretKeyRef.Key == key.key {
				p.addf("container %s has the CA key in its environment (%s)", c.Name, e.Name)
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil && e.SecretRef.Name == key.secret {
				p.addf("container %s has every key of Secret %s in its environment", c.Name, key.secret)
			}
		}
	}
	return p.err()
}

// kubeVolumeHolds reports whether a volume puts the Secret's key in the
// containers that mount it: a secret volume or a projection of it, with no
// items (every key) or an item for it.
func kubeVolumeHolds(vol *corev1.Volume, secret, key string) bool {
	holds := func(name string, items []corev1.KeyToPath) bool {
		return name == secret && (len(items) == 0 || slices.ContainsFunc(items, func(k corev1.KeyToPath) bool { return k.Key == key }))
	}
	if s := vol.Secret; s != nil && holds(s.SecretName, s.Items) {
		return true
	}
	if pr := vol.Projected; pr != nil {
		for _, src := range pr.Sources {
			if s := src.Secret; s != nil && holds(s.Name, s.Items) {
				return true
			}
		}
	}
	return false
}

// --- mutations -----------------------------------------------------------------

const (
	kubePatch     = kubeInterceptOverlay + "/deployment-patch.yaml"
	kubeOverlayKz = kubeInterceptOverlay + "/kustomization.yaml"
)

var kubeInterceptMutations = []fileMutation{
	// Must not load: what kustomize would refuse, or apply otherwise.
	{kubePatch, mutation{"patch field misspelt", replaceFirst("          volumeMounts:\n", "          volumeMount:\n"), ""}},
	{kubePatch, mutation{"patch for another Deployment", replaceFirst("  name: example-app\n", "  name: other-app\n"), ""}},
	{kubeOverlayKz, mutation{"patch file missing", replaceFirst("- path: deployment-patch.yaml", "- path: patch.yaml"), ""}},
	{kubeOverlayKz, mutation{"patch with a target", replaceFirst("- path: deployment-patch.yaml\n", "- path: deployment-patch.yaml\n    target:\n      kind: Deployment\n"), ""}},
	{kubeOverlayKz, mutation{"overlay without the variant", replaceFirst("  - ../session\n", ""), ""}},

	{kubePatch, mutation{"interception off", replaceFirst(`OCISIGNER_INTERCEPT
              value: "true"`, `OCISIGNER_INTERCEPT
              value: "false"`), "signer intercepts with the CA from a read-only Secret"}},
	{"session/deployment.yaml", mutation{"switched off by a flag", replaceFirst(`args: ["serve"]`, `args: ["serve", "--intercept=false"]`), "signer intercepts with the CA from a read-only Secret"}},
	{kubePatch, mutation{"a CA per pod", replaceFirst("            - name: OCISIGNER_CA_CERT\n              value: /etc/ocisigner/ca/ca.pem\n            - name: OCISIGNER_CA_KEY\n              value: /etc/ocisigner/ca/ca-key.pem\n", "            - name: OCISIGNER_STATE_DIR\n              value: /tmp/ocisigner\n"), "signer intercepts with the CA from a read-only Secret"}},
	{kubePatch, mutation{"CA key off the Secret", replaceFirst("value: /etc/ocisigner/ca/ca-key.pem", "value: /tmp/ca-key.pem"), "signer intercepts with the CA from a read-only Secret"}},
	{kubePatch, mutation{"CA writable", replaceFirst("              mountPath: /etc/ocisigner/ca\n              readOnly: true\n", "              mountPath: /etc/ocisigner/ca\n"), "signer intercepts with the CA from a read-only Secret"}},
	{kubePatch, mutation{"CA key readable by all", replaceFirst("defaultMode: 0400", "defaultMode: 0444"), "signer intercepts with the CA from a read-only Secret"}},
	{kubePatch, mutation{"CA key in decimal", replaceFirst("defaultMode: 0400", "defaultMode: 400"), "signer intercepts with the CA from a read-only Secret"}},
	{kubePatch, mutation{"CA Secret optional", replaceFirst("            secretName: ocisigner-ca\n", "            secretName: ocisigner-ca\n            optional: true\n"), "signer intercepts with the CA from a read-only Secret"}},
	{kubePatch, mutation{"CA key under another name", replaceFirst("              - key: ca-key.pem\n", "              - key: tls.key\n"), "signer intercepts with the CA from a read-only Secret"}},
	{"session/deployment.yaml", mutation{"no fsGroup", replaceFirst("        fsGroup: 65532\n", ""), "signer intercepts with the CA from a read-only Secret"}},

	{kubePatch, mutation{"proxy on the pod IP", replaceFirst("value: http://127.0.0.1:10000", "value: http://example-app:10000"), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{kubePatch, mutation{"proxy over TLS", replaceFirst("value: http://127.0.0.1:10000", "value: https://127.0.0.1:10000"), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{kubePatch, mutation{"proxy to the signer", replaceFirst("value: http://127.0.0.1:10000", "value: http://127.0.0.1:50051"), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{kubePatch, mutation{"lowercase proxy elsewhere", replaceFirst("            - name: NO_PROXY\n", "            - name: https_proxy\n              value: http://proxy.corp.example:3128\n            - name: NO_PROXY\n"), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{kubePatch, mutation{"cluster services to Envoy", replaceFirst(",.svc,.cluster.local", ""), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{kubePatch, mutation{"OCI bypasses the signer", replaceFirst(",.svc,.cluster.local", ",.svc,.cluster.local,.oraclecloud.com"), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{kubePatch, mutation{"everything bypasses", replaceFirst("value: localhost,127.0.0.1,::1,.svc,.cluster.local", `value: "*,localhost,127.0.0.1,::1,.svc,.cluster.local"`), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{kubePatch, mutation{"no proxy for anything", replaceFirst("value: localhost,127.0.0.1", "value: com,localhost,127.0.0.1"), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{kubePatch, mutation{"Go trusts the CA alone", replaceFirst("value: /etc/ocisigner/ca/ca-bundle.pem", "value: /etc/ocisigner/ca/ca.pem"), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{kubePatch, mutation{"no REQUESTS_CA_BUNDLE", replaceFirst("            - name: REQUESTS_CA_BUNDLE\n              value: /etc/ocisigner/ca/ca-bundle.pem\n", ""), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{kubePatch, mutation{"Node's CA is the bundle", replaceFirst("NODE_EXTRA_CA_CERTS\n              value: /etc/ocisigner/ca/ca.pem", "NODE_EXTRA_CA_CERTS\n              value: /etc/ocisigner/ca/ca-bundle.pem"), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{kubePatch, mutation{"Node ignores the proxy", replaceFirst(`NODE_USE_ENV_PROXY
              value: "1"`, `NODE_USE_ENV_PROXY
              value: "0"`), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{kubePatch, mutation{"CA not in the app", replaceFirst("          volumeMounts:\n            - name: ocisigner-ca-public\n              mountPath: /etc/ocisigner/ca\n              readOnly: true\n", ""), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{kubePatch, mutation{"the app's CA from another Secret", replaceLast("            secretName: ocisigner-ca\n", "            secretName: other-ca\n"), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{"session/deployment.yaml", mutation{"proxy without interception", replaceFirst("          command: [\"sleep\", \"infinity\"]\n", "          command: [\"sleep\", \"infinity\"]\n          env:\n            - name: HTTPS_PROXY\n              value: http://127.0.0.1:10000\n"), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},

	{kubePatch, mutation{"app mounts the signer's CA", replaceFirst("            - name: ocisigner-ca-public\n              mountPath", "            - name: ocisigner-ca\n              mountPath"), "CA key only in the signer"}},
	{kubePatch, mutation{"app's CA volume has every key", replaceLast("            items:\n              - key: ca.pem\n                path: ca.pem\n              - key: ca-bundle.pem\n                path: ca-bundle.pem\n", ""), "CA key only in the signer"}},
	{kubePatch, mutation{"Envoy mounts the CA", replaceFirst("      containers:\n", "        - name: envoy\n          volumeMounts:\n            - name: ocisigner-ca\n              mountPath: /etc/ocisigner/ca\n              readOnly: true\n      containers:\n"), "CA key only in the signer"}},
	{kubePatch, mutation{"CA key in the app's environment", replaceFirst("            - name: HTTPS_PROXY\n", "            - name: CA_KEY\n              valueFrom:\n                secretKeyRef:\n                  name: ocisigner-ca\n                  key: ca-key.pem\n            - name: HTTPS_PROXY\n"), "CA key only in the signer"}},
	{kubePatch, mutation{"CA Secret as the app's environment", replaceFirst("          env:\n            - name: HTTPS_PROXY\n", "          envFrom:\n            - secretRef:\n                name: ocisigner-ca\n          env:\n            - name: HTTPS_PROXY\n"), "CA key only in the signer"}},
}
