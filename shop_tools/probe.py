"""shop-probe: call one URL at a fixed rate for a bounded time and report what happened.

    shop-probe http://127.0.0.1:8080/product-detail/2 --rate 20 --duration 30 [--json FILE]

The schedule is open-loop: request n is sent at start + n/rate whether or not earlier
requests have answered, so a stalled service shows up as timeouts instead of quietly
lowering the request rate. Each request opens its own connection (no keep-alive), the
way many independent users would, so a rolling update cannot hide behind one pinned
connection. The run ends after --duration seconds or rate*duration requests, whichever
comes first, plus at most --timeout seconds for requests still in flight.

A request succeeded when it got a 2xx answer whose body is JSON (every shop answer is): a
2xx with something else (a proxy's HTML page, a cut-off body) is a `bad_body` failure.

One progress line is printed per second and a summary at the end. Exit status: 0 when
every request succeeded, 1 when any failed, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import json
import math
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

MAX_RATE = 1000.0  # one asyncio client cannot hold an open-loop schedule much beyond this
RELEASE_WINDOW_SECONDS = 5
MAX_FAILURE_SAMPLES = 20
_STOP_POLL_SECONDS = 0.05
_NO_HEADER = "-"

Progress = Callable[[str], None]
# Called once per finished second with that second's figures (as in ProbeReport.timeline)
# plus the run's totals so far ("total", "total_failed"): for callers that print their own.
SecondHook = Callable[[dict[str, Any]], None]


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (q in 0..1); None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def is_loopback_target(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_probe_args(
    url: str, rate: float, duration: float, timeout: float, *, allow_remote: bool = False
) -> None:
    """Raise ValueError when the probe must not run with these arguments."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    if not allow_remote and not is_loopback_target(url):
        raise ValueError(
            f"refusing to probe {parts.hostname!r}: only localhost/loopback targets are "
            "allowed unless allow_remote is set (--allow-remote); probe only services you run"
        )
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be > 0 and <= {MAX_RATE:g} requests/s, got {rate}")
    if not 0 < duration <= 24 * 3600:
        raise ValueError(f"duration must be > 0 and <= 1 day, got {duration}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0, got {timeout}")


def request_cap(rate: float, duration: float) -> int:
    # The small epsilon keeps 20/s * 1.5 s at 30 requests despite float rounding.
    return max(1, math.ceil(rate * duration - 1e-9))


