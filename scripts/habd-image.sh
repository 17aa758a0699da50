#!/usr/bin/env bash
# Puts habd's own image into the registry the chart pulls from, built by hab
# itself: a habd of its own (temporary state, stopped at the end) mirrors the
# upstream, verifies the release tag against keys/hab, builds
# dockerfiles/habd for linux/amd64 and linux/arm64 through pipelines/hab.toml
# (arm64 cross-compiled with Debian's Rust), publishes the image index,
# reads it back and smoke-runs it. It prints the index digest and the line
# for the chart.
#
#   scripts/habd-image.sh [options]
#
#   --registry HOST:PORT|URL   where to publish (default 127.0.0.1:5000)
#   --registry-user USER       basic auth (the chart's registry: `hab`)
#   --registry-password-file F the password, in a file
#   --upstream URL             hab's repository (default: this checkout, file://)
#   --ref TAG                  the signed release tag (default: v<Cargo.toml version>)
#   --keyring PATH             its signers' public keys (default: keys/hab)
#   --base-image REF           the Debian base (default: <registry>/hab/base:bookworm)
#   --profile release|dev      the recipe's CARGO_PROFILE (default: release)
#   --extra-ca-certs FILE      PEM CA certificates the build stage trusts, for a
#                              TLS-inspecting proxy before crates.io (never in the image)
#   --keep                     keep the temporary state folder (its habd.log)
#
# The tag must be signed (`git tag -s v0.1.0`) by a key in the keyring:
# hab builds nothing else. habd and habctl come from $HABD_BIN_DIR, PATH or
# target/release (built with `cargo build --release` when missing). The
# builder is the local Docker engine (arm64's final stage under qemu:
# scripts/setup.sh enables binfmt). A release build compiles hab once per
# platform: about 25 minutes on 2 cores the first time, a few minutes when
# BuildKit's cache mounts hold the crates.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '\033[1m[habd-image]\033[0m %s\n' "$*" >&2; }
die() { printf 'habd-image: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

REGISTRY=127.0.0.1:5000
REGISTRY_USER=""
REGISTRY_PASSWORD_FILE=""
UPSTREAM="file://$ROOT"
REF=""
KEYRING="$ROOT/keys/hab"
BASE_IMAGE=""
PROFILE=release
EXTRA_CA_CERTS=""
KEEP=false
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --registry) REGISTRY=${2:?--registry needs a value}; shift 2 ;;
    --registry-user) REGISTRY_USER=${2:?--registry-user needs a value}; shift 2 ;;
    --registry-password-file) REGISTRY_PASSWORD_FILE=${2:?--registry-password-file needs a value}; shift 2 ;;
    --upstream) UPSTREAM=${2:?--upstream needs a value}; shift 2 ;;
    --ref) REF=${2:?--ref needs a value}; shift 2 ;;
    --keyring) KEYRING=${2:?--keyring needs a value}; shift 2 ;;
    --base-image) BASE_IMAGE=${2:?--base-image needs a value}; shift 2 ;;
    --profile) PROFILE=${2:?--profile needs a value}; shift 2 ;;
    --extra-ca-certs) EXTRA_CA_CERTS=${2:?--extra-ca-certs needs a value}; shift 2 ;;
    --keep) KEEP=true; shift ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

case "$REGISTRY" in
  http://* | https://*) REGISTRY_URL=${REGISTRY%/} ;;
  *) REGISTRY_URL="http://$REGISTRY" ;;
