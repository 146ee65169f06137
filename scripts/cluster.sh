#!/usr/bin/env bash
# A three-node Docker Swarm on one machine: three Docker-in-Docker "node" containers on a
# private Docker network. node1 is the manager, node2 and node3 are workers. Each node's
# port 80 is published on 127.0.0.1 only (node N -> 127.0.0.1:$((PORT_BASE + N)), by default
# 18081, 18082, 18083), so the edge proxy that stacks/edge.yml runs on every node answers
# there.
#
#   scripts/cluster.sh up          create (or resume) the cluster; idempotent
#   scripts/cluster.sh deploy [T]  `make deploy NO_IPVS=1 IMG_TAG=T` (default 1) on the manager:
#                                  dnsrr overrides + the edge on every node's port 80
#   scripts/cluster.sh status      nodes, services, published ports
#   scripts/cluster.sh env         how to point a docker client at the manager
#   scripts/cluster.sh load        ship the shop's images to every node again (after a build)
#   scripts/cluster.sh kill N      SIGKILL node N's container (the node "dies")
#   scripts/cluster.sh start N     start node N's container again (it rejoins by itself)
#   scripts/cluster.sh down        remove what `up` created, and nothing else
#
# What `up` creates, all labelled io.swarm-shop.lab=$LAB so that `down` removes exactly
# these: the bridge network $LAB (a /24, fixed node addresses .11 .12 .13 so the manager's
# address survives restarts), the containers $PREFIX{1,2,3} (hostnames node1..3), their
# volumes $PREFIX{N}-data (each node's /var/lib/docker: images, swarm state), and the
# directory $STATE_DIR holding each node's engine socket. `down` also removes the empty
# cgroups (/sys/fs/cgroup/*/$PREFIX{N}) the nodes' engines made for their containers.
# The node image ($NODE_IMAGE, docker/node-image.sh) is a build cache: `down` keeps it.
# Inside the swarm, `up` creates the overlay networks backend and frontend
# (scripts/create-networks.sh); they go with the nodes.
#
# Node containers: no --privileged (some hosts refuse it), but the flags that are enough: a
# few capabilities, seccomp/apparmor/systempaths unconfined, the host's cgroup tree, and
# --cgroup-parent so each engine's containers get a cgroup subtree of their own. /run is a
# tmpfs, so a node killed with `kill` starts clean.
#
# One command that changes the cluster at a time: up, down, load, deploy, kill and start
# hold a lock on this script file (flock; nothing is created for it) and wait for each
# other. The cluster test holds it for its whole run (and sets SHOP_LAB_LOCK_HELD=1).
#
# Client access: every node's engine also listens on a unix socket in $STATE_DIR/nodeN/
# (a bind-mounted directory, mode 0700, root only), so `export DOCKER_HOST=unix://...`
# makes the host's docker client (and make, and the stack files with their relative
# config paths) talk to the manager. No TCP port is opened: an unauthenticated engine API
# on a TCP port, even on 127.0.0.1, is root for every local user. Without access to that
# directory: `docker exec -it shop-node1 docker ...`.
#
# Images: copied with `docker save | docker load` into every node, not through a registry.
# The shop's images are built locally and exist nowhere else; save/load needs no extra
# package, daemon, open port or insecure-registry setting in the nodes, works offline, and
# only ships what a node lacks (compared by image ID). The price: swarm cannot pin image
# digests (deploy with --resolve-image never, which `deploy` does) and a rebuilt image must
# be shipped again (`scripts/cluster.sh load`). A registry (Debian's docker-registry) is the
# better model of a real cluster when images change often; see the README. Images that are
# not present locally (e.g. EDGE_IMAGE=haproxy:2.8) are left to the nodes to pull, which works
# where images can be pulled.
#
# Env: DOCKER (client; default /usr/bin/docker when present), SHOP_LAB_NAME (shop-lab),
#      SHOP_LAB_NODE_PREFIX (shop-node), SHOP_LAB_PORT_BASE (18080), SHOP_LAB_SUBNET (a /24;
#      default: the first free of a few candidates), SHOP_LAB_DIR (/run/$SHOP_LAB_NAME),
#      NODE_IMAGE (shop/swarm-node:bookworm), SHOP_NAMESPACE (shop), EDGE_IMAGE
#      (shop/edge-haproxy:bookworm), SHOP_LAB_IMAGES (images to ship; default: every tag of
#      $SHOP_NAMESPACE/{prod,coupon,front}-service, and EDGE_IMAGE), SHOP_LAB_HEARTBEAT
#      (swarm dispatcher heartbeat, default 5s as in swarm).
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

