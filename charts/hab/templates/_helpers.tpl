{{/* Names and labels. */}}
{{- define "hab.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hab.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "habd"). */}}
{{- define "hab.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The implementations, in order. */}}
{{- define "hab.implementations" -}}bitcoind btcd bcoin{{- end -}}

{{/*
Per implementation and network: the flags that select the network, and the
RPC and P2P ports. An implementation that does not run a network has no
entry: the chart then fails with a message naming both.
*/}}
{{- define "hab.netTable" -}}
bitcoind:
  mainnet: {flags: [], rpc: 8332, p2p: 8333}
  testnet3: {flags: ["-testnet"], rpc: 18332, p2p: 18333}
  testnet4: {flags: ["-testnet4"], rpc: 48332, p2p: 48333}
  signet: {flags: ["-signet"], rpc: 38332, p2p: 38333}
  regtest: {flags: ["-regtest"], rpc: 18443, p2p: 18444}
btcd:
  mainnet: {flags: [], rpc: 8334, p2p: 8333}
  testnet3: {flags: ["--testnet"], rpc: 18334, p2p: 18333}
  testnet4: {flags: ["--testnet4"], rpc: 48334, p2p: 48333}
  signet: {flags: ["--signet"], rpc: 38332, p2p: 38333}
  regtest: {flags: ["--regtest"], rpc: 18334, p2p: 18444}
  simnet: {flags: ["--simnet"], rpc: 18556, p2p: 18555}
bcoin:
  mainnet: {flags: ["--network=main"], rpc: 8332, p2p: 8333}
  testnet3: {flags: ["--network=testnet"], rpc: 18332, p2p: 18333}
  regtest: {flags: ["--network=regtest"], rpc: 48332, p2p: 48444}
  simnet: {flags: ["--network=simnet"], rpc: 18556, p2p: 18555}
{{- end -}}

{{/* The network entry of an implementation: (dict "root" $ "impl" "btcd"). */}}
{{- define "hab.net" -}}
{{- $table := include "hab.netTable" . | fromYaml -}}
{{- $runs := index $table .impl -}}
{{- $entry := index $runs .root.Values.network -}}
{{- if not $entry -}}
{{- $order := list "mainnet" "testnet3" "testnet4" "signet" "regtest" "simnet" -}}
{{- $known := list -}}
{{- range $order }}{{ if hasKey $runs . }}{{ $known = append $known . }}{{ end }}{{ end -}}
{{- fail (printf "%s does not run network %q: disable it (%s.enabled=false) or pick another network (%s runs %s)" .impl .root.Values.network .impl .impl (join ", " $known)) -}}
{{- end -}}
{{- toYaml $entry -}}
{{- end -}}

{{/* An image reference, by digest when there is one: (dict "image" .image "host" "…"). */}}
{{- define "hab.image" -}}
{{- $repo := .image.repository -}}
{{- if and .host (not (regexMatch "^[^/]+[.:][^/]*/" $repo)) -}}
{{- $repo = printf "%s/%s" .host $repo -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
The pull policy of a rendered image reference: a digest never changes, so
the kubelet's copy is used (a node restarts without the registry); a tag may
move, so it is asked for every time.
*/}}
{{- define "hab.pullPolicy" -}}
{{- if contains "@sha256:" . }}IfNotPresent{{ else }}Always{{ end -}}
{{- end -}}

{{/*
checkov skips of a resource, as annotations: a list of "CKV_…=reason"
(reasons without "="; the chart README's "checkov skips" table lists each).
*/}}
{{- define "hab.checkovSkips" -}}
{{- $lines := list -}}
{{- range $i, $s := . -}}
{{- $lines = append $lines (printf "checkov.io/skip%d: %s" (add1 $i) ($s | quote)) -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}

{{/* The skip of CKV_K8S_43 (image by digest) for an image rendered by tag: (dict "image" ref "value" "registry.image.digest"). */}}
{{- define "hab.digestSkip" -}}
{{- if not (contains "@sha256:" .image) -}}
{{- printf "CKV_K8S_43=by tag until %s is set (no digest is known before the first build or for an image you mirror)" .value -}}
{{- end -}}
{{- end -}}

{{/*
The node log level of an implementation: (dict "impl" "btcd" "level" "info").
bitcoind's -loglevel takes info, debug and trace (its warnings and errors
are always logged); bcoin calls trace "spam" and warn "warning".
*/}}
{{- define "hab.logLevel" -}}
{{- $l := .level -}}
{{- if eq .impl "bitcoind" -}}
{{- if has $l (list "trace" "debug") }}{{ $l }}{{ else }}info{{ end -}}
{{- else if eq .impl "bcoin" -}}
{{- if eq $l "trace" }}spam{{ else if eq $l "warn" }}warning{{ else }}{{ $l }}{{ end -}}
{{- else -}}
{{- $l -}}
{{- end -}}
{{- end -}}

{{/* The registry URL habd pushes to. */}}
{{- define "hab.registryUrl" -}}
{{- if .Values.registry.enabled -}}
{{- printf "http://%s-registry:5000" (include "hab.fullname" .) -}}
{{- else -}}
{{- required "registry.url is required when registry.enabled is false" .Values.registry.url -}}
{{- end -}}
{{- end -}}

{{/* A secret value kept across upgrades: (dict "root" $ "secret" name "key" k "length" n). */}}
{{- define "hab.keptSecret" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (.length | int) -}}
{{- end -}}
{{- end -}}

{{/* Name of the Secret holding the nodes' RPC password. */}}
{{- define "hab.rpcSecret" -}}
{{- .Values.nodes.rpc.existingSecret | default (printf "%s-rpc" (include "hab.fullname" .)) -}}
{{- end -}}

{{- define "hab.habdSecret" -}}
{{- .Values.habd.existingSecret | default (printf "%s-habd" (include "hab.fullname" .)) -}}
{{- end -}}

{{/* The builders' TLS Secret (CA, server and client certificates). */}}
{{- define "hab.builderTLSSecret" -}}
{{- .Values.builders.tls.existingSecret | default (printf "%s-builder-tls" (include "hab.fullname" .)) -}}
{{- end -}}

{{/* The btcd fleet's RPC TLS Secret (CA, server certificate and key). */}}
{{- define "hab.btcdTLSSecret" -}}
{{- printf "%s-btcd-rpc-tls" (include "hab.fullname" .) -}}
{{- end -}}

{{- define "hab.registrySecret" -}}
{{- .Values.registry.auth.existingSecret | default (printf "%s-registry-auth" (include "hab.fullname" .)) -}}
{{- end -}}

{{/* The imagePullSecret for images from registry.pullHost, if any. */}}
{{- define "hab.pullSecret" -}}
{{- if .Values.registry.pullSecret -}}
{{- .Values.registry.pullSecret -}}
{{- else if and .Values.registry.enabled (not .Values.registry.auth.existingSecret) -}}
{{- printf "%s-registry-pull" (include "hab.fullname" .) -}}
{{- end -}}
{{- end -}}
