{{/* The release's base name, at most 63 characters (DNS label). */}}
{{- define "wabaplane.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "wabaplane.operatorName" -}}{{ include "wabaplane.fullname" . | trunc 54 | trimSuffix "-" }}-operator{{- end -}}
{{- /* "true" when the operator runs several replicas that peer (kopf), else empty. */ -}}
{{- define "wabaplane.operatorPeers" -}}{{ if gt (int .Values.operator.replicas) 1 }}true{{ end }}{{- end -}}
{{- define "wabaplane.gatewayName" -}}{{ include "wabaplane.fullname" . | trunc 55 | trimSuffix "-" }}-gateway{{- end -}}
{{- define "wabaplane.metaSecretName" -}}
{{- .Values.meta.existingSecret | default (printf "%s-meta" (include "wabaplane.fullname" .)) -}}
{{- end -}}
{{- define "wabaplane.internalSecretName" -}}{{ include "wabaplane.fullname" . }}-internal{{- end -}}

{{/* Labels every object carries. */}}
{{- define "wabaplane.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: pass (list $ "operator"). */}}
{{- define "wabaplane.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "wabaplane.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The namespaces holding Tenants: watchNamespaces, or the release's own. */}}
{{- define "wabaplane.namespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- toJson .Values.watchNamespaces -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for both pods. */}}
{{- define "wabaplane.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}
{{- define "wabaplane.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Refuse values that cannot work, with a message that says what to change. */}}
{{- define "wabaplane.validate" -}}
{{- $gateway := .Values.gateway -}}
{{- if and (eq $gateway.store.type "sqlite") (or (gt (int $gateway.replicaCount) 1) $gateway.autoscaling.enabled) -}}
{{- fail "gateway.store.type sqlite supports exactly one gateway replica: set gateway.store.type=postgresql (with gateway.store.postgresql.existingSecret) for gateway.replicaCount > 1 or gateway.autoscaling.enabled" -}}
{{- end -}}
{{- if and (eq $gateway.store.type "postgresql") (not $gateway.store.postgresql.existingSecret) -}}
{{- fail "gateway.store.type postgresql needs gateway.store.postgresql.existingSecret: a Secret holding the postgresql:// URL" -}}
{{- end -}}
{{- if and $gateway.autoscaling.enabled (lt (int $gateway.autoscaling.maxReplicas) (int $gateway.autoscaling.minReplicas)) -}}
{{- fail "gateway.autoscaling.maxReplicas must be at least gateway.autoscaling.minReplicas" -}}
{{- end -}}
{{- end -}}
