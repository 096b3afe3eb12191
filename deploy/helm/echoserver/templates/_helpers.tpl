{{- define "echoserver.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "echoserver.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "echoserver.selectorLabels" -}}
app.kubernetes.io/name: {{ include "echoserver.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "echoserver.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "echoserver.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "echoserver.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "echoserver.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "echoserver.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret with tls.crt and tls.key, or "" for a self-signed certificate. */}}
{{- define "echoserver.tlsSecret" -}}
{{- if .Values.tls.enabled -}}
{{- if .Values.tls.certManager.enabled -}}
{{- default (printf "%s-tls" (include "echoserver.fullname" .)) .Values.tls.secretName -}}
{{- else -}}
{{- .Values.tls.secretName -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "echoserver.terminationGracePeriodSeconds" -}}
{{- $drain := int .Values.drainTimeoutSeconds -}}
{{- $pause := int .Values.preStopSleepSeconds -}}
{{- $grace := .Values.terminationGracePeriodSeconds | default (add $pause $drain 5) | int -}}
{{- if le $grace (add $pause $drain) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than preStopSleepSeconds + drainTimeoutSeconds (%d): the kubelet would kill the server mid-drain" $grace (add $pause $drain)) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{/* ECHO_* settings shared by both modes (limits, auth, log level, drain). */}}
{{- define "echoserver.commonEnv" -}}
- name: ECHO_INSTANCE
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
# The downward API: /whoami and the hello reply name the pod, namespace and node that answered.
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: ECHO_DRAIN_TIMEOUT
  value: {{ printf "%ds" (int .Values.drainTimeoutSeconds) | quote }}
- name: ECHO_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: ECHO_WORKERS
  value: {{ .Values.workers | toString | quote }}
- name: ECHO_WS_PATH
  value: {{ join "," .Values.wsPaths | quote }}
- name: ECHO_TCP_FRAMING
  value: {{ .Values.tcpFraming | quote }}
{{- with .Values.limits }}
{{- if not (kindIs "invalid" .maxConnections) }}
- name: ECHO_MAX_CONNECTIONS
  value: {{ .maxConnections | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .maxConnectionsPerClient) }}
- name: ECHO_MAX_CONNECTIONS_PER_CLIENT
  value: {{ .maxConnectionsPerClient | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .maxFrameBytes) }}
- name: ECHO_MAX_FRAME_BYTES
  value: {{ .maxFrameBytes | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .maxQueueBytes) }}
- name: ECHO_MAX_QUEUE_BYTES
  value: {{ .maxQueueBytes | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .idleTimeout) }}
- name: ECHO_IDLE_TIMEOUT
  value: {{ .idleTimeout | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .rateMessages) }}
- name: ECHO_RATE_MESSAGES
  value: {{ .rateMessages | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .rateBytes) }}
- name: ECHO_RATE_BYTES
  value: {{ .rateBytes | toString | quote }}
{{- end }}
{{- end }}
{{- if ne .Values.auth.mode "none" }}
- name: ECHO_AUTH
  value: {{ .Values.auth.mode | quote }}
{{- end }}
{{- if eq .Values.auth.mode "token" }}
- name: ECHO_AUTH_TOKENS_FILE
  value: /etc/echoserver/auth/tokens
{{- end }}
{{- if eq .Values.auth.mode "jwt" }}
{{- with .Values.auth.jwt }}
{{- if .secretRef.name }}
- name: ECHO_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .secretRef.name }}
      key: {{ .secretRef.key }}
{{- end }}
{{- if .jwksUrl }}
- name: ECHO_JWT_JWKS_URL
  value: {{ .jwksUrl | quote }}
{{- end }}
{{- if .audience }}
- name: ECHO_JWT_AUDIENCE
  value: {{ join "," .audience | quote }}
{{- end }}
{{- if .issuer }}
- name: ECHO_JWT_ISSUER
  value: {{ join "," .issuer | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "echoserver.authVolumeMounts" -}}
{{- if eq .Values.auth.mode "token" -}}
- name: auth-tokens
  mountPath: /etc/echoserver/auth
  readOnly: true
{{- end }}
{{- end -}}

{{- define "echoserver.authVolumes" -}}
{{- if eq .Values.auth.mode "token" -}}
- name: auth-tokens
  secret:
    secretName: {{ .Values.auth.tokensSecret.name }}
    items:
      - key: {{ .Values.auth.tokensSecret.key }}
        path: tokens
{{- end }}
{{- end -}}

{{/* The sidecar container: loopback plaintext WebSocket and a Unix socket on a shared volume. */}}
{{- define "echoserver.sidecarContainer" -}}
name: echoserver
image: {{ include "echoserver.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args: ["serve", "--log-format", "json"]
env:
  # Loopback only: nothing outside the pod reaches it, so plaintext is fine.
  - name: ECHO_HOST
    value: "127.0.0.1"
  - name: ECHO_INSECURE
    value: "true"
  - name: ECHO_WS_PORT
    value: {{ if kindIs "invalid" .Values.sidecar.wsPort }}"off"{{ else }}{{ .Values.sidecar.wsPort | toString | quote }}{{ end }}
  - name: ECHO_TCP_PORT
    value: "off"
  - name: ECHO_UNIX
    value: {{ printf "%s/%s" .Values.sidecar.socketDir .Values.sidecar.socketName | quote }}
  {{- include "echoserver.commonEnv" . | nindent 2 }}
# The kubelet cannot reach the pod's loopback: probe from inside the container.
startupProbe:
  exec:
    command: ["node", "dist/cli.js", "probe", {{ printf "unix:%s/%s" .Values.sidecar.socketDir .Values.sidecar.socketName | quote }}]
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
  timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
# Ready while it answers on the socket: a draining server refuses new connections (1001), so
# the pod leaves its Services' endpoints with it.
readinessProbe:
  exec:
    command: ["node", "dist/cli.js", "probe", {{ printf "unix:%s/%s" .Values.sidecar.socketDir .Values.sidecar.socketName | quote }}]
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
livenessProbe:
  exec:
    command: ["node", "dist/cli.js", "probe", {{ printf "unix:%s/%s" .Values.sidecar.socketDir .Values.sidecar.socketName | quote }}]
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
resources:
  {{- toYaml .Values.sidecar.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: echo-socket
    mountPath: {{ .Values.sidecar.socketDir }}
  - name: tmp
    mountPath: /tmp
  {{- with include "echoserver.authVolumeMounts" . }}{{ . | nindent 2 }}{{ end }}
{{- end -}}

{{- define "echoserver.sidecarVolumes" -}}
# Shared with the application container (mount it at the same path there); fsGroup makes the
# socket (mode 0660) reachable by every container of the pod.
- name: echo-socket
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- with include "echoserver.authVolumes" . }}{{ . | nindent 0 }}{{ end }}
{{- end -}}
