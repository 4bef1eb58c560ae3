{{/* The CSI driver name is fixed by the driver (GetPluginInfo); it is not a value. */}}
{{- define "model-csi.driverName" -}}model.csi.example.org{{- end }}

{{- define "model-csi.name" -}}{{ .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end }}

{{- define "model-csi.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{- define "model-csi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "model-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "model-csi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "model-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "model-csi.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end }}

{{- define "model-csi.sidecarImage" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end }}

{{/* kubeletDir without a trailing slash, so joined paths never hold "//". */}}
{{- define "model-csi.kubeletDir" -}}
{{- .Values.kubeletDir | trimSuffix "/" -}}
{{- end }}

{{/* Host directory holding the node plugin's socket: <kubeletDir>/plugins/<driver>. */}}
{{- define "model-csi.pluginDir" -}}
{{- printf "%s/plugins/%s" (include "model-csi.kubeletDir" .) (include "model-csi.driverName" .) -}}
{{- end }}

{{/* Inside every container of both pods the socket is /csi/csi.sock. */}}
{{- define "model-csi.socketDir" -}}/csi{{- end }}
{{- define "model-csi.socketPath" -}}{{ include "model-csi.socketDir" . }}/csi.sock{{- end }}
{{- define "model-csi.endpoint" -}}unix://{{ include "model-csi.socketPath" . }}{{- end }}

{{/* Where the driver reads its settings; all paths are inside the container. */}}
{{- define "model-csi.configDir" -}}/etc/model-csi/config{{- end }}
{{- define "model-csi.dockerConfigDir" -}}/etc/model-csi/docker{{- end }}
{{- define "model-csi.caDir" -}}/etc/model-csi/ca{{- end }}
{{- define "model-csi.keysDir" -}}/etc/model-csi/keys{{- end }}

{{- define "model-csi.authSecretName" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else -}}
{{- printf "%s-registry-auth" (include "model-csi.fullname" .) -}}
{{- end -}}
{{- end }}

{{- define "model-csi.hasAuth" -}}
{{- if or .Values.auth.existingSecret .Values.auth.dockerconfigjson }}true{{ end -}}
{{- end }}

{{- define "model-csi.hasVerifyKeys" -}}
{{- if or .Values.verifyKeys.publicKeys .Values.verifyKeys.existingConfigMap .Values.verifyKeys.existingSecret }}true{{ end -}}
{{- end }}

{{- define "model-csi.hasCA" -}}
{{- if or .Values.customCA.certificates .Values.customCA.existingConfigMap .Values.customCA.existingSecret }}true{{ end -}}
{{- end }}

{{/*
The driver's config file (src/config/schema.ts). Only non-secret settings: credentials are
referenced by path (dockerConfig), never inlined. A registry's relative `ca` names a key of
customCA and becomes its mounted path; so does a relative `verify[].keys` entry, a key of
verifyKeys.
*/}}
{{- define "model-csi.configFile" -}}
{{- $config := dict "maxConcurrentDownloads" .Values.maxConcurrentDownloads "maxConnectionsPerNode" .Values.maxConnectionsPerNode "maxConnectionsPerRegistry" .Values.maxConnectionsPerRegistry "rangedMinBlobSize" .Values.rangedMinBlobSize "directWrites" .Values.directWrites "publishWaitSeconds" .Values.publishWaitSeconds "logLevel" .Values.logLevel "modelCache" (dict "enabled" .Values.modelCache.enabled) -}}
{{- if .Values.cacheBudget }}
{{- $_ := set $config "cacheBudget" .Values.cacheBudget }}
{{- end }}
{{- if include "model-csi.hasAuth" . }}
{{- $_ := set $config "dockerConfig" (printf "%s/config.json" (include "model-csi.dockerConfigDir" .)) }}
{{- end }}
{{- $registries := dict }}
{{- range $host, $registry := .Values.registries }}
{{- $entry := deepCopy $registry }}
{{- if and $entry.ca (not (hasPrefix "/" $entry.ca)) }}
{{- $_ := set $entry "ca" (printf "%s/%s" (include "model-csi.caDir" $) $entry.ca) }}
{{- end }}
{{- $_ := set $registries $host $entry }}
{{- end }}
{{- if $registries }}
{{- $_ := set $config "registries" $registries }}
{{- end }}
{{- $verify := list }}
{{- range .Values.verify }}
{{- $keys := list }}
{{- range .keys }}
{{- $keys = append $keys (ternary . (printf "%s/%s" (include "model-csi.keysDir" $) .) (hasPrefix "/" .)) }}
{{- end }}
{{- $verify = append $verify (dict "match" .match "keys" $keys) }}
{{- end }}
{{- if $verify }}
{{- $_ := set $config "verify" $verify }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* Checks that the schema cannot express. */}}
{{- define "model-csi.validate" -}}
{{- if and .Values.auth.existingSecret .Values.auth.dockerconfigjson }}
{{- fail "auth: set existingSecret or dockerconfigjson, not both" }}
{{- end }}
{{- $ca := 0 }}
{{- if .Values.customCA.certificates }}{{ $ca = add1 $ca }}{{ end }}
{{- if .Values.customCA.existingConfigMap }}{{ $ca = add1 $ca }}{{ end }}
{{- if .Values.customCA.existingSecret }}{{ $ca = add1 $ca }}{{ end }}
{{- if gt $ca 1 }}
{{- fail "customCA: set one of certificates, existingConfigMap, existingSecret" }}
{{- end }}
{{- $keySources := 0 }}
{{- if .Values.verifyKeys.publicKeys }}{{ $keySources = add1 $keySources }}{{ end }}
{{- if .Values.verifyKeys.existingConfigMap }}{{ $keySources = add1 $keySources }}{{ end }}
{{- if .Values.verifyKeys.existingSecret }}{{ $keySources = add1 $keySources }}{{ end }}
{{- if gt $keySources 1 }}
{{- fail "verifyKeys: set one of publicKeys, existingConfigMap, existingSecret" }}
{{- end }}
{{- range $i, $rule := .Values.verify }}
{{- range $rule.keys }}
{{- if and (not (hasPrefix "/" .)) (not (include "model-csi.hasVerifyKeys" $)) }}
{{- fail (printf "verify[%d].keys names %q, a verifyKeys key, but verifyKeys is empty" $i .) }}
{{- end }}
{{- if and (not (hasPrefix "/" .)) $.Values.verifyKeys.publicKeys (not (hasKey $.Values.verifyKeys.publicKeys .)) }}
{{- fail (printf "verify[%d].keys names %q, which is not a key of verifyKeys.publicKeys" $i .) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $host, $registry := .Values.registries }}
{{- if and $registry.ca (not (hasPrefix "/" $registry.ca)) (not (include "model-csi.hasCA" $)) }}
{{- fail (printf "registries.%s.ca is %q, a customCA key, but customCA is empty" $host $registry.ca) }}
{{- end }}
{{- if and $registry.ca $.Values.customCA.certificates (not (hasPrefix "/" $registry.ca)) (not (hasKey $.Values.customCA.certificates $registry.ca)) }}
{{- fail (printf "registries.%s.ca is %q, which is not a key of customCA.certificates" $host $registry.ca) }}
{{- end }}
{{- end }}
{{- end }}

{{/* True when csi-provisioner must read Secrets. */}}
{{- define "model-csi.provisionerReadsSecrets" -}}
{{- $read := .Values.controller.rbac.readSecrets }}
{{- range .Values.storageClasses }}
{{- if .provisionerSecret }}{{ $read = true }}{{ end }}
{{- end }}
{{- if $read }}true{{ end -}}
{{- end }}
