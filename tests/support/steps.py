"""Shared by the long Docker scenarios (swarm end to end, three-node cluster): how a missing
Docker is treated, polling, and timed steps that print their figures as they end."""

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_docker(reason: str) -> None:
    """Skip with a reason on a workstation; fail when CI=true: CI must not pass by skipping."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing Docker fails the run)", pytrace=False)
    pytest.skip(reason)


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}", pytrace=False)
        time.sleep(interval)


@contextlib.contextmanager
def timed_step(prefix: str, name: str, say: Callable[[str], None],
               figures: list[dict[str, Any]], /, **fixed: Any) -> Iterator[dict[str, Any]]:
    """Time a step; what the body adds to the row is printed (`[prefix] k=v ...`) and kept.

    Positional-only parameters: any keyword, `tag=` or `name=` included, is a figure.
    """
    row: dict[str, Any] = {"step": name, **fixed}
    say(f"[{prefix}] {name} ...")
    start = time.monotonic()
    try:
        yield row
    finally:
        row["seconds"] = round(time.monotonic() - start, 1)
        say(f"[{prefix}] " + "  ".join(f"{key}={value}" for key, value in row.items()))
        figures.append(row)
