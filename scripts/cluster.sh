#!/usr/bin/env bash
# A three-node Docker Swarm on one machine: three Docker-in-Docker "node" containers on a
# private Docker network. node1 is the manager, node2 and node3 are workers. Each node's
# port 80 is published on 127.0.0.1 only (node N -> 127.0.0.1:$((PORT_BASE + N)), by default
# 18081, 18082, 18083), so the edge proxy that stacks/edge.yml runs on every node answers
# there.
#
#   scripts/cluster.sh up          create (or resume) the cluster, with its image registry on
#                                  the manager; idempotent
#   scripts/cluster.sh push        `make push REGISTRY=<the lab registry>`: the shop's images
#                                  (releases $RELEASES) and the edge's, from this host
#   scripts/cluster.sh deploy [T]  push, then `make deploy NO_IPVS=1 REGISTRY=... IMG_TAG=T`
#                                  (default 1) on the manager: images pinned by digest, dnsrr
#                                  overrides, the edge on every node's port 80
#   scripts/cluster.sh status      nodes, services, published ports
#   scripts/cluster.sh env         how to point a docker client at the manager; the registry
#   scripts/cluster.sh load        the fallback without a registry: ship the shop's images to
#                                  every node with `docker save | docker load`
#   scripts/cluster.sh kill N      SIGKILL node N's container (the node "dies")
#   scripts/cluster.sh start N     start node N's container again (it rejoins by itself)
#   scripts/cluster.sh down        remove what `up` created, and nothing else
#
# What `up` creates, all labelled io.swarm-shop.lab=$LAB so that `down` removes exactly
# these: the bridge network $LAB (a /24, fixed node addresses .11 .12 .13 so the manager's
# address survives restarts), the containers $PREFIX{1,2,3} (hostnames node1..3), their
# volumes $PREFIX{N}-data (each node's /var/lib/docker: images, swarm state), and the
# directory $STATE_DIR holding each node's engine socket and the registry's certificates.
# On the host, outside those, `up` writes one file: the lab CA as
# /etc/docker/certs.d/<registry address>/ca.crt (see Images). `down` removes it, and the
# empty cgroups (/sys/fs/cgroup/*/$PREFIX{N}) the nodes' engines made for their containers.
# The node image ($NODE_IMAGE, docker/node-image.sh) and the registry image
# ($REGISTRY_IMAGE, docker/build-base-image.sh registry) are build caches: `down` keeps them.
# Inside the swarm, `up` creates the overlay networks backend and frontend
# (scripts/create-networks.sh) and the stack `registry`; they go with the nodes.
#
# The parts, by concern: scripts/cluster/nodes.sh (network, node containers, engines,
# swarm, client access), scripts/cluster/registry.sh (the registry and its TLS),
# scripts/cluster/images.sh (images without a registry).
#
# One command that changes the cluster at a time: up, down, load, push, deploy, kill and
# start hold a lock on this script file (flock; nothing is created for it) and wait for each
# other. The cluster test holds it for its whole run (and sets SHOP_LAB_LOCK_HELD=1).
#
# Env: DOCKER (client; default /usr/bin/docker when present), SHOP_LAB_NAME (shop-lab),
#      SHOP_LAB_NODE_PREFIX (shop-node), SHOP_LAB_PORT_BASE (18080), SHOP_LAB_SUBNET (a /24;
#      default: the first free of a few candidates), SHOP_LAB_DIR (/run/$SHOP_LAB_NAME),
#      NODE_IMAGE (shop/swarm-node:bookworm), SHOP_NAMESPACE (shop), EDGE_IMAGE
#      (shop/edge-haproxy:bookworm), SHOP_LAB_IMAGES (images to ship; default: every tag of
#      $SHOP_NAMESPACE/{prod,coupon,front}-service, and EDGE_IMAGE), SHOP_LAB_HEARTBEAT
#      (swarm dispatcher heartbeat, default 5s as in swarm), SHOP_LAB_REGISTRY (1; 0: no
#      registry, images by save/load), SHOP_LAB_REGISTRY_PORT (5000), REGISTRY_IMAGE
#      (shop/registry:bookworm), RELEASES (releases `push` sends: "1 2"), SHOP_LAB_CERTS_D
#      (the host engine's certs.d: /etc/docker/certs.d).
set -euo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$SELF")/.."

