#!/usr/bin/env bash
# Fill wheels/ (the wheelhouse in the build context) so that `docker build` installs every
# Python package from it with --no-index and never reaches a package index from inside the
# build. For hosts whose containers cannot reach the index (offline, or a TLS-intercepting
# proxy whose CA the images do not trust). Users with normal access do not need it.
#
# The wheels must fit the image's Python: run this with the same minor version as the base
# image (3.11 for shop/python-base:bookworm, 3.12 for python:3.12-slim), on Linux x86_64.
#
# Usage: scripts/wheelhouse.sh [PYTHON]     (default: python3; env WHEELS_DIR=wheels)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${1:-${PYTHON:-python3}}
WHEELS_DIR=${WHEELS_DIR:-wheels}

mkdir -p "$WHEELS_DIR"
# Hash-checked: the lock files' hashes apply, as they will inside the build (the services'
# lock, the autoscaler image's own and the console image's own).
for lock in requirements.lock autoscaler/requirements.lock console/requirements.lock; do
    "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --require-hashes --no-deps \
        -r "$lock" -w "$WHEELS_DIR"
done
# The project is built inside the image with build isolation: its build backend must be
# in the wheelhouse too.
mapfile -t build_requires < <("$PYTHON" - <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))
PY
)
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check -w "$WHEELS_DIR" "${build_requires[@]}"
echo "$(find "$WHEELS_DIR" -name '*.whl' | wc -l) wheels in $WHEELS_DIR/ for $("$PYTHON" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
