#!/usr/bin/env bash
# Print what a swarm service runs now, so that a redeploy of its stack can leave it as it is:
#
#   scripts/running.sh SERVICE tag DEFAULT        its image tag (a pinned digest dropped)
#   scripts/running.sh SERVICE replicas DEFAULT   its replica count
#
# DEFAULT when the service does not exist or no engine answers. `make shop-update` uses it:
# `docker stack deploy` applies the whole stack file, so the services it does not update must
# be given the tag and count they run, or the deploy changes them too.
#
# Env: DOCKER (client, default docker)
set -uo pipefail

[ $# -eq 3 ] || { echo "usage: $0 SERVICE tag|replicas DEFAULT" >&2; exit 2; }
service=$1 what=$2 default=$3
DOCKER=${DOCKER:-docker}

case "$what" in
    tag) format='{{.Spec.TaskTemplate.ContainerSpec.Image}}' ;;
    replicas) format='{{if .Spec.Mode.Replicated}}{{.Spec.Mode.Replicated.Replicas}}{{end}}' ;;
    *) echo "usage: $0 SERVICE tag|replicas DEFAULT" >&2; exit 2 ;;
esac

value=$("$DOCKER" service inspect --format "$format" "$service" 2>/dev/null) || value=""
if [ "$what" = tag ] && [ -n "$value" ]; then
    image=${value%@*}       # registry/namespace/name:tag@sha256:... -> .../name:tag
    name=${image##*/}       # the last path part: name:tag (a registry's port is not in it)
    if [[ "$name" == *:* ]]; then value=${name##*:}; else value=latest; fi
fi
echo "${value:-$default}"