if [ -z "${DOCKER:-}" ]; then
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
LAB=${SHOP_LAB_NAME:-shop-lab}
PREFIX=${SHOP_LAB_NODE_PREFIX:-shop-node}
NODES=3
PORT_BASE=${SHOP_LAB_PORT_BASE:-18080}
NODE_IMAGE=${NODE_IMAGE:-shop/swarm-node:bookworm}
SHOP_NAMESPACE=${SHOP_NAMESPACE:-shop}
EDGE_IMAGE=${EDGE_IMAGE:-shop/edge-haproxy:bookworm}
HEARTBEAT=${SHOP_LAB_HEARTBEAT:-5s}
USE_REGISTRY=${SHOP_LAB_REGISTRY:-1}
REGISTRY_PORT=${SHOP_LAB_REGISTRY_PORT:-5000}
REGISTRY_IMAGE=${REGISTRY_IMAGE:-shop/registry:bookworm}
RELEASES=${RELEASES:-1 2}
HOST_CERTS_D=${SHOP_LAB_CERTS_D:-/etc/docker/certs.d}
LABEL_KEY=io.swarm-shop.lab
if [ -n "${SHOP_LAB_DIR:-}" ]; then
    STATE_DIR=$SHOP_LAB_DIR
elif [ -w /run ]; then
    STATE_DIR=/run/$LAB
else
    STATE_DIR=${XDG_RUNTIME_DIR:-/tmp}/$LAB-$(id -u)
fi
SUBNET_CANDIDATES=(172.28.53.0/24 172.29.53.0/24 172.30.53.0/24 192.168.253.0/24
    192.168.254.0/24 172.27.53.0/24)

# This script drives the host's engine. A DOCKER_HOST that points into the cluster (the
# `env` output, still exported in this shell) must not redirect it.
if [[ "${DOCKER_HOST:-}" == "unix://$STATE_DIR/"* ]]; then unset DOCKER_HOST; fi

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
run() { log "+ $*"; "$@"; }

node_name() { echo "$PREFIX$1"; }
node_port() { echo $((PORT_BASE + $1)); }
node_sock() { echo "$STATE_DIR/node$1/docker.sock"; }
on_node() { local n=$1; shift; "$DOCKER" exec "$(node_name "$n")" docker "$@"; }

# label_of KIND NAME: our label's value on a network/volume/container, "" if none or missing
label_of() {
    "$DOCKER" "$1" inspect --format "{{index .Labels \"$LABEL_KEY\"}}" "$2" 2>/dev/null || true
}
container_label() {
    "$DOCKER" container inspect --format "{{index .Config.Labels \"$LABEL_KEY\"}}" "$1" \
        2>/dev/null || true
}
exists() { "$DOCKER" "$1" inspect "$2" >/dev/null 2>&1; }

# The parts, read from beside this script.
for part in nodes images registry; do
    # shellcheck source=/dev/null
    source "$(dirname "$SELF")/cluster/$part.sh"
done

cmd_up() {
    local start=$SECONDS n
    "$DOCKER" info >/dev/null 2>&1 || die "no Docker Engine answers ($DOCKER info failed)"
    ensure_state_dir
    ensure_node_image
    ensure_network
    mkdir -p "$STATE_DIR/certs.d"
    if [ "$USE_REGISTRY" = 1 ]; then
        ensure_registry_image
        ensure_registry_tls
    fi
    for n in $(seq "$NODES"); do ensure_node "$n"; done
    for n in $(seq "$NODES"); do wait_engine "$n"; done
    ensure_swarm
    ensure_overlay_networks
    if [ "$USE_REGISTRY" = 1 ]; then
        deploy_registry
    else
        load_images
    fi
    log "cluster up in $((SECONDS - start))s"
    cmd_status
    echo
    cmd_env
}

