# shellcheck shell=bash
# Images for the nodes without a registry: `docker save | docker load`. Sourced by scripts/cluster.sh, which sets the
# variables (LAB, PREFIX, DOCKER, STATE_DIR, ...) and the helpers log, die and run.
#
# Without a registry (SHOP_LAB_REGISTRY=0): every node gets the shop's images with
# `docker save | docker load` (`load`; only what a node lacks, compared by image ID), and
# `deploy` uses --resolve-image never (no digest to pin; a rebuilt image must be shipped
# again). Images not present locally (e.g. EDGE_IMAGE=haproxy:2.8) are then left to the
# nodes to pull, which works where images can be pulled.
#

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
