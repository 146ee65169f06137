#!/usr/bin/env bash
# Create the shop's overlay networks, idempotently:
#   backend   prod, coupon and front (aliases prod.api, coupon.api)
#   frontend  front and the edge proxy (hosts without IPVS)
# Both attachable, so a one-off container can join them to debug:
#   docker run --rm -it --network backend <image> ...
# Prints the names of the networks it created (nothing for those that already existed).
#
# Usage: scripts/create-networks.sh [NETWORK...]    (default: backend frontend)
# Env:   DOCKER (client, default docker)
set -euo pipefail

DOCKER=${DOCKER:-docker}
[ $# -gt 0 ] || set -- backend frontend

for net in "$@"; do
    if "$DOCKER" network inspect "$net" >/dev/null 2>&1; then
        echo "network $net exists" >&2
        continue
    fi
    echo "+ $DOCKER network create --driver overlay --attachable $net" >&2
    "$DOCKER" network create --driver overlay --attachable "$net" >/dev/null
    echo "$net"
done
