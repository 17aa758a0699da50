{{- /*
Tor for the node sets: named templates only (nothing renders from this file
by itself). Each is called with one context:

  (dict "root" $ "name" "hab-bitcoind" "set" $set "impl" "bitcoind"
        "net" (dict "p2p" 8333 "rpc" 8332))

root: the chart's root context; name: the StatefulSet's name; set: the node
set's values; impl: bitcoind | btcd | bcoin; net: the set's ports. Tor's
values are root.Values.nodes.tor (enabled, image, storage, resources,
onlynet); a set may override onlynet with set.tor.onlynet.

Where each goes in the StatefulSet (the caller decides whether Tor is on):

  hab.tor.configMap            an extra document (it starts with ---)
  hab.tor.nodeCommand          the node container's command (optional key
                               "command": the command without Tor)
  hab.tor.nodeArgs             appended to the node container's args
  hab.tor.nodeMounts           the node container's volumeMounts
  hab.tor.container            one item of containers
  hab.tor.volumes              items of the pod's volumes
  hab.tor.volumeClaimTemplate  one item of volumeClaimTemplates (optional
                               key "storageClass": the set's class)
  hab.tor.image                the rendered tor image (for hab.digestSkip)

The pod: tor and the node share the pod's loopback. Tor serves SOCKS on
127.0.0.1:9050 and its control port on 127.0.0.1:9051 (cookie
authentication); the cookie is on a memory emptyDir (tor-run, /run/tor in
both containers: the path tor reports in PROTOCOLINFO is the path the node
reads). Tor's state and the onion key are on the tor volume (/var/lib/tor,
one per pod, so the address survives restarts). Both containers run as uid
1000, gid 1000 (fsGroup 1000); tor makes its folders itself.

What each implementation does with it (flags checked in their sources):

  bitcoind  -onion=127.0.0.1:9050 (onion peers through Tor), -listen=1,
            -bind=0.0.0.0:<p2p> and -bind=127.0.0.1:<p2p+1>=onion (inbound
            onion peers, tagged as such), -listenonion=1
            -torcontrol=127.0.0.1:9051: bitcoind authenticates with the
            cookie (SAFECOOKIE) and creates its onion service itself
            (ADD_ONION), advertising it; onlynet: -onlynet=onion.
            So its torrc has no HiddenServiceDir (a second, unadvertised
            address would only cost circuits). Its key is bitcoind's own:
            <datadir>/onion_v3_private_key on the chain volume (a volume
            made from another node's snapshot carries that node's key, so
            its address: remove the file there to get one of its own).
            Not -proxy: with -proxy bitcoind resolves no -addnode name
            itself but hands it to the proxy (src/net.cpp ConnectNode:
            Lookup(..., fNameLookup && !HaveNameProxy())), and Tor cannot
            resolve the group's in-cluster names
            (<pod>.<set>-headless.<ns>.svc...): peering would break.
  btcd      --onion=127.0.0.1:9050 --torisolation (onion peers through
            Tor, a circuit each); btcd has no control-port client, so the
            torrc publishes the P2P port (HiddenServiceDir p2p) and
            hab.tor.nodeCommand wraps btcd in /bin/sh: it waits for tor's
            hostname file and adds --externalip=<onion>:<p2p>. btcd has no
            -onlynet: with onlynet the chart fails (see below).
  bcoin     nothing it can use: bcoin speaks addr v1 only (no BIP155
            addrv2), so it can neither learn nor advertise a v3 onion
            address (Tor dropped v2 in 0.4.6), and its --proxy turns
            listening off. Its pod still gets the onion service (inbound
            peers who are given the address reach it; the address is in
            /var/lib/tor/p2p/hostname of its node container). With onlynet
            the chart fails.

Sources (flag names and behaviour):
  bitcoin/bitcoin  src/init.cpp (-onion, -onlynet "automatic outbound ...
                   Inbound and manual connections are not affected",
                   -listen "default: 1 if no -proxy", -listenonion,
                   -torcontrol, -bind=<addr>[:<port>][=onion],
                   default_bind_port_onion = port + 1),
                   src/torcontrol.cpp (PROTOCOLINFO COOKIEFILE, SAFECOOKIE,
                   ADD_ONION, onion_v3_private_key), src/net.cpp
                   (ConnectNode), doc/tor.md
  btcsuite/btcd    config.go (--onion, --proxy, --torisolation,
                   --externalip, --noonion; no onlynet option),
                   server.go (initListeners: --externalip through
                   addrmgr.HostToNetAddress), addrmgr/addrmanager.go
                   (HostToNetAddress parses v3 .onion), sample-btcd.conf
  bcoin-org/bcoin  lib/node/fullnode.js (proxy, onion, public-host, only,
                   nodes), lib/net/pool.js (PoolOptions: "if (this.proxy)
                   this.listen = false"; _resolve through SOCKS with
                   onion), lib/net/packets.js (no addrv2),
                   node_modules/binet/lib/ip.js (normalize/write know v2
                   onions only: --public-host=<v3>.onion fails at start)
*/ -}}

