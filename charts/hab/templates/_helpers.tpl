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

{{/* The implementations some enabled set runs, in order, space separated. */}}
{{- define "hab.usedImplementations" -}}
{{- $used := list -}}
{{- $sets := (include "hab.sets" . | fromYaml).sets -}}
{{- range $impl := splitList " " (include "hab.implementations" .) -}}
{{- range $sets }}{{ if eq .implementation $impl }}{{ $used = append $used $impl }}{{ end }}{{ end -}}
{{- end -}}
{{- join " " ($used | uniq) -}}
{{- end -}}

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

{{/*
The network entry of an implementation: (dict "impl" "btcd" "network"
"testnet4" "set" "name"). A set whose implementation does not run its
network fails the render, naming the set and what the implementation runs.
*/}}
{{- define "hab.net" -}}
{{- $table := include "hab.netTable" . | fromYaml -}}
{{- $runs := index $table .impl -}}
{{- $entry := index $runs .network -}}
{{- if not $entry -}}
{{- $order := list "mainnet" "testnet3" "testnet4" "signet" "regtest" "simnet" -}}
{{- $known := list -}}
{{- range $order }}{{ if hasKey $runs . }}{{ $known = append $known . }}{{ end }}{{ end -}}
{{- fail (printf "node set %q: %s does not run network %q: pick another network for it (%s runs %s) or disable the set" .set .impl .network .impl (join ", " $known)) -}}
{{- end -}}
{{- toYaml $entry -}}
{{- end -}}

{{/*
The smallest prune target (MiB) each implementation takes; 0 turns pruning
off. bitcoind: 550 (MIN_DISK_SPACE_FOR_BLOCK_FILES, src/validation.h);
btcd: 1536 (blockchain.MinPruneSize? see the chart README); bcoin prunes
to its own fixed depth (any non-zero value turns it on).
*/}}
{{- define "hab.pruneMin" -}}
bitcoind: 550
btcd: 1536
bcoin: 1
{{- end -}}

{{/*
The default size of a set's chain volume, by network, and for a pruned
node its prune target plus room for the chain state (Gi).
*/}}
{{- define "hab.defaultSize" -}}
{{- $full := dict "mainnet" "1Ti" "testnet3" "300Gi" "testnet4" "50Gi" "signet" "50Gi" "regtest" "10Gi" "simnet" "10Gi" -}}
{{- $state := dict "mainnet" 16 "testnet3" 8 "testnet4" 4 "signet" 4 "regtest" 2 "simnet" 2 -}}
{{- if gt (int .prune) 0 -}}
{{- printf "%dGi" (add (div (add (int .prune) 1023) 1024) (index $state .network)) -}}
{{- else -}}
{{- index $full .network -}}
{{- end -}}
{{- end -}}

