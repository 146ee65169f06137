"""wrk runs and their figures, read as data: wrk's Lua done() hook (bench/wrk_json.lua) writes
them as JSON."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DONE_SCRIPT = Path(__file__).resolve().parent / "wrk_json.lua"
SOCKET_ERRORS = ("connect", "read", "write", "timeout")
# Runs a command to its end within a timeout (s), with an environment; its stdout.
CommandRunner = Callable[[list[str], float, dict[str, str]], str]


@dataclass
class WrkRun:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx_3xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx_3xx + sum(self.socket_errors.values())

    @classmethod
    def from_done(cls, figures: dict[str, Any]) -> WrkRun:
        """The run as bench/wrk_json.lua wrote it (times in microseconds)."""
        latency, errors = figures["latency_us"], figures["errors"]
        seconds = figures["duration_us"] / 1e6
        return cls(
            requests=int(figures["requests"]),
            seconds=seconds,
            rps=figures["requests"] / seconds if seconds else 0.0,
            p50_ms=latency["p50"] / 1000, p75_ms=latency["p75"] / 1000,
            p90_ms=latency["p90"] / 1000, p99_ms=latency["p99"] / 1000,
            max_ms=latency["max"] / 1000,
            non_2xx_3xx=int(errors["status"]),
            socket_errors={kind: int(errors[kind]) for kind in SOCKET_ERRORS},
        )


def wrk_command(url: str, connections: int, seconds: float) -> list[str]:
    return ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "2s",
            "-s", str(DONE_SCRIPT), url]


def run_wrk(run: CommandRunner, url: str, connections: int, seconds: float) -> WrkRun:
    """One wrk run against `url`, through `run(argv, timeout, env)` (Fleet.run in the bench)."""
    with tempfile.TemporaryDirectory(prefix="shop-wrk-") as directory:
        figures = Path(directory) / "figures.json"
        run(wrk_command(url, connections, seconds), seconds + 20,
            {**os.environ, "WRK_JSON": str(figures)})
        if not figures.exists():
            raise RuntimeError(f"wrk wrote no figures for {url}")
        return WrkRun.from_done(json.loads(figures.read_text()))


def median_run(runs: list[WrkRun]) -> dict[str, float]:
    """Per-figure medians over the rounds (req/s and each percentile on its own)."""
    return {
        name: statistics.median(getattr(run, name) for run in runs)
        for name in ("rps", "p50_ms", "p75_ms", "p90_ms", "p99_ms", "max_ms")
    } | {"errors": sum(run.errors for run in runs), "requests": sum(r.requests for r in runs)}
