# shellcheck shell=bash
# The lab's image registry on the manager, with TLS from a CA the lab makes. Sourced by scripts/cluster.sh, which sets the
# variables (LAB, PREFIX, DOCKER, STATE_DIR, ...) and the helpers log, die and run.
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
