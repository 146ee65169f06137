# shellcheck shell=bash
# The lab's machines: its network, the node containers and their engines, the swarm. Sourced by scripts/cluster.sh, which sets the
# variables (LAB, PREFIX, DOCKER, STATE_DIR, ...) and the helpers log, die and run.
#
# Node containers: no --privileged (some hosts refuse it), but the flags that are enough: a
# few capabilities, seccomp/apparmor/systempaths unconfined, the host's cgroup tree, and
# --cgroup-parent so each engine's containers get a cgroup subtree of their own. /run is a
# tmpfs, so a node killed with `kill` starts clean.
#
#
# Client access: every node's engine also listens on a unix socket in $STATE_DIR/nodeN/
# (a bind-mounted directory, mode 0700, root only), so `export DOCKER_HOST=unix://...`
# makes the host's docker client (and make, and the stack files with their relative
# config paths) talk to the manager. No TCP port is opened: an unauthenticated engine API
# on a TCP port, even on 127.0.0.1, is root for every local user. Without access to that
# directory: `docker exec -it shop-node1 docker ...`.
#

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
