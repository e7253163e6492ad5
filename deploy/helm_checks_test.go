package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// chartChecks are the checks of the chart's pods and objects beyond
// kubernetes_test.go's, each with the modes it applies to.
var chartChecks = slices.Concat(chartPodChecks, istioChecks, egChecks, []modeCheck{chartPolicyCheck}, chartIdentityChecks)

var chartPodChecks = []modeCheck{
	{[]string{modeGateway}, namedCheck[*chartRender]{"gateway pod: the signer serves before Envoy starts", func(r *chartRender) error {
		var p problems
		init, main := r.pod().InitContainers, r.pod().Containers
		if len(init) != 1 || init[0].Name != kubeSignerContainer {
			p.addf("init containers %v, want the signer alone", containerNames(init))
		} else {
			nativeSidecar(&p, &init[0])
		}
		if len(main) != 1 || main[0].Name != kubeEnvoyContainer {
			p.addf("containers %v, want Envoy alone", containerNames(main))
		}
		return p.err()
	}}},
	{[]string{modeGateway}, namedCheck[*chartRender]{"gateway callers named", func(r *chartRender) error {
		var p problems
		rules, isolated := r.ingressRules()
		if !isolated {
			p.addf("no NetworkPolicy isolates the gateway pods for ingress")
		}
		admitted := false
		for _, rule := range rules {
			switch {
			case rule.admits(r, r.refs.signerPort):
				p.addf("NetworkPolicy %s lets pods reach the signer's gRPC %d", rule.policy, r.refs.signerPort)
			case !rule.admits(r, r.refs.listenerPort):
				continue
			}
			if rule.admits(r, r.refs.listenerPort) {
				admitted = true
				namedPeers(&p, rule, r.refs.listenerPort)
			}
		}
		if !admitted {
			p.addf("no NetworkPolicy rule lets the clients reach the gateway on %d", r.refs.listenerPort)
		}
		return p.err()
	}}},
	{[]string{modeEnvoyGateway}, namedCheck[*chartRender]{"signer served to the Gateway's Envoy only", func(r *chartRender) error {
		var p problems
		c, err := r.container(kubeSignerContainer)
		if err != nil {
			return err
		}
		if len(r.pod().InitContainers) != 0 || len(r.pod().Containers) != 1 {
			p.addf("the pod has %v and %v, want the signer alone", containerNames(r.pod().InitContainers), containerNames(r.pod().Containers))
		}
		if c.StartupProbe == nil {
			p.addf("the signer has no startupProbe")
		}
		listen, _ := kubeEnv(c, "OCISIGNER_LISTEN")
		if listen != fmt.Sprintf(":%d", r.refs.signerPort) {
			p.addf("OCISIGNER_LISTEN = %q, want :%d (the Gateway's Envoy comes in on the pod IP)", listen, r.refs.signerPort)
		}
		rules, isolated := r.ingressRules()
		if !isolated {
			p.addf("no NetworkPolicy isolates the signer pods for ingress")
		}
		admitted := false
		for _, rule := range rules {
			if !rule.admits(r, r.refs.signerPort) {
				continue
			}
			admitted = true
			for _, peer := range rule.from {
				ns, pod := peer.NamespaceSelector, peer.PodSelector
				if peer.IPBlock != nil || ns == nil || pod == nil || len(ns.MatchLabels) == 0 || len(pod.MatchLabels) == 0 {
					p.addf("NetworkPolicy %s lets %s reach the signer: want the Gateway's Envoy pods by namespace and labels", rule.policy, peerString(peer))
				}
			}
			if len(rule.from) == 0 {
				p.addf("NetworkPolicy %s lets every pod reach the signer's gRPC", rule.policy)
			}
		}
		if !admitted {
			p.addf("no NetworkPolicy rule lets the Gateway's Envoy reach the signer")
		}
		return p.err()
	}}},
	{[]string{modeGateway, modeEnvoyGateway}, namedCheck[*chartRender]{"service exposes only the entry point", func(r *chartRender) error {
		if len(r.services) != 1 {
			return fmt.Errorf("%d Services, want 1", len(r.services))
		}
		var p problems
		s := r.services[0]
		if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
			p.addf("Service type %s: the gateway signs for whoever reaches it, keep it in the cluster", s.Spec.Type)
		}
		if sel := labels.SelectorFromSet(s.Spec.Selector); len(s.Spec.Selector) == 0 || !sel.Matches(labels.Set(r.deploy.Spec.Template.Labels)) {
			p.addf("Service selector %v does not select the pods", s.Spec.Selector)
		}
		want, container := r.refs.listenerPort, kubeEnvoyContainer
		if r.mode == modeEnvoyGateway {
			want, container = r.refs.signerPort, kubeSignerContainer
		}
		c, err := r.container(container)
		if err != nil {
			return err
		}
		if len(s.Spec.Ports) != 1 {
			p.addf("Service ports %v, want only %s's %d", s.Spec.Ports, container, want)
		}
		for _, sp := range s.Spec.Ports {
			target := sp.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(sp.Port)
			}
			if n, ok := kubePort(c, target); !ok || n != want || sp.NodePort != 0 {
				p.addf("Service port %s targets %s (nodePort %d), want %s's %d", sp.Name, target.String(), sp.NodePort, container, want)
			}
		}
		return p.err()
	}}},
	{[]string{modeGateway, modeEnvoyGateway}, namedCheck[*chartRender]{"autoscaling and disruption budget", func(r *chartRender) error {
		var p problems
		podLabels := labels.Set(r.deploy.Spec.Template.Labels)
		switch len(r.hpas) {
		case 0:
			if rep := r.deploy.Spec.Replicas; rep == nil || *rep < 2 {
				p.addf("no autoscaler and %v replicas: one pod is a single point of failure", rep)
			}
		case 1:
			h := r.hpas[0]
			ref := h.Spec.ScaleTargetRef
			if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != r.deploy.Name {
				p.addf("the autoscaler scales %s %s %s, not the Deployment %s", ref.APIVersion, ref.Kind, ref.Name, r.deploy.Name)
			}
			if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
				p.addf("autoscaler replicas %v..%d: want at least 2, max not below min", h.Spec.MinReplicas, h.Spec.MaxReplicas)
			}
			if r.deploy.Spec.Replicas != nil {
				p.addf("the Deployment sets replicas while an autoscaler scales it: every upgrade resets the scale")
			}
		default:
			p.addf("%d autoscalers", len(r.hpas))
		}
		if len(r.pdbs) != 1 {
			return errors.Join(p.err(), fmt.Errorf("%d PodDisruptionBudgets, want 1", len(r.pdbs)))
		}
		pdb := r.pdbs[0]
		if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err != nil || sel.Empty() || !sel.Matches(podLabels) {
			p.addf("the PodDisruptionBudget does not select the pods (%v)", err)
		}
		mu := pdb.Spec.MaxUnavailable
		if pdb.Spec.MinAvailable != nil || mu == nil || mu.Type != intstr.Int || mu.IntVal < 1 {
			p.addf("the PodDisruptionBudget must be maxUnavailable >= 1 (got minAvailable %v, maxUnavailable %v): "+
				"0 blocks every drain, a minAvailable can equal the replicas", pdb.Spec.MinAvailable, mu)
		}
		return p.err()
	}}},
	{[]string{modeSidecar, modeGateway}, namedCheck[*chartRender]{"a changed envoy.yaml rolls the pods", func(r *chartRender) error {
		sum := sha256.Sum256([]byte(r.envoyWant))
		if got := r.deploy.Spec.Template.Annotations["checksum/envoy"]; got != hex.EncodeToString(sum[:]) {
			return fmt.Errorf("pod annotation checksum/envoy = %q, want the SHA-256 of the envoy.yaml Envoy runs", got)
		}
		return nil
	}}},
	{[]string{modeIstio}, namedCheck[*chartRender]{"istio pod: the signer beside the app, on loopback", func(r *chartRender) error {
		var p problems
		if r.deploy.Spec.Template.Labels["sidecar.istio.io/inject"] != "true" {
			p.addf("the pod is not labelled sidecar.istio.io/inject: \"true\": without istio-proxy nothing signs")
		}
		init := r.pod().InitContainers
		if len(init) != 1 || init[0].Name != kubeSignerContainer {
			p.addf("init containers %v, want the signer alone (istio-proxy is Envoy)", containerNames(init))
		} else {
			nativeSidecar(&p, &init[0])
		}
		if len(r.pod().Containers) != 1 || r.pod().Containers[0].Name != "app" || len(r.pod().HostAliases) != 0 {
			p.addf("containers %v (hostAliases %v), want the app alone", containerNames(r.pod().Containers), r.pod().HostAliases)
		}
		c, err := r.container(kubeSignerContainer)
		if err != nil {
			return errors.Join(p.err(), err)
		}
		listen, _ := kubeEnv(c, "OCISIGNER_LISTEN")
		if ap, err := netip.ParseAddrPort(listen); err != nil || !ap.Addr().IsLoopback() {
			p.addf("OCISIGNER_LISTEN = %q: in a pod with istio-proxy the signer is for the pod's own Envoy, on loopback", listen)
		}
		for _, cc := range r.allContainers() {
			for _, m := range cc.VolumeMounts {
				if vol := r.volume(m.Name); !m.ReadOnly && (path.Clean(m.MountPath) != kubeTmp || vol == nil || vol.EmptyDir == nil) {
					p.addf("%s: %s is writable; only a /tmp emptyDir may be", cc.Name, m.MountPath)
				}
			}
		}
		return p.err()
	}}},
}

