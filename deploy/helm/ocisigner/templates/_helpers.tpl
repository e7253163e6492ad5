{{/*
The pieces every mode shares. The hardening is here, not in values: no value
can weaken it (deploy/helm_test.go proves a weakened template fails).
*/}}

{{- define "ocisigner.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ocisigner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ocisigner.fullname" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ocisigner.labels" -}}
{{ include "ocisigner.selectorLabels" . }}
app.kubernetes.io/component: {{ .Values.mode }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "ocisigner.serviceAccountName" -}}
{{- default (include "ocisigner.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Whether the pod carries the credentials' own service account. */}}
{{- define "ocisigner.ownServiceAccount" -}}
{{- if has .Values.credentials.type (list "workloadIdentity" "tokenExchange") }}true{{ end -}}
{{- end -}}

{{/* Envoy is the chart's own container (not Istio's or Envoy Gateway's). */}}
{{- define "ocisigner.ownEnvoy" -}}
{{- if has .Values.mode (list "sidecar" "gateway") }}true{{ end -}}
{{- end -}}

{{/* The signer is a shared service reached over the network (envoyGateway). */}}
{{- define "ocisigner.signerShared" -}}
{{- if eq .Values.mode "envoyGateway" }}true{{ end -}}
{{- end -}}

{{/* The gateway modes: a Deployment behind a Service, an HPA and a PDB. */}}
{{- define "ocisigner.shared" -}}
{{- if has .Values.mode (list "gateway" "envoyGateway") }}true{{ end -}}
{{- end -}}

{{/* A shared gateway with a policy (gateway.policy, modes gateway and envoyGateway). */}}
{{- define "ocisigner.policy" -}}
{{- if and (include "ocisigner.shared" .) .Values.gateway.policy }}true{{ end -}}
{{- end -}}

{{/*
The policy (a ConfigMap) and the keys (a Secret) in the signer only,
read-only. kubelet swaps a changed ConfigMap or Secret volume by renaming
its ..data link, which the signer's watcher sees as a new file: it reloads
without a restart. No subPath: a subPath mount never changes.
*/}}
{{- define "ocisigner.policyMounts" -}}
{{- if include "ocisigner.policy" . }}
- name: ocisigner-policy
  mountPath: /etc/ocisigner/policy
  readOnly: true
{{- if .Values.gateway.keys }}
- name: ocisigner-keys
  mountPath: /etc/ocisigner/keys
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "ocisigner.policyVolumes" -}}
{{- if include "ocisigner.policy" . }}
- name: ocisigner-policy
  configMap:
    name: {{ include "ocisigner.fullname" . }}-policy
    defaultMode: 0444
{{- if .Values.gateway.keys }}
- name: ocisigner-keys
  secret:
    secretName: {{ include "ocisigner.fullname" . }}-keys
    defaultMode: 0400
{{- end }}
{{- end }}
{{- end -}}

{{/*
HTTPS interception (intercept.enabled), in mode sidecar only: the signer
mints certificates for the OCI hosts from the CA in intercept.caSecret, and
the app sends its HTTPS through the pod's Envoy trusting that CA. The CA
key is mounted into the signer alone (ocisigner-ca); the app gets the CA and
the bundle (ocisigner-ca-public). The same pod as deploy/kubernetes/intercept.
*/}}
{{- define "ocisigner.intercept" -}}
{{- if .Values.intercept.enabled }}
{{- if ne .Values.mode "sidecar" }}
{{- fail "intercept.enabled needs mode sidecar: the other modes' Envoy does not terminate CONNECT (docs/intercept.md)" }}
{{- end }}true
{{- end -}}
{{- end -}}

{{- define "ocisigner.interceptSignerEnv" -}}
{{- if include "ocisigner.intercept" . }}
- name: OCISIGNER_INTERCEPT
  value: "true"
- name: OCISIGNER_CA_CERT
  value: /etc/ocisigner/ca/ca.pem
- name: OCISIGNER_CA_KEY
  value: /etc/ocisigner/ca/ca-key.pem
{{- end }}
{{- end -}}

{{/* The CA's mount: the volume as the argument (ocisigner-ca or ocisigner-ca-public). */}}
{{- define "ocisigner.interceptMount" -}}
- name: {{ . }}
  mountPath: /etc/ocisigner/ca
  readOnly: true
{{- end -}}

{{- define "ocisigner.interceptVolumes" -}}
{{- if include "ocisigner.intercept" . }}
- name: ocisigner-ca
  secret:
    secretName: {{ .Values.intercept.caSecret }}
    defaultMode: 0400
    items:
      - key: ca.pem
        path: ca.pem
      - key: ca-key.pem
        path: ca-key.pem
- name: ocisigner-ca-public
  secret:
    secretName: {{ .Values.intercept.caSecret }}
    defaultMode: 0444
    items:
      - key: ca.pem
        path: ca.pem
      - key: ca-bundle.pem
        path: ca-bundle.pem
{{- end }}
{{- end -}}

{{/*
The app's environment: interception's variables first (each client family
reads its own: docs/intercept.md), then app.env.
*/}}
{{- define "ocisigner.appEnv" -}}
{{- if include "ocisigner.intercept" . }}
- name: HTTPS_PROXY
  value: http://127.0.0.1:10000
- name: NO_PROXY
  value: {{ concat (list "localhost" "127.0.0.1" "::1" ".svc" ".cluster.local") .Values.intercept.noProxy | join "," | quote }}
- name: SSL_CERT_FILE
  value: /etc/ocisigner/ca/ca-bundle.pem
- name: REQUESTS_CA_BUNDLE
  value: /etc/ocisigner/ca/ca-bundle.pem
- name: CURL_CA_BUNDLE
  value: /etc/ocisigner/ca/ca-bundle.pem
- name: NODE_EXTRA_CA_CERTS
  value: /etc/ocisigner/ca/ca.pem
- name: NODE_USE_ENV_PROXY
  value: "1"
{{- end }}
{{- range .Values.app.env }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- end -}}

{{/* A container's security context: uid and gid as the first two arguments. */}}
{{- define "ocisigner.containerSecurity" -}}
runAsUser: {{ index . 0 }}
runAsGroup: {{ index . 1 }}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/*
The signer's environment: credentials first, then the addresses. Envoy in
the pod (sidecar, gateway, istio) reaches it on loopback, and nothing else
may; in mode envoyGateway the Gateway's Envoy reaches it through the
Service, and the NetworkPolicy is what keeps everyone else out.
*/}}
{{- define "ocisigner.signerEnv" -}}
{{- $c := .Values.credentials -}}
{{- include "ocisigner.interceptSignerEnv" . }}
{{- if eq $c.type "session" }}
- name: OCI_CLI_CONFIG_FILE
  value: /oci/config
