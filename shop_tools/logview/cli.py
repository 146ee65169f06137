"""The shop-logs command: a recorded file, stdin, or the swarm's services followed with
`docker service logs`."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence

from shop_tools.logview.printer import DEFAULT_REORDER_SECONDS, LogPrinter, pretty_stream

DEFAULT_SERVICES = ("prod_app", "coupon_app", "front_app")
DEFAULT_TAIL = "50"


def swarm_command(
    service: str,
    *,
    docker: str = "docker",
    follow: bool = True,
    tail: str | None = DEFAULT_TAIL,
    since: str | None = None,
) -> list[str]:
    # Not --raw: docker's "task@node |" prefix and --timestamps place lines that are not JSON.
    command = [docker, "service", "logs", "--timestamps", "--no-trunc"]
    if follow:
        command.append("--follow")
    if tail is not None:
        command += ["--tail", tail]
    if since is not None:
        command += ["--since", since]
    return [*command, service]


def follow_swarm(
    services: Sequence[str],
    printer: LogPrinter,
    *,
    docker: str = "docker",
    follow: bool = True,
    tail: str | None = DEFAULT_TAIL,
    since: str | None = None,
) -> int:
    """Run one `docker service logs` per service into `printer` until all end; 1 if one failed."""
    processes: list[tuple[str, subprocess.Popen[str]]] = []
    readers: list[threading.Thread] = []
    try:
        for service in services:
            process = subprocess.Popen(
                swarm_command(service, docker=docker, follow=follow, tail=tail, since=since),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # "no such service" shows up in the stream, by source
                stdin=subprocess.DEVNULL,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
            processes.append((service, process))
            assert process.stdout is not None
            reader = threading.Thread(
                target=pretty_stream,
                args=(process.stdout,),
                kwargs={"source": service, "printer": printer},
                name=f"shop-logs-{service}",
                daemon=True,
            )
            reader.start()
            readers.append(reader)
        for reader in readers:
            reader.join()
        if printer.broken:
            return 0  # nobody reads any more; the docker clients are stopped below
        return 1 if any(process.wait() != 0 for _, process in processes) else 0
    finally:
        for _, process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for reader in readers:
            reader.join(timeout=5)  # the pipes end with their processes
        for _, process in processes:
            if process.stdout is not None:
                process.stdout.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shop-logs",
        description="Show the shop's JSON logs as one readable, time-ordered stream.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--swarm", action="store_true", help="follow the services with `docker service logs`"
    )
    source.add_argument("--file", metavar="FILE", help="recorded lines to show (default: stdin)")
    parser.add_argument(
        "--services",
        default=",".join(DEFAULT_SERVICES),
        help="comma-separated swarm services (default: %(default)s)",
    )
    parser.add_argument("--request-id", help="only the lines of this request id, across services")
    parser.add_argument("--raw", action="store_true", help="print the JSON lines unchanged")
    parser.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto",
        help="(auto: on a terminal, unless NO_COLOR is set or TERM=dumb)"
    )
    parser.add_argument("--no-follow", action="store_true", help="--swarm: print what is there")
    parser.add_argument(
        "--tail", default=DEFAULT_TAIL, help="--swarm: last lines per service to start with, or all"
    )
    parser.add_argument("--since", help="--swarm: only lines since, e.g. 10m or a timestamp")
    parser.add_argument(
        "--reorder-seconds",
        type=float,
        default=DEFAULT_REORDER_SECONDS,
        help="how long live lines are held to be put in time order (0.5)",
    )
    parser.add_argument("--docker", default="docker", help="docker client to run (docker)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    services = [s.strip() for s in args.services.split(",") if s.strip()]
    if args.swarm and not services:
        parser.error("--services is empty")
    if args.reorder_seconds < 0:
        parser.error("--reorder-seconds must be >= 0")
    if args.swarm and shutil.which(args.docker) is None:
        print(f"shop-logs: docker client {args.docker!r} not found", file=sys.stderr)
        return 1
    # Input that ends by itself (a file, --no-follow) is sorted as a whole. Live input
    # (--swarm, stdin, which may be a pipe that never ends) goes through the reorder buffer,
    # and whatever is still held when it ends comes out sorted.
    recorded = bool(args.file) or (args.swarm and args.no_follow)
    printer = LogPrinter(
        raw=args.raw,
        request_id=args.request_id,
        color=args.color,
        reorder_seconds=math.inf if recorded else args.reorder_seconds,
    )
    status = 0
    try:
        with printer:
            if args.swarm:
                status = follow_swarm(
                    services,
                    printer,
                    docker=args.docker,
                    follow=not args.no_follow,
                    tail=None if args.tail == "all" else args.tail,
                    since=args.since,
                )
            elif args.file:
                with open(args.file, encoding="utf-8", errors="replace") as fh:
                    pretty_stream(fh, source=os.path.basename(args.file), printer=printer)
            else:
                pretty_stream(sys.stdin, source="stdin", printer=printer)
    except KeyboardInterrupt:
        status = 130
    if printer.broken:
        # Keep the interpreter's final flush of the closed pipe from printing an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return status


if __name__ == "__main__":
    sys.exit(main())
