"""Shared by the deployment tests: which docker client to use, how a missing Docker is
treated (skip on a workstation, failure in CI), and the figures the swarm test prints at
the end of the run."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import steps
from tests.support.swarm_deployment import Deployment, deployed_shop

FIGURES = pytest.StashKey[list[dict[str, Any]]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The README's walk (test_readme_walk.py) deploys under the stack and network names the
    shared deployment (`shop`) uses: it runs before the first test that sets that up."""
    walk = [item for item in items if item.path.name == "test_readme_walk.py"]
    if not walk:
        return
    rest = [item for item in items if item not in walk]
    first = next((i for i, item in enumerate(rest) if "shop" in getattr(item, "fixturenames", ())),
                 len(rest))
    items[:] = rest[:first] + walk + rest[first:]


@pytest.fixture(scope="session")
def missing_docker() -> Callable[[str], None]:
    """Skip with a reason, or fail when CI=true: CI must not pass by skipping."""
    return steps.missing_docker


def _has_stack_config(client: str) -> bool:
    # `docker stack config` exists from CLI 23.0 on (Debian's 20.10 client lacks it).
    try:
        probe = subprocess.run(
            [client, "stack", "config", "--help"], capture_output=True, text=True, timeout=30
        )
    except OSError:
        return False
    return probe.returncode == 0 and "compose-file" in probe.stdout


@pytest.fixture(scope="session")
def stack_config_client() -> str:
    """A docker client that has `docker stack config` (no engine needed): $DOCKER or PATH's."""
    candidates = [os.environ.get("DOCKER"), shutil.which("docker"), "/usr/bin/docker"]
    for client in dict.fromkeys(c for c in candidates if c):
        if _has_stack_config(client):
            return client
    steps.missing_docker("no docker client with `docker stack config` (CLI >= 23.0)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    """Figures (step, seconds, requests, failures) printed in the terminal summary."""
    return request.config.stash.setdefault(FIGURES, [])


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(FIGURES, [])
    if not rows:
        return
    terminalreporter.section("swarm end-to-end figures")
    for row in rows:
        terminalreporter.write_line("  ".join(f"{key}={value}" for key, value in row.items()))


@pytest.fixture(scope="package")
def shop(
    request: pytest.FixtureRequest,
    figures: list[dict[str, Any]],
    missing_docker: Callable[[str], None],
) -> Iterator[Deployment]:
    """The shop deployed once for every swarm test of this folder (building the images is the
    slow part); removed after the folder's last test, before the three-node cluster test."""
    with deployed_shop(request, figures, missing_docker) as shop:
        yield shop
