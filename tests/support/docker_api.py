"""The Docker API proxy's rule in Python, for the fast tests of its consumers: an allow-list
(stacks/docker-api/<consumer>.lst) read as HAProxy reads the file, and one call judged as
stacks/docker-api/haproxy.cfg judges it. The real HAProxy applies them in
tests/deploy/test_docker_api.py."""

from __future__ import annotations

import re
from pathlib import Path

DOCKER_API = Path(__file__).resolve().parents[2] / "stacks" / "docker-api"


def allow_list(consumer: str, directory: Path = DOCKER_API) -> list[str]:
    """The lines of the consumer's list (<directory>/<consumer>.lst): comments and empty
    lines skipped, leading blanks stripped (HAProxy's pattern files)."""
    text = (directory / f"{consumer}.lst").read_text()
    lines = (line.lstrip(" \t") for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def cleaned_by_the_engine() -> list[str]:
    """What no path may contain, whatever the lists say (haproxy.cfg's acl of that name)."""
    config = (DOCKER_API / "haproxy.cfg").read_text()
    (rule,) = re.findall(r"^\s*acl cleaned_by_the_engine path -m sub (.+)$", config, re.M)
    return rule.split()


def passes(lines: list[str], method: str, path: str) -> bool:
    """Whether the proxy lets "METHOD path" through: `path` as sent, without its query."""
    if any(part in path for part in cleaned_by_the_engine()):
        return False
    return any(re.search(line, f"{method} {path}") for line in lines)
