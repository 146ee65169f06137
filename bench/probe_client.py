"""What the probe costs its own machine: `python -m bench.probe_client URL --rate R`.

    python -m bench.probe_client http://127.0.0.1:8080/product-detail/2 --rate 200 --duration 20

Runs shop_tools.probe (a new connection per request, as shop-probe, shop-load and the swarm
tests send them) against a loopback URL, in this process and nothing else, and prints the
client's own figures: CPU per request and the share of one core it took (getrusage of this
process, user + system), and how late it sent its requests against start + n/rate (the
report's schedule lag), beside what the target answered. A client short of CPU shows as a
growing lag; a shop that fails shows as failed requests with a small lag.

Bounded: at most 120 s (MAX_DURATION), only to loopback (127.0.0.1, ::1, localhost).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from shop_tools.probe.blocking import BlockingProbe
from shop_tools.probe.engine import DEFAULT_TIMEOUT, check_probe_args

MAX_DURATION = 120.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(url: str, rate: float, duration: float,
            timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """One probe run; the client's CPU and schedule lag, and the answers, as data."""
    cpu, wall = cpu_seconds(), time.monotonic()
    report = BlockingProbe.start(url, rate, duration, timeout).wait()
    cpu, wall = cpu_seconds() - cpu, time.monotonic() - wall
    return {
        "url": url,
        "rate": rate,
        "duration": duration,
        "requests": report.total,
        "failed": report.failed,
        "failures": report.failures,
        "cpu_ms_per_request": round(cpu * 1000 / max(report.total, 1), 3),
        "cpu_share_of_a_core": round(cpu / wall, 3),
        "schedule_lag_ms": report.schedule_lag,
        "latencies_ms": report.latencies,
    }


def figures_table(figures: dict[str, Any]) -> Table:
    table = Table(title=f"probe client, {figures['rate']:g} req/s for {figures['duration']:g} s"
                        f" -> {figures['url']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    lag, latency = figures["schedule_lag_ms"], figures["latencies_ms"]
    for name, value in [
        ("requests", f"{figures['requests']:,}"),
        ("failed", f"{figures['failed']:,} {figures['failures'] or ''}".strip()),
        ("client CPU per request", f"{figures['cpu_ms_per_request']:.2f} ms"),
        ("client CPU, share of one core", f"{figures['cpu_share_of_a_core']:.2f}"),
        ("schedule lag p99 / max", f"{lag['p99']} / {lag['max']} ms"),
        ("latency p99 / max", f"{latency['p99']} / {latency['max']} ms"),
    ]:
        table.add_row(name, value)
    return table


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.probe_client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="a loopback URL, e.g. http://127.0.0.1:8080/product-detail/2")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second (100)")
    parser.add_argument("--duration", type=float, default=15.0,
                        help=f"seconds (15, at most {MAX_DURATION:g})")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    try:
        check_probe_args(args.url, args.rate, args.duration, DEFAULT_TIMEOUT)
        if args.duration > MAX_DURATION:
            raise ValueError(f"duration must be <= {MAX_DURATION:g} s")
    except ValueError as exc:
        parser.error(str(exc))
    figures = measure(args.url, args.rate, args.duration)
    console = console or Console(highlight=False)
    if args.json:
        console.print_json(json.dumps(figures))
    else:
        console.print(figures_table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
