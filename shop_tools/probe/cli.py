"""shop-probe: call one URL at a fixed rate for a bounded time and report what happened.

    shop-probe http://127.0.0.1:8080/product-detail/2 --rate 20 --duration 30 [--json FILE]

One line per second (under a progress bar on a terminal) and a summary at the end; --json
writes the whole report as data. Exit status: 0 when every request succeeded, 1 when any
failed, 2 on usage errors. The schedule and what counts as a failure: shop_tools.probe.engine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from shop_tools.probe.blocking import BlockingProbe
from shop_tools.probe.display import RunDisplay, report_tables, second_hook, second_line
from shop_tools.probe.engine import DEFAULT_TIMEOUT, check_probe_args, request_cap
from shop_tools.probe.report import ProbeReport


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shop-probe",
        description="Call a URL at a fixed rate for a bounded time; exit 1 if any request failed.",
    )
    parser.add_argument("url", help="e.g. http://127.0.0.1:8080/product-detail/2")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (20)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to run (30)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds before a request counts as failed (2)")
    parser.add_argument("--json", metavar="FILE", type=Path,
                        help="also write the full report as JSON")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow targets other than localhost/loopback (only services you run)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-second progress lines")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_probe_args(
            args.url, args.rate, args.duration, args.timeout, allow_remote=args.allow_remote
        )
    except ValueError as exc:
        parser.error(str(exc))
    return args


def wait_or_interrupted(probe: BlockingProbe) -> ProbeReport:
    """The report of the whole run; Ctrl-C ends it early with what was seen so far."""
    try:
        return probe.wait()
    except KeyboardInterrupt:
        return probe.stop_and_wait()


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    args = parse_args(argv)
    console = console or Console(highlight=False)
    display = RunDisplay(console, request_cap(args.rate, args.duration), keep_lines=True)
    with contextlib.nullcontext() if args.quiet else display:
        probe = BlockingProbe.start(
            args.url, args.rate, args.duration, args.timeout, allow_remote=args.allow_remote,
            on_second=None if args.quiet else second_hook(display, second_line),
        )
        report = wait_or_interrupted(probe)
    console.print(report_tables(report))
    if args.json:
        write_json(args.json, report.to_dict())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
