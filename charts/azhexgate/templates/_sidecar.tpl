{{- /* The sidecar container, the same in both modes (native adds restartPolicy: Always). */}}
{{- define "azhexgate.sidecarContainer" -}}
{{- $ := index . 0 -}}
{{- $native := index . 1 -}}
{{- $x := $.Values.sidecarExample -}}
{{- $s := $x.sidecar -}}
- name: azhexgate-sidecar
  image: {{ include "azhexgate.image" (list $ $s.image) }}
  imagePullPolicy: {{ $.Values.image.pullPolicy }}
  {{- if $native }}
  # Native sidecar (Kubernetes >= 1.29): started before the app, stopped after it.
  restartPolicy: Always
  {{- end }}
  securityContext:
    {{- toYaml $.Values.securityContext | nindent 4 }}
  {{- if not $x.hostNetwork }}
  ports:
    - name: sidecar-admin
      containerPort: {{ $s.adminPort }}
      protocol: TCP
  {{- end }}
  env:
    - name: AZHEXGATE_PORT
      value: {{ $x.app.port | quote }}
    - name: AZHEXGATE_LOCAL_HOST
      value: "127.0.0.1"
    - name: AZHEXGATE_API_URL
      value: {{ default (printf "%s://api.%s" (ternary "https" "http" $.Values.ingress.tls.enabled) $.Values.domain) $s.apiUrl | quote }}
    - name: AZHEXGATE_API_KEY_FILE
      value: /var/run/secrets/azhexgate/api-key/{{ $s.apiKeySecretKey }}
    {{- with $s.subdomain }}
    - name: AZHEXGATE_SUBDOMAIN
      value: {{ . | quote }}
    {{- end }}
    # The pod's identity, from which the sidecar derives a stable subdomain.
    - name: AZHEXGATE_POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: AZHEXGATE_POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: AZHEXGATE_ADMIN_ADDRESS
      value: "0.0.0.0"
    - name: AZHEXGATE_ADMIN_PORT
      value: {{ $s.adminPort | quote }}
    {{- if not $native }}
    # Classic mode: the app and the sidecar get SIGTERM together; keep forwarding meanwhile.
    - name: AZHEXGATE_SIDECAR_DRAIN_DELAY
      value: {{ $s.drainDelay | quote }}
    {{- end }}
    - name: AZHEXGATE_DRAIN_TIMEOUT
      value: {{ $s.drainTimeout | quote }}
    - name: AZHEXGATE_LOG_FORMAT
      value: {{ $.Values.logFormat | quote }}
    {{- with $s.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if $x.probes }}
  {{- $port := ternary $s.adminPort "sidecar-admin" $x.hostNetwork }}
  {{- if $native }}
  # Only liveness gates the app's start; readiness also needs the app, which starts after.
  startupProbe:
    httpGet:
      path: /healthz
      port: {{ $port }}
    periodSeconds: 1
    failureThreshold: 30
  {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ $port }}
    periodSeconds: 10
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ $port }}
    periodSeconds: 5
  {{- end }}
  resources:
    {{- toYaml $s.resources | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: api-key
      mountPath: /var/run/secrets/azhexgate/api-key
      readOnly: true
{{- end }}

{{- /* A duration as the binaries read it ("500ms", "20s", "1m", "2h", "1d", bare = seconds) in ms. */}}
{{- define "azhexgate.durationMs" -}}
{{- $v := toString . -}}
{{- $n := regexFind "^[0-9]+" $v -}}
{{- $unit := trimPrefix $n $v -}}
{{- $per := dict "ms" 1 "" 1000 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 -}}
{{- mul (int64 $n) (get $per $unit) -}}
{{- end }}

{{- /* terminationGracePeriodSeconds must cover the sidecar's way out: the drain delay (classic
mode), the drain timeout, and up to 5 s for releasing the tunnel (SC_RELEASE_TIMEOUT_MS). */}}
{{- define "azhexgate.sidecarGraceCheck" -}}
{{- $x := .Values.sidecarExample -}}
{{- $need := add (include "azhexgate.durationMs" $x.sidecar.drainTimeout) 5000 -}}
{{- if eq $x.mode "classic" -}}
{{- $need = add $need (include "azhexgate.durationMs" $x.sidecar.drainDelay) -}}
{{- end -}}
{{- if lt (mul (int64 $x.terminationGracePeriodSeconds) 1000) (int64 $need) -}}
{{- fail (printf "sidecarExample.terminationGracePeriodSeconds (%d) must be at least the sidecar's drain delay (classic mode) + drainTimeout + 5 s for releasing the tunnel: %d s" (int64 $x.terminationGracePeriodSeconds) (div (add $need 999) 1000)) -}}
{{- end -}}
{{- end }}
