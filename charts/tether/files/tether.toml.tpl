# tether.toml, rendered by the {{ .Chart.Name }} Helm chart {{ .Chart.Version }} from
# values.yaml (tether.config). No secrets in here: each target's private key and
# known_hosts are files mounted from the Secret {{ include "tether.secretName" . }}.
# Check a rendering: tether config --config <this file>   (exit 78 = invalid)

[server]
socket = {{ include "tether.socketPath" . | toJson }}
admin_addr = {{ printf "0.0.0.0:%d" (int .Values.tether.adminPort) | toJson }}
{{- range $k, $v := (.Values.tether.config.server | default dict) }}
{{- if has $k (list "socket" "admin_addr") }}
{{- fail (printf "tether.config.server.%s is set by the chart: use tether.socketDir / tether.adminPort" $k) }}
{{- end }}
{{ $k }} = {{ include "tether.tomlValue" $v }}
{{- end }}
{{- $secretDir := trimSuffix "/" .Values.secret.mountPath }}
{{- if not .Values.tether.config.targets }}
{{- fail "tether.config.targets: configure at least one target" }}
{{- end }}
{{- range $name, $t := .Values.tether.config.targets }}
{{- $t = $t | default dict }}

[targets.{{ $name }}]
{{- range $k, $v := $t }}
{{- if has $k (list "private_key" "known_hosts" "private_key_file" "known_hosts_file") }}
{{- fail (printf "tether.config.targets.%s.%s: keys and known_hosts come from the Secret (secret.targets.%s or secret.existingSecret), not from values" $name $k $name) }}
{{- end }}
{{- if not (kindIs "map" $v) }}
{{ $k }} = {{ include "tether.tomlValue" $v }}
{{- end }}
{{- end }}
private_key_file = {{ printf "%s/%s.private_key" $secretDir $name | toJson }}
known_hosts_file = {{ printf "%s/%s.known_hosts" $secretDir $name | toJson }}
{{- range $k, $v := $t }}
{{- if kindIs "map" $v }}

[targets.{{ $name }}.{{ $k }}]
{{- range $k2, $v2 := $v }}
{{ $k2 }} = {{ include "tether.tomlValue" $v2 }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range $verb, $vc := (.Values.tether.config.verbs | default dict) }}

[verbs.{{ $verb }}]
{{- range $k, $v := ($vc | default dict) }}
{{ $k }} = {{ include "tether.tomlValue" $v }}
{{- end }}
{{- end }}
