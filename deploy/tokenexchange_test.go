package deploy

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/ocisigner/ocisigner/signer"
)

// The token-exchange variant of the Kubernetes manifests
// (deploy/kubernetes/token-exchange): the same pod as the other variants,
// with credentials from an OCI IAM identity domain that exchanges a
// projected service-account token. It goes through every check of
// kubernetes_test.go plus the ones below, which say how its credentials
// must be wired.
const kubeTokenExchangeVariant = "token-exchange"

// An identity domain's URL: https://idcs-<hex id>.identity.oraclecloud.com.
var identityDomainHost = regexp.MustCompile(`^idcs-[0-9a-f]{32}\.identity\.oraclecloud\.com$`)

// kubeProjectedFile finds the projected volume mounted in c whose mount
// holds file, and the projection that puts it there.
func kubeProjectedFile(v *kubeVariant, c *corev1.Container, file string) (*corev1.VolumeMount, *corev1.Volume, *corev1.VolumeProjection, error) {
	for i, m := range c.VolumeMounts {
		dir := path.Clean(m.MountPath)
		if !strings.HasPrefix(file, dir+"/") {
			continue
		}
		rel := strings.TrimPrefix(file, dir+"/")
		vol := v.volume(m.Name)
		if vol == nil || vol.Projected == nil {
			return &c.VolumeMounts[i], vol, nil, fmt.Errorf("%s is not in a projected volume", file)
		}
		for j, src := range vol.Projected.Sources {
			switch {
			case src.ServiceAccountToken != nil && src.ServiceAccountToken.Path == rel:
				return &c.VolumeMounts[i], vol, &vol.Projected.Sources[j], nil
			case src.Secret != nil && slices.ContainsFunc(src.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == rel }):
				return &c.VolumeMounts[i], vol, &vol.Projected.Sources[j], nil
			}
		}
		return &c.VolumeMounts[i], vol, nil, fmt.Errorf("nothing in volume %s projects %s", vol.Name, rel)
	}
	return nil, nil, nil, fmt.Errorf("%s is on no volume of the %s container", file, c.Name)
}

// kubeWholeReadOnly: a mount kubelet keeps updating (subPath mounts never
// see a rotated token or a changed Secret) that the container cannot write.
func kubeWholeReadOnly(p *problems, m *corev1.VolumeMount, what string) {
	if !m.ReadOnly || m.SubPath != "" || m.SubPathExpr != "" {
		p.addf("%s: mount %s must be the whole volume, read-only (readOnly %v, subPath %q): kubelet does not update subPath mounts",
			what, m.MountPath, m.ReadOnly, m.SubPath+m.SubPathExpr)
	}
}

