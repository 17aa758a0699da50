#!/usr/bin/env bash
# The README's first command: sets everything up and runs habd on its embedded
# defaults against a local fixture upstream: sync, verify the signed tags,
# build the latest for linux/amd64 and linux/arm64, publish one image index
# to the registry on 127.0.0.1:5000, and verify it.
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
# from Debian's busybox-static for each architecture.
[build]
recipe = "fixture"
platforms = ["linux/amd64", "linux/arm64"]
smoke = ["fixture-node", "--version"]

[image]
repository = "hab/fixture"

[schedule]
sync = "*/5 * * * *"

[[channel]]
name = "edge"
auto = true

[[channel]]
name = "stable"
TOML

export HAB_STATE_DIR="$ROOT/.hab/state" HAB_PIPELINES_DIR="$ROOT/.hab/quickstart/pipelines"
if [ -s .hab/habd.pid ] && kill -0 "$(cat .hab/habd.pid)" 2>/dev/null; then
  log "stopping the habd started before"
  kill -TERM "$(cat .hab/habd.pid)"
  while kill -0 "$(cat .hab/habd.pid)" 2>/dev/null; do sleep 0.2; done
fi
"$BIN/habd" check
log "starting habd on its embedded defaults (http://127.0.0.1:8470; log: .hab/habd.log)"
nohup "$BIN/habd" serve >.hab/habd.log 2>&1 &
echo $! >.hab/habd.pid
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null http://127.0.0.1:8470/healthz 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null http://127.0.0.1:8470/healthz || { tail -20 .hab/habd.log >&2; exit 1; }

export HAB_TOKEN_FILE="$ROOT/.hab/state/api-token"
"$BIN/habctl" sync fixture
echo
"$BIN/habctl" refs fixture
echo
log "building v1.1.0 for linux/amd64 and linux/arm64 (arm64 by emulation), publishing, verifying"
"$BIN/habctl" build fixture --ref v1.1.0 --wait
cat <<MSG

habd is running (pid $(cat .hab/habd.pid)), state in .hab/state, log in .hab/habd.log.
Where to look:
  export PATH="$BIN:\$PATH" HAB_TOKEN_FILE="$HAB_TOKEN_FILE"
  habctl status                       pipelines, last syncs, refs by verdict
  habctl refs fixture                 each tag: commit, verdict, signer
  habctl builds                       builds: version, state, index digest
  habctl show ID                      a build: signer, build keys, digests, verification
  habctl logs ID                      its output (BuildKit steps, push, smoke runs)
  habctl verify ID                    read everything back from the registry again
  skopeo inspect --raw --tls-verify=false docker://127.0.0.1:5000/hab/fixture:v1.1.0
  git clone http://127.0.0.1:8470/git/fixture   the mirror, read-only
  curl -s http://127.0.0.1:8470/metrics
Next: publish a new signed release upstream, watch hab verify and build it:
  bash scripts/fixture.sh tag v1.3.0 && habctl sync fixture && habctl build fixture --ref v1.3.0 --wait
Stop habd: kill \$(cat .hab/habd.pid)
MSG