# ---------------------------------------------------------------------------------------
ensure_node_image() {
    "$DOCKER" image inspect "$NODE_IMAGE" >/dev/null 2>&1 && return 0
    log "node image $NODE_IMAGE missing: building it (docker/node-image.sh)"
    DOCKER=$DOCKER NODE_IMAGE=$NODE_IMAGE docker/node-image.sh >/dev/null
}

SUBNET_PREFIX=
ensure_network() {
    local subnet
    if exists network "$LAB"; then
        [ "$(label_of network "$LAB")" = "$LAB" ] \
            || die "network $LAB exists but was not made by this script; set SHOP_LAB_NAME"
        subnet=$("$DOCKER" network inspect --format '{{(index .IPAM.Config 0).Subnet}}' "$LAB")
    else
        local candidates=("${SHOP_LAB_SUBNET:-}")
        [ -n "${SHOP_LAB_SUBNET:-}" ] || candidates=("${SUBNET_CANDIDATES[@]}")
        subnet=
        for c in "${candidates[@]}"; do
            if "$DOCKER" network create --driver bridge --subnet "$c" \
                --label "$LABEL_KEY=$LAB" "$LAB" >/dev/null 2>"$STATE_DIR/.net-err"; then
                subnet=$c
                log "created network $LAB ($c)"
                break
            fi
        done
        [ -n "$subnet" ] || die "could not create network $LAB: $(cat "$STATE_DIR/.net-err")
(set SHOP_LAB_SUBNET to a free /24)"
        rm -f "$STATE_DIR/.net-err"
    fi
    [[ "$subnet" =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]] \
        || die "network $LAB has subnet $subnet; this script needs an x.y.z.0/24"
    SUBNET_PREFIX=${BASH_REMATCH[1]}
}
node_ip() { echo "$SUBNET_PREFIX.$((10 + $1))"; }

ensure_state_dir() {
    if [ ! -d "$STATE_DIR" ]; then
        mkdir -p "$STATE_DIR"
        echo "$LAB" >"$STATE_DIR/.shop-lab"
    fi
    chmod 0700 "$STATE_DIR"
}

ensure_node() {
    local n=$1 name vol state
    name=$(node_name "$n")
    vol=$name-data
    if exists container "$name"; then
        [ "$(container_label "$name")" = "$LAB" ] \
            || die "container $name exists but was not made by this script"
        state=$("$DOCKER" container inspect --format '{{.State.Status}}' "$name")
        if [ "$state" != running ]; then
            run "$DOCKER" start "$name" >/dev/null
        fi
        return 0
    fi
    if exists volume "$vol"; then
        [ "$(label_of volume "$vol")" = "$LAB" ] \
            || die "volume $vol exists but was not made by this script"
    else
        "$DOCKER" volume create --label "$LABEL_KEY=$LAB" "$vol" >/dev/null
    fi
    mkdir -p "$STATE_DIR/node$n"
    chmod 0700 "$STATE_DIR/node$n"
    # The node recipe described at the top (no --privileged), plus a fixed address, the
    # loopback-only port, the socket directory, and /run as a tmpfs: like a real machine's,
    # it starts empty, so an engine killed with its node (`kill`) leaves no docker.pid or
    # containerd sockets behind that would stop it from starting again.
    run "$DOCKER" run -d --name "$name" --hostname "node$n" \
        --label "$LABEL_KEY=$LAB" \
        --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add MKNOD --cap-add SYS_PTRACE \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --security-opt systempaths=unconfined \
        -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
        -v "$vol:/var/lib/docker" \
        --tmpfs /run \
        -v "$STATE_DIR/node$n:/run/shop-lab" \
        --network "$LAB" --ip "$(node_ip "$n")" \
        -p "127.0.0.1:$(node_port "$n"):80" \
        "$NODE_IMAGE" \
        dockerd --host unix:///var/run/docker.sock --host unix:///run/shop-lab/docker.sock \
        --cgroup-parent="/$name" >/dev/null
}

