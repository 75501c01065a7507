{{/* Chart name. */}}
{{- define "azhexgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every object: <release>-<chart>, or fullnameOverride. */}}
{{- define "azhexgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "azhexgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "azhexgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: azhexgate
{{- end }}

{{/* Selector labels of one component: include "azhexgate.selector" (list . "gateway"). */}}
{{- define "azhexgate.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "azhexgate.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Image reference: include "azhexgate.image" (list . .Values.gateway.image). */}}
{{- define "azhexgate.image" -}}
{{- $ := index . 0 -}}
{{- $img := index . 1 -}}
{{- $tag := default (default $.Chart.AppVersion $.Values.image.tag) $img.tag -}}
{{- if $.Values.image.registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $.Values.image.registry) $img.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $tag -}}
{{- end -}}
{{- end }}

{{/* ServiceAccount name of a component. */}}
{{- define "azhexgate.serviceAccountName" -}}
{{- $ := index . 0 -}}
{{- $c := index . 1 -}}
{{- $sa := (index $.Values $c).serviceAccount -}}
{{- if $sa.create -}}
{{- default (printf "%s-%s" (include "azhexgate.fullname" $) $c) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end }}

{{/* The store URL both components use. */}}
{{- define "azhexgate.storeUrl" -}}
{{- if .Values.redis.inCluster.enabled -}}
{{- printf "redis://%s-redis:%d" (include "azhexgate.fullname" .) (int .Values.redis.inCluster.port) -}}
{{- else -}}
{{- .Values.redis.external.url -}}
{{- end -}}
{{- end }}

{{/* Path of the mounted Redis password. */}}
{{- define "azhexgate.redisPasswordFile" -}}
/var/run/secrets/azhexgate/redis/{{ .Values.redis.external.passwordKey }}
{{- end }}

{{/* Checks of combinations the schema cannot express. */}}
{{- define "azhexgate.validate" -}}
{{- if and .Values.redis.inCluster.enabled .Values.redis.external.url -}}
{{- fail "set either redis.external.url or redis.inCluster.enabled, not both" -}}
{{- end -}}
{{- if not (or .Values.redis.inCluster.enabled .Values.redis.external.url) -}}
{{- fail "no Redis: set redis.external.url (redis:// or rediss://) or redis.inCluster.enabled=true" -}}
{{- end -}}
{{- if and .Values.redis.external.existingSecret .Values.redis.inCluster.enabled -}}
{{- fail "redis.external.existingSecret is for an external Redis; the in-cluster Redis has no password" -}}
{{- end -}}
{{- if and (eq .Values.gateway.relayAuth "sas") (not .Values.gateway.relaySasKey.existingSecret) -}}
{{- fail "gateway.relayAuth=sas needs gateway.relaySasKey.existingSecret" -}}
{{- end -}}
{{- if not (or .Values.controller.apiKeys.existingSecret .Values.controller.apiKeys.keyVaultUrl) -}}
{{- fail "no API keys: set controller.apiKeys.existingSecret or controller.apiKeys.keyVaultUrl" -}}
{{- end -}}
{{- if and .Values.controller.apiKeys.keyVaultUrl (not .Values.controller.apiKeys.keyVaultSecret) -}}
{{- fail "controller.apiKeys.keyVaultUrl needs controller.apiKeys.keyVaultSecret" -}}
{{- end -}}
{{- if and .Values.sidecarExample.enabled (not .Values.sidecarExample.sidecar.apiKeySecret) -}}
{{- fail "sidecarExample.enabled needs sidecarExample.sidecar.apiKeySecret" -}}
{{- end -}}
{{- end }}

{{/* Writable /tmp for a read-only root filesystem: the volume. */}}
{{- define "azhexgate.tmpVolume" -}}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- end }}
