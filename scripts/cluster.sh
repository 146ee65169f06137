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
# Node containers: no --privileged (some hosts refuse it), but the flags that are enough: a
# few capabilities, seccomp/apparmor/systempaths unconfined, the host's cgroup tree, and
# --cgroup-parent so each engine's containers get a cgroup subtree of their own. /run is a
# tmpfs, so a node killed with `kill` starts clean.
#
# One command that changes the cluster at a time: up, down, load, push, deploy, kill and
# start hold a lock on this script file (flock; nothing is created for it) and wait for each
# other. The cluster test holds it for its whole run (and sets SHOP_LAB_LOCK_HELD=1).
#
# Client access: every node's engine also listens on a unix socket in $STATE_DIR/nodeN/
# (a bind-mounted directory, mode 0700, root only), so `export DOCKER_HOST=unix://...`
# makes the host's docker client (and make, and the stack files with their relative
# config paths) talk to the manager. No TCP port is opened: an unauthenticated engine API
# on a TCP port, even on 127.0.0.1, is root for every local user. Without access to that
# directory: `docker exec -it shop-node1 docker ...`.
#
# Images come from a registry, as on a real cluster: `up` runs Debian's docker-registry
# (stacks/registry.yml) on the manager, port $REGISTRY_PORT published in host mode, so the
# registry's address is the manager's fixed lab address, e.g. 172.28.53.11:5000. The same
# name works from this host (the lab network is a local bridge: the host pushes there) and
# from every node (they pull from there). `deploy` pushes the images and deploys with
# --resolve-image always: each service's image is pinned by digest, and a node pulls what it
# lacks when a task lands on it (a restarted or wiped node too).
# Trust: TLS, with a CA that `up` makes for this lab (openssl; the CA's key is deleted once
# it has signed the registry's certificate, for the registry's IP address). Each engine
# reads /etc/docker/certs.d/<address:port>/ca.crt on every push and pull, so no engine is
# restarted or reconfigured: the nodes get $STATE_DIR/certs.d mounted read-only there, and
# the host's engine gets that one file. The CA is trusted for that one address only. No
# insecure-registry setting anywhere: pushing from this host would need one in the host's
# own engine, and a restart of it.
# The two images that must be there before a registry is (the node image, the registry's
# own) need none: the node image is the host's; the registry image goes to the manager with
# `docker save | docker load`.
# Without a registry (SHOP_LAB_REGISTRY=0): every node gets the shop's images with
# `docker save | docker load` (`load`; only what a node lacks, compared by image ID), and
# `deploy` uses --resolve-image never (no digest to pin; a rebuilt image must be shipped
# again). Images not present locally (e.g. EDGE_IMAGE=haproxy:2.8) are then left to the
# nodes to pull, which works where images can be pulled.
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
    set_subnet_prefix "$subnet"
}
set_subnet_prefix() {
    [[ "$1" =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]] \
        || die "network $LAB has subnet $1; this script needs an x.y.z.0/24"
    SUBNET_PREFIX=${BASH_REMATCH[1]}
}
# The subnet of the lab's network, which must exist (commands other than `up`).
read_network() {
    [ "$(label_of network "$LAB")" = "$LAB" ] || die "no lab network $LAB: run scripts/cluster.sh up"
    set_subnet_prefix "$("$DOCKER" network inspect --format '{{(index .IPAM.Config 0).Subnet}}' "$LAB")"
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
        "$DOCKER" container inspect --format '{{range .Mounts}}{{.Destination}} {{end}}' "$name" \
            | grep -qw /etc/docker/certs.d \
            || die "$name was made without the registry's CA mount: scripts/cluster.sh down, then up"
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
    # containerd sockets behind that would stop it from starting again. certs.d holds the
    # lab CA for the registry's address; the engine reads it on every pull.
    run "$DOCKER" run -d --name "$name" --hostname "node$n" \
        --label "$LABEL_KEY=$LAB" \
        --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add MKNOD --cap-add SYS_PTRACE \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --security-opt systempaths=unconfined \
        -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
        -v "$vol:/var/lib/docker" \
        --tmpfs /run \
        -v "$STATE_DIR/node$n:/run/shop-lab" \
        -v "$STATE_DIR/certs.d:/etc/docker/certs.d:ro" \
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
    local refs
    mapfile -t refs < <(images_to_ship | sort -u)
    ship_images "$(seq -s ' ' "$NODES")" "${refs[@]}"
}