@dataclass
class ProbeReport:
    url: str
    rate: float
    duration: float
    elapsed: float = 0.0
    total: int = 0
    ok: int = 0
    degraded: int = 0  # 2xx responses flagged with X-Degraded (front served without coupons)
    stopped_early: bool = False
    failures: dict[str, int] = field(default_factory=dict)
    latencies: dict[str, float | None] = field(default_factory=dict)  # p50/p90/p99/max, ms
    releases: Counter[str] = field(default_factory=Counter)
    instances: Counter[str] = field(default_factory=Counter)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    failure_samples: list[dict[str, Any]] = field(default_factory=list)
    # When the probe started, on time.monotonic()'s clock: lines its seconds up with events
    # the caller times itself (a node killed at a known moment).
    started_at: float = 0.0
    # (when it was sent, in s since the start; latency in ms) of every answered request.
    answers: list[tuple[float, float]] = field(default_factory=list, repr=False)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def latency_percentile(self, q: float, start: float, end: float) -> float | None:
        """Percentile q (0..1) of the latencies, in ms, of the answered requests sent between
        `start` and `end` s after the probe's start; None when there are none."""
        return percentile(sorted(ms for sent, ms in self.answers if start <= sent < end), q)

    def release_spans(self) -> dict[str, dict[str, int]]:
        """Per release: first and last second it was seen, and how many responses carried it."""
        spans: dict[str, dict[str, int]] = {}
        for entry in self.timeline:
            for release, count in entry["releases"].items():
                span = spans.setdefault(
                    release, {"first_second": entry["second"], "last_second": 0, "count": 0}
                )
                span["last_second"] = entry["second"]
                span["count"] += count
        return spans

    def release_windows(self, window: int = RELEASE_WINDOW_SECONDS) -> list[dict[str, Any]]:
        """Release counts per `window`-second slice of the run."""
        windows: dict[int, Counter[str]] = {}
        for entry in self.timeline:
            windows.setdefault(entry["second"] // window, Counter()).update(entry["releases"])
        return [
            {"start": k * window, "end": (k + 1) * window, "releases": dict(sorted(c.items()))}
            for k, c in sorted(windows.items())
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "rate": self.rate,
            "duration": self.duration,
            "elapsed": round(self.elapsed, 3),
            "total": self.total,
            "ok": self.ok,
            "failed": self.failed,
            "degraded": self.degraded,
            "stopped_early": self.stopped_early,
            "failures": dict(sorted(self.failures.items())),
            "latencies_ms": self.latencies,
            "releases": dict(sorted(self.releases.items())),
            "instances": dict(sorted(self.instances.items())),
            "release_spans": self.release_spans(),
            "release_windows": self.release_windows(),
            "timeline": self.timeline,
            "failure_samples": self.failure_samples,
        }

    def summary(self) -> str:
        lines = [
            f"shop-probe {self.url}: {self.total} requests in {self.elapsed:.1f} s "
            f"at {self.rate:g}/s, {self.ok} ok, {self.failed} failed"
            + (" (stopped early)" if self.stopped_early else ""),
            "failures: " + (_counts(self.failures) if self.failures else "none"),
            "latency ms: "
            + "  ".join(f"{k} {_ms(self.latencies.get(k))}" for k in ("p50", "p90", "p99", "max")),
        ]
        if self.degraded:
            lines.append(f"degraded responses (X-Degraded): {self.degraded}")
        spans = self.release_spans()
        lines.append(
            "releases: "
            + (
                "  ".join(
                    f"{release}={span['count']} "
                    f"(seen {span['first_second']}s-{span['last_second']}s)"
                    for release, span in sorted(spans.items())
                )
                or "none seen"
            )
        )
        if self.instances:
            lines.append("instances: " + _counts(self.instances))
        windows = self.release_windows()
        if windows:
            lines.append(f"releases per {RELEASE_WINDOW_SECONDS} s:")
            lines.extend(
                f"  {w['start']:>5}s-{w['end']}s".ljust(16) + (_counts(w["releases"]) or "-")
                for w in windows
            )
        for sample in self.failure_samples[:5]:
            lines.append(
                f"  failure at {sample['second']}s {sample['kind']} "
                f"request_id={sample['request_id']} {sample['detail']}"
            )
        return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


@dataclass
class _Second:
    sent: int = 0
    completed: int = 0
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    releases: Counter[str] = field(default_factory=Counter)
    instances: Counter[str] = field(default_factory=Counter)

    def as_entry(self, second: int) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "second": second,
            "sent": self.sent,
            "completed": self.completed,
            "ok": self.ok,
            "failed": sum(self.failures.values()),
            "failures": dict(sorted(self.failures.items())),
            "p50_ms": _round(percentile(ordered, 0.50)),
            "p99_ms": _round(percentile(ordered, 0.99)),
            "releases": dict(sorted(self.releases.items())),
            "instances": dict(sorted(self.instances.items())),
        }


