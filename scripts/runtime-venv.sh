#!/usr/bin/env bash
# A venv with the runtime dependencies only, installed as the image installs them
# (requirements.lock, hash-checked, no test tools), for measuring the services as deployed:
#
#   scripts/runtime-venv.sh .venv-runtime
#   .venv/bin/python -m bench --python .venv-runtime/bin/python
#
# The services run from the source tree (`python -m`), so the project itself is not installed.
# Why not the dev venv: it holds the test tools' packages too (rich, pygments), and httpx loads
# its command-line interface when they are importable: 3 MiB more in the front's memory.
set -euo pipefail
dir=${1:-.venv-runtime}
python=${PYTHON:-python3}
"$python" -m venv "$dir"
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
    -r "$(dirname "$0")/../requirements.lock"
echo "$dir/bin/python"
