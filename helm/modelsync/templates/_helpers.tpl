{{- define "modelsync.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "modelsync.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "modelsync.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* What the operator reads: everywhere it watches (cluster-wide mode: every
namespace). */ -}}
{{- define "modelsync.readRules" -}}
- apiGroups: ["modelsync.io"]
  resources: [modeldeployments, modelsyncs]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [services, pods]
  verbs: [get, list, watch]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
{{- with .Values.operator.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- /* What the operator writes: only where the platform enabled tenants (cluster-wide
mode: tenancy.namespaces, bound per namespace). ModelSyncs are never made or deleted
by the operator's own account, only their status written. */ -}}
{{- define "modelsync.writeRules" -}}
- apiGroups: ["modelsync.io"]
  resources: [modeldeployments]
  verbs: [create, update, patch, delete]
- apiGroups: ["modelsync.io"]
  resources: [modelsyncs]
  verbs: [patch]
- apiGroups: ["modelsync.io"]
  resources: [modeldeployments/status, modelsyncs/status]
  verbs: [get, update, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [create, update, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [create, update, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [create, update, patch, delete]
- apiGroups: [events.k8s.io, ""]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* What the operator needs in a tenant's namespace to sync it: the git and webhook
Secrets, and the ServiceAccount it applies as; and to open the inference gate
(spec.validation) of the models' new pods. Cluster-wide mode grants it only in the
namespaces the platform enables. */}}
{{- define "modelsync.tenantAccessRules" -}}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, impersonate]
- apiGroups: [""]
  resources: [pods/status]
  verbs: [patch]
{{- end -}}

{{/* resources.limits.memory in bytes ("" when no limit is set): 1Gi, 1536Mi, 2G, 1073741824. */}}
{{- define "modelsync.memoryLimitBytes" -}}
{{- $quantity := toString (dig "limits" "memory" "" .Values.resources) -}}
{{- if $quantity -}}
{{- $units := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $quantity -}}
{{- $unit := trimPrefix $number $quantity -}}
{{- if or (not $number) (not (hasKey $units $unit)) -}}
{{- fail (printf "resources.limits.memory %q: write a quantity such as 2Gi or 1536Mi" $quantity) -}}
{{- end -}}
{{- mulf (float64 $number) (index $units $unit) | int64 -}}
{{- end -}}
{{- end -}}

{{/* What renders at once may take: the container's memory limit less the operator's
own headroom, which must hold one renderer (renderMemoryBytes); "" with no limit. */}}
{{- define "modelsync.renderMemoryTotalBytes" -}}
{{- $limit := include "modelsync.memoryLimitBytes" . -}}
{{- if $limit -}}
{{- $room := sub (int64 $limit) (int64 .Values.operator.memoryHeadroomBytes) -}}
{{- if lt $room (int64 .Values.operator.renderMemoryBytes) -}}
{{- fail (printf "operator.renderMemoryBytes (%d) does not fit in resources.limits.memory (%s, %d bytes) less operator.memoryHeadroomBytes (%d): %d bytes are left for renderers; lower renderMemoryBytes or raise the limit" (int64 .Values.operator.renderMemoryBytes) (toString .Values.resources.limits.memory) (int64 $limit) (int64 .Values.operator.memoryHeadroomBytes) $room) -}}
{{- end -}}
{{- $room -}}
{{- end -}}
{{- end -}}