{{- /* Paths and ports shared by the templates below. */ -}}
{{- define "hab.tor.const" -}}
state: /var/lib/tor
data: /var/lib/tor/data
hsdir: /var/lib/tor/p2p
run: /run/tor
cookie: /run/tor/control.authcookie
config: /etc/tor
socks: 9050
control: 9051
probe: 9052
{{- end -}}

{{- /* The rendered tor image reference. */ -}}
{{- define "hab.tor.image" -}}
{{- include "hab.image" (dict "image" .root.Values.nodes.tor.image "host" .root.Values.registry.pullHost) -}}
{{- end -}}

{{- /* Whether the set's node talks to onion peers only: "true" or "". */ -}}
{{- define "hab.tor.onlynet" -}}
{{- $on := .root.Values.nodes.tor.onlynet | default false -}}
{{- if kindIs "map" .set -}}
{{- $on = dig "tor" "onlynet" $on .set -}}
{{- end -}}
{{- if $on }}true{{ end -}}
{{- end -}}

{{- /* Whether tor publishes the P2P port from its torrc (everyone but bitcoind). */ -}}
{{- define "hab.tor.hiddenService" -}}
{{- if ne .impl "bitcoind" }}true{{ end -}}
{{- end -}}

{{- /*
onlynet where the implementation cannot honour it: a render error naming
the set, not a node that quietly talks to clearnet peers.
*/ -}}
{{- define "hab.tor.check" -}}
{{- if not (has .impl (list "bitcoind" "btcd" "bcoin")) -}}
{{- fail (printf "%s: Tor knows no implementation %q (bitcoind, btcd, bcoin)" .name .impl) -}}
{{- end -}}
{{- if and (include "hab.tor.onlynet" .) (ne .impl "bitcoind") -}}
{{- if eq .impl "btcd" -}}
{{- fail (printf "%s: nodes.tor.onlynet cannot be honoured by btcd: it has no -onlynet (its --proxy would send every peer, the group's in-cluster ones too, through Tor, which cannot resolve them); turn onlynet off for this set (tor.onlynet: false) or run bitcoind" .name) -}}
{{- else -}}
{{- fail (printf "%s: nodes.tor.onlynet cannot be honoured by bcoin: it cannot address Tor v3 onion peers (no BIP155 addrv2) and its --proxy turns listening off; turn onlynet off for this set (tor.onlynet: false) or run bitcoind" .name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* The set's torrc ConfigMap, <name>-tor: a whole document. */ -}}
{{- define "hab.tor.configMap" -}}
{{- include "hab.tor.check" . -}}
{{- $c := include "hab.tor.const" . | fromYaml -}}
{{- $p2p := int .net.p2p -}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .name }}-tor
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "hab.labels" .root | nindent 4 }}
    app.kubernetes.io/component: node
    hab/implementation: {{ .impl }}