// nativeSidecar: an init container that keeps running, which kubelet waits
// for before starting what follows.
func nativeSidecar(p *problems, c *corev1.Container) {
	if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		p.addf("%s: restartPolicy must be Always (a native sidecar)", c.Name)
	}
	if c.StartupProbe == nil {
		p.addf("%s: no startupProbe, so what follows does not wait for it", c.Name)
	}
}

func containerNames(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// ingressRule is one ingress rule of a NetworkPolicy that selects the pods.
type ingressRule struct {
	policy string
	from   []networkingv1.NetworkPolicyPeer
	ports  []networkingv1.NetworkPolicyPort
}

// ingressRules lists the rules of the policies that select the pods, and
// whether one of them isolates the pods for ingress.
func (r *chartRender) ingressRules() ([]ingressRule, bool) {
	podLabels := labels.Set(r.deploy.Spec.Template.Labels)
	var out []ingressRule
	isolated := false
	for _, np := range r.netpols {
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(podLabels) {
			continue
		}
		if slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			isolated = true
		}
		for _, rule := range np.Spec.Ingress {
			out = append(out, ingressRule{np.Name, rule.From, rule.Ports})
		}
	}
	return out, isolated
}

// admits reports whether the rule lets traffic to port in (a rule without
// ports admits every port).
func (rule ingressRule) admits(r *chartRender, port int32) bool {
	if len(rule.ports) == 0 {
		return true
	}
	for _, pp := range rule.ports {
		if pp.Port == nil {
			return true
		}
		lo, ok := pp.Port.IntVal, pp.Port.Type == intstr.Int
		if !ok {
			for _, c := range r.allContainers() {
				if n, found := kubePort(c, *pp.Port); found {
					lo, ok = n, true
				}
			}
		}
		hi := lo
		if pp.EndPort != nil {
			hi = *pp.EndPort
		}
		if ok && lo <= port && port <= hi {
			return true
		}
	}
	return false
}

// namedPeers requires every peer of a rule that admits port to name its
// callers by a non-empty selector, never an address range or everyone.
func namedPeers(p *problems, rule ingressRule, port int32) {
	if len(rule.from) == 0 {
		p.addf("NetworkPolicy %s lets every pod reach %d", rule.policy, port)
	}
	for _, peer := range rule.from {
		named := peer.IPBlock == nil && (selectorNames(peer.PodSelector) || selectorNames(peer.NamespaceSelector))
		if !named || (peer.NamespaceSelector != nil && !selectorNames(peer.NamespaceSelector)) {
			p.addf("NetworkPolicy %s lets %s reach %d: name the callers by labels", rule.policy, peerString(peer), port)
		}
	}
}

func selectorNames(s *metav1.LabelSelector) bool {
	return s != nil && (len(s.MatchLabels) > 0 || len(s.MatchExpressions) > 0)
}

func peerString(peer networkingv1.NetworkPolicyPeer) string {
	return fmt.Sprintf("{pods %v, namespaces %v, ipBlock %v}", peer.PodSelector, peer.NamespaceSelector, peer.IPBlock)
}
