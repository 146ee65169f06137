#!/usr/bin/env bash
# Wait until the console (stack `console`, service console_app) answers on the node that runs
# it, then print its URL: http://<that node's swarm address>:PORT/ (127.0.0.1 on a swarm made
# with --advertise-addr 127.0.0.1; the manager's lab address in the three-node lab).
# At most TIMEOUT seconds (default 120); exit 1 with the task's state if it never answers.
#
# Usage: scripts/console-url.sh [PORT]     (env DOCKER, TIMEOUT)
set -euo pipefail
DOCKER=${DOCKER:-docker}
PORT=${1:-8090}
TIMEOUT=${TIMEOUT:-120}

answers() {
    python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
    sys.exit(0 if response.status == 200 else 1)
PY
}

start=$SECONDS
while [ $((SECONDS - start)) -lt "$TIMEOUT" ]; do
    node=$("$DOCKER" service ps console_app --filter desired-state=running \
        --format '{{.Node}} {{.CurrentState}}' 2>/dev/null | awk '$2 == "Running" {print $1; exit}')
    if [ -n "$node" ]; then
        addr=$("$DOCKER" node inspect "$node" --format '{{.Status.Addr}}')
        if answers "http://$addr:$PORT/health"; then
            echo "console: http://$addr:$PORT/ (ready after $((SECONDS - start)) s)"
            exit 0
        fi
    fi
    sleep 1
done
echo "console: no answer on port $PORT within $TIMEOUT s" >&2
"$DOCKER" service ps --no-trunc console_app console_docker-api >&2 || true
exit 1