{{/*
The enabled node sets, each completed with its defaults, as YAML
`{sets: [...]}`; with every check the schema cannot make: unique names,
one network per peer group, failover hosts kept apart from target hosts,
the network each implementation runs, and the prune minimum. Each set
gains `fullname` (its StatefulSet), `net` (ports and network flags) and
`conf` (its config file's name).
*/}}
{{- define "hab.sets" -}}
{{- $root := . -}}
{{- $full := include "hab.fullname" . -}}
{{- $out := list -}}
{{- $seen := dict -}}
{{- $groups := dict -}}
{{- $repos := dict -}}
{{- range $i, $given := .Values.nodeSets -}}
{{- if hasKey $seen $given.name -}}
{{- fail (printf "nodeSets: two sets are named %q (items %d and %d): each set needs a name of its own (it names its StatefulSet and habd's fleet)" $given.name (index $seen $given.name) $i) -}}
{{- end -}}
{{- $_ := set $seen $given.name $i -}}
{{- if ne (toString (dig "enabled" true $given)) "false" -}}
{{- $s := deepCopy $given -}}
{{- $impl := $s.implementation -}}
{{- $network := $s.network | default $root.Values.network -}}
{{- $config := merge (deepCopy ($s.config | default dict)) (dict "txindex" false "blockfilterindex" false "prune" 0 "dbcache" 0 "maxconnections" 0 "maxmempool" 0 "zmq" dict "extra" "" "existingSecret" "") -}}
{{- $c := $config -}}
{{- $min := index (include "hab.pruneMin" . | fromYaml) $impl -}}
{{- if and (gt (int $config.prune) 0) (lt (int $config.prune) (int $min)) -}}
{{- fail (printf "node set %q: config.prune %d is below %s's minimum of %d MiB (0 turns pruning off)" $s.name (int $config.prune) $impl (int $min)) -}}
{{- end -}}
{{- if and $c.zmq (ne $impl "bitcoind") -}}
{{- fail (printf "node set %q: config.zmq is Bitcoin Core's; %s publishes no ZMQ" $s.name $impl) -}}
{{- end -}}
{{- if and $c.maxmempool (eq $impl "btcd") -}}
{{- fail (printf "node set %q: config.maxmempool: btcd has no mempool size limit" $s.name) -}}
{{- end -}}
{{- if and $c.prune $c.txindex -}}
{{- fail (printf "node set %q: config.prune and config.txindex exclude each other (%s refuses to index a pruned chain)" $s.name $impl) -}}
{{- end -}}
{{- $storage := merge (deepCopy ($s.storage | default dict)) (dict "size" "" "storageClassName" "" "longhorn" dict "snapshots" false "backups" false "fromSnapshot" "") -}}
{{- if not $storage.size -}}{{- $_ := set $storage "size" (include "hab.defaultSize" (dict "network" $network "prune" $config.prune)) -}}{{- end -}}
{{- $image := merge (deepCopy ($s.image | default dict)) (dict "repository" (printf "hab/%s" $impl) "digest" "" "tag" "stable") -}}
{{- $p2p := merge (deepCopy ($s.p2p | default dict)) (dict "service" dict) -}}
{{- $_ := set $p2p "service" (merge (deepCopy $p2p.service) (dict "type" "ClusterIP" "perReplica" false "nodePorts" list "loadBalancerSourceRanges" list "annotations" dict)) -}}
{{- $rpc := merge (deepCopy ($s.rpc | default dict)) (dict "service" dict) -}}
{{- $_ := set $rpc "service" (merge (deepCopy $rpc.service) (dict "type" "ClusterIP" "loadBalancerSourceRanges" list "annotations" dict)) -}}
{{- $group := $s.group | default $s.name -}}
{{- if and (hasKey $repos $impl) (ne (index $repos $impl) $image.repository) -}}
{{- fail (printf "node set %q: image.repository %q differs from %q of another %s set: habd publishes each implementation to one repository (pin an older build with image.digest instead)" $s.name $image.repository (index $repos $impl) $impl) -}}
{{- end -}}
{{- $_ := set $repos $impl $image.repository -}}
{{- $net := include "hab.net" (dict "impl" $impl "network" $network "set" $s.name) | fromYaml -}}
{{- if and (hasKey $groups $group) (ne (index $groups $group) $network) -}}
{{- fail (printf "node set %q: peer group %q already holds %s nodes, and this set runs %s: nodes of one group peer with each other, so they must share a network" $s.name $group (index $groups $group) $network) -}}
{{- end -}}
{{- $_ := set $groups $group $network -}}
{{- range $h := ($s.hosts | default list) -}}
{{- if has $h $root.Values.nodes.failoverHosts -}}
{{- fail (printf "node set %q: host %q is one of nodes.failoverHosts, which are kept free for failover: take it out of the set's hosts" $s.name $h) -}}
{{- end -}}
{{- end -}}
{{- if and $root.Values.nodes.rpc.existingSecret (not $config.existingSecret) (or $config.txindex $config.blockfilterindex $config.prune $config.dbcache $config.maxconnections $config.maxmempool $config.zmq $config.extra) -}}
{{- fail (printf "node set %q: config.* values need the chart to write the node's config file, which holds the RPC password, but nodes.rpc.existingSecret makes the password yours: put the set's whole config file in key %q of that Secret instead" $s.name (printf "%s.conf" $s.name)) -}}
{{- end -}}
{{- $s = merge (dict "network" $network "config" $config "storage" $storage "image" $image "p2p" $p2p "rpc" $rpc "group" $group "net" $net "fullname" (printf "%s-%s" $full $s.name) "conf" (get (dict "bitcoind" "bitcoin.conf" "btcd" "btcd.conf" "bcoin" "bcoin.conf") $impl)) $s -}}
{{- $defaults := dict "podManagementPolicy" "OrderedReady" "replicas" 1 "channel" $root.Values.habd.channel "resources" $root.Values.nodes.resources "args" list "env" list "hosts" list "failover" false "isolate" true "extraPorts" list "probes" dict "ingress" dict "nodeSelector" dict "tolerations" list "podAnnotations" dict "priorityClassName" "" "topologySpreadConstraints" list "extraVolumes" list "extraVolumeMounts" list "sidecars" list "initContainers" list "serviceAccountName" "" -}}
{{- /* By hand, not merge: merge would take a given 0 or false (replicas: 0, isolate: false) for unset. */ -}}
{{- range $k, $v := $defaults }}{{ if not (hasKey $s $k) }}{{ $_ := set $s $k $v }}{{ end }}{{ end -}}
{{- $_ := set $s "network" $network -}}
{{- $out = append $out $s -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "sets" $out) -}}
{{- end -}}

