"""shop-load: a bounded load on the shop's entry point on this machine, to watch it scale.

    shop-load --rate 200 --duration 30 [--url http://127.0.0.1/product-detail/2]

The same open-loop schedule as shop-probe (request n at start + n/rate, a new connection per
request), on a loopback address only, for at most MAX_DURATION seconds. One progress line,
rewritten every second on a terminal (one line per second otherwise): requests sent in the
last second, failures, p99, and the service's replicas as `docker service ls` shows them
(running/desired). Exit status 0 when every request succeeded, 1 otherwise, 2 on usage errors.

A connection per request costs the client CPU as well as the shop: on two cores shared with
the shop, one process holds a few hundred requests per second. Beyond that the client falls
behind its schedule, and the summary's schedule lag says so (the client, not the shop).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

from shop_tools.probe.blocking import BlockingProbe
from shop_tools.probe.cli import wait_or_interrupted, write_json
from shop_tools.probe.display import RunDisplay, failed_text, ms, report_tables, second_hook
from shop_tools.probe.engine import check_probe_args, is_loopback_target, request_cap
from shop_tools.probe.report import SecondSummary

MAX_DURATION = 600.0  # s: a demo load, never an open-ended one
REPLICAS_POLL_SECONDS = 1.0
DOCKER_TIMEOUT = 5.0


def service_replicas(docker: str, service: str) -> str:
    """`running/desired` of a swarm service (`docker service ls`), or "?" when unknown."""
    try:
        result = subprocess.run(
            [docker, "service", "ls", "--filter", f"name={service}",
             "--format", "{{.Name}} {{.Replicas}}"],
            capture_output=True, text=True, timeout=DOCKER_TIMEOUT, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for line in result.stdout.splitlines():
        name, _, replicas = line.partition(" ")
        if name == service:  # the filter matches name prefixes too
            return replicas.split(" ")[0]
    return "?"


class ReplicaWatcher:
    """Polls a service's replicas in a thread of its own until stopped."""

    def __init__(self, read: Callable[[], str], interval: float = REPLICAS_POLL_SECONDS) -> None:
        self.latest = "?"
        self._read = read
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shop-load-replicas", daemon=True)

    def __enter__(self) -> ReplicaWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(DOCKER_TIMEOUT + 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.latest = self._read()
            self._stop.wait(self._interval)


def progress_line(second: SecondSummary, service: str, replicas: str) -> Text:
    """shop-load's line for one second: sent, failed, p99, the service's replicas, totals."""
    return Text.assemble(
        f"[{second.second + 1:>4}s] sent {second.sent:>4}/s  ",
        failed_text(second.failed),
        f"  p99 {ms(second.p99_ms)} ms  {service} {replicas} replicas  "
        f"(total {second.total}, failed {second.total_failed})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shop-load",
        description="A bounded load on the shop's local entry point, with live progress.",
    )
    parser.add_argument("--url", default="http://127.0.0.1/product-detail/2",
                        help="a loopback URL of the shop (default http://127.0.0.1/product-detail/2)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (200)")
    parser.add_argument("--duration", type=float, default=30.0,
                        help=f"seconds (30, at most {MAX_DURATION:g})")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds before a request counts as failed (2)")
    parser.add_argument("--service", default="front_app", help="swarm service to show (front_app)")
    parser.add_argument("--docker", default="docker", help="docker client (docker)")
    parser.add_argument("--json", metavar="FILE", type=Path,
                        help="also write the report as JSON (shop-probe's, plus the replicas "
                             "at the end as `replicas_at_end`)")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not is_loopback_target(args.url):
        parser.error(f"{args.url}: a load goes only to the shop on this machine (a loopback URL)")
    try:
        check_probe_args(args.url, args.rate, args.duration, args.timeout)
        if args.duration > MAX_DURATION:
            raise ValueError(f"duration must be <= {MAX_DURATION:g} s, got {args.duration:g}")
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    args = parse_args(argv)
    console = console or Console(highlight=False)
    display = RunDisplay(console, request_cap(args.rate, args.duration), keep_lines=False)
    with ReplicaWatcher(lambda: service_replicas(args.docker, args.service)) as watcher, \
            display:
        probe = BlockingProbe.start(
            args.url, args.rate, args.duration, args.timeout,
            on_second=second_hook(
                display, lambda second: progress_line(second, args.service, watcher.latest)),
        )
        report = wait_or_interrupted(probe)
    final = watcher.latest
    console.print(report_tables(report, "shop-load"))
    console.print(f"{args.service} replicas at the end: {final}", soft_wrap=True)
    if args.json:
        write_json(args.json, {**report.to_dict(), "replicas_at_end": final})
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
