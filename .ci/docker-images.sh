#!/usr/bin/env bash
# CI: what the Docker tests need and this machine cannot pull. The base images (Python, the
# HAProxy edge, Prometheus for the autoscaling test) are made from Debian packages
# (debootstrap; no registry here) and the wheelhouse (the services' lock and the
# autoscaler's) lets image builds install Python packages without reaching a package index
# from inside a container.
# Both steps are idempotent: an existing image or wheel is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=/usr/bin/docker docker/build-base-image.sh all
scripts/wheelhouse.sh .venv/bin/python
