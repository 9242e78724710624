{{/* Names, labels and the per-service values every template shares. */}}

{{- define "itsm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "itsm.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* <fullname>-<service>: the name of a service's Deployment, Service, ServiceAccount, ... */}}
{{- define "itsm.serviceFullname" -}}
{{- printf "%s-%s" (include "itsm.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "itsm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "itsm.labels" -}}
helm.sh/chart: {{ include "itsm.chart" . }}
{{ include "itsm.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: itsm
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "itsm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "itsm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one service's objects: {root, name}. */}}
{{- define "itsm.serviceLabels" -}}
{{ include "itsm.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "itsm.serviceSelectorLabels" -}}
{{ include "itsm.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "itsm.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* ITSM__UPSTREAM__<KEY> name of a service: service-desk -> SERVICE_DESK. */}}
{{- define "itsm.upstreamKey" -}}
{{- . | replace "-" "_" | upper }}
{{- end }}

{{/* The Secret (name and key) holding a service's database URL: {root, name, svc}. */}}
{{- define "itsm.databaseSecretName" -}}
{{- $db := .svc.database }}
{{- if and $db.cnpg $db.cnpg.enabled }}
{{- printf "%s-app" (include "itsm.serviceFullname" .) }}
{{- else if $db.existingSecret }}
{{- $db.existingSecret }}
{{- else }}
{{- printf "%s-database" (include "itsm.serviceFullname" .) }}
{{- end }}
{{- end }}

{{- define "itsm.databaseSecretKey" -}}
{{- $db := .svc.database }}
{{- if and $db.cnpg $db.cnpg.enabled }}uri{{ else }}{{ default "url" $db.existingSecretKey }}{{ end }}
{{- end }}

{{- define "itsm.authSecretName" -}}
{{- default (printf "%s-auth" (include "itsm.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* Checks a service's database values: at most one source of the URL. */}}
{{- define "itsm.checkDatabase" -}}
{{- $db := .svc.database }}
{{- $sources := 0 }}
{{- if $db.existingSecret }}{{ $sources = add1 $sources }}{{ end }}
{{- if $db.url }}{{ $sources = add1 $sources }}{{ end }}
{{- if and $db.cnpg $db.cnpg.enabled }}{{ $sources = add1 $sources }}{{ end }}
{{- if gt $sources 1 }}
{{- fail (printf "services.%s.database: set only one of existingSecret, url and cnpg.enabled" .name) }}
{{- end }}
{{- end }}

{{/* Whether the migration Job runs this service's migrations: {root, name, svc}. */}}
{{- define "itsm.migratedByJob" -}}
{{- if and .root.Values.migrations.enabled .svc.enabled (eq (default "job" .svc.database.migrate) "job") }}true{{ end }}
{{- end }}

{{/* Whether any enabled service has a CloudNativePG cluster. */}}
{{- define "itsm.anyCnpg" -}}
{{- range $name, $svc := .Values.services }}
{{- if and $svc.enabled $svc.database.cnpg $svc.database.cnpg.enabled }}true{{ end }}
{{- end }}
{{- end }}

{{/* ITSM__SECTION__KEY variables from a settings map. */}}
{{- define "itsm.settingsEnv" -}}
{{- range $section, $keys := . }}
{{- range $key, $value := $keys }}
- name: {{ printf "ITSM__%s__%s" $section $key | upper }}
  {{- /* Lists (gateway.cors_allowed_origins) are comma-separated in a variable. */}}
  value: {{ if kindIs "slice" $value }}{{ join "," $value | quote }}{{ else }}{{ toString $value | quote }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment shared by a service's Deployment and its migration container: {root, name, svc}. */}}
{{- define "itsm.databaseEnv" -}}
- name: ITSM__DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ include "itsm.databaseSecretName" . }}
      key: {{ include "itsm.databaseSecretKey" . }}
{{- end }}

{{- define "itsm.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "itsm.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* OTEL_RESOURCE_ATTRIBUTES of a service's pods: {root, name}. service.instance.id (the pod)
keeps the replicas' metrics apart: the Collector's Prometheus exporter makes it the `instance` label. */}}
{{- define "itsm.resourceAttributes" -}}
{{- $attrs := list "service.instance.id=$(POD_NAME)" "k8s.pod.name=$(POD_NAME)" "k8s.namespace.name=$(POD_NAMESPACE)" "k8s.node.name=$(NODE_NAME)" }}
{{- $attrs = append $attrs (printf "k8s.deployment.name=%s" (include "itsm.serviceFullname" .)) }}
{{- $attrs = append $attrs (printf "service.version=%s" .root.Chart.AppVersion) }}
{{- range $k, $v := .root.Values.telemetry.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $attrs }}
{{- end }}
