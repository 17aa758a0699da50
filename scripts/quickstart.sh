#!/usr/bin/env bash
# The README's first command: sets everything up and runs hab's main job on a
# local fixture upstream, with habd on its embedded defaults plus one fleet:
# sync, verify the signed tags, build the newest for linux/amd64 and
# linux/arm64, publish one image index to the registry on 127.0.0.1:5000,
# verify it, advance the `edge` channel, and roll the two-node fleet that
# follows `edge` to it (containers hab-fixture-edge-0 and -1). Schedules and
# webhooks keep it going; the message at the end says how to watch that.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
log() { printf '\033[1m[quickstart]\033[0m %s\n' "$*"; }

bash scripts/setup.sh
log "building habd and habctl (release; the first build takes a few minutes)"
cargo build --release --bins --quiet
BIN="$ROOT/target/release"

log "making the fixture upstream (signed tags, served by git daemon on 127.0.0.1:${HAB_FIXTURE_PORT:-9418})"
bash scripts/fixture.sh init

# One pipeline for the fixture, in a pipelines folder of its own: the shipped
# pipelines/ point at GitHub, which these machines cannot reach.
mkdir -p .hab/quickstart/pipelines
[ -s .hab/quickstart/webhook-secret ] ||
  (umask 077 && openssl rand -hex 32 >.hab/quickstart/webhook-secret)
cat >.hab/quickstart/pipelines/fixture.toml <<TOML
# The quickstart's fixture upstream (scripts/fixture.sh).
implementation = "bitcoind"

[upstream]
url = "git://127.0.0.1:${HAB_FIXTURE_PORT:-9418}/fixture.git"

[refs]
track = ["refs/tags/v*"]

[signature]
policy = "signed"
keyring = "../../fixture/keys"

# dockerfiles/fixture: a tiny node answering Bitcoin JSON-RPC, on a base made
# from Debian's busybox-static for each architecture. auto: each new
# verified tag a sync finds is built by itself.
[build]
recipe = "fixture"
platforms = ["linux/amd64", "linux/arm64"]
smoke = ["fixture-node", "--version"]
auto = true

[image]
repository = "hab/fixture"

# Webhooks (POST /hooks/github, /hooks/gitea) signed with this secret sync
# the pipeline; the schedule catches what no webhook announced.
[webhook]
secret_file = "../webhook-secret"

[schedule]
sync = "*/5 * * * *"

[[channel]]
name = "edge"
auto = true

[[channel]]
name = "stable"
TOML

# habd's embedded defaults, plus the one thing they cannot guess: a fleet.
cat >.hab/quickstart/hab.toml <<TOML
# Everything not set here is habd's embedded default (see examples/hab.toml).
# Self-contained: paths are relative to this file, so that
#   habd serve --config .hab/quickstart/hab.toml
# restarts habd exactly as the quickstart ran it, from any folder.
state_dir = "../state"
pipelines_dir = "pipelines"
recipes_dir = "../../dockerfiles"

# Two fixture nodes on the local Docker engine, following the edge channel.
[[fleet]]
name = "fixture-edge"
pipeline = "fixture"
channel = "edge"
nodes = 2

[fleet.gates]
max_lag = 2
soak = "5s"
ready_timeout = "2m"
TOML

if [ -s .hab/habd.pid ] && kill -0 "$(cat .hab/habd.pid)" 2>/dev/null; then
  log "stopping the habd started before"
  kill -TERM "$(cat .hab/habd.pid)"
  while kill -0 "$(cat .hab/habd.pid)" 2>/dev/null; do sleep 0.2; done
fi
"$BIN/habd" check --config .hab/quickstart/hab.toml
log "starting habd (http://127.0.0.1:8470; log: .hab/habd.log)"
nohup "$BIN/habd" serve --config .hab/quickstart/hab.toml >.hab/habd.log 2>&1 &
echo $! >.hab/habd.pid
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null http://127.0.0.1:8470/healthz 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null http://127.0.0.1:8470/healthz || { tail -20 .hab/habd.log >&2; exit 1; }

export HAB_TOKEN_FILE="$ROOT/.hab/state/api-token"
hc() { "$BIN/habctl" "$@"; }
log "syncing the fixture upstream (joins the sync habd queued at start)"
hc sync fixture
echo
hc refs fixture
echo
log "the sync queued a build of the newest verified tag; following it (arm64 by emulation)"
hc build fixture --ref v1.1.0 --wait
echo
log "edge advanced to it; rolling fixture-edge one node at a time behind its health gates"
for _ in $(seq 1 100); do
  hc -o json rollout status fixture-edge | grep -q '"rollout": {' && break
  sleep 0.2
done
hc rollout status fixture-edge --wait
echo
log "re-checking what a node runs, offline: the signed provenance habd attached, with habd's public key and the maintainer's (no habd, no store)"
hc key >.hab/quickstart/habd.pub
running=$(hc -o json rollout status fixture-edge | grep -o '127\.0\.0\.1:5000/hab/fixture@sha256:[0-9a-f]*' | head -1)
HAB_SERVER=http://127.0.0.1:9 hc verify --offline --key .hab/quickstart/habd.pub --keyring .hab/fixture/keys "$running"
echo
hc queue --limit 5
cat <<MSG

habd is running (pid $(cat .hab/habd.pid)), state in .hab/state, log in .hab/habd.log.
After a stop, the same habd starts again with (from any folder):
  $BIN/habd serve --config $ROOT/.hab/quickstart/hab.toml
The fleet fixture-edge (containers hab-fixture-edge-0, -1) runs the verified
index of v1.1.0, pinned by digest.

Where to look:
  http://127.0.0.1:8470/              the dashboard: sign in with the token in
                                      $HAB_TOKEN_FILE
  export PATH="$BIN:\$PATH" HAB_TOKEN_FILE="$HAB_TOKEN_FILE"
  habctl show fixture-edge            the whole chain: tag, verdict, signer, sync and its
                                      triggers, build keys, digests, verification,
                                      channel moves, every rollout step
  habctl pipelines                    schedules (next run), webhooks, refs by verdict
  habctl queue                        every sync, rebuild and build asked for, and by whom
  habctl refs fixture                 each tag: object, commit, verdict, signer, its build
  habctl builds; habctl logs ID       builds, and one's output
  habctl rollout status               every node's image and health now
  skopeo inspect --raw --tls-verify=false docker://127.0.0.1:5000/hab/fixture:v1.1.0
  habctl verify --offline --key $ROOT/.hab/quickstart/habd.pub --keyring $ROOT/.hab/fixture/keys IMAGE
                                      a running digest's signed provenance, checked with
                                      two public keys and nothing of habd's
  curl -s http://127.0.0.1:8470/metrics

Next: publish a new signed release upstream and send the webhook a forge
would send; watch it get verified, built, published, verified, and rolled
onto the nodes by itself:
  bash scripts/fixture.sh tag v1.3.0 && bash scripts/fixture.sh hook v1.3.0
  watch -n1 'habctl queue --limit 4; habctl rollout status fixture-edge'
  habctl show fixture-edge
(A release whose node misbehaves, for the gates: scripts/fixture.sh tag v1.4.0 never-healthy)
Promote to stable by hand:  habctl promote fixture v1.3.0 --channel stable --reason "soaked on edge"
Stop habd: kill \$(cat .hab/habd.pid)
MSG