def _is_json(response: httpx.Response) -> bool:
    try:
        response.json()
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return False
    return True


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class _Recorder:
    """Collects outcomes; only touched from the probe's event loop thread."""

    def __init__(
        self,
        report: ProbeReport,
        t0: float,
        progress: Progress | None,
        on_second: SecondHook | None = None,
    ) -> None:
        self.report = report
        self.t0 = t0
        self.progress = progress
        self.on_second = on_second
        self.seconds: dict[int, _Second] = {}
        self.latencies: list[float] = []
        self.completed = 0
        self.printed_upto = 0  # seconds [0, printed_upto) have had their progress line

    def _second(self, now: float) -> _Second:
        return self.seconds.setdefault(max(0, int(now - self.t0)), _Second())

    def sent(self, now: float) -> None:
        self._second(now).sent += 1

    def response(self, started: float, now: float, response: httpx.Response) -> None:
        latency_ms = (now - started) * 1000.0
        self.report.answers.append((round(started - self.t0, 4), latency_ms))
        bucket = self._second(now)
        release = response.headers.get("x-release", _NO_HEADER)
        instance = response.headers.get("x-instance", _NO_HEADER)
        bucket.completed += 1
        bucket.latencies.append(latency_ms)
        bucket.releases[release] += 1
        bucket.instances[instance] += 1
        self.latencies.append(latency_ms)
        self.report.releases[release] += 1
        self.report.instances[instance] += 1
        self.report.total += 1
        self.completed += 1
        if not response.is_success:
            self._failed(bucket, started, now, f"status_{response.status_code}", response, "")
        elif not _is_json(response):
            self._failed(bucket, started, now, "bad_body", response, "")
        else:
            bucket.ok += 1
            self.report.ok += 1
            if "x-degraded" in response.headers:
                self.report.degraded += 1

    def failure(
        self, started: float, now: float, kind: str, request_id: str, exc: BaseException
    ) -> None:
        bucket = self._second(now)
        bucket.completed += 1
        self.report.total += 1
        self.completed += 1
        detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
        self._failed(bucket, started, now, kind, None, detail, request_id)

    def _failed(
        self,
        bucket: _Second,
        started: float,
        now: float,
        kind: str,
        response: httpx.Response | None,
        detail: str,
        request_id: str = "",
    ) -> None:
        bucket.failures[kind] += 1
        self.report.failures[kind] = self.report.failures.get(kind, 0) + 1
        if len(self.report.failure_samples) < MAX_FAILURE_SAMPLES:
            if response is not None:
                request_id = response.request.headers.get("x-request-id", "")
                detail = response.text[:200]
            self.report.failure_samples.append(
                {
                    "second": int(now - self.t0),
                    "sent_at": round(started - self.t0, 3),
                    "ended_at": round(now - self.t0, 3),
                    "kind": kind,
                    "request_id": request_id,
                    "detail": detail,
                }
            )

    def print_progress(self, upto: int) -> None:
        """Emit the progress lines of every finished second before `upto`."""
        for second in range(self.printed_upto, upto):
            bucket = self.seconds.get(second, _Second())
            if self.progress is not None:
                self.progress(self._progress_line(second, bucket))
            if self.on_second is not None:
                self.on_second(
                    {
                        **bucket.as_entry(second),
                        "total": self.report.total,
                        "total_failed": self.report.failed,
                    }
                )
        self.printed_upto = max(self.printed_upto, upto)

    def _progress_line(self, second: int, bucket: _Second) -> str:
        ordered = sorted(bucket.latencies)
        failed = sum(bucket.failures.values())
        kinds = f" ({_counts(bucket.failures)})" if failed else ""
        return (
            f"[{second + 1:>4}s] sent {bucket.sent:>4}  done {bucket.completed:>4}  "
            f"failed {failed}{kinds}  p50 {_ms(percentile(ordered, 0.5))} ms  "
            f"p99 {_ms(percentile(ordered, 0.99))} ms  "
            f"releases {_counts(bucket.releases) or '-'}  "
            f"(total {self.report.total}, failed {self.report.failed})"
        )

    def finish(self, elapsed: float) -> ProbeReport:
        last = max([int(elapsed), *self.seconds])
        self.print_progress(last + 1)
        ordered = sorted(self.latencies)
        self.report.elapsed = elapsed
        self.report.latencies = {
            "p50": _round(percentile(ordered, 0.50)),
            "p90": _round(percentile(ordered, 0.90)),
            "p99": _round(percentile(ordered, 0.99)),
            "max": _round(ordered[-1] if ordered else None),
        }
        self.report.timeline = [self.seconds.get(s, _Second()).as_entry(s) for s in range(last + 1)]
        return self.report


async def _probe(
    url: str,
    rate: float,
    duration: float,
    request_timeout: float,
    should_stop: Callable[[], bool],
    progress: Progress | None,
    on_recorder: Callable[[_Recorder], None],
    on_second: SecondHook | None = None,
) -> ProbeReport:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    recorder = _Recorder(
        ProbeReport(url=url, rate=rate, duration=duration, started_at=time.monotonic()),
        t0,
        progress,
        on_second,
    )
    on_recorder(recorder)
    run_id = secrets.token_hex(3)
    in_flight: set[asyncio.Task[None]] = set()

    async def one(client: httpx.AsyncClient, n: int) -> None:
        # An id per request lets a failure be followed through the logs (shop-logs --request-id).
        request_id = f"probe-{run_id}-{n}"
        started = loop.time()
        recorder.sent(started)
        try:
            # httpx timeouts apply per phase; this bounds the whole call.
            async with asyncio.timeout(request_timeout):
                response = await client.get(url, headers={"X-Request-ID": request_id})
        except (TimeoutError, httpx.TimeoutException) as exc:
            recorder.failure(started, loop.time(), "timeout", request_id, exc)
        except httpx.ConnectError as exc:
            recorder.failure(started, loop.time(), "connect", request_id, exc)
        except httpx.TransportError as exc:
            recorder.failure(started, loop.time(), "reset", request_id, exc)
        except Exception as exc:  # an unexpected error is a failed request, not a crash
            recorder.failure(started, loop.time(), "other", request_id, exc)
        else:
            recorder.response(started, loop.time(), response)

    async def ticker() -> None:
        second = 1
        while True:
            await asyncio.sleep(max(0.0, t0 + second - loop.time()))
            recorder.print_progress(second)
            second += 1

    client = httpx.AsyncClient(
        # No pooled connections: every request connects anew, like a separate user would.
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        timeout=httpx.Timeout(request_timeout),
        headers={"User-Agent": "shop-probe", "Connection": "close"},
        follow_redirects=False,
        trust_env=False,  # never route the probe through a proxy from the environment
    )
    ticker_task = asyncio.create_task(ticker())
    try:
        async with client:
            interval = 1.0 / rate
            for n in range(request_cap(rate, duration)):
                due = t0 + n * interval
                if due - t0 >= duration:
                    break
                # ASYNC110 ignored: the stop signal is a threading.Event set by another
                # thread; polling it every 50 ms is the bridge into this loop.
                while not should_stop() and loop.time() < due:  # noqa: ASYNC110
                    await asyncio.sleep(min(due - loop.time(), _STOP_POLL_SECONDS))
                if should_stop():
                    recorder.report.stopped_early = True
                    break
                task = asyncio.create_task(one(client, n))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.wait(set(in_flight))
    finally:
        ticker_task.cancel()
    return recorder.finish(loop.time() - t0)