var kubeTokenExchangeChecks = []namedCheck[*kubeVariant]{
	{"token exchange settings", func(v *kubeVariant) error {
		var p problems
		c, err := v.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		if pr, _ := kubeEnv(c, "OCISIGNER_PRINCIPAL"); pr != "token-exchange" {
			p.addf("OCISIGNER_PRINCIPAL = %q, want token-exchange", pr)
		}
		raw, _ := kubeEnv(c, "OCISIGNER_TOKEN_EXCHANGE_URL")
		if u, err := url.Parse(raw); err != nil || u.Scheme != "https" || !identityDomainHost.MatchString(u.Host) || strings.Trim(u.Path, "/") != "" {
			p.addf("OCISIGNER_TOKEN_EXCHANGE_URL = %q, want https://idcs-<id>.identity.oraclecloud.com (the secret goes there)", raw)
		}
		if id, _ := kubeEnv(c, "OCISIGNER_CLIENT_ID"); id == "" {
			p.addf("OCISIGNER_CLIENT_ID is not set")
		}
		if r, _ := kubeEnv(c, "OCISIGNER_REGION"); !slices.Contains(signer.KnownRegions(), r) {
			p.addf("OCISIGNER_REGION = %q is not a region identifier", r)
		}
		// Values in the environment are neither rotated nor private to the
		// signer's files: both come as files.
		for _, e := range c.Env {
			if e.Name == "OCISIGNER_CLIENT_SECRET" || e.Name == "OCISIGNER_SUBJECT_TOKEN" {
				p.addf("%s is set: give the file (%s_FILE) kubelet keeps current instead", e.Name, e.Name)
			}
		}
		return p.err()
	}},
	{"subject token is a projected service-account token", func(v *kubeVariant) error {
		var p problems
		c, err := v.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		file, _ := kubeEnv(c, "OCISIGNER_SUBJECT_TOKEN_FILE")
		m, _, src, err := kubeProjectedFile(v, c, file)
		if err != nil {
			return fmt.Errorf("OCISIGNER_SUBJECT_TOKEN_FILE = %q: %w", file, err)
		}
		kubeWholeReadOnly(&p, m, "subject token")
		sat := src.ServiceAccountToken
		switch {
		case sat == nil:
			p.addf("%s is not a serviceAccountToken projection", file)
		case sat.Audience == "":
			p.addf("the service-account token has the API server's audience: set the Identity Propagation Trust's, so the token is good for nothing else")
		case sat.ExpirationSeconds != nil && *sat.ExpirationSeconds > 24*3600:
			p.addf("the service-account token lives %ds: a stolen one should be good for hours at most", *sat.ExpirationSeconds)
		}
		sa := v.pod().ServiceAccountName
		switch {
		case sa == "" || sa == "default":
			p.addf("serviceAccountName %q: the trust maps the token's subject, which names the service account: give the workload its own", sa)
		case v.serviceAccounts[sa] == nil:
			p.addf("serviceAccountName %q has no ServiceAccount manifest", sa)
		}
		return p.err()
	}},
	{"client secret is a file from a Secret", func(v *kubeVariant) error {
		var p problems
		c, err := v.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		file, _ := kubeEnv(c, "OCISIGNER_CLIENT_SECRET_FILE")
		m, vol, src, err := kubeProjectedFile(v, c, file)
		if err != nil {
			return fmt.Errorf("OCISIGNER_CLIENT_SECRET_FILE = %q: %w", file, err)
		}
		kubeWholeReadOnly(&p, m, "client secret")
		switch s := src.Secret; {
		case s == nil:
			p.addf("%s is not from a Secret", file)
		case s.Optional != nil && *s.Optional:
			p.addf("Secret %s must not be optional: without it no exchange can succeed", s.Name)
		}
		if dm := vol.Projected.DefaultMode; dm == nil || *dm != 0o400 {
			p.addf("volume %s: defaultMode must be 0400 (an octal YAML literal: 400 is decimal)", vol.Name)
		}
		if sc := v.pod().SecurityContext; sc == nil || sc.FSGroup == nil || *sc.FSGroup == 0 {
			p.addf("the pod needs a non-root fsGroup so the non-root signer can read the 0400 files")
		}
		return p.err()
	}},
	{"credentials only in the signer", func(v *kubeVariant) error {
		var p problems
		signerVols := map[string]bool{}
		c, err := v.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		for _, m := range c.VolumeMounts {
			if vol := v.volume(m.Name); vol != nil && vol.Projected != nil {
				signerVols[m.Name] = true
			}
		}
		for _, other := range v.allContainers() {
			if other.Name == kubeSignerContainer {
				continue
			}
			for _, m := range other.VolumeMounts {
				if signerVols[m.Name] {
					p.addf("container %s mounts the signer's credentials (volume %s)", other.Name, m.Name)
				}
			}
		}
		return p.err()
	}},
}

// allTokenExchangeChecks is what the variant must pass: every check of the
// other variants, and its own.
func allTokenExchangeChecks() []namedCheck[*kubeVariant] {
	return slices.Concat(kubeChecks, kubeTokenExchangeChecks)
}

func TestKubernetesTokenExchangeManifests(t *testing.T) {
	t.Parallel()
	v, err := loadKubeVariant(readKubeFiles(t), loadKubeRefs(t), kubeTokenExchangeVariant)
	if err != nil {
		t.Fatal(err)
	}
	runChecks(t, allTokenExchangeChecks(), v, true)
}

