{{/* Names and labels. */}}

{{- define "xmpp-edge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "xmpp-edge.fullname" -}}
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

{{- define "xmpp-edge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "xmpp-edge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "xmpp-edge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "xmpp-edge.labels" -}}
helm.sh/chart: {{ include "xmpp-edge.chart" . }}
{{ include "xmpp-edge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "xmpp-edge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "xmpp-edge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "xmpp-edge.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The headless Service through which replicas find each other. */}}
{{- define "xmpp-edge.peersName" -}}
{{- printf "%s-peers" (include "xmpp-edge.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* "true" when cluster mode is on: explicitly, or with more than one replica
     or an autoscaler. */}}
{{- define "xmpp-edge.clusterEnabled" -}}
{{- $c := .Values.cluster.enabled -}}
{{- if kindIs "bool" $c -}}
{{- if $c }}true{{ end -}}
{{- else if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled -}}
true
{{- end -}}
{{- end -}}

{{/* The Secret that holds the cluster secret, and its key. */}}
{{- define "xmpp-edge.clusterSecretName" -}}
{{- default (printf "%s-cluster" (include "xmpp-edge.fullname" .)) .Values.cluster.existingSecret -}}
{{- end -}}
{{- define "xmpp-edge.clusterSecretKey" -}}
{{- if .Values.cluster.existingSecret }}{{ .Values.cluster.existingSecretKey }}{{ else }}secret{{ end -}}
{{- end -}}

{{/* The Secret that holds the first TLS certificate. */}}
{{- define "xmpp-edge.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "xmpp-edge.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/* Ingress paths: as given, else the BOSH and WebSocket paths of `config`
     (or xmpp-edge's defaults) as prefixes, and host-meta. Rendered as a
     JSON list of {path, pathType}. */}}
{{- define "xmpp-edge.ingressPaths" -}}
{{- $cfg := .Values.config | default dict -}}
{{- $bosh := index $cfg "bosh" | default dict -}}
{{- $ws := index $cfg "websocket" | default dict -}}
{{- $out := list -}}
{{- range (index $bosh "paths" | default (list "/http-bind")) -}}
{{- $out = append $out (dict "path" . "pathType" "Prefix") -}}
{{- end -}}
{{- range (index $ws "paths" | default (list "/xmpp-websocket")) -}}
{{- $out = append $out (dict "path" . "pathType" "Prefix") -}}
{{- end -}}
{{- /* ImplementationSpecific (a prefix for ingress-nginx, so .json is
       included): ingress-nginx's strict path validation, on by default
       since 1.12, refuses a "." in Prefix and Exact paths. */ -}}
{{- $out = append $out (dict "path" "/.well-known/host-meta" "pathType" "ImplementationSpecific") -}}
{{- toJson $out -}}
{{- end -}}

{{/* bosh.max_wait_secs in force (xmpp-edge's default is 50). */}}
{{- define "xmpp-edge.maxWaitSecs" -}}
{{- $bosh := index (.Values.config | default dict) "bosh" | default dict -}}
{{- $w := index $bosh "max_wait_secs" -}}
{{- if kindIs "invalid" $w }}50{{ else }}{{ int64 $w }}{{ end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: preStop sleep + shutdown delay + grace +
     margin, so the kubelet never kills a pod that is still draining. */}}
{{- define "xmpp-edge.terminationGracePeriod" -}}
{{- $d := .Values.drain -}}
{{- add (int64 $d.preStopSleepSecs) (int64 $d.shutdownDelaySecs) (int64 $d.shutdownGraceSecs) (int64 $d.marginSecs) -}}
{{- end -}}

{{/*
The configuration: `config` from values plus the keys the chart owns. Keys
the chart owns are refused in `config` so that the drain timing, probes and
ports cannot disagree with the pod spec.
*/}}
{{- define "xmpp-edge.configDict" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- if not (index $cfg "hosts") -}}
{{- fail "config.hosts is empty: name at least one XMPP domain and its servers (see values.yaml)" -}}
{{- end -}}
{{- $owned := dict
  "server" (list "listen" "shutdown_delay_secs" "shutdown_grace_secs")
  "metrics" (list "enabled" "listen")
  "tls" (list "listen" "certificates") -}}
{{- range $section, $keys := $owned -}}
{{- $s := index $cfg $section | default dict -}}
{{- range $keys -}}
{{- if hasKey $s . -}}
{{- fail (printf "config.%s.%s is set by the chart; remove it from `config` (see values.yaml)" $section .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if hasKey $cfg "cluster" -}}
{{- fail "config.cluster is set by the chart; use the `cluster` values instead" -}}
{{- end -}}
{{- $server := index $cfg "server" | default dict -}}
{{- $_ := set $server "listen" (printf "0.0.0.0:%d" (int64 .Values.service.httpPort)) -}}
{{- $_ = set $server "shutdown_delay_secs" (int64 .Values.drain.shutdownDelaySecs) -}}
{{- $_ = set $server "shutdown_grace_secs" (int64 .Values.drain.shutdownGraceSecs) -}}
{{- $_ = set $cfg "server" $server -}}
{{- $metrics := index $cfg "metrics" | default dict -}}
{{- $_ = set $metrics "enabled" true -}}
{{- $_ = set $metrics "listen" (printf "0.0.0.0:%d" (int64 .Values.metrics.port)) -}}
{{- $_ = set $cfg "metrics" $metrics -}}
{{- if and (not .Values.tls.enabled) (dig "tls" "redirect_http" false $cfg) -}}
{{- fail "config.tls.redirect_http needs tls.enabled (a certificate to redirect to)" -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $tls := index $cfg "tls" | default dict -}}
{{- $_ = set $tls "listen" (printf "0.0.0.0:%d" (int64 .Values.tls.containerPort)) -}}
{{- $certs := list (dict "cert_file" "/etc/xmpp-edge/tls/0/tls.crt" "key_file" "/etc/xmpp-edge/tls/0/tls.key") -}}
{{- range $i, $name := .Values.tls.extraSecrets -}}
{{- $dir := printf "/etc/xmpp-edge/tls/%d" (add1 $i) -}}
{{- $certs = append $certs (dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir)) -}}
{{- end -}}
{{- $_ = set $tls "certificates" $certs -}}
{{- $_ = set $cfg "tls" $tls -}}
{{- end -}}
{{- if include "xmpp-edge.clusterEnabled" . -}}
{{- $_ = set $cfg "cluster" (dict
  "enabled" true
  "listen" (printf "0.0.0.0:%d" (int64 .Values.cluster.port))
  "secret_file" "/etc/xmpp-edge/cluster/secret"
  "peers" (list)
  "peer_dns" (printf "%s.%s.svc.%s:%d" (include "xmpp-edge.peersName" .) .Release.Namespace .Values.clusterDomain (int64 .Values.cluster.port))
  "refresh_secs" (int64 .Values.cluster.refreshSecs)
  "forward_timeout_secs" (int64 .Values.cluster.forwardTimeoutSecs)) -}}
{{- end -}}
{{- toJson $cfg -}}
{{- end -}}

{{/*
A small TOML writer. Helm's toToml turns every number from a values file into
a float ("50.0"), which xmpp-edge rightly refuses for integer keys, so the
configuration is written here instead. Tables become [sections] (scalars and
arrays first, then sub-tables, keys sorted); tables inside arrays become
inline tables; null values are left out.
*/}}
{{- define "xmpp-edge.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "xmpp-edge.toml.value" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}
{{- toJson $v -}}
{{- else if kindIs "bool" $v -}}
{{- ternary "true" "false" $v -}}
{{- else if kindIs "float64" $v -}}
{{- if eq (floor $v) $v }}{{ int64 $v }}{{ else }}{{ $v }}{{ end -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "uint64" $v) -}}
{{- $v -}}
{{- else if kindIs "slice" $v -}}
{{- $items := list -}}
{{- range $v -}}
{{- $items = append $items (include "xmpp-edge.toml.value" .) -}}
{{- end -}}
[{{ join ", " $items }}]
{{- else if kindIs "map" $v -}}
{{- $items := list -}}
{{- range $k := keys $v | sortAlpha -}}
{{- $x := index $v $k -}}
{{- if not (kindIs "invalid" $x) -}}
{{- $items = append $items (printf "%s = %s" (include "xmpp-edge.toml.key" $k) (include "xmpp-edge.toml.value" $x)) -}}
{{- end -}}
{{- end -}}
{ {{- join ", " $items -}} }
{{- else -}}
{{- fail (printf "config: cannot write %v (%s) as TOML" $v (kindOf $v)) -}}
{{- end -}}
{{- end -}}

{{/* Arguments: dict "table" <map> "path" <list of key parts>. */}}
{{- define "xmpp-edge.toml.table" -}}
{{- $t := .table -}}
{{- $path := .path -}}
{{- range $k := keys $t | sortAlpha -}}
{{- $v := index $t $k -}}
{{- if and (not (kindIs "invalid" $v)) (not (kindIs "map" $v)) }}
{{ include "xmpp-edge.toml.key" $k }} = {{ include "xmpp-edge.toml.value" $v }}
{{- end -}}
{{- end -}}
{{- range $k := keys $t | sortAlpha -}}
{{- $v := index $t $k -}}
{{- if kindIs "map" $v -}}
{{- $sub := append $path $k -}}
{{- $parts := list -}}
{{- range $sub -}}
{{- $parts = append $parts (include "xmpp-edge.toml.key" .) -}}
{{- end }}

[{{ join "." $parts }}]
{{- include "xmpp-edge.toml.table" (dict "table" $v "path" $sub) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The whole file. */}}
{{- define "xmpp-edge.configToml" -}}
# Rendered by the xmpp-edge Helm chart from its `config` values; see
# config/xmpp-edge.toml for every key. Check with: xmpp-edge check-config FILE
{{- include "xmpp-edge.toml.table" (dict "table" (include "xmpp-edge.configDict" . | fromJson) "path" list) }}
{{ end -}}
