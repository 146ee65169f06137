"""A stand-in `docker` executable for tests of the shop's scripts: a small Python program
that answers the commands a script sends from a table of services, instead of an engine."""

import json
import stat
import sys
from pathlib import Path
from typing import Any


def stand_in_docker(directory: Path, program: str, services: dict[str, dict[str, Any]]) -> str:
    """Write `program` (run as `program TABLE ARGS...`) and the services table into
    `directory`, and a `docker` wrapper that runs it; return the wrapper's path."""
    table = directory / "services.json"
    table.write_text(json.dumps(services))
    source = directory / "fake_docker.py"
    source.write_text(program)
    wrapper = directory / "docker"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {source} {table} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)
