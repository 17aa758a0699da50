{{/* habd's ConfigMap data: hab.toml and the pipelines. */}}
{{- define "hab.habdConfigData" -}}
{{- $full := include "hab.fullname" . -}}
{{- $root := . -}}
{{- $sets := (include "hab.sets" . | fromYaml).sets -}}
{{- $impls := compact (splitList " " (include "hab.usedImplementations" .)) -}}
data:
  hab.toml: |
    listen = "0.0.0.0:8470"
    state_dir = "/var/lib/hab"
    pipelines_dir = "pipelines"
    # The build recipes ship in habd's image.
    recipes_dir = "/usr/share/hab/dockerfiles"
    {{- if .Values.habd.signingKey.existingSecret }}
    # habd's signing key, from the Secret {{ .Values.habd.signingKey.existingSecret }}.
    signing_key_file = "/run/secrets/hab-signing/habd-signing.key"
    {{- else }}
    # habd's signing key: made at first start as /var/lib/hab/habd-signing.key.
    {{- end }}

    [api]
    token_file = "/run/secrets/hab/api-tokens"

    [registry]
    url = {{ include "hab.registryUrl" . | quote }}
    username = {{ .Values.registry.auth.username | quote }}
    password_file = "/run/secrets/hab-registry/password"
    pull_host = {{ .Values.registry.pullHost | quote }}

    [webhooks]
    max_body_bytes = {{ .Values.habd.webhooks.maxBodyBytes | int }}
    settle = {{ .Values.habd.webhooks.settle | quote }}
    {{- if .Values.builders.enabled }}
    {{- range $arch := .Values.builders.architectures }}

    # Builds linux/{{ $arch }} natively; the others by emulation (qemu on
    # its host) only when no native builder has them. Mutual TLS only.
    [[builder]]
    name = {{ $arch | quote }}
    endpoint = "tcp://{{ $full }}-builder-{{ $arch }}:2376"
    tls_ca = "/run/secrets/hab-builder-tls/ca.pem"
    tls_cert = "/run/secrets/hab-builder-tls/client-cert.pem"
    tls_key = "/run/secrets/hab-builder-tls/client-key.pem"
    platforms = ["linux/amd64", "linux/arm64"]
    emulated = [{{ range $other := list "amd64" "arm64" }}{{ if ne $other $arch }}"linux/{{ $other }}"{{ end }}{{ end }}]
    {{- end }}
    {{- end }}

    # The node StatefulSets of this release, in its namespace: one fleet
    # per node set. habd takes one node of all of them out of service at a
    # time.
    [[target]]
    name = "cluster"
    kind = "kubernetes"
    namespace = {{ .Release.Namespace | quote }}
    {{- range $s := $sets }}

    # Node set {{ $s.name }}: {{ $s.implementation }} on {{ $s.network }}.
    [[fleet]]
    name = {{ $s.fullname | quote }}
    pipeline = {{ $s.implementation | quote }}
    channel = {{ $s.channel | quote }}
    target = "cluster"
    nodes = {{ $s.replicas }}
    network = {{ $s.network | quote }}
    rpc_user = {{ $root.Values.nodes.rpc.user | quote }}
    rpc_password_file = "/run/secrets/hab-rpc/rpc-password"
    rpc_port = {{ $s.net.rpc }}
    {{- if eq $s.implementation "btcd" }}
    # btcd serves RPC over TLS only: the CA of its certificate, pinned.
    rpc_tls_ca = "/run/secrets/hab-btcd-rpc-tls/ca.crt"
    {{- end }}

    [fleet.gates]
    max_lag = {{ $root.Values.habd.gates.maxLag }}
    soak = {{ $root.Values.habd.gates.soak | quote }}
    ready_timeout = {{ $root.Values.habd.gates.readyTimeout | quote }}
    {{- end }}
    {{- with .Values.gateway }}{{ if .enabled }}
    {{- $g := . }}
    {{- $fronted := list }}
    {{- range $s := $sets }}
    {{- if or (not $g.sets) (has $s.name $g.sets) }}{{ $fronted = append $fronted $s.fullname }}{{ end }}
    {{- end }}
    {{- range $n := $g.sets }}
    {{- $found := false }}{{ range $sets }}{{ if eq .name $n }}{{ $found = true }}{{ end }}{{ end }}
    {{- if not $found }}{{ fail (printf "gateway.sets: no node set named %s" $n) }}{{ end }}
    {{- end }}
    {{- if not $g.users }}{{ fail "gateway.users: at least one user (rpcauth = user:salt$hash, as bitcoind's rpcauth.py prints)" }}{{ end }}

    # The RPC front door, run apart: `habd gateway` replicas (the
    # Deployment {{ $full }}-gateway) watch the pods of these fleets; habd
    # marks a pod for draining, waits drain_wait, then takes it down.
    [gateway]
    listen = "0.0.0.0:8332"
    run = "apart"
    fleets = [{{ range $i, $f := $fronted }}{{ if $i }}, {{ end }}{{ $f | quote }}{{ end }}]
    max_lag = {{ $g.maxLag | int }}
    max_body_bytes = {{ $g.maxBodyBytes | int }}
    max_batch = {{ $g.maxBatch | int }}
    max_calls_per_second = {{ $g.maxCallsPerSecond | int }}
    drain_wait = {{ $g.drainWait | quote }}
    {{- range $u := $g.users }}

    [[gateway.user]]
    rpcauth = {{ $u.rpcauth | quote }}
    {{- with $u.allow }}
    allow = [{{ range $i, $a := . }}{{ if $i }}, {{ end }}{{ $a | quote }}{{ end }}]
    {{- end }}
    {{- end }}
    {{- end }}{{ end }}
  {{- range $impl := $impls }}
  pipeline-{{ $impl }}.toml: |
    implementation = {{ $impl | quote }}

    [upstream]
    {{- if eq $impl "bitcoind" }}
    url = "https://github.com/bitcoin/bitcoin.git"
    {{- else if eq $impl "btcd" }}
    url = "https://github.com/btcsuite/btcd.git"
    {{- else }}
    url = "https://github.com/bcoin-org/bcoin.git"
    {{- end }}

    [refs]
    track = ["refs/tags/v*"]
    {{- if eq $impl "bitcoind" }}
    ignore = ["refs/tags/*rc*", "refs/tags/v0.*"]
    {{- else if eq $impl "btcd" }}
    ignore = ["refs/tags/*rc*", "refs/tags/*beta*"]
    {{- else }}
    ignore = ["refs/tags/v1.*", "refs/tags/v0.*"]
    {{- end }}

    [signature]
    policy = "signed"
    keyring = "../keys/{{ $impl }}"

    [build]
    recipe = {{ $impl | quote }}
    platforms = ["linux/amd64", "linux/arm64"]
    {{- if eq $impl "bitcoind" }}
    smoke = ["bitcoind", "-version"]
    {{- else if eq $impl "btcd" }}
    smoke = ["btcd", "--version"]
    {{- else }}
    smoke = ["bcoin", "--version"]
    {{- end }}
    auto = {{ $root.Values.habd.autoBuild }}
    base_image = {{ $root.Values.habd.baseImage | default (printf "%s/hab/base:bookworm" (include "hab.registryUrl" $root | trimPrefix "http://" | trimPrefix "https://")) | quote }}

    [image]
    {{- $repo := printf "hab/%s" $impl }}
    {{- range $sets }}{{ if and (eq .implementation $impl) (eq $repo (printf "hab/%s" $impl)) }}{{ $repo = .image.repository }}{{ end }}{{ end }}
    repository = {{ $repo | quote }}

    [webhook]
    secret_file = "/run/secrets/hab/webhook-{{ $impl }}"

    [schedule]
    sync = {{ $root.Values.habd.schedule.sync | quote }}
    rebuild = {{ $root.Values.habd.schedule.rebuild | quote }}
    timezone = {{ $root.Values.habd.schedule.timezone | quote }}

    [[channel]]
    name = "edge"
    auto = true
    {{- $channels := list $root.Values.habd.channel "stable" }}
    {{- range $sets }}{{ if eq .implementation $impl }}{{ $channels = append $channels .channel }}{{ end }}{{ end }}
    {{- range $c := without ($channels | uniq) "edge" }}

    # Moved by habctl promote only{{ if ne $c "stable" }} (a set follows it: pinned until promoted){{ end }}.
    [[channel]]
    name = {{ $c | quote }}
    {{- end }}
  {{- end }}
{{- end -}}
