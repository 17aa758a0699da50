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
{{- $entry := index (index $table .impl) .root.Values.network -}}
{{- if not $entry -}}
{{- fail (printf "%s does not run network %q: disable it (%s.enabled=false) or pick another network" .impl .root.Values.network .impl) -}}
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
