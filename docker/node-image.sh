#!/usr/bin/env bash
# Build the image of a Docker-in-Docker swarm node for scripts/cluster.sh: Debian bookworm
# minbase + docker.io (Engine 20.10, containerd, runc), iptables, iproute2, procps and
# ca-certificates, made with debootstrap and `docker import`, so that it needs no image
# registry (hosts that cannot pull images, this project's CI). About 35-60 s, ~450 MB.
#
# The image is skipped when it already exists (FORCE=1 rebuilds). Needs root and debootstrap
# (`apt-get install debootstrap`). Where debootstrap is missing but images can be pulled,
# it falls back to a two-line build FROM debian:bookworm-slim (same packages, from apt).
#
# The node runs `dockerd` as its command (scripts/cluster.sh passes the flags); it does not
# need --privileged, see scripts/cluster.sh for the capabilities it does need.
#
# Usage: docker/node-image.sh            prints the image name on stdout when done
# Env:   DOCKER (client, default /usr/bin/docker if present), NODE_IMAGE
#        (default shop/swarm-node:bookworm), DEBIAN_MIRROR, DEBIAN_SUITE (bookworm), FORCE=1
set -euo pipefail

if [ -z "${DOCKER:-}" ]; then
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
NODE_IMAGE=${NODE_IMAGE:-shop/swarm-node:$SUITE}
FORCE=${FORCE:-0}
PACKAGES=docker.io,iptables,iproute2,procps,ca-certificates

log() { printf '[node-image] %s\n' "$*" >&2; }

if [ "$FORCE" != 1 ] && "$DOCKER" image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
    log "$NODE_IMAGE exists, skipped (FORCE=1 rebuilds)"
    echo "$NODE_IMAGE"
    exit 0
fi

start=$SECONDS
if command -v debootstrap >/dev/null 2>&1; then
    rootfs=$(mktemp -d /var/tmp/shop-node-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
    log "debootstrap $SUITE + $PACKAGES -> $NODE_IMAGE"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
        >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
    # Run-time needs only: no package caches, lists, docs, locales; no stale engine state.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/var/lib/docker "$rootfs"/var/lib/containerd
    tar -C "$rootfs" --numeric-owner -c . | "$DOCKER" import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase + $PACKAGES (debootstrap): a Docker-in-Docker swarm node\"" \
        --change 'CMD ["dockerd", "--host", "unix:///var/run/docker.sock"]' \
        - "$NODE_IMAGE" >/dev/null
else
    log "debootstrap is missing: building $NODE_IMAGE FROM debian:$SUITE-slim (needs a registry)"
    pkgs=${PACKAGES//,/ }
    printf '%s\n' \
        "FROM debian:$SUITE-slim" \
        "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs && rm -rf /var/lib/apt/lists/*" \
        'CMD ["dockerd", "--host", "unix:///var/run/docker.sock"]' \
        | "$DOCKER" build -t "$NODE_IMAGE" - >&2
fi
log "$NODE_IMAGE built in $((SECONDS - start))s"
echo "$NODE_IMAGE"
