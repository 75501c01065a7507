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
  ports:
    - name: sidecar-admin
      containerPort: {{ $s.adminPort }}
      protocol: TCP
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
    - name: AZHEXGATE_DRAIN_TIMEOUT
      value: {{ $s.drainTimeout | quote }}
    - name: AZHEXGATE_LOG_FORMAT
      value: {{ $.Values.logFormat | quote }}
    {{- with $s.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if $native }}
  # Only liveness gates the app's start; readiness also needs the app, which starts after.
  startupProbe:
    httpGet:
      path: /healthz
      port: sidecar-admin
    periodSeconds: 1
    failureThreshold: 30
  {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: sidecar-admin
    periodSeconds: 10
  readinessProbe:
    httpGet:
      path: /readyz
      port: sidecar-admin
    periodSeconds: 5
  resources:
    {{- toYaml $s.resources | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: api-key
      mountPath: /var/run/secrets/azhexgate/api-key
      readOnly: true
{{- end }}
