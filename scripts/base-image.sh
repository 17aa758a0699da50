#!/usr/bin/env bash
# Makes the Debian bookworm base image of the node recipes, for linux/amd64
# and linux/arm64, from Debian's packages only (debootstrap checks them
# against Debian's archive keys): no image is pulled from any registry.
#
#   scripts/base-image.sh [REGISTRY_HOST] [REPOSITORY:TAG]
#   habctl base-image [--registry HOST] [--name REPOSITORY:TAG]   (the same, carried in habctl)
#
# defaults: 127.0.0.1:5000 and hab/base:bookworm. Each architecture's root
# filesystem is made with `debootstrap --variant=minbase` (arm64 runs its
# second stage under qemu), trimmed (apt lists, docs, logs), imported as an
# image, pushed, and both are joined into one image index, which is what a
# pipeline's `build.base_image` names. hab resolves it per platform to a
# digest, passes it as BASE_IMAGE, and puts the digest in every build key:
# a new base means new keys, so the next rebuild builds.
#
# Re-running makes a fresh base (Debian's security updates); the index tag
# moves, the old digests stay until pruned.
set -euo pipefail
REGISTRY=${1:-127.0.0.1:5000}
NAME=${2:-hab/base:bookworm}
REPO=${NAME%:*}
TAG=${NAME##*:}
SUITE=bookworm
MIRROR=${HAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { printf '\033[1m[base-image]\033[0m %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debootstrap is missing: bash scripts/setup.sh" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for arch in amd64 arm64; do
  root="$work/rootfs-$arch"
  log "debootstrap $SUITE $arch from $MIRROR"
  debootstrap --variant=minbase --arch="$arch" "$SUITE" "$root" "$MIRROR" >"$work/debootstrap-$arch.log" 2>&1 ||
    { tail -20 "$work/debootstrap-$arch.log" >&2; exit 1; }
  # What an image does not need; every file dated at the newest package's
  # time would be reproducible, this keeps it small and honest instead.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/var/log/* "$root"/tmp/*
  log "importing $arch ($(du -sh "$root" | cut -f1))"
  tar -C "$root" --numeric-owner -c . |
    docker import --platform "linux/$arch" \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["/bin/bash"]' \
      - "$REGISTRY/$REPO:$TAG-$arch" >/dev/null
  docker push -q "$REGISTRY/$REPO:$TAG-$arch" >/dev/null
done

log "joining both into the index $REGISTRY/$REPO:$TAG"
docker manifest rm "$REGISTRY/$REPO:$TAG" >/dev/null 2>&1 || true
docker manifest create --insecure "$REGISTRY/$REPO:$TAG" \
  "$REGISTRY/$REPO:$TAG-amd64" "$REGISTRY/$REPO:$TAG-arm64" >/dev/null
for arch in amd64 arm64; do
  docker manifest annotate --os linux --arch "$arch" "$REGISTRY/$REPO:$TAG" "$REGISTRY/$REPO:$TAG-$arch"
done
digest=$(docker manifest push --insecure --purge "$REGISTRY/$REPO:$TAG")
log "$REGISTRY/$REPO:$TAG is $digest"
echo "$digest"