wait_engine() {
    local n=$1 _
    for _ in $(seq 120); do
        on_node "$n" info >/dev/null 2>&1 && return 0
        [ "$("$DOCKER" container inspect --format '{{.State.Running}}' "$(node_name "$n")")" = true ] \
            || { "$DOCKER" logs --tail 20 "$(node_name "$n")" >&2; die "node$n exited"; }
        sleep 0.5
    done
    "$DOCKER" logs --tail 20 "$(node_name "$n")" >&2
    die "node$n's engine did not answer within 60 s"
}

swarm_state() { on_node "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || true; }

ensure_swarm() {
    local ip1 token manager_id n state remote
    ip1=$(node_ip 1)
    state=$(swarm_state 1)
    if [ "$state" != active ]; then
        run on_node 1 swarm init --advertise-addr "$ip1" --listen-addr "$ip1:2377" \
            --dispatcher-heartbeat "$HEARTBEAT" >/dev/null
    fi
    manager_id=$(on_node 1 info --format '{{.Swarm.NodeID}}')
    token=$(on_node 1 swarm join-token -q worker)
    for n in $(seq 2 "$NODES"); do
        state=$(swarm_state "$n")
        if [ "$state" = active ] || [ "$state" = pending ]; then
            remote=$(on_node "$n" info --format '{{range .Swarm.RemoteManagers}}{{.NodeID}} {{end}}')
            [[ " $remote " == *" $manager_id "* ]] && continue
            log "node$n belongs to another swarm: leaving it"
            on_node "$n" swarm leave --force >/dev/null
        fi
        # Not through run(): the join token stays out of logs.
        log "+ docker swarm join --token <worker token> --advertise-addr $(node_ip "$n") $ip1:2377 (node$n)"
        on_node "$n" swarm join --token "$token" --advertise-addr "$(node_ip "$n")" \
            "$ip1:2377" >/dev/null
    done
    wait_nodes_ready
    # A node that left and joined again leaves its old entry behind as Down: drop those.
    local id host status
    while read -r id host status; do
        if [ "$status" = Down ] && on_node 1 node ls --format '{{.Hostname}} {{.Status}}' \
            | grep -qx "$host Ready"; then
            on_node 1 node rm "$id" >/dev/null || true
        fi
    done < <(on_node 1 node ls --format '{{.ID}} {{.Hostname}} {{.Status}}')
}

wait_nodes_ready() {
    local _ ready
    for _ in $(seq 120); do
        ready=$(on_node 1 node ls --format '{{.Hostname}} {{.Status}}' | grep -c ' Ready$' || true)
        [ "$ready" -ge "$NODES" ] && return 0
        sleep 0.5
    done
    on_node 1 node ls >&2
    die "not all $NODES nodes are Ready after 60 s"
}

images_to_ship() {
    if [ -n "${SHOP_LAB_IMAGES:-}" ]; then
        # shellcheck disable=SC2086  # a space-separated list: split it
        printf '%s\n' $SHOP_LAB_IMAGES
        return 0
    fi
    local svc
    for svc in prod coupon front; do
        "$DOCKER" images --format '{{.Repository}}:{{.Tag}}' "$SHOP_NAMESPACE/$svc-service" \
            | grep -v ':<none>$' || true
    done
    echo "$EDGE_IMAGE"
}

load_images() {
    local refs=() ref id n need tar
    declare -A host_id=()
    while read -r ref; do
        [ -n "$ref" ] || continue
        if id=$("$DOCKER" image inspect --format '{{.Id}}' "$ref" 2>/dev/null); then
            refs+=("$ref"); host_id[$ref]=$id
        else
            log "image $ref is not on this host: the nodes will have to pull it"
        fi
    done < <(images_to_ship | sort -u)
    [ ${#refs[@]} -gt 0 ] || { log "no local images to ship (build them first: make build)"; return 0; }
    # Which refs does each node lack (or hold at another image ID)?
    local missing=() nodes=()
    declare -A want=()
    local have
    for n in $(seq "$NODES"); do
        need=0
        # One listing per node: "repo:tag id" lines.
        have=$(on_node "$n" images --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}')
        for ref in "${refs[@]}"; do
            if ! grep -qxF "$ref ${host_id[$ref]}" <<<"$have"; then want[$ref]=1; need=1; fi
        done
        [ "$need" = 1 ] && nodes+=("$n")
    done
    [ ${#nodes[@]} -gt 0 ] || { log "every node has the ${#refs[@]} images"; return 0; }
    missing=("${!want[@]}")
    local start=$SECONDS
    tar=$(mktemp /var/tmp/shop-lab-images.XXXXXX.tar)
    # shellcheck disable=SC2064
    trap "rm -f '$tar'" RETURN
    "$DOCKER" save -o "$tar" "${missing[@]}"
    log "shipping ${#missing[@]} image(s) ($(du -m "$tar" | cut -f1) MB) to node(s) ${nodes[*]}"
    local pids=()
    for n in "${nodes[@]}"; do
        "$DOCKER" exec -i "$(node_name "$n")" docker load -q <"$tar" >/dev/null & pids+=($!)
    done
    local rc=0 p
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    [ "$rc" = 0 ] || die "docker load failed on a node"
    log "images loaded in $((SECONDS - start))s"
}

ensure_overlay_networks() {
    local sock
    sock=$(node_sock 1)
    if [ -S "$sock" ] && [ -w "$sock" ]; then
        DOCKER_HOST=unix://$sock DOCKER=$DOCKER scripts/create-networks.sh backend frontend >/dev/null
    else
        local net
        for net in backend frontend; do
            on_node 1 network inspect "$net" >/dev/null 2>&1 \
                || on_node 1 network create --driver overlay --attachable "$net" >/dev/null
        done
    fi
}

cmd_up() {
    local start=$SECONDS n
    "$DOCKER" info >/dev/null 2>&1 || die "no Docker Engine answers ($DOCKER info failed)"
    ensure_state_dir
    ensure_node_image
    ensure_network
    for n in $(seq "$NODES"); do ensure_node "$n"; done
    for n in $(seq "$NODES"); do wait_engine "$n"; done
    ensure_swarm
    load_images
    ensure_overlay_networks
    log "cluster up in $((SECONDS - start))s"
    cmd_status
    echo
    cmd_env
}

# ---------------------------------------------------------------------------------------
cmd_deploy() {
    local tag=${1:-1} sock
    sock=$(node_sock 1)
    [ -S "$sock" ] || die "no manager socket at $sock: run scripts/cluster.sh up"
    command -v make >/dev/null || die "make is missing (apt-get install make)"
    # The tutorial's own `make deploy`, pointed at the manager, for a kernel without IPVS
    # (dnsrr endpoints, the edge on every node's port 80). It creates the overlay networks
    # too, and deploys with --resolve-image never (the nodes hold the images).
    DOCKER_HOST=unix://$sock run make --no-print-directory deploy NO_IPVS=1 \
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
    up|down|load|deploy|kill|start) lock ;;
esac
case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    load) load_images ;;
    deploy) shift; cmd_deploy "$@" ;;
    kill) shift; cmd_kill "$@" ;;
    start) shift; cmd_start "$@" ;;
    *) sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