# ship_images "N ..." REF...: `docker save | docker load` of the refs those nodes lack (or
# hold at another image ID); refs that are not on this host are left to the nodes to pull.
ship_images() {
    local targets=$1 refs=() ref id n need tar
    shift
    declare -A host_id=()
    for ref in "$@"; do
        [ -n "$ref" ] || continue
        if id=$("$DOCKER" image inspect --format '{{.Id}}' "$ref" 2>/dev/null); then
            refs+=("$ref"); host_id[$ref]=$id
        else
            log "image $ref is not on this host: the nodes will have to pull it"
        fi
    done
    [ ${#refs[@]} -gt 0 ] || { log "no local images to ship (build them first: make build)"; return 0; }
    local missing=() nodes=()
    declare -A want=()
    local have
    for n in $targets; do
        need=0
        # One listing per node: "repo:tag id" lines.
        have=$(on_node "$n" images --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}')
        for ref in "${refs[@]}"; do
            if ! grep -qxF "$ref ${host_id[$ref]}" <<<"$have"; then want[$ref]=1; need=1; fi
        done
        [ "$need" = 1 ] && nodes+=("$n")
    done
    [ ${#nodes[@]} -gt 0 ] || { log "node(s) $targets have the ${#refs[@]} image(s)"; return 0; }
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

# ---------------------------------------------------------------------------------------
# The lab's registry (see "Images" at the top).
registry_addr() { echo "$(node_ip 1):$REGISTRY_PORT"; }

ensure_registry_image() {
    "$DOCKER" image inspect "$REGISTRY_IMAGE" >/dev/null 2>&1 && return 0
    log "registry image $REGISTRY_IMAGE missing: building it (docker/build-base-image.sh registry)"
    DOCKER=$DOCKER REGISTRY_IMAGE=$REGISTRY_IMAGE docker/build-base-image.sh registry
}

# The lab CA and the registry's certificate for its address, made once per lab; the CA
# certificate goes where the nodes' engines (certs.d, mounted) and the host's engine look.
ensure_registry_tls() {
    local dir=$STATE_DIR/registry addr ip
    ip=$(node_ip 1)
    addr=$(registry_addr)
    mkdir -p "$dir" "$STATE_DIR/certs.d"
    chmod 0700 "$dir"
    if [ ! -s "$dir/server.crt" ] || [ "$(cat "$dir/address" 2>/dev/null)" != "$addr" ]; then
        command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"
        log "making the lab CA and the registry's certificate for $ip"
        local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
        openssl req -x509 "${ec[@]}" -days 365 -subj "/CN=$LAB registry CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
            -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
        openssl req -new "${ec[@]}" -subj "/CN=$addr" \
            -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
            -set_serial "0x$(openssl rand -hex 8)" -days 365 -out "$dir/server.crt" \
            -extfile <(printf '%s\n' "subjectAltName=IP:$ip" "extendedKeyUsage=serverAuth" \
                "basicConstraints=critical,CA:FALSE") 2>/dev/null
        # Nothing else is ever signed with this CA: its key goes now.
        rm -f "$dir/ca.key" "$dir/server.csr"
        chmod 0600 "$dir/server.key"
        echo "$addr" >"$dir/address"
    fi
    mkdir -p "$STATE_DIR/certs.d/$addr"
    cp "$dir/ca.crt" "$STATE_DIR/certs.d/$addr/ca.crt"
    # The host's engine pushes: the same CA, for the same address only. The marker file (not
    # read by docker: only *.crt, *.cert and *.key are) tells `down` the entry is this lab's.
    local host_dir=$HOST_CERTS_D/$addr
    if [ -d "$host_dir" ] && [ "$(cat "$host_dir/shop-lab" 2>/dev/null)" != "$LAB" ]; then
        die "$host_dir exists and is not this lab's: set SHOP_LAB_REGISTRY_PORT or SHOP_LAB_SUBNET"
    fi
    mkdir -p "$host_dir"
    cp "$dir/ca.crt" "$host_dir/ca.crt"
    echo "$LAB" >"$host_dir/shop-lab"
}

remove_host_certs() {
    local marker
    for marker in "$HOST_CERTS_D"/*/shop-lab; do
        [ -f "$marker" ] && [ "$(cat "$marker")" = "$LAB" ] || continue
        log "removing $(dirname "$marker")"
        rm -rf "$(dirname "$marker")"
    done
    # Left empty, the directory goes too (docker does not need it).
    [ -d "$HOST_CERTS_D" ] && rmdir --ignore-fail-on-non-empty "$HOST_CERTS_D"
    return 0
}

registry_answers() {
    python3 - "https://$(registry_addr)/v2/" "$STATE_DIR/registry/ca.crt" <<'EOF' 2>/dev/null
import ssl, sys, urllib.request
context = ssl.create_default_context(cafile=sys.argv[2])
with urllib.request.urlopen(sys.argv[1], context=context, timeout=2) as response:
    sys.exit(0 if response.status == 200 else 1)
EOF
}

wait_registry() {
    local _
    for _ in $(seq 120); do
        registry_answers && return 0
        sleep 0.5
    done
    on_node 1 service ps --no-trunc registry_server >&2 || true
    die "the registry at https://$(registry_addr) did not answer within 60 s"
}

# The registry stack on the manager, from its image shipped there (no registry yet to pull
# it from). The secrets' names carry the certificate's hash: a new certificate is a new
# secret (swarm secrets cannot change), which rolls the registry onto it.
deploy_registry() {
    local start=$SECONDS version
    ship_images 1 "$REGISTRY_IMAGE"
    version=$(sha256sum "$STATE_DIR/registry/server.crt" | cut -c1-12)
    DOCKER_HOST=unix://$(node_sock 1) REGISTRY_IMAGE=$REGISTRY_IMAGE REGISTRY_PORT=$REGISTRY_PORT \
        REGISTRY_TLS_CERT=$STATE_DIR/registry/server.crt \
        REGISTRY_TLS_KEY=$STATE_DIR/registry/server.key REGISTRY_TLS_VERSION=$version \
        run "$DOCKER" stack deploy --resolve-image never -c stacks/registry.yml registry >/dev/null
    wait_registry
    log "registry answering at https://$(registry_addr) after $((SECONDS - start))s"
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
    DOCKER_HOST=unix://$sock run make --no-print-directory deploy HOST_CONFIG=/dev/null \
        NO_IPVS=1 "${registry[@]}" \
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
