package deploy

import (
	"maps"
	"slices"
	"testing"
)

// A chartMutation regresses one file of the chart and names the install
// (mode and credentials) whose rendering must then fail the check.
type chartMutation struct {
	file string
	on   string // "mode/credentials", a case of chartMatrix
	mutation
}

// The secret the session variant must never ship.
const chartSecretDoc = "\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: oci-session\nstringData:\n  config: \"[DEFAULT]\"\n"

const (
	onSidecar  = modeSidecar + "/session"
	onWorkload = modeSidecar + "/workloadIdentity"
	onGateway  = modeGateway + "/session"
	onIstio    = modeIstio + "/workloadIdentity"
	onEG       = modeEnvoyGateway + "/tokenExchange"
	onPolicy   = "gateway with a policy and keys"
	onEGPolicy = "envoyGateway with a policy"
)

// onIntercept is the matrix's intercepting sidecar (helm_test.go).
const onIntercept = "sidecar intercepting"

var chartMutations = []chartMutation{
	// Must not render or decode.
	{"templates/_helpers.tpl", onSidecar, mutation{"field in the wrong case", replaceFirst("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true"), ""}},
	{"templates/deployment.yaml", onSidecar, mutation{"duplicate key", replaceFirst("      terminationGracePeriodSeconds: 45\n", "      terminationGracePeriodSeconds: 45\n      terminationGracePeriodSeconds: 5\n"), ""}},
	{"templates/istio.yaml", onIstio, mutation{"unknown ServiceEntry field", replaceFirst("  location: MESH_EXTERNAL\n", "  location: MESH_EXTERNAL\n  locality: MESH_EXTERNAL\n"), ""}},
	{"templates/envoygateway.yaml", onEG, mutation{"unknown ext_proc field", replaceFirst("      failOpen: false\n", "      failOpen: false\n      failClosed: true\n"), ""}},
	{"templates/deployment.yaml", onSidecar, mutation{"a value that does not exist", replaceFirst(".Values.replicas }}", ".Values.replica }}"), ""}},

	// kubernetes_test.go's checks, on the rendered pods.
	{"templates/_helpers.tpl", onSidecar, mutation{"signer runs probe", replaceFirst(`args: ["serve"]`, `args: ["probe"]`), "signer image and command"}},
	{"templates/_helpers.tpl", onGateway, mutation{"admin port", replaceFirst("containerPort: 9465", "containerPort: 9466"), "signer ports"}},
	{"templates/_helpers.tpl", onIstio, mutation{"readiness on healthz", replaceFirst("path: /readyz", "path: /healthz"), "signer probes"}},
	{"templates/_helpers.tpl", onSidecar, mutation{"no signer readiness", replaceFirst("  readinessProbe:\n    httpGet:\n      path: /readyz\n      port: admin\n    periodSeconds: 5\n    timeoutSeconds: 3\n    failureThreshold: 3\n", ""), "signer probes"}},
	{"templates/_helpers.tpl", onSidecar, mutation{"signer on the pod IP", replaceFirst(`{{ else }}127.0.0.1:50051{{ end }}`, `{{ else }}":50051"{{ end }}`), "signer addresses"}},
	{"templates/_helpers.tpl", onSidecar, mutation{"decimal mode", replaceFirst("    secretName: {{ $c.session.secretName }}\n    defaultMode: 0400", "    secretName: {{ $c.session.secretName }}\n    defaultMode: 400"), "session credentials"}},
	{"templates/_helpers.tpl", onWorkload, mutation{"principal version", replaceFirst(`value: "2.2"`, `value: "2.1"`), "workload identity credentials"}},
	{"templates/serviceaccount.yaml", onSidecar, mutation{"Secret shipped", func(s string) (string, error) { return s + chartSecretDoc, nil }, "no Secret committed"}},
	{"templates/deployment.yaml", onIstio, mutation{"token automounted", replaceFirst("automountServiceAccountToken: false", "automountServiceAccountToken: true"), "service-account token only in the signer"}},
	{"templates/_helpers.tpl", onEG, mutation{"writable root", replaceFirst("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"), "container hardening"}},
	{"templates/_helpers.tpl", onGateway, mutation{"capabilities kept", replaceFirst("drop: [ALL]", "drop: [NET_RAW]"), "container hardening"}},
	{"templates/_helpers.tpl", onIstio, mutation{"escalation", replaceFirst("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true"), "container hardening"}},
	{"templates/deployment.yaml", onSidecar, mutation{"unconfined", replaceFirst("type: RuntimeDefault", "type: Unconfined"), "container hardening"}},
	{"templates/_helpers.tpl", onSidecar, mutation{"app as root", replaceFirst("(list .Values.app.runAsUser .Values.app.runAsUser)", "(list 0 0)"), "container hardening"}},
	{"templates/_helpers.tpl", onEG, mutation{"no signer resources", replaceFirst("  resources:\n    {{- toYaml .Values.signer.resources | nindent 4 }}\n", ""), "resources"}},
	{"templates/deployment.yaml", onSidecar, mutation{"signer alias elsewhere", replaceFirst("- ip: 127.0.0.1", "- ip: 10.0.0.1"), "hostAliases map the signer to loopback"}},
	{"values.yaml", onGateway, mutation{"envoy drifts from compose", replaceFirst("envoyproxy/envoy:v1.40.0", "envoyproxy/envoy:v1.39.1"), "envoy image matches docker-compose.yml"}},
	{"templates/_helpers.tpl", onSidecar, mutation{"envoy runs another file", replaceFirst(`"-c", "/etc/envoy/envoy.yaml"`, `"-c", "/etc/envoy/other.yaml"`), "envoy runs the ConfigMap's envoy.yaml"}},
	{"files/envoy.yaml", onGateway, mutation{"copy drifted", replaceFirst("port_value: 10000", "port_value: 10001"), "envoy.yaml copy identical"}},
	{"templates/_helpers.tpl", onSidecar, mutation{"no envoy readiness", replaceFirst("  readinessProbe:\n    tcpSocket:\n      port: gateway\n    periodSeconds: 10\n    timeoutSeconds: 2\n    failureThreshold: 3\n", ""), "envoy ports and probes"}},
	{"templates/_helpers.tpl", onGateway, mutation{"envoy config writable", replaceFirst("mountPath: /etc/envoy\n      readOnly: true\n", "mountPath: /etc/envoy\n"), "only /tmp emptyDirs writable"}},
	{"templates/_helpers.tpl", onSidecar, mutation{"signer not a sidecar", replaceFirst("  restartPolicy: Always\n", ""), "native sidecars in order"}},
	{"templates/_helpers.tpl", onSidecar, mutation{"envoy without startup probe", replaceFirst("  startupProbe:\n    tcpSocket:\n      port: gateway\n    periodSeconds: 1\n    timeoutSeconds: 1\n    failureThreshold: 60\n", ""), "native sidecars in order"}},
	{"templates/networkpolicy.yaml", onSidecar, mutation{"gateway let in", replaceFirst("          port: 9465", "          port: 10000"), "network policy keeps the gateway private"}},

	// The chart's own checks.
	{"templates/deployment.yaml", onGateway, mutation{"envoy a sidecar of nothing", replaceFirst(`{{- if eq $mode "sidecar" }}`+"\n        {{- include \"ocisigner.envoyContainer\"", `{{- if has $mode (list "sidecar" "gateway") }}`+"\n        {{- include \"ocisigner.envoyContainer\""), "gateway pod: the signer serves before Envoy starts"}},
	{"templates/networkpolicy.yaml", onGateway, mutation{"every pod may call", replaceFirst("    - from:\n        {{- toYaml .Values.gateway.clients | nindent 8 }}\n      ports:", "    - ports:"), "gateway callers named"}},
	{"templates/networkpolicy.yaml", onGateway, mutation{"signer gRPC let in", replaceFirst("          port: {{ include \"ocisigner.gatewayPort\" . }}", "          port: {{ include \"ocisigner.gatewayPort\" . }}\n        - protocol: TCP\n          port: 50051"), "gateway callers named"}},
	{"templates/networkpolicy.yaml", onEG, mutation{"any pod of the namespace", replaceFirst("          podSelector:\n            matchLabels:\n              app.kubernetes.io/name: envoy\n              gateway.envoyproxy.io/owning-gateway-name: {{ .Values.envoyGateway.gateway.name }}\n              gateway.envoyproxy.io/owning-gateway-namespace: {{ .Values.envoyGateway.gateway.namespace }}\n", ""), "signer served to the Gateway's Envoy only"}},
	{"templates/_helpers.tpl", onEG, mutation{"signer on loopback", replaceFirst(`{{ if include "ocisigner.signerShared" . }}":50051"`, `{{ if include "ocisigner.signerShared" . }}"127.0.0.1:50051"`), "signer served to the Gateway's Envoy only"}},
	{"templates/service.yaml", onGateway, mutation{"admin published", replaceFirst("targetPort: gateway", "targetPort: 9901"), "service exposes only the entry point"}},
	{"templates/service.yaml", onEG, mutation{"published on the nodes", replaceFirst("  type: {{ .Values.gateway.service.type }}", "  type: NodePort"), "service exposes only the entry point"}},
	{"templates/pdb.yaml", onGateway, mutation{"no disruption allowed", replaceFirst("maxUnavailable: {{ .Values.gateway.podDisruptionBudget.maxUnavailable }}", "maxUnavailable: 0"), "autoscaling and disruption budget"}},
	{"templates/deployment.yaml", onEG, mutation{"replicas beside the autoscaler", replaceFirst("{{- if not (and $shared .Values.gateway.autoscaling.enabled) }}", "{{- if true }}"), "autoscaling and disruption budget"}},
	{"templates/deployment.yaml", onSidecar, mutation{"config change does not roll", replaceFirst("        checksum/envoy: {{ include \"ocisigner.envoyConfig\" . | sha256sum }}\n", ""), "a changed envoy.yaml rolls the pods"}},
	{"templates/deployment.yaml", onIstio, mutation{"not injected", replaceFirst("        sidecar.istio.io/inject: \"true\"\n", ""), "istio pod: the signer beside the app, on loopback"}},

	{"templates/policy.yaml", onPolicy, mutation{"a key in the keys Secret", replaceFirst("    {{- .Values.gateway.keys | nindent 4 }}", "    {{- .Values.gateway.keys | nindent 4 }}\n    leaked ocisk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), "no Secret committed"}},
	{"templates/policy.yaml", onPolicy, mutation{"the keys Secret holds more", replaceFirst("stringData:\n", "stringData:\n  config: \"[DEFAULT]\"\n"), "no Secret committed"}},
	{"templates/_helpers.tpl", onPolicy, mutation{"policy mounted writable", replaceFirst("  mountPath: /etc/ocisigner/policy\n  readOnly: true\n", "  mountPath: /etc/ocisigner/policy\n"), "policy and keys reach the signer alone, read-only"}},
	{"templates/_helpers.tpl", onPolicy, mutation{"policy by subPath", replaceFirst("  mountPath: /etc/ocisigner/policy\n", "  mountPath: /etc/ocisigner/policy/policy.yaml\n  subPath: policy.yaml\n"), "policy and keys reach the signer alone, read-only"}},
	{"templates/_helpers.tpl", onPolicy, mutation{"keys file elsewhere", replaceFirst("value: /etc/ocisigner/keys/keys", "value: /etc/ocisigner/keys/keys.txt"), "policy and keys reach the signer alone, read-only"}},
	{"templates/_helpers.tpl", onPolicy, mutation{"keys readable by all", replaceFirst("    secretName: {{ include \"ocisigner.fullname\" . }}-keys\n    defaultMode: 0400", "    secretName: {{ include \"ocisigner.fullname\" . }}-keys\n    defaultMode: 0444"), "policy and keys reach the signer alone, read-only"}},
	{"templates/_helpers.tpl", onEGPolicy, mutation{"policy not passed", replaceFirst("- name: OCISIGNER_POLICY\n  value: /etc/ocisigner/policy/policy.yaml\n", ""), "policy and keys reach the signer alone, read-only"}},
	{"templates/_helpers.tpl", onPolicy, mutation{"keys in Envoy too", replaceFirst("  volumeMounts:\n    - name: envoy-config\n", "  volumeMounts:\n    - name: ocisigner-keys\n      mountPath: /etc/ocisigner/keys\n      readOnly: true\n    - name: envoy-config\n"), "policy and keys reach the signer alone, read-only"}},
	{"templates/policy.yaml", onPolicy, mutation{"policy under another key", replaceFirst("  policy.yaml: |", "  policy.yml: |"), "policy and keys reach the signer alone, read-only"}},

	{"templates/istio.yaml", onIstio, mutation{"virtual host misnamed", replaceFirst(`name: "{{ . }}:80"`, `name: "{{ . }}"`), "istio: every patch applies to the sidecar and validates"}},
	{"templates/istio.yaml", onIstio, mutation{"patch field misspelt", replaceFirst("request_body_buffer_limit: 33554432", "request_body_buffer_limits: 33554432"), "istio: every patch applies to the sidecar and validates"}},
	{"templates/istio.yaml", onIstio, mutation{"every workload of the namespace", replaceFirst("  workloadSelector:\n    labels:\n      {{- include \"ocisigner.selectorLabels\" . | nindent 6 }}\n", ""), "istio: every patch applies to the sidecar and validates"}},
	{"templates/istio.yaml", onIstio, mutation{"signer on every host", replaceFirst("          disabled: true\n", ""), "istio: signs only the OCI hosts"}},
	{"templates/istio.yaml", onIstio, mutation{"Istio's buffer", replaceFirst("request_body_buffer_limit: 33554432", "request_body_buffer_limit: 1048576"), "istio: signs only the OCI hosts"}},
	{"templates/istio.yaml", onIstio, mutation{"fail open", replaceFirst("failure_mode_allow: false", "failure_mode_allow: true"), "istio: ext_proc is envoy.yaml's proxy-form filter"}},
	{"templates/istio.yaml", onIstio, mutation{"Envoy's 200 ms", replaceFirst("message_timeout: 5s", "message_timeout: 0.2s"), "istio: ext_proc is envoy.yaml's proxy-form filter"}},
	{"templates/istio.yaml", onIstio, mutation{"signer port", replaceFirst("port_value: 50051", "port_value: 50052"), "istio: the cluster reaches the signer in the pod"}},
	{"templates/istio.yaml", onIstio, mutation{"TLS off", replaceFirst("mode: SIMPLE", "mode: DISABLE"), "istio: TLS to the host that was signed"}},
	{"templates/istio.yaml", onIstio, mutation{"plain to 80", replaceFirst("      targetPort: 443\n", ""), "istio: TLS to the host that was signed"}},
	{"templates/istio.yaml", onIstio, mutation{"any name will do", replaceFirst("          subjectAltNames: [{{ . }}]\n", ""), "istio: TLS to the host that was signed"}},

	{"templates/envoygateway.yaml", onEG, mutation{"fail open", replaceFirst("failOpen: false", "failOpen: true"), "envoy gateway: the emitted ext_proc fails closed and waits for credentials"}},
	{"templates/envoygateway.yaml", onEG, mutation{"Envoy Gateway's 200 ms", replaceFirst("messageTimeout: {{ .Values.envoyGateway.messageTimeout }}", "messageTimeout: 200ms"), "envoy gateway: the emitted ext_proc fails closed and waits for credentials"}},
	{"templates/envoygateway.yaml", onEG, mutation{"body streamed unsigned", replaceFirst("body: Buffered", "body: Streamed"), "envoy gateway: the emitted ext_proc fails closed and waits for credentials"}},
	{"templates/envoygateway.yaml", onEG, mutation{"policy on another route", replaceFirst("      kind: HTTPRoute\n      name: {{ $name }}\n  extProc:", "      kind: HTTPRoute\n      name: other\n  extProc:"), "envoy gateway: the policy covers the OCI route and reaches the signer"}},
	{"templates/envoygateway.yaml", onEG, mutation{"route for every host", replaceFirst("  hostnames:\n    {{- toYaml .Values.envoyGateway.hostnames | nindent 4 }}\n", ""), "envoy gateway: the policy covers the OCI route and reaches the signer"}},
	{"templates/envoygateway.yaml", onEG, mutation{"unverified upstream", replaceFirst("wellKnownCACertificates: System", "insecureSkipVerify: true"), "envoy gateway: TLS to the host that was signed"}},
	{"templates/envoygateway.yaml", onEG, mutation{"fixed SNI", replaceFirst("wellKnownCACertificates: System", "wellKnownCACertificates: System\n    sni: objectstorage.us-ashburn-1.oraclecloud.com"), "envoy gateway: TLS to the host that was signed"}},
	{"templates/envoygateway.yaml", onEG, mutation{"32 KiB", replaceFirst("limit: {{ .Values.envoyGateway.requestBufferLimit }}", "limit: 1Mi"), "envoy gateway: the route buffers what the signer signs"}},

	// Interception (kubernetes_intercept_test.go's checks).
	{"templates/_helpers.tpl", onIntercept, mutation{"interception off", replaceFirst("- name: OCISIGNER_INTERCEPT\n  value: \"true\"", "- name: OCISIGNER_INTERCEPT\n  value: \"false\""), "signer intercepts with the CA from a read-only Secret"}},
	{"templates/_helpers.tpl", onIntercept, mutation{"CA key readable by all", replaceFirst("    secretName: {{ .Values.intercept.caSecret }}\n    defaultMode: 0400", "    secretName: {{ .Values.intercept.caSecret }}\n    defaultMode: 0444"), "signer intercepts with the CA from a read-only Secret"}},
	{"templates/_helpers.tpl", onIntercept, mutation{"CA writable", replaceFirst("  mountPath: /etc/ocisigner/ca\n  readOnly: true\n", "  mountPath: /etc/ocisigner/ca\n"), "signer intercepts with the CA from a read-only Secret"}},
	{"templates/_helpers.tpl", onIntercept, mutation{"proxy on the pod IP", replaceFirst("value: http://127.0.0.1:10000", `value: http://{{ include "ocisigner.fullname" . }}:10000`), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{"templates/_helpers.tpl", onIntercept, mutation{"no REQUESTS_CA_BUNDLE", replaceFirst("- name: REQUESTS_CA_BUNDLE\n  value: /etc/ocisigner/ca/ca-bundle.pem\n", ""), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{"templates/_helpers.tpl", onIntercept, mutation{"OCI bypasses the signer", replaceFirst(`".svc" ".cluster.local")`, `".svc" ".cluster.local" ".oraclecloud.com")`), "app proxies HTTPS through the pod's Envoy and trusts the CA"}},
	{"templates/_helpers.tpl", onIntercept, mutation{"app mounts the signer's CA", replaceFirst(`"ocisigner-ca-public" | nindent 4`, `"ocisigner-ca" | nindent 4`), "CA key only in the signer"}},
	{"templates/_helpers.tpl", onIntercept, mutation{"app's CA volume has every key", replaceLast("    items:\n      - key: ca.pem\n        path: ca.pem\n      - key: ca-bundle.pem\n        path: ca-bundle.pem\n", ""), "CA key only in the signer"}},
}

// testPEMKey has the shape of a private key (not a real one) for the
// schema's refusals.
const testPEMKey = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAoAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n"

// TestHelmChartChecksCatchRegressions applies each mutation to the chart,
// renders the install it names, and requires the named check (or the
// rendering) to fail. Every chart check, and every check of
// kubernetes_test.go, must be proved by at least one mutation on the chart.
func TestHelmChartChecksCatchRegressions(t *testing.T) {
	t.Parallel()
	files, refs := readChartFiles(t), loadKubeRefs(t)
	cases := map[string]chartCase{}
	for _, c := range chartMatrix() {
		cases[c.name] = c
	}
	known := map[string]bool{}
	for _, c := range chartChecks {
		known[c.check.name] = true
	}
	mustProve := maps.Clone(known)
	for _, c := range allTokenExchangeChecks() {
		known[c.name] = true
	}
	for _, c := range kubeChecks {
		mustProve[c.name] = true
	}
	covered := map[string]bool{}
	for _, m := range slices.Concat(chartMutations, chartIdentityMutations) {
		if m.want != "" && !known[m.want] {
			t.Fatalf("mutation %q names unknown check %q", m.name, m.want)
		}
		c, ok := cases[m.on]
		if !ok {
			t.Fatalf("mutation %q: no case %q", m.name, m.on)
		}
		if underRace && covered[m.want] {
			continue // proved already; all of them run without -race
		}
		covered[m.want] = true
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			mutated, err := m.apply(files[m.file])
			if err != nil {
				t.Fatalf("mutation no longer applies to %s: %v", m.file, err)
			}
			fs := maps.Clone(files)
			fs[m.file] = mutated
			failed, err := chartResults(t, fs, refs, []chartCase{c}, false)
			switch {
			case m.want == "" && err == nil:
				t.Fatalf("mutated %s still renders and decodes", m.file)
			case m.want == "":
				t.Logf("refused: %v", err)
			case err != nil:
				t.Fatalf("mutated %s should render (only %q should fail): %v", m.file, m.want, err)
			case failed[m.want] == nil:
				t.Errorf("check %q did not catch the regression (failed: %v)", m.want, failed)
			default:
				t.Logf("caught: %v", failed[m.want])
			}
		})
	}
	for n := range mustProve {
		if !covered[n] {
			t.Errorf("check %q has no mutation of the chart proving it can fail", n)
		}
	}
}
