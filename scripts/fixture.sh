#!/usr/bin/env bash
# The quickstart's fixture upstream: a small git repository whose release tags
# are signed with `git tag -s` by a GnuPG key made here, served read-only by
# `git daemon` on 127.0.0.1 (GitHub is not reachable from these machines).
#
#   scripts/fixture.sh init        make it (idempotent) and serve it
#   scripts/fixture.sh tag NAME [BEHAVIOUR]
#                                  commit and push a new signed tag NAME upstream;
#                                  BEHAVIOUR is how the fixture node built from it
#                                  behaves: healthy (default), never-healthy, or
#                                  lagging:N (N blocks behind its peers)
#   scripts/fixture.sh unsigned NAME   the same, unsigned (hab refuses it)
#   scripts/fixture.sh hook [NAME]      send habd (127.0.0.1:8470) the push webhook a
#                                  forge would send for it, signed with the quickstart's
#                                  secret (.hab/quickstart/webhook-secret)
#
# The fixture node (dockerfiles/fixture) reads node.conf from the release's
# tree, so behaviour is chosen per release, as a real regression would be.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
FIX="$ROOT/.hab/fixture"
REPO="$FIX/upstream/fixture.git"
PORT=${HAB_FIXTURE_PORT:-9418}
export GNUPGHOME="$FIX/gnupg"
UID_NAME="hab fixture release key <release@fixture.invalid>"
git_() {
  git -C "$REPO" -c user.name="Fixture Maintainer" -c user.email=release@fixture.invalid \
    -c user.signingkey="$(cat "$FIX/fingerprint")" -c gpg.program=gpg "$@"
}

init() {
  mkdir -p "$FIX/upstream" "$FIX/keys"
  if [ ! -s "$FIX/fingerprint" ]; then
    mkdir -p "$GNUPGHOME" && chmod 700 "$GNUPGHOME"
    gpg --batch --pinentry-mode loopback --passphrase '' \
      --quick-gen-key "$UID_NAME" ed25519 sign 2y 2>/dev/null
    gpg --batch --with-colons --list-keys "$UID_NAME" | awk -F: '/^fpr:/ {print $10; exit}' >"$FIX/fingerprint"
    gpg --batch --armor --export "$(cat "$FIX/fingerprint")" >"$FIX/keys/fixture.asc"
  fi
  if [ ! -d "$REPO/.git" ]; then
    git init -q -b master "$REPO"
    echo "fixture node 1.0.0" >"$REPO/VERSION"
    node_conf healthy
    git_ add VERSION node.conf && git_ commit -q -m "Release 1.0.0"
    git_ tag -s v1.0.0 -m "fixture v1.0.0" 2>/dev/null
    echo "fixture node 1.1.0" >"$REPO/VERSION"
    git_ commit -q -am "Release 1.1.0"
    git_ tag -s v1.1.0 -m "fixture v1.1.0"
    echo "fixture node 1.2.0-unsigned" >"$REPO/VERSION"
    git_ commit -q -am "Unsigned candidate"
    git_ tag -a v1.2.0-unsigned -m "not signed: hab refuses it"
  fi
  serve
}

serve() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    return 0
  fi
  nohup "$(git --exec-path)/git-daemon" --reuseaddr --export-all --listen=127.0.0.1 --port="$PORT" \
    --base-path="$FIX/upstream" "$FIX/upstream" >"$FIX/git-daemon.log" 2>&1 &
  echo $! >"$FIX/git-daemon.pid"
  for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "git daemon did not start on 127.0.0.1:$PORT; see $FIX/git-daemon.log" >&2
  exit 1
}

# node.conf for the fixture node: healthy | never-healthy | lagging:N
node_conf() {
  local b=${1:-healthy} lag=0
  case "$b" in
    healthy | never-healthy) ;;
    lagging:*) lag=${b#lagging:}; b=lagging ;;
    *) echo "unknown behaviour $b: healthy, never-healthy or lagging:N" >&2; exit 2 ;;
  esac
  printf '# How the fixture node built from this release behaves.\nbehaviour=%s\nlag=%s\n' "$b" "$lag" >"$REPO/node.conf"
}

new_tag() {
  local name=$1 signed=$2 behaviour=${3:-healthy}
  [ -d "$REPO/.git" ] || init
  echo "fixture node ${name#v}" >"$REPO/VERSION"
  node_conf "$behaviour"
  git_ add VERSION node.conf
  git_ commit -q -m "Release ${name#v} ($behaviour)"
  if [ "$signed" = yes ]; then git_ tag -s "$name" -m "fixture $name"; else git_ tag -a "$name" -m "fixture $name (unsigned)"; fi
  echo "upstream now has $name at $(git_ rev-parse --short HEAD); tell habd: bash scripts/fixture.sh hook $name (or: habctl sync fixture)"
}

# The GitHub push webhook for a tag, signed (HMAC-SHA256) with the secret of
# the quickstart's fixture pipeline. Nothing in it is trusted: habd only
# learns that the fixture upstream changed, and syncs it.
hook() {
  local name=${1:-} secret_file="$ROOT/.hab/quickstart/webhook-secret" body sig
  [ -s "$secret_file" ] || { echo "no $secret_file: run scripts/quickstart.sh first" >&2; exit 1; }
  body=$(printf '{"ref":"refs/tags/%s","repository":{"full_name":"fixture","clone_url":"git://127.0.0.1:%s/fixture.git"}}' "$name" "$PORT")
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$(cat "$secret_file")" | sed 's/^.*= //')
  curl -sS -X POST "${HAB_SERVER:-http://127.0.0.1:8470}/hooks/github" \
    -H "Content-Type: application/json" -H "X-GitHub-Event: push" \
    -H "X-GitHub-Delivery: fixture-$(date +%s%N)" -H "X-Hub-Signature-256: sha256=$sig" \
    --data-binary "$body"
  echo
}

case "${1:-init}" in
  init) init ;;
  tag) new_tag "${2:?tag name, like v1.3.0}" yes "${3:-healthy}" ;;
  unsigned) new_tag "${2:?tag name}" no ;;
  hook) hook "${2:-}" ;;
  *) echo "usage: $0 init | tag NAME [healthy|never-healthy|lagging:N] | unsigned NAME | hook [NAME]" >&2; exit 2 ;;
esac