data:
  torrc: |
    # hab: the tor sidecar of {{ .name }} ({{ .impl }}). A client only: it
    # relays nothing.
    DataDirectory {{ $c.data }}
    # Notices, but not the application domain's: each kubelet probe of the
    # probe port below would log one "Denying socks connection".
    Log [~app]notice [app]warn stdout
    # SOCKS for the node, on the pod's loopback.
    SocksPort 127.0.0.1:{{ int $c.socks }}
    # The kubelet's probes connect from outside the pod: a port on the pod's
    # address that serves nobody (SocksPolicy: loopback only; onion
    # destinations only, even then). tor warns at start that it is public:
    # the policy is why it is not open.
    SocksPort 0.0.0.0:{{ int $c.probe }} OnionTrafficOnly
    SocksPolicy accept 127.0.0.0/8
    SocksPolicy reject *
    # The control port, for bitcoind's onion service (-torcontrol): cookie
    # authentication; the cookie is on a memory volume the node mounts
    # read-only at the same path, group-readable (gid 1000).
    ControlPort 127.0.0.1:{{ int $c.control }}
    CookieAuthentication 1
    CookieAuthFile {{ $c.cookie }}
    CookieAuthFileGroupReadable 1
    {{- if include "hab.tor.hiddenService" . }}
    # The node's P2P port as an onion service; its key (so its address) is
    # on the pod's tor volume. The node reads the address from
    # {{ $c.hsdir }}/hostname (group-readable).
    HiddenServiceDir {{ $c.hsdir }}
    HiddenServiceDirGroupReadable 1
    HiddenServicePort {{ $p2p }} 127.0.0.1:{{ $p2p }}
    {{- else }}
    # No HiddenServiceDir: bitcoind creates its onion service itself through
    # the control port (-listenonion), for its P2P port ({{ $p2p }}), to
    # 127.0.0.1:{{ add $p2p 1 }} (its -bind=...=onion).
    {{- end }}
{{- end -}}

{{- /*
The node container's command (list items at column 0): the command the node
runs without Tor, .command (a list; default: the implementation alone, e.g.
["btcd"]), behind a wrapper for btcd: /bin/sh -c <script>, which waits for
tor's hostname file and then runs "$0" "$@" (the rest of the command and
the node's args) with --externalip=<onion>:<p2p> appended. So it composes
with a wrapper of the caller's that also ends in exec "$0" "$@" (the peer
filter): .command = ["/bin/sh", "-c", <filter>, "btcd"].
*/ -}}
{{- define "hab.tor.nodeCommand" -}}
{{- include "hab.tor.check" . -}}
{{- $command := .command | default (list .impl) -}}
{{- if eq .impl "btcd" -}}
{{- $command = concat (list "/bin/sh" "-c" (include "hab.tor.btcdWrapper" .)) $command -}}
{{- end -}}
{{- toYaml $command -}}
{{- end -}}

{{- /* btcd's wrapper script (see hab.tor.nodeCommand). */ -}}
{{- define "hab.tor.btcdWrapper" -}}
{{- $c := include "hab.tor.const" . | fromYaml -}}
{{- $p2p := int .net.p2p -}}
# hab (templates/_tor.tpl): btcd has no Tor control-port client, so its
# onion address is read from the hostname file tor writes for the torrc's
# HiddenServiceDir and advertised with --externalip (btcd config.go;
# server.go initListeners -> addrmgr.HostToNetAddress parses v3 onions).
hostname={{ $c.hsdir }}/hostname
waited=0
until [ -s "$hostname" ]; do
  if [ "$waited" -ge 300 ]; then
    echo "hab: no onion address in $hostname after ${waited}s: is the tor container running?" >&2
    exit 1
  fi
  sleep 2
  waited=$((waited + 2))
done
read -r onion < "$hostname"
case "$onion" in
  *.onion) ;;
  *) echo "hab: $hostname holds no onion address" >&2; exit 1 ;;
esac
echo "hab: btcd advertises $onion:{{ $p2p }}"
exec "$0" "$@" "--externalip=$onion:{{ $p2p }}"
{{- end -}}

