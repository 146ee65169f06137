#!/usr/bin/env bash
# Build local base images from Debian packages with debootstrap, for hosts that cannot pull
# images from a registry (offline hosts, air-gapped CI, this project's own CI machines).
# Users who can pull `python:3.12-slim` do not need this.
#
#   shop/python-base:bookworm  Debian bookworm minbase + python3 (3.11), python3-venv,
#                              ca-certificates. Use it with
#                              docker build --build-arg BASE_IMAGE=shop/python-base:bookworm ...
#   shop/edge-haproxy:bookworm Debian bookworm minbase + haproxy (2.6), the edge proxy used by
#                              stacks/edge.yml on hosts without IPVS.
#   shop/registry:bookworm     Debian bookworm minbase + docker-registry (2.8), the image
#                              registry of the three-node lab (stacks/registry.yml, built on
#                              demand by scripts/cluster.sh; not part of `all`).
#   shop/prometheus:bookworm   Debian bookworm minbase + prometheus (2.42), the metrics server of
#                              stacks/autoscale.yml where prom/prometheus cannot be pulled;
#                              trimmed to the server and the assets of its web UI.
#
# Each image is skipped when it already exists (FORCE=1 rebuilds). Needs root and debootstrap
# (`apt-get install debootstrap`); takes about 45 s per image.
#
# Usage: docker/build-base-image.sh [python|edge|prometheus|registry|all]
#        (default: all = python + edge + prometheus)
# Env:   DOCKER (client, default docker), DEBIAN_MIRROR, DEBIAN_SUITE (bookworm),
#        PYTHON_BASE_IMAGE, EDGE_IMAGE, PROMETHEUS_IMAGE, REGISTRY_IMAGE (names above), FORCE=1
set -euo pipefail

DOCKER=${DOCKER:-docker}
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON_BASE_IMAGE=${PYTHON_BASE_IMAGE:-shop/python-base:$SUITE}
EDGE_IMAGE=${EDGE_IMAGE:-shop/edge-haproxy:$SUITE}
REGISTRY_IMAGE=${REGISTRY_IMAGE:-shop/registry:$SUITE}
PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-shop/prometheus:$SUITE}
FORCE=${FORCE:-0}

log() { printf '[build-base-image] %s\n' "$*" >&2; }

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# build_rootfs_image IMAGE PACKAGES [docker import --change ...]
# A caller may set TRIM to a function that removes more from the rootfs (its argument).
build_rootfs_image() {
    local image=$1 packages=$2; shift 2
    if [ "$FORCE" != 1 ] && image_exists "$image"; then
        log "$image exists, skipped (FORCE=1 rebuilds)"
        return 0
    fi
    command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install debootstrap"; return 1; }
    local rootfs start=$SECONDS
    rootfs=$(mktemp -d /var/tmp/shop-rootfs.XXXXXX)
    # shellcheck disable=SC2064  # expand now: the trap must remove this very directory
    trap "rm -rf '$rootfs'" RETURN
    log "debootstrap $SUITE + $packages -> $image"
    debootstrap --variant=minbase --include="$packages" "$SUITE" "$rootfs" "$MIRROR" \
        >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; rm -f "$rootfs.log"; return 1; }
    rm -f "$rootfs.log"
    # Only what a container needs at run time: no package caches, lists, docs or locales.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
    if [ -n "${TRIM:-}" ]; then "$TRIM" "$rootfs"; fi
    tar -C "$rootfs" --numeric-owner -c . | "$DOCKER" import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase + $packages (debootstrap)\"" \
        "$@" - "$image" >/dev/null
    log "$image built in $((SECONDS - start))s"
}

build_python() {
    build_rootfs_image "$PYTHON_BASE_IMAGE" python3,python3-venv,ca-certificates \
        --change 'CMD ["python3"]'
}

build_edge() {
    build_rootfs_image "$EDGE_IMAGE" haproxy \
        --change 'CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]'
}

# The package's own user (created by its postinst) owns /var/lib/docker-registry, the
# storage root: a named volume mounted there starts with that owner, so the server needs no
# root. The configuration comes from the stack (stacks/registry/config.yml).
build_registry() {
    build_rootfs_image "$REGISTRY_IMAGE" docker-registry \
        --change 'USER docker-registry' \
        --change 'EXPOSE 5000' \
        --change 'VOLUME /var/lib/docker-registry' \
        --change 'CMD ["docker-registry", "serve", "/etc/docker/registry/config.yml"]'
}

# The server reads its binary, its web UI (/usr/share/prometheus/web, whose static/ links
# into /usr/share/javascript and fonts-glyphicons) and the libc. promtool is not the server,
# and the UI loads moment-timezone-with-data.min.js, never the 200 MB of per-zone data files
# beside it. (/usr/share/nodejs stays: bootstrap4 and popper.js link into it.)
trim_prometheus() {
    local rootfs=$1
    rm -rf "$rootfs"/usr/bin/promtool "$rootfs"/usr/share/javascript/moment-timezone/data \
        "$rootfs"/usr/share/lintian "$rootfs"/usr/share/bash-completion "$rootfs"/var/cache/apt/*.bin
    # The storage directory, owned by the server's user as in prom/prometheus (a new named
    # volume mounted there takes this ownership).
    install -d -o 65534 -g 65534 -m 0755 "$rootfs"/prometheus
}

build_prometheus() {
    # The entry point is the binary, as in prom/prometheus, so one stack file fits both.
    TRIM=trim_prometheus build_rootfs_image "$PROMETHEUS_IMAGE" prometheus \
        --change 'USER 65534:65534' \
        --change 'WORKDIR /prometheus' \
        --change 'EXPOSE 9090' \
        --change 'ENTRYPOINT ["/usr/bin/prometheus"]' \
        --change 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
}

case "${1:-all}" in
    python) build_python ;;
    edge) build_edge ;;
    registry) build_registry ;;
    prometheus) build_prometheus ;;
    all)
        # The debootstraps are independent: run them side by side.
        build_python & py=$!
        build_edge & edge=$!
        build_prometheus & prom=$!
        rc=0
        wait "$py" || rc=1
        wait "$edge" || rc=1
        wait "$prom" || rc=1
        exit "$rc"
        ;;
    *) echo "usage: $0 [python|edge|prometheus|registry|all]" >&2; exit 2 ;;
esac
