{{/*
A shared gateway that knows its callers (mode gateway, gateway.identity):
Envoy runs deploy/shared-gateway/envoy.yaml (files/shared-gateway.yaml, a
byte-for-byte copy) instead of the root envoy.yaml. Its listener on 10443
requires a client certificate of the workload CA (the TLS Secret at
/etc/envoy/tls) and its jwt_authn filter verifies service-account tokens
against the cluster's JWKS (the ConfigMap at /etc/envoy/jwks); the
certificate's SANs and the token's payload reach the signer, whose policy
decides. Both are Envoy's alone: the signer never holds the gateway's
private key. They nest in Envoy's ConfigMap volume at /etc/envoy, where
kubelet makes their mount points (pkg/volume/util/nested_volumes.go
MakeNestedMountpoints, called by the configMap volume's SetUpAt).
*/}}

{{- define "ocisigner.identity" -}}
{{- $i := .Values.gateway.identity -}}
{{- if and (eq .Values.mode "gateway") (or $i.mtls.secretName $i.serviceAccountTokens.jwksConfigMap) }}true{{ end -}}
{{- end -}}

{{/* Envoy's listener: the shared gateway's mTLS port, or envoy.yaml's. */}}
{{- define "ocisigner.gatewayPort" -}}
{{- if include "ocisigner.identity" . }}10443{{ else }}10000{{ end -}}
{{- end -}}

{{/* The file's own issuer and audience: rendered with them, the file is the repository's byte for byte. */}}
{{- define "ocisigner.identityFileIssuer" -}}https://kubernetes.default.svc.cluster.local{{- end -}}
{{- define "ocisigner.identityFileAudience" -}}ocisigner{{- end -}}

{{/*
Envoy's bootstrap. With an identity: the shared-gateway file, its
provider's issuer and audience replaced only where the values differ from
the file's, quoted (no value can add YAML). deploy/helm_identity_test.go
runs deploy/sharedgateway_test.go's checks on what this renders.
*/}}
{{- define "ocisigner.envoyConfig" -}}
{{- if not (include "ocisigner.identity" .) -}}
{{- .Files.Get "files/envoy.yaml" -}}
{{- else -}}
{{- $i := .Values.gateway.identity -}}
{{- if not (and $i.mtls.secretName $i.serviceAccountTokens.jwksConfigMap) -}}
{{- fail "gateway.identity: set both mtls.secretName and serviceAccountTokens.jwksConfigMap (the shared gateway's listener requires client certificates, and its jwt_authn filter reads the JWKS)" -}}
{{- end -}}
{{- $text := .Files.Get "files/shared-gateway.yaml" -}}
{{- $sa := $i.serviceAccountTokens -}}
{{- $fileIssuer := include "ocisigner.identityFileIssuer" . -}}
{{- $fileAudience := include "ocisigner.identityFileAudience" . -}}
{{- $issuer := printf "issuer: %s\n" $fileIssuer -}}
{{- $audience := printf "audiences: [%s]\n" $fileAudience -}}
{{- if or (ne (len (splitList $issuer $text)) 2) (ne (len (splitList $audience $text)) 2) -}}
{{- fail "files/shared-gateway.yaml must name the provider's issuer and audiences once each, as deploy/shared-gateway/envoy.yaml does: copy it again" -}}
{{- end -}}
{{- if ne $sa.issuer $fileIssuer -}}
{{- $text = replace $issuer (printf "issuer: %s\n" (toJson $sa.issuer)) $text -}}
{{- end -}}
{{- if ne $sa.audience $fileAudience -}}
{{- $text = replace $audience (printf "audiences: [%s]\n" (toJson $sa.audience)) $text -}}
{{- end -}}
{{- $text -}}
{{- end -}}
{{- end -}}

{{/* The TLS Secret and the JWKS, in Envoy only, read-only. */}}
{{- define "ocisigner.identityMounts" -}}
{{- if include "ocisigner.identity" . }}
- name: gateway-tls
  mountPath: /etc/envoy/tls
  readOnly: true
- name: gateway-jwks
  mountPath: /etc/envoy/jwks
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Only the keys Envoy reads: a Secret or ConfigMap without one fails the
mount, and the pod does not start (closed), rather than Envoy. The key is
0400 (0440 with the pod's fsGroup, which Envoy's user has as a
supplementary group). Neither is optional.
*/}}
{{- define "ocisigner.identityVolumes" -}}
{{- if include "ocisigner.identity" . }}
{{- $i := .Values.gateway.identity }}
- name: gateway-tls
  secret:
    secretName: {{ $i.mtls.secretName }}
    defaultMode: 0400
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
      - {key: ca.crt, path: ca.crt}
- name: gateway-jwks
  configMap:
    name: {{ $i.serviceAccountTokens.jwksConfigMap }}
    defaultMode: 0444
    items:
      - {key: jwks.json, path: jwks.json}
{{- end }}
{{- end -}}
