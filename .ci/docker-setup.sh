#!/usr/bin/env bash
# Make a Docker Engine in swarm mode available, idempotently.
#   - installs Debian's docker.io (Engine 20.10) and debootstrap when dockerd is missing;
#   - starts dockerd in the background when `docker info` fails (there is no systemd here);
#   - runs `docker swarm init --advertise-addr 127.0.0.1` when the engine is not in a swarm.
# Whether this script created the swarm is recorded in $SHOP_CI_STATE_DIR/swarm-created-by-setup
# ("yes"/"no"), so teardown (`.ci/docker-setup.sh leave`) leaves a pre-existing swarm alone.
#
# Usage: .ci/docker-setup.sh [up|leave]      (default: up)
set -euo pipefail

# Debian's client (20.10) talks BuildKit to the engine; the preinstalled 28.x client first on
# PATH has no buildx plugin. Either works for everything else.
DOCKER=${DOCKER:-/usr/bin/docker}
STATE_DIR=${SHOP_CI_STATE_DIR:-/var/lib/shop-ci}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
READY_TIMEOUT=${DOCKER_READY_TIMEOUT:-60}
MARK="$STATE_DIR/swarm-created-by-setup"

log() { printf '[docker-setup] %s\n' "$*" >&2; }

docker_ready() { "$DOCKER" info >/dev/null 2>&1; }

install_engine() {
    local missing=()
    [ -x /usr/sbin/dockerd ] || [ -x /usr/bin/dockerd ] || missing+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # With recommends (cgroupfs-mount, apparmor, ...): the set this engine was tried with.
    apt-get install -y -qq "${missing[@]}" >/dev/null
    [ -x "$DOCKER" ] || DOCKER=$(command -v docker)
}

start_engine() {
    docker_ready && { log "engine already running"; return 0; }
    log "starting dockerd (log: $DOCKERD_LOG)"
    # setsid: dockerd must not die with the shell that ran this script.
    local dockerd
    dockerd=$(command -v dockerd || echo /usr/sbin/dockerd)
    setsid nohup "$dockerd" >"$DOCKERD_LOG" 2>&1 </dev/null &
    local waited=0
    until docker_ready; do
        if [ "$waited" -ge "$READY_TIMEOUT" ]; then
            log "dockerd not ready after ${READY_TIMEOUT}s; last log lines:"
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "engine ready after ${waited}s"
}

swarm_state() { "$DOCKER" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null; }

init_swarm() {
    mkdir -p "$STATE_DIR"
    if [ "$(swarm_state)" = active ]; then
        log "engine already in a swarm"
        # Keep an earlier "yes": a re-run must not forget that we made this swarm.
        [ -f "$MARK" ] || echo no >"$MARK"
        return 0
    fi
    log "docker swarm init --advertise-addr 127.0.0.1"
    "$DOCKER" swarm init --advertise-addr 127.0.0.1 >/dev/null
    echo yes >"$MARK"
}

leave_swarm() {
    if [ "$(cat "$MARK" 2>/dev/null)" = yes ] && [ "$(swarm_state)" = active ]; then
        log "leaving the swarm this script created"
        "$DOCKER" swarm leave --force >/dev/null
    else
        log "swarm not created by this script: left as it is"
    fi
    rm -f "$MARK"
}

case "${1:-up}" in
    up) install_engine; start_engine; init_swarm ;;
    leave) leave_swarm ;;
    *) echo "usage: $0 [up|leave]" >&2; exit 2 ;;
esac