esac
REGISTRY_HOST=${REGISTRY_URL#*://}
: "${BASE_IMAGE:=$REGISTRY_HOST/hab/base:bookworm}"
if [ -z "$REF" ]; then
  REF="v$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)"
fi
case "$PROFILE" in release | dev) ;; *) die "--profile is release or dev, not $PROFILE" ;; esac
case "$UPSTREAM" in /*) UPSTREAM="file://$UPSTREAM" ;; esac
case "$KEYRING" in /*) ;; *) KEYRING="$PWD/$KEYRING" ;; esac
[ -e "$KEYRING" ] || die "no keyring at $KEYRING"
[ -z "$EXTRA_CA_CERTS" ] || grep -q 'BEGIN CERTIFICATE' "$EXTRA_CA_CERTS" ||
  die "$EXTRA_CA_CERTS holds no PEM certificate"
if [ -n "$REGISTRY_PASSWORD_FILE" ]; then
  case "$REGISTRY_PASSWORD_FILE" in /*) ;; *) REGISTRY_PASSWORD_FILE="$PWD/$REGISTRY_PASSWORD_FILE" ;; esac
  [ -n "$REGISTRY_USER" ] || die "--registry-password-file needs --registry-user"
fi
if [ "${UPSTREAM#file://}" != "$UPSTREAM" ]; then
  git -C "${UPSTREAM#file://}" rev-parse -q --verify "refs/tags/$REF" >/dev/null ||
    die "$UPSTREAM has no tag $REF: sign one with \`git tag -s $REF\` (its key in $KEYRING), or pass --ref"
fi

# habd and habctl.
bin=""
for d in "${HABD_BIN_DIR:-}" "$(dirname "$(command -v habd 2>/dev/null || echo /nonexistent/x)")" \
  "${CARGO_TARGET_DIR:-$ROOT/target}/release"; do
  if [ -n "$d" ] && [ -x "$d/habd" ] && [ -x "$d/habctl" ]; then bin=$d; break; fi
done
if [ -z "$bin" ]; then
  log "building habd and habctl (cargo build --release)"
  (cd "$ROOT" && cargo build --release --locked --bin habd --bin habctl)
  bin="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi

work=$(mktemp -d)
habd_pid=""
cleanup() {
  local rc=$?
  if [ -n "$habd_pid" ]; then kill "$habd_pid" 2>/dev/null || true; wait "$habd_pid" 2>/dev/null || true; fi
  if [ $rc -ne 0 ] && [ -s "$work/habd.log" ]; then
    log "habd's log (last lines; all of it in $work/habd.log):"
    tail -20 "$work/habd.log" >&2
    KEEP=true
  fi
  if [ "$KEEP" = true ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# A free port on 127.0.0.1 for this habd.
port=""
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 40000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || die "no free port found"

# The shipped pipeline, over this upstream and keyring; builds only the tag
# asked for (no build by itself of whatever tag a sync finds newest).
mkdir -p "$work/pipelines" "$work/state"
args="CARGO_PROFILE = \"$PROFILE\""
if [ -n "$EXTRA_CA_CERTS" ]; then
  # One TOML basic string: PEM has no quotes or backslashes, only newlines.
  args="$args, EXTRA_CA_CERTS = \"$(awk '{ printf "%s\\n", $0 }' "$EXTRA_CA_CERTS")\""
fi
sed -e "s|^url = .*|url = \"$UPSTREAM\"|" \
  -e "s|^keyring = .*|keyring = \"$KEYRING\"|" \
  -e "s|^base_image = .*|base_image = \"$BASE_IMAGE\"|" \
  -e '/^\[build\]/,/^\[/ s/^auto = true/auto = false/' \
  "$ROOT/pipelines/hab.toml" |
  ARGS="args = { $args }" awk '{ print } /^recipe = "habd"$/ { print ENVIRON["ARGS"] }' >"$work/pipelines/hab.toml"
{
  printf 'listen = "127.0.0.1:%s"\nstate_dir = "state"\npipelines_dir = "pipelines"\nrecipes_dir = "%s"\n' \
    "$port" "$ROOT/dockerfiles"
  printf '[registry]\nurl = "%s"\n' "$REGISTRY_URL"
  if [ -n "$REGISTRY_USER" ]; then
    printf 'username = "%s"\npassword_file = "%s"\n' "$REGISTRY_USER" "$REGISTRY_PASSWORD_FILE"
  fi
} >"$work/hab.toml"
"$bin/habd" check --config "$work/hab.toml" >/dev/null

log "habd on 127.0.0.1:$port (state in $work); upstream $UPSTREAM, $REF"
HAB_LOG_FORMAT=text "$bin/habd" serve --config "$work/hab.toml" --sync-on-start false >"$work/habd.log" 2>&1 &
habd_pid=$!
export HAB_SERVER="http://127.0.0.1:$port" HAB_TOKEN_FILE="$work/state/api-token"
unset HAB_TOKEN
for _ in $(seq 100); do
  [ -s "$HAB_TOKEN_FILE" ] && "$bin/habctl" status >/dev/null 2>&1 && break
  kill -0 "$habd_pid" 2>/dev/null || die "habd stopped at start"
  sleep 0.2
done

log "sync: mirror $UPSTREAM and verify its tags against $KEYRING"
"$bin/habctl" sync hab >&2
"$bin/habctl" refs hab >&2
log "build $REF for linux/amd64 and linux/arm64 (profile $PROFILE), publish, verify"
started=$(date +%s)
json=$("$bin/habctl" -o json build hab --ref "$REF" --wait)
digest=$(printf '%s' "$json" | grep -o '"index_digest": *"sha256:[0-9a-f]*"' | head -1 | grep -o 'sha256:[0-9a-f]*')
[ -n "$digest" ] || die "no index digest in habctl's answer: $json"
log "VERIFIED in $(($(date +%s) - started)) s"

cat <<EOF
$REGISTRY_HOST/hab/habd@$digest   (also tagged $REF)
index digest: $digest
for the chart:
  --set habd.image.repository=hab/habd --set habd.image.digest=$digest
EOF
