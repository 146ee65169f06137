"""shop-logs: the shop's JSON log lines as one readable, time-ordered stream.

    shop-logs --swarm                         # follow prod_app, coupon_app, front_app
    shop-logs --swarm --request-id 7f3a...    # one product-detail call through all three
    shop-logs --file recorded.log             # or pipe lines in on stdin
    shop-logs --swarm --raw | jq .            # JSON passed through, still merged and filtered

Each service writes one JSON object per line (see the contract: "ts", "service",
"instance", "event", ...). Lines from several sources are merged through a short reorder
buffer and printed by their "ts"; lines that are not JSON are printed as they are,
prefixed with their source, so a crash message is never lost.

Library use (the local runner): one LogPrinter shared by the reader threads,

    with LogPrinter(raw=False, request_id=None) as printer:
        printer.feed("prod", line)            # thread-safe, from any reader thread
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

DEFAULT_SERVICES = ("prod_app", "coupon_app", "front_app")
DEFAULT_REORDER_SECONDS = 0.5
DEFAULT_TAIL = "50"

# `docker service logs [--timestamps]` prefixes each line with "[TS ]task.slot.id@node   | ".
# The task part must not start with "{" so a JSON line containing "@" and " | " is left alone.
_DOCKER_PREFIX = re.compile(
    r"^(?:(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) )?"
    r"(?:(?P<task>[\w.-]+@[\w.-]+) *\| ?)?"
)
_REQUEST_KEYS = {"method", "path", "status", "duration_ms", "client"}
_UPSTREAM_KEYS = {"upstream", "method", "url", "status", "duration_ms", "attempt", "outcome"}
_COMMON_KEYS = {"ts", "level", "service", "instance", "release", "event", "request_id", "message"}
_HIDDEN_KEYS = {"logger"}  # which stdlib logger spoke adds nothing for a reader
_BLOCK_KEYS = ("exception", "traceback", "stack")  # multi-line values go below the line
_TIME_WIDTH = 12

# rich styles; rich decides whether the output takes them (a terminal, NO_COLOR,
# FORCE_COLOR, TERM=dumb, --color).
_SERVICE_STYLES = {"front": "cyan", "prod": "green", "coupon": "magenta"}


def parse_timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    # Docker's RFC3339Nano has up to 9 fractional digits; datetime keeps 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class DockerLine:
    """A line split into what `docker service logs` put in front of it and the message."""

    message: str
    ts: datetime | None = None
    task: str | None = None


def split_docker_prefix(line: str) -> DockerLine:
    line = line.rstrip("\r\n")
    match = _DOCKER_PREFIX.match(line)
    if match is None or match.end() == 0:
        return DockerLine(line)
    if match["task"] is None and not line[match.end() :].lstrip().startswith("{"):
        # A bare leading timestamp is only docker's when JSON follows; otherwise keep the line.
        return DockerLine(line)
    return DockerLine(line[match.end() :], parse_timestamp(match["ts"]), match["task"])


@dataclass(frozen=True, slots=True)
class Record:
    """One JSON log line of a shop service."""

    data: dict[str, Any]
    text: str  # the JSON text as the service wrote it (docker's prefix removed)
    ts: datetime | None  # the record's "ts", else docker's timestamp, else None
    task: str | None = None  # docker's task label when the line came from `docker service logs`

    @property
    def request_id(self) -> str | None:
        value = self.data.get("request_id")
        return value if isinstance(value, str) else None


def parse_line(line: str) -> Record | None:
    """The Record of a JSON log line (with or without docker's prefix); None for anything else."""
    split = split_docker_prefix(line)
    text = split.message.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return Record(data, text, parse_timestamp(data.get("ts")) or split.ts, split.task)


def _clock(ts: datetime | None) -> str:
    if ts is None:
        return " " * _TIME_WIDTH
    return ts.strftime("%H:%M:%S.") + f"{ts.microsecond // 1000:03d}"


def _status_style(status: object) -> str:
    if not isinstance(status, int) or status >= 500:
        return "red"
    return "yellow" if status >= 400 else "green"


def _duration(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.1f}ms"
    return "-ms" if value is None else f"{value}ms"


def _text(value: object, default: str = "-") -> str:
    if value is None or value == "":
        return default
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _extras(record: Mapping[str, Any], known: set[str]) -> str:
    skip = known | _HIDDEN_KEYS | set(_BLOCK_KEYS)
    return " ".join(f"{k}={_text(v)}" for k, v in record.items() if k not in skip)


def _blocks(record: Mapping[str, Any]) -> str:
    texts = [_text(record[key]).rstrip() for key in _BLOCK_KEYS if record.get(key)]
    return "".join("\n" + "\n".join(f"    {row}" for row in text.splitlines()) for text in texts)


def record_text(record: Mapping[str, Any]) -> Text:
    """One readable line for a parsed JSON log record, styled; never fails on odd or missing
    fields."""
    ts = parse_timestamp(record.get("ts"))
    service = _text(record.get("service"), "?")
    release = record.get("release")
    instance = _text(record.get("instance"), "?") + (f" r{_text(release)}" if release else "")
    line = Text.assemble(
        (_clock(ts) if ts else _text(record.get("ts"), "")[:_TIME_WIDTH], "dim"), " ",
        (f"{service:<6}", _SERVICE_STYLES.get(service, "blue")), " ",
        f"{instance:<15}", " ",
        (_text(record.get("request_id")), "dim"), "  ",
    )
    event = record.get("event")
    level = _text(record.get("level"), "info").lower()
    if level in ("error", "critical") and event in ("request", "upstream"):
        line.append(level.upper(), "red").append(" ")
    if event == "request":
        status = record.get("status")
        line.append(f"{_text(record.get('method'))} {_text(record.get('path'))} ")
        line.append(_text(status), _status_style(status))
        line.append(f" {_duration(record.get('duration_ms'))}")
        known = _COMMON_KEYS | _REQUEST_KEYS
    elif event == "upstream":
        status = record.get("status")
        outcome = _text(record.get("outcome"))
        attempt = record.get("attempt")
        retry = isinstance(attempt, int) and attempt > 1
        line.append(f"  -> {_text(record.get('upstream'))} {_text(record.get('method'))} "
                    f"{_text(record.get('url'))} ")
        line.append(_text(status), _status_style(status))
        line.append(f" {_duration(record.get('duration_ms'))} ")
        line.append(f"attempt={_text(attempt)}", "yellow" if retry else "")
        line.append(" ").append(outcome, "green" if outcome == "ok" else "red")
        known = _COMMON_KEYS | _UPSTREAM_KEYS
    else:
        if level != "info":
            line.append(level.upper(), "red" if level in ("error", "critical") else "yellow")
            line.append(" ")
        message = record.get("message")
        line.append(_text(event, "log") + (f": {_text(message)}" if message is not None else ""))
        known = _COMMON_KEYS
    extras = _extras(record, known)
    if extras:
        line.append("  ").append(extras, "dim")
    return line.append(_blocks(record))


def format_record(record: Mapping[str, Any]) -> str:
    """record_text() without styles."""
    return record_text(record).plain


def plain_line_text(source: str, line: DockerLine) -> Text:
    """A line that is not JSON: kept as it is, behind its time (if docker gave one) and source."""
    return Text.assemble((_clock(line.ts), "dim"), " ", (line.task or source, "blue"),
                         f" | {line.message}")


class LogConsole(Console):
    """A rich console that tells its printer when the reader of the output has gone away
    (`shop-logs | head`) instead of ending the process: several threads write to it."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def log_console(out: TextIO | None = None, color: str = "auto") -> LogConsole:
    """The console the lines are printed on: colours when `color` is "always", none when
    "never", and as rich finds the output ("auto": a terminal, NO_COLOR, FORCE_COLOR...)."""
    options: dict[str, Any] = {"force_terminal": True} if color == "always" else {}
    if color == "never":
        options["color_system"] = None
    return LogConsole(file=out, highlight=False, markup=False, emoji=False, **options)


@dataclass(order=True, slots=True)
class _Pending:
    key: float
    seq: int
    arrived: float
    text: Text
    emitted: bool = False


class LogPrinter:
    """Merges lines from several sources into one time-ordered, readable (or raw) stream.

    feed() is thread-safe. A line is held for up to `reorder_seconds` after it arrives so
    lines of other sources with an earlier "ts" can overtake it; use it as a context
    manager (or call start() and close()) so held lines also come out while input is idle.
    `reorder_seconds=math.inf` holds everything until close() and then prints it sorted
    (recorded files); 0 prints each line as it comes.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        raw: bool = False,
        request_id: str | None = None,
        color: str = "auto",
        reorder_seconds: float = DEFAULT_REORDER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = log_console(out, color)
        self.raw = raw
        self.request_id = request_id
        self.reorder_seconds = reorder_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._heap: list[_Pending] = []
        self._arrivals: deque[_Pending] = deque()
        self._seq = itertools.count()
        self._last_key: dict[str, float] = {}
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        self.printed = 0
        self.broken = False  # the output pipe was closed by its reader

    def __enter__(self) -> LogPrinter:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Flush held lines in the background, so they appear even when no new line arrives."""
        if self._flusher is None and 0 < self.reorder_seconds < math.inf:
            self._flusher = threading.Thread(target=self._flush_loop, name="shop-logs", daemon=True)
            self._flusher.start()

    def _flush_loop(self) -> None:
        interval = min(0.1, self.reorder_seconds / 2)
        while not self._closed.wait(interval):
            self.flush()

    def render(self, source: str, line: str) -> tuple[float | None, Text | None]:
        """(sort key, output text) for one line; text None when the filter drops it."""
        record = parse_line(line)
        if record is None:
            if self.request_id is not None or not line.strip():
                return None, None
            split = split_docker_prefix(line)
            key = split.ts.timestamp() if split.ts else None
            text = Text(line.rstrip("\r\n")) if self.raw else plain_line_text(source, split)
            return key, text
        if self.request_id is not None and record.request_id != self.request_id:
            return None, None
        key = record.ts.timestamp() if record.ts else None
        text = Text(record.text) if self.raw else record_text(record.data)
        return key, text

    def feed(self, source: str, line: str) -> None:
        key, text = self.render(source, line)
        if text is None or self.broken:
            return
        now = self._clock()
        with self._lock:
            if key is None:
                # Keep an undated line next to what its source printed just before it.
                first = time.time() if self.reorder_seconds < math.inf else 0.0
                key = self._last_key.get(source, first)
            self._last_key[source] = key
            # After close() nothing would flush a held line: late lines go straight out.
            if self.reorder_seconds <= 0 or self._closed.is_set():
                self._write([text])
                return
            pending = _Pending(key, next(self._seq), now, text)
            heapq.heappush(self._heap, pending)
            self._arrivals.append(pending)
        self.flush()

    def flush(self, *, everything: bool = False) -> None:
        """Print the held lines that are due (or all of them), oldest "ts" first."""
        with self._lock:
            if everything:
                due = [heapq.heappop(self._heap) for _ in range(len(self._heap))]
                self._arrivals.clear()
            else:
                # Everything that waited long enough goes, and with it every held line
                # whose "ts" is not later than the latest of those.
                deadline = self._clock() - self.reorder_seconds
                cutoff = -math.inf
                while self._arrivals and self._arrivals[0].arrived <= deadline:
                    pending = self._arrivals.popleft()
                    if not pending.emitted:
                        cutoff = max(cutoff, pending.key)
                due = []
                while self._heap and self._heap[0].key <= cutoff:
                    pending = heapq.heappop(self._heap)
                    pending.emitted = True
                    due.append(pending)
            self._write([p.text for p in due])

    def _write(self, texts: list[Text]) -> None:
        if not texts or self.broken:
            return
        try:
            for text in texts:
                # soft_wrap: a line is written whole, never wrapped or cut at the width.
                self.console.print(text, soft_wrap=True)
            self.console.file.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): writes happen on reader and flusher threads,
            # so the printer stops quietly and callers check `broken`.
            self.broken = True
            return
        self.printed += len(texts)

    def close(self) -> None:
        self._closed.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        self.flush(everything=True)


def pretty_stream(
    lines: Iterable[str],
    *,
    source: str = "-",
    printer: LogPrinter | None = None,
    out: TextIO | None = None,
    raw: bool = False,
    request_id: str | None = None,
    color: str = "auto",
) -> int:
    """Print `lines` readably; returns how many lines were printed (or fed).

    With `printer`, the lines are fed to it as they come (call this from one reader thread
    per source; the printer merges them). Without, the lines are read to the end and
    printed sorted by time: the right thing for a recorded file.
    """
    if printer is not None:
        count = 0
        for line in lines:
            if printer.broken:
                break
            printer.feed(source, line)
            count += 1
        return count
    own = LogPrinter(out, raw=raw, request_id=request_id, color=color, reorder_seconds=math.inf)
    for line in lines:
        own.feed(source, line)
    own.close()
    return own.printed


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
