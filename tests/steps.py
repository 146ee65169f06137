"""Timed steps for the long Docker scenarios: each prints its figures as it ends."""

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any


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