{{/*
The peers of every group: (root) → {group: [host:port, …]}, each node of
every enabled set in the group by its stable DNS name, then the group's
external peers (nodes.peers).
*/}}
{{- define "hab.groupPeers" -}}
{{- $root := . -}}
{{- $groups := dict -}}
{{- range $s := (include "hab.sets" . | fromYaml).sets -}}
{{- $list := index $groups $s.group | default list -}}
{{- range $i := until (int $s.replicas) -}}
{{- $list = append $list (printf "%s-%d.%s-headless.%s.svc.%s:%d" $s.fullname $i $s.fullname $root.Release.Namespace $root.Values.nodes.clusterDomain (int $s.net.p2p)) -}}
{{- end -}}
{{- $_ := set $groups $s.group $list -}}
{{- end -}}
{{- range $p := $root.Values.nodes.peers -}}
{{- if hasKey $groups $p.group -}}
{{- $_ := set $groups $p.group (append (index $groups $p.group) $p.address | uniq) -}}
{{- else -}}
{{- fail (printf "nodes.peers: peer %q names group %q, which no enabled node set is in" $p.address $p.group) -}}
{{- end -}}
{{- end -}}
{{- toYaml $groups -}}
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

{{/*
A shell script (sh -c SCRIPT NAME ARGS…) that runs NAME with ARGS, less
some peers (arguments `<flag>host:port`, or one `<flag>a,b,…`):
- the node itself (`<its hostname>.…`): every node of a group is given
  every other, itself included, and a connection to itself is only log
  noise (bitcoind retries it every minute);
- with `resolve`, a peer whose host does not resolve yet: btcd exits at
  start on such a name and bcoin drops it for good. A peer left out
  connects to this node itself when it starts (every node of a group names
  every other), so the group still meshes. An address (IPv4, or IPv6 in
  brackets) needs no lookup and is kept.
Argument: (dict "flag" "--addpeer=" "resolve" true).
*/}}
{{- define "hab.peerFilter" -}}
me=$(cat /proc/sys/kernel/hostname 2>/dev/null); up() { h="${1%:*}"; h="${h#\[}"; h="${h%\]}"; case "$h" in "$me".*) return 1;; esac;{{ if .resolve }} case "$h" in *:*) return 0;; *[!0-9.]*) ;; *) return 0;; esac; getent hosts "$h" >/dev/null 2>&1 || { echo "hab: peer $1 does not resolve yet; it will connect to this node when it starts" >&2; return 1; };{{ end }} }; for a in "$@"; do shift; case "$a" in {{ .flag }}*) keep=""; for p in $(echo "${a#{{ .flag }}}" | tr , " "); do up "$p" && keep="${keep:+$keep,}$p"; done; [ -n "$keep" ] || continue; a="{{ .flag }}$keep";; esac; set -- "$@" "$a"; done; exec "$0" "$@"
{{- end -}}

{{/* The node pods' ServiceAccount, if any. */}}
{{- define "hab.nodeServiceAccount" -}}
{{- if .Values.nodes.serviceAccount.create -}}
{{- .Values.nodes.serviceAccount.name | default (printf "%s-nodes" (include "hab.fullname" .)) -}}
{{- else -}}
{{- .Values.nodes.serviceAccount.name -}}
{{- end -}}
{{- end -}}