- name: OCI_CLI_PROFILE
  value: {{ $c.session.profile | quote }}
{{- else if eq $c.type "workloadIdentity" }}
- name: OCISIGNER_PRINCIPAL
  value: workload
- name: OCI_RESOURCE_PRINCIPAL_VERSION
  value: "2.2"
- name: OCI_RESOURCE_PRINCIPAL_REGION
  value: {{ $c.workloadIdentity.region | quote }}
{{- else if eq $c.type "tokenExchange" }}
- name: OCISIGNER_PRINCIPAL
  value: token-exchange
- name: OCISIGNER_TOKEN_EXCHANGE_URL
  value: {{ $c.tokenExchange.url | quote }}
- name: OCISIGNER_CLIENT_ID
  value: {{ $c.tokenExchange.clientID | quote }}
- name: OCISIGNER_CLIENT_SECRET_FILE
  value: /var/run/secrets/ocisigner/client-secret
- name: OCISIGNER_SUBJECT_TOKEN_FILE
  value: /var/run/secrets/ocisigner/token
- name: OCISIGNER_REGION
  value: {{ $c.tokenExchange.region | quote }}
{{- end }}
- name: OCISIGNER_LISTEN
  value: {{ if include "ocisigner.signerShared" . }}":50051"{{ else }}127.0.0.1:50051{{ end }}
- name: OCISIGNER_ADMIN
  value: ":9465"
- name: OCISIGNER_LOG_FORMAT
  value: json
{{- if eq $c.type "session" }}
- name: OCISIGNER_SESSION_REFRESH
  value: "true"
- name: OCISIGNER_WRITE_BACK
  value: "false"
{{- end }}
{{- if include "ocisigner.policy" . }}
- name: OCISIGNER_POLICY
  value: /etc/ocisigner/policy/policy.yaml
{{- if .Values.gateway.keys }}
- name: OCISIGNER_KEYS
  value: /etc/ocisigner/keys/keys
{{- end }}
{{- end }}
{{- range .Values.signer.extraEnv }}
- name: {{ .name }}
  value: {{ .value | quote }}
{{- end }}
{{- end -}}

{{- define "ocisigner.credentialMount" -}}
{{- $t := .Values.credentials.type -}}
{{- if eq $t "session" }}
- name: oci-session
  mountPath: /oci
  readOnly: true
{{- else if eq $t "workloadIdentity" }}
- name: oke-workload-identity
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
{{- else if eq $t "tokenExchange" }}
- name: oci-token-exchange
  mountPath: /var/run/secrets/ocisigner
  readOnly: true
{{- end }}
{{- end -}}