# ---------------------------------------------------------------------------------------
cmd_push() {
    [ "$USE_REGISTRY" = 1 ] \
        || die "SHOP_LAB_REGISTRY=0: no registry to push to (scripts/cluster.sh load ships the images)"
    command -v make >/dev/null || die "make is missing (apt-get install make)"
    read_network
    registry_answers || die "no registry answers at https://$(registry_addr): run scripts/cluster.sh up"
    local start=$SECONDS
    # The tutorial's own `make push`, from this host's engine.
    # HOST_CONFIG=/dev/null: the lab is a host of its own, everything it needs is given here.
    run make --no-print-directory push HOST_CONFIG=/dev/null DOCKER="$DOCKER" REGISTRY="$(registry_addr)" \
        SHOP_NAMESPACE="$SHOP_NAMESPACE" RELEASES="$RELEASES" EDGE_IMAGE="$EDGE_IMAGE" >&2
    log "pushed to $(registry_addr) in $((SECONDS - start))s"
}

cmd_deploy() {
    local tag=${1:-1} sock registry=()
    sock=$(node_sock 1)
    [ -S "$sock" ] || die "no manager socket at $sock: run scripts/cluster.sh up"
    command -v make >/dev/null || die "make is missing (apt-get install make)"
    if [ "$USE_REGISTRY" = 1 ]; then
        cmd_push
        registry=(REGISTRY="$(registry_addr)")
    fi
    # The tutorial's own `make deploy`, pointed at the manager, for a kernel without IPVS
    # (dnsrr endpoints, the edge on every node's port 80). It creates the overlay networks
    # too. With REGISTRY it deploys the pushed images with --resolve-image always (digests
    # pinned, the nodes pull); without, --resolve-image never (the nodes hold the images).
    # It waits until the shop answers at ENTRY_URL: here node1's port 80, as this machine
    # reaches it.
    DOCKER_HOST=unix://$sock run make --no-print-directory deploy HOST_CONFIG=/dev/null \
        NO_IPVS=1 "${registry[@]}" ENTRY_URL="http://127.0.0.1:$(node_port 1)/product-detail/2" \
        DOCKER="$DOCKER" SHOP_NAMESPACE="$SHOP_NAMESPACE" IMG_TAG="$tag" \
        REPLICAS="${REPLICAS:-2}" EDGE_PORT=80 EDGE_IMAGE="$EDGE_IMAGE" >&2
    log "deployed; the shop answers on every node, e.g. curl http://127.0.0.1:$(node_port 1)/product-detail/2"
}

cmd_status() {
    local n name state
    for n in $(seq "$NODES"); do
        name=$(node_name "$n")
        state=$("$DOCKER" container inspect --format '{{.State.Status}}' "$name" 2>/dev/null) \
            || state=absent
        printf '%-12s %-8s node%s  127.0.0.1:%s -> :80\n' "$name" "$state" "$n" "$(node_port "$n")"
    done
    if [ "$("$DOCKER" container inspect --format '{{.State.Running}}' "$(node_name 1)" 2>/dev/null)" = true ]; then
        on_node 1 node ls 2>/dev/null || true
        on_node 1 service ls 2>/dev/null || true
    fi
}

