#!/usr/bin/env bash
# Print the replica count a redeploy of SERVICE's stack should carry.
#
# `docker stack deploy` sets every service's replica count to the stack file's on every deploy
# (docker/cli #2235), as `kubectl apply` does to a Deployment under an autoscaler. While the
# autoscaler runs (service autoscale_scaler), the count of a service with autoscale labels is
# the autoscaler's: a redeploy (make deploy, update, scale) keeps at least the count the
# service has now, max(REPLICAS, current), so an update at peak load does not drop capacity;
# scaling down stays the autoscaler's job. In every other case (no autoscaler, no labels,
# service not deployed yet, no engine answering) it prints REPLICAS unchanged.
#
# Usage: scripts/autoscaled-replicas.sh SERVICE REPLICAS      e.g. front_app 2
# Env:   DOCKER (client, default docker), AUTOSCALER_SERVICE (default autoscale_scaler)
set -uo pipefail

[ $# -eq 2 ] || { echo "usage: $0 SERVICE REPLICAS" >&2; exit 2; }
service=$1 requested=$2
DOCKER=${DOCKER:-docker}
autoscaler=${AUTOSCALER_SERVICE:-autoscale_scaler}
label=io.swarm-shop.autoscale.max

# Empty unless the service exists, is replicated and carries the label.
current=$("$DOCKER" service inspect --format \
    "{{if index .Spec.Labels \"$label\"}}{{.Spec.Mode.Replicated.Replicas}}{{end}}" \
    "$service" 2>/dev/null) || current=""

if [[ "$current" =~ ^[0-9]+$ ]] && [[ "$requested" =~ ^[0-9]+$ ]] \
    && [ "$current" -gt "$requested" ] \
    && "$DOCKER" service inspect "$autoscaler" >/dev/null 2>&1; then
    echo "$service is autoscaled ($autoscaler runs) and has $current replicas:" \
        "deploying it with REPLICAS=$current, not $requested" >&2
    echo "$current"
else
    echo "$requested"
fi