class ProbeHandle:
    """A probe running in a background thread; see start_probe()."""

    def __init__(
        self,
        url: str,
        rate: float,
        duration: float,
        timeout: float,
        stop: threading.Event | None,
        progress: Progress | None,
        on_second: SecondHook | None = None,
    ) -> None:
        self._stop = threading.Event()
        self._on_second = on_second
        self._user_stop = stop
        self._recorder: _Recorder | None = None
        self._report: ProbeReport | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(url, rate, duration, timeout, progress),
            name="shop-probe",
            daemon=True,
        )
        self._thread.start()

    def _should_stop(self) -> bool:
        return self._stop.is_set() or (self._user_stop is not None and self._user_stop.is_set())

    def _run(
        self, url: str, rate: float, duration: float, timeout: float, progress: Progress | None
    ) -> None:
        try:
            self._report = asyncio.run(
                _probe(
                    url, rate, duration, timeout, self._should_stop, progress, self._attach,
                    self._on_second,
                )
            )
        except BaseException as exc:  # handed to the thread that calls wait()
            self._error = exc
        finally:
            self._done.set()

    def _attach(self, recorder: _Recorder) -> None:
        self._recorder = recorder

    @property
    def completed(self) -> int:
        """Requests finished so far (answered or failed); cheap to poll from another thread."""
        return self._recorder.completed if self._recorder is not None else 0

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> ProbeReport:
        # Waiting on an Event, not Thread.join(): on Python 3.11 a Ctrl-C inside join() can
        # leave the thread marked as finished while it still runs.
        if not self._done.wait(timeout):
            raise TimeoutError("probe still running")
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._report is not None
        return self._report

    def stop_and_wait(self, timeout: float | None = None) -> ProbeReport:
        """Stop sending, wait for requests in flight (bounded by the timeout), return the report."""
        self.stop()
        return self.wait(timeout)


def start_probe(
    url: str,
    rate: float,
    duration: float,
    timeout: float = 2.0,
    stop: threading.Event | None = None,
    progress: Progress | None = print,
    *,
    allow_remote: bool = False,
    on_second: SecondHook | None = None,
) -> ProbeHandle:
    """Start probing in a background thread; ValueError for arguments check_probe_args refuses."""
    check_probe_args(url, rate, duration, timeout, allow_remote=allow_remote)
    return ProbeHandle(url, rate, duration, timeout, stop, progress, on_second)


def run_probe(
    url: str,
    rate: float,
    duration: float,
    timeout: float = 2.0,
    stop: threading.Event | None = None,
    progress: Progress | None = print,
    *,
    allow_remote: bool = False,
) -> ProbeReport:
    """Probe `url` at `rate` requests/s for `duration` s (or until `stop` is set); the report."""
    # A thread of its own keeps this usable from code that already runs an event loop.
    return start_probe(
        url, rate, duration, timeout, stop, progress, allow_remote=allow_remote
    ).wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shop-probe",
        description="Call a URL at a fixed rate for a bounded time; exit 1 if any request failed.",
    )
    parser.add_argument("url", help="e.g. http://127.0.0.1:8080/product-detail/2")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (20)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to run (30)")
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="seconds before a request counts as failed (2)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    progress = None if args.quiet else functools.partial(print, flush=True)
    handle = start_probe(
        args.url,
        args.rate,
        args.duration,
        args.timeout,
        progress=progress,
        allow_remote=args.allow_remote,
    )
    try:
        report = handle.wait()
    except KeyboardInterrupt:
        # Ctrl-C still ends with a summary of what was seen so far.
        report = handle.stop_and_wait()
    print(report.summary(), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report.to_dict(), fh, indent=2, ensure_ascii=False)
            fh.write("\n")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