cmd_env() {
    local sock
    sock=$(node_sock 1)
    echo "# Point a docker client on this host at the manager (root; socket dir is 0700):"
    echo "export DOCKER_HOST=unix://$sock"
    echo "# e.g.  eval \"\$(scripts/cluster.sh env)\"; docker node ls; make deploy NO_IPVS=1"
    echo "# undo: unset DOCKER_HOST.  Without the socket: docker exec -it $(node_name 1) docker node ls"
    echo "# Each node's port 80:$(for n in $(seq "$NODES"); do printf ' 127.0.0.1:%s' "$(node_port "$n")"; done)"
    if [ "$USE_REGISTRY" = 1 ] && [ "$(label_of network "$LAB")" = "$LAB" ]; then
        read_network
        echo "# The lab registry (TLS, lab CA): make push REGISTRY=$(registry_addr); make deploy NO_IPVS=1 REGISTRY=$(registry_addr)"
    fi
}

check_n() {
    if ! [[ "${1:-}" =~ ^[1-9]$ ]] || [ "$1" -gt "$NODES" ]; then
        die "usage: $0 kill|start N (1..$NODES)"
    fi
}

cmd_kill() {
    check_n "${1:-}"
    [ "$(container_label "$(node_name "$1")")" = "$LAB" ] || die "no node $1"
    run "$DOCKER" kill "$(node_name "$1")" >/dev/null
}

cmd_start() {
    check_n "${1:-}"
    [ "$(container_label "$(node_name "$1")")" = "$LAB" ] || die "no node $1"
    run "$DOCKER" start "$(node_name "$1")" >/dev/null
    wait_engine "$1"
}

# ---------------------------------------------------------------------------------------
remove_cgroups() {
    # The nodes' engines made /sys/fs/cgroup/<controller>/<name>/<container> (cgroup v1) or
    # /sys/fs/cgroup/<name>/... (v2) for their containers; empty once the node is gone.
    local name=$1 d
    for d in /sys/fs/cgroup/*/"$name" /sys/fs/cgroup/"$name"; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

cmd_down() {
    local n name vol
    for n in $(seq "$NODES"); do
        name=$(node_name "$n")
        if exists container "$name"; then
            if [ "$(container_label "$name")" = "$LAB" ]; then
                run "$DOCKER" rm -f -v "$name" >/dev/null
            else
                log "container $name was not made by this script: left alone"
            fi
        fi
        remove_cgroups "$name"
    done
    for n in $(seq "$NODES"); do
        vol=$(node_name "$n")-data
        if exists volume "$vol"; then
            if [ "$(label_of volume "$vol")" = "$LAB" ]; then
                run "$DOCKER" volume rm "$vol" >/dev/null
            else
                log "volume $vol was not made by this script: left alone"
            fi
        fi
    done
    if exists network "$LAB"; then
        if [ "$(label_of network "$LAB")" = "$LAB" ]; then
            run "$DOCKER" network rm "$LAB" >/dev/null
        else
            log "network $LAB was not made by this script: left alone"
        fi
    fi
    remove_host_certs
    if [ -f "$STATE_DIR/.shop-lab" ]; then
        rm -rf "$STATE_DIR"
    fi
    log "cluster down"
}

# One cluster per machine, so one command that changes it at a time: commands that change
# the cluster hold a lock on this script file (nothing is created for it). A caller that
# holds the lock itself (tests/cluster: a whole scenario) sets SHOP_LAB_LOCK_HELD=1.
lock() {
    [ -n "${SHOP_LAB_LOCK_HELD:-}" ] && return 0
    command -v flock >/dev/null || return 0
    exec 9<"$SELF"
    if ! flock -n 9; then
        log "another scripts/cluster.sh (or the cluster test) is changing the cluster: waiting"
        flock -w "${SHOP_LAB_LOCK_TIMEOUT:-900}" 9 || die "still locked after ${SHOP_LAB_LOCK_TIMEOUT:-900}s"
    fi
}

case "${1:-}" in
    up|down|load|push|deploy|kill|start) lock ;;
esac
case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    load) load_images ;;
    push) cmd_push ;;
    deploy) shift; cmd_deploy "$@" ;;
    kill) shift; cmd_kill "$@" ;;
    start) shift; cmd_start "$@" ;;
    *) sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