var kubeTokenExchangeMutations = []fileMutation{
	// Must not load.
	{"token-exchange/deployment.yaml", mutation{"unknown field", replaceFirst("          restartPolicy: Always\n", "          restartPolicy: Always\n          restartPolicyy: Always\n"), ""}},
	{"token-exchange/kustomization.yaml", mutation{"service account not listed", replaceFirst("  - serviceaccount.yaml\n", ""), ""}},
	{"token-exchange/deployment.yaml", mutation{"unknown projection field", replaceFirst("audience: oci-token-exchange", "audiences: [oci-token-exchange]"), ""}},

	{"token-exchange/deployment.yaml", mutation{"other principal", replaceFirst("value: token-exchange", "value: workload"), "token exchange settings"}},
	{"token-exchange/deployment.yaml", mutation{"domain over http", replaceFirst("value: https://idcs-", "value: http://idcs-"), "token exchange settings"}},
	{"token-exchange/deployment.yaml", mutation{"not an identity domain", replaceFirst(".identity.oraclecloud.com", ".example.com"), "token exchange settings"}},
	{"token-exchange/deployment.yaml", mutation{"token endpoint as the URL", replaceFirst(".identity.oraclecloud.com\n", ".identity.oraclecloud.com/ui/v1/signin\n"), "token exchange settings"}},
	{"token-exchange/deployment.yaml", mutation{"no client ID", replaceFirst("              value: 0123456789abcdef0123456789abcdef\n", "              value: \"\"\n"), "token exchange settings"}},
	{"token-exchange/deployment.yaml", mutation{"bad region", replaceFirst("value: us-ashburn-1", "value: ashburn"), "token exchange settings"}},
	{"token-exchange/deployment.yaml", mutation{"secret as a value", replaceFirst("            - name: OCISIGNER_CLIENT_SECRET_FILE\n", "            - name: OCISIGNER_CLIENT_SECRET\n              value: s3cr3t\n            - name: OCISIGNER_CLIENT_SECRET_FILE\n"), "token exchange settings"}},

	{"token-exchange/deployment.yaml", mutation{"subject token elsewhere", replaceFirst("value: /var/run/secrets/ocisigner/token", "value: /var/run/secrets/ocisigner/jwt"), "subject token is a projected service-account token"}},
	{"token-exchange/deployment.yaml", mutation{"API server audience", replaceFirst("                  audience: oci-token-exchange\n", ""), "subject token is a projected service-account token"}},
	{"token-exchange/deployment.yaml", mutation{"token lives a week", replaceFirst("expirationSeconds: 3600", "expirationSeconds: 604800"), "subject token is a projected service-account token"}},
	{"token-exchange/deployment.yaml", mutation{"token by subPath", replaceFirst("mountPath: /var/run/secrets/ocisigner\n", "mountPath: /var/run/secrets/ocisigner\n              subPath: token\n"), "subject token is a projected service-account token"}},
	{"token-exchange/deployment.yaml", mutation{"default service account", replaceFirst("      serviceAccountName: example-app\n", ""), "subject token is a projected service-account token"}},
	{"token-exchange/serviceaccount.yaml", mutation{"service account renamed", replaceFirst("  name: example-app\n", "  name: other\n"), "subject token is a projected service-account token"}},

	{"token-exchange/deployment.yaml", mutation{"secret file elsewhere", replaceFirst("value: /var/run/secrets/ocisigner/client-secret", "value: /etc/ocisigner/client-secret"), "client secret is a file from a Secret"}},
	{"token-exchange/deployment.yaml", mutation{"Secret optional", replaceFirst("                  name: oci-token-exchange\n", "                  name: oci-token-exchange\n                  optional: true\n"), "client secret is a file from a Secret"}},
	{"token-exchange/deployment.yaml", mutation{"decimal mode", replaceFirst("defaultMode: 0400", "defaultMode: 400"), "client secret is a file from a Secret"}},
	{"token-exchange/deployment.yaml", mutation{"no fsGroup", replaceFirst("        fsGroup: 65532\n", ""), "client secret is a file from a Secret"}},
	{"token-exchange/deployment.yaml", mutation{"credentials writable", replaceFirst("mountPath: /var/run/secrets/ocisigner\n              readOnly: true\n", "mountPath: /var/run/secrets/ocisigner\n"), "client secret is a file from a Secret"}},

	{"token-exchange/deployment.yaml", mutation{"credentials in the app", replaceLast("            - name: app-tmp\n", "            - name: oci-token-exchange\n              mountPath: /var/run/secrets/ocisigner\n              readOnly: true\n            - name: app-tmp\n"), "credentials only in the signer"}},

	// The shared checks hold for this variant too.
	{"token-exchange/deployment.yaml", mutation{"signer latest", replaceFirst("ghcr.io/ocisigner/ocisigner:v0.1.0", "ghcr.io/ocisigner/ocisigner:latest"), "signer image and command"}},
	{"token-exchange/deployment.yaml", mutation{"token in every container", replaceFirst("automountServiceAccountToken: false", "automountServiceAccountToken: true"), "service-account token only in the signer"}},
	{"token-exchange/deployment.yaml", mutation{"Secret committed", appendText(strings.Replace(kubeSecretDoc, "oci-session", "oci-token-exchange", 1)), "no Secret committed"}},
	{"token-exchange/deployment.yaml", mutation{"signer as root", replaceFirst("runAsUser: 65532", "runAsUser: 0"), "container hardening"}},
}

// TestKubernetesTokenExchangeChecksCatchRegressions: each mutation must make
// the load or the named check fail, and each check of the variant's own
// must be proved by one.
func TestKubernetesTokenExchangeChecksCatchRegressions(t *testing.T) {
	t.Parallel()
	checks := allTokenExchangeChecks()
	refs := loadKubeRefs(t)
	mutationProof{
		files:     readKubeFiles(t),
		mutations: kubeTokenExchangeMutations,
		known:     checkNamesUnique(t, checks),
		mustProve: checkNamesUnique(t, kubeTokenExchangeChecks),
		load: func(t *testing.T, files map[string]string) (map[string]error, error) {
			v, err := loadKubeVariant(files, refs, kubeTokenExchangeVariant)
			if err != nil {
				return nil, err
			}
			return runChecks(t, checks, v, false), nil
		},
	}.run(t)
}