{{- /* The node's extra arguments (list items at column 0; none for bcoin). */ -}}
{{- define "hab.tor.nodeArgs" -}}
{{- include "hab.tor.check" . -}}
{{- $c := include "hab.tor.const" . | fromYaml -}}
{{- $p2p := int .net.p2p -}}
{{- if eq .impl "bitcoind" -}}
- -onion=127.0.0.1:{{ int $c.socks }}
- -listen=1
- -bind=0.0.0.0:{{ $p2p }}
- -bind=127.0.0.1:{{ add $p2p 1 }}=onion
- -listenonion=1
- -torcontrol=127.0.0.1:{{ int $c.control }}
{{- if include "hab.tor.onlynet" . }}
- -onlynet=onion
{{- end -}}
{{- else if eq .impl "btcd" -}}
- --onion=127.0.0.1:{{ int $c.socks }}
- --torisolation
{{- else -}}
# bcoin takes no Tor flags: it cannot address v3 onions (templates/_tor.tpl)
{{- end -}}
{{- end -}}

{{- /* What the node container mounts, read-only. */ -}}
{{- define "hab.tor.nodeMounts" -}}
{{- $c := include "hab.tor.const" . | fromYaml -}}
{{- if include "hab.tor.hiddenService" . -}}
# tor's hostname file (the onion address), {{ $c.hsdir }}/hostname
- name: tor
  mountPath: {{ $c.state }}
  readOnly: true
{{- else -}}
# the control port's cookie, at the path tor reports
- name: tor-run
  mountPath: {{ $c.run }}
  readOnly: true
{{- end -}}
{{- end -}}

{{- /* The tor container: one list item (the caller nindents it). */ -}}
{{- define "hab.tor.container" -}}
{{- $c := include "hab.tor.const" . | fromYaml -}}
{{- $image := include "hab.tor.image" . -}}
- name: tor
  image: {{ $image | quote }}
  imagePullPolicy: {{ include "hab.pullPolicy" $image }}
  # The image's entrypoint is tor; only the chart's torrc is read.
  args: ["--defaults-torrc", "/dev/null", "-f", "{{ $c.config }}/torrc"]
  ports:
    - name: tor-probe
      containerPort: {{ int $c.probe }}
  # The probe port accepts connections while tor runs (and serves nobody:
  # see the torrc); SOCKS and control stay on the pod's loopback.
  startupProbe:
    tcpSocket:
      port: tor-probe
    periodSeconds: 2
    failureThreshold: 30
  readinessProbe:
    tcpSocket:
      port: tor-probe
    periodSeconds: 30
  livenessProbe:
    tcpSocket:
      port: tor-probe
    periodSeconds: 60
    failureThreshold: 5
  {{- with .root.Values.nodes.tor.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    runAsGroup: 1000
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
    seccompProfile:
      type: RuntimeDefault
  volumeMounts:
    - name: tor
      mountPath: {{ $c.state }}
    - name: tor-run
      mountPath: {{ $c.run }}
    - name: torrc
      mountPath: {{ $c.config }}
      readOnly: true
{{- end -}}

{{- /* The pod's volumes for tor (list items). */ -}}
{{- define "hab.tor.volumes" -}}
- name: torrc
  configMap:
    name: {{ .name }}-tor
- name: tor-run
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end -}}

{{- /*
The tor volume's claim (one list item): the onion key and tor's state. Its
class: .storageClass when the caller passes one (the set's effective class,
e.g. its Longhorn class), else set.storage.storageClassName, else
nodes.storage.storageClassName. No storageClassName when that is empty: the
cluster's default class ("" would ask for a volume of no class).
*/ -}}
{{- define "hab.tor.volumeClaimTemplate" -}}
{{- $class := "" -}}
{{- if hasKey . "storageClass" -}}
{{- $class = .storageClass | default "" -}}
{{- else -}}
{{- if kindIs "map" .set -}}
{{- $class = dig "storage" "storageClassName" "" .set -}}
{{- end -}}
{{- $class = $class | default (dig "storage" "storageClassName" "" .root.Values.nodes) -}}
{{- end -}}
- metadata:
    name: tor
  spec:
    accessModes: ["ReadWriteOnce"]
    {{- with $class }}
    storageClassName: {{ . | quote }}
    {{- end }}
    resources:
      requests:
        storage: {{ .root.Values.nodes.tor.storage | default "64Mi" }}
{{- end -}}
