{{/* Chart name, truncated to 63 chars (DNS label). */}}
{{- define "tether.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart unless the release already contains it. */}}
{{- define "tether.fullname" -}}
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

{{- define "tether.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tether.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tether.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tether.labels" -}}
helm.sh/chart: {{ include "tether.chart" . }}
{{ include "tether.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "tether.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tether.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tether.secretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else }}
{{- include "tether.fullname" . }}
{{- end }}
{{- end }}

{{- define "tether.image" -}}
{{- printf "%s:%s" .Values.tether.image.repository (default .Chart.AppVersion .Values.tether.image.tag) }}
{{- end }}

{{- define "tether.socketPath" -}}
{{- printf "%s/tether.sock" (trimSuffix "/" .Values.tether.socketDir) }}
{{- end }}

{{/*
One TOML value from a values.yaml value: strings as JSON strings (valid TOML basic
strings), integers as integers (YAML numbers arrive as float64), bools, and arrays of
those. tether's config has no float keys.
*/}}
{{- define "tether.tomlValue" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}
{{ $v | toJson }}
{{- else if kindIs "bool" $v -}}
{{ $v }}
{{- else if or (kindIs "float64" $v) (kindIs "int" $v) (kindIs "int64" $v) -}}
{{ int64 $v }}
{{- else if kindIs "slice" $v -}}
[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "tether.tomlValue" $e }}{{ end }}]
{{- else -}}
{{ fail (printf "tether.config: cannot write %v (%s) as a TOML value" $v (kindOf $v)) }}
{{- end -}}
{{- end }}

{{/* The rendered tether.toml (files/tether.toml.tpl). */}}
{{- define "tether.config" -}}
{{ tpl (.Files.Get "files/tether.toml.tpl") . }}
{{- end }}