{{- define "ocisigner.credentialVolume" -}}
{{- $c := .Values.credentials -}}
{{- if eq $c.type "session" }}
- name: oci-session
  secret:
    secretName: {{ $c.session.secretName }}
    defaultMode: 0400
{{- else if eq $c.type "workloadIdentity" }}
- name: oke-workload-identity
  projected:
    defaultMode: 0400
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3600
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                apiVersion: v1
                fieldPath: metadata.namespace
{{- else if eq $c.type "tokenExchange" }}
- name: oci-token-exchange
  projected:
    defaultMode: 0400
    sources:
      - serviceAccountToken:
          path: token
          audience: {{ $c.tokenExchange.audience }}
          expirationSeconds: {{ $c.tokenExchange.expirationSeconds }}
      - secret:
          name: {{ $c.tokenExchange.secretName }}
          items:
            - key: client-secret
              path: client-secret
{{- end }}
{{- end -}}

{{/*
The signer. In the pod of an app or of Envoy it is a native sidecar (an init
container with restartPolicy: Always): kubelet waits for its startupProbe
before starting what follows, and stops it last. /healthz (startup,
liveness) says the process serves; /readyz (readiness) says the default
profile can sign: a restart never fixes credentials.
*/}}
{{- define "ocisigner.signerContainer" -}}
- name: ocisigner
  image: {{ .Values.image.signer }}
  args: ["serve"]
  {{- if not (include "ocisigner.signerShared" .) }}
  restartPolicy: Always
  {{- end }}
  env:
    {{- include "ocisigner.signerEnv" . | nindent 4 }}
  ports:
    - name: grpc
      containerPort: 50051
      protocol: TCP
    - name: admin
      containerPort: 9465
      protocol: TCP
  startupProbe:
    httpGet:
      path: /healthz
      port: admin
    periodSeconds: 1
    timeoutSeconds: 1
    failureThreshold: 30
  readinessProbe:
    httpGet:
      path: /readyz
      port: admin
    periodSeconds: 5
    timeoutSeconds: 3
    failureThreshold: 3
  livenessProbe:
    httpGet:
      path: /healthz
      port: admin
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 3
  resources:
    {{- toYaml .Values.signer.resources | nindent 4 }}
  securityContext:
    {{- include "ocisigner.containerSecurity" (list 65532 65532) | nindent 4 }}
  volumeMounts:
    {{- if include "ocisigner.intercept" . }}
    {{- include "ocisigner.interceptMount" "ocisigner-ca" | nindent 4 }}
    {{- end }}
    {{- include "ocisigner.credentialMount" . | nindent 4 }}
    {{- include "ocisigner.policyMounts" . | nindent 4 }}
    - name: ocisigner-tmp
      mountPath: /tmp
{{- end -}}

{{/*
Envoy with the root envoy.yaml (files/envoy.yaml, a byte-for-byte copy), or
the shared-gateway file (_identity.tpl). Its
admin (127.0.0.1:9901) is unreachable for kubelet: the probes check the
listener. As a native sidecar (mode sidecar) it starts after the signer.
*/}}
{{- define "ocisigner.envoyContainer" -}}
- name: envoy
  image: {{ .Values.image.envoy }}
  args: ["envoy", "-c", "/etc/envoy/envoy.yaml"]
  {{- if eq .Values.mode "sidecar" }}
  restartPolicy: Always
  {{- end }}
  ports:
    - name: gateway
      containerPort: {{ include "ocisigner.gatewayPort" . }}
      protocol: TCP
  startupProbe:
    tcpSocket:
      port: gateway
    periodSeconds: 1
    timeoutSeconds: 1
    failureThreshold: 60
  readinessProbe:
    tcpSocket:
      port: gateway
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 3
  livenessProbe:
    tcpSocket:
      port: gateway
    periodSeconds: 10
    timeoutSeconds: 2
    failureThreshold: 6
  resources:
    {{- toYaml .Values.envoy.resources | nindent 4 }}
  securityContext:
    {{- include "ocisigner.containerSecurity" (list 101 101) | nindent 4 }}
  volumeMounts:
    - name: envoy-config
      mountPath: /etc/envoy
      readOnly: true
    {{- include "ocisigner.identityMounts" . | nindent 4 }}
    - name: envoy-tmp
      mountPath: /tmp
{{- end -}}

{{- define "ocisigner.appContainer" -}}
- name: app
  image: {{ .Values.app.image }}
  {{- with .Values.app.command }}
  command: {{ toJson . }}
  {{- end }}
  {{- with .Values.app.args }}
  args: {{ toJson . }}
  {{- end }}
  {{- with include "ocisigner.appEnv" . }}
  env:
    {{- . | nindent 4 }}
  {{- end }}
  resources:
    {{- toYaml .Values.app.resources | nindent 4 }}
  securityContext:
    {{- include "ocisigner.containerSecurity" (list .Values.app.runAsUser .Values.app.runAsUser) | nindent 4 }}
  volumeMounts:
    {{- if include "ocisigner.intercept" . }}
    {{- include "ocisigner.interceptMount" "ocisigner-ca-public" | nindent 4 }}
    {{- end }}
    - name: app-tmp
      mountPath: /tmp
{{- end -}}

{{- define "ocisigner.tmpVolume" -}}
- name: {{ . }}
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}
