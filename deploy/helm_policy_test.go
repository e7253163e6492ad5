package deploy

import (
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/ocisigner/ocisigner/policy"
)

// The shared gateway's policy and keys in the chart (gateway.policy,
// gateway.keys): a ConfigMap and a Secret the signer alone mounts,
// read-only, whole (no subPath, so that kubelet's updates reach the
// signer's watcher), at the paths its OCISIGNER_POLICY and OCISIGNER_KEYS
// name. What they hold parses as the signer reads it; the Secret holds
// hashes, never a key.

// examplePolicy and exampleKeys are the values of the policy cases of the
// chart matrix.
const (
	examplePolicy = `version: 1
rules:
  - name: team-c-chat
    callers:
      - key: team-c-*
    profiles: [DEFAULT]
    services: [genai]
    methods: [POST]
`
	exampleKeys = "team-c-chat sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
)

// keysSecretAllowed reports whether a rendered Secret is the chart's keys
// Secret holding hashes only: the one Secret a chart may render, since a
// hash of a 256-bit key is nothing to sign with.
func keysSecretAllowed(s *corev1.Secret) error {
	if !strings.HasSuffix(s.Name, "-keys") || len(s.Data)+len(s.StringData) != 1 {
		return fmt.Errorf("Secret %q is a manifest: credentials are created by hand, never committed", s.Name)
	}
	text, ok := s.StringData["keys"]
	if !ok {
		text = string(s.Data["keys"])
	}
	if _, err := policy.ParseKeys([]byte(text), s.Name); err != nil {
		return fmt.Errorf("Secret %q is not a keys file of hashes: %w", s.Name, err)
	}
	return nil
}

var chartPolicyCheck = modeCheck{[]string{modeGateway, modeEnvoyGateway}, namedCheck[*chartRender]{
	"policy and keys reach the signer alone, read-only", func(r *chartRender) error {
		var p problems
		signer, err := r.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		for _, f := range []struct{ env, volume, object, key string }{
			{"OCISIGNER_POLICY", "ocisigner-policy", r.fullname + "-policy", "policy.yaml"},
			{"OCISIGNER_KEYS", "ocisigner-keys", r.fullname + "-keys", "keys"},
		} {
			file, set := kubeEnv(signer, f.env)
			want := (f.env == "OCISIGNER_POLICY" && r.policy != "") || (f.env == "OCISIGNER_KEYS" && r.keys != "")
			if set != want {
				p.addf("%s set %v, want %v", f.env, set, want)
				continue
			}
			if !set {
				continue
			}
			var mount *corev1.VolumeMount
			for i, m := range signer.VolumeMounts {
				if m.Name == f.volume {
					mount = &signer.VolumeMounts[i]
				}
			}
			switch {
			case mount == nil:
				p.addf("the signer does not mount %s", f.volume)
				continue
			case !mount.ReadOnly || mount.SubPath != "":
				p.addf("%s is mounted writable or by subPath (a subPath mount never sees an update)", f.volume)
			case file != path.Join(mount.MountPath, f.key):
				p.addf("%s=%s is not %s's %s", f.env, file, f.volume, f.key)
			}
			for _, c := range r.allContainers() {
				for _, m := range c.VolumeMounts {
					if m.Name == f.volume && c.Name != kubeSignerContainer {
						p.addf("container %s mounts %s", c.Name, f.volume)
					}
				}
			}
			p = append(p, r.policySource(f.volume, f.object, f.key)...)
		}
		if r.policy != "" {
			if _, err := policy.Parse([]byte(r.configMaps[r.fullname+"-policy"]["policy.yaml"]), "policy.yaml"); err != nil {
				p.addf("the ConfigMap's policy does not parse: %v", err)
			}
		}
		return p.err()
	}}}

// policySource checks that volume is the object holding key, in full.
func (r *chartRender) policySource(volume, object, key string) problems {
	var p problems
	for _, v := range r.pod().Volumes {
		if v.Name != volume {
			continue
		}
		switch {
		case v.ConfigMap != nil && v.ConfigMap.Name == object && len(v.ConfigMap.Items) == 0:
			if _, ok := r.configMaps[object][key]; !ok {
				p.addf("ConfigMap %s has no %s", object, key)
			}
		case v.Secret != nil && v.Secret.SecretName == object && len(v.Secret.Items) == 0 && v.Secret.DefaultMode != nil && *v.Secret.DefaultMode == 0o400:
		default:
			p.addf("volume %s is not %s whole (a Secret with mode 0400)", volume, object)
		}
		return p
	}
	p.addf("no volume %s", volume)
	return p
}
