"""What a probe saw: each request's result, each second's figures, and the run's report.

No terminal and no event loop here: the engine feeds a Recorder, callers read a ProbeReport
(as data, or as JSON through `to_dict()`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

RELEASE_WINDOW_SECONDS = 5
MAX_FAILURE_SAMPLES = 20
NO_HEADER = "-"  # a response without X-Release or X-Instance


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (q in 0..1); None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One finished request of a probe."""

    n: int  # its place in the schedule
    request_id: str  # sent as X-Request-ID: `shop-logs --request-id` follows it
    sent_at: float  # s since the probe's start
    ended_at: float
    # None when it succeeded (2xx with a JSON body); else status_<code>, bad_body, timeout,
    # connect, reset or other.
    failure: str | None
    status: int | None = None  # None when no answer came
    release: str | None = None  # X-Release of the answer
    instance: str | None = None  # X-Instance of the answer
    degraded: bool = False  # a success flagged X-Degraded (the front served without coupons)
    detail: str = ""  # a failure's body (first 200 characters) or exception

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def answered(self) -> bool:
        return self.status is not None

    @property
    def latency_ms(self) -> float:
        return (self.ended_at - self.sent_at) * 1000.0


@dataclass(frozen=True, slots=True)
class SecondSummary:
    """The figures of one finished second of a run (`second` 0 is the first), with the
    run's totals so far."""

    second: int
    sent: int
    completed: int
    ok: int
    failures: dict[str, int]
    p50_ms: float | None
    p99_ms: float | None
    releases: dict[str, int]
    instances: dict[str, int]
    total: int
    total_failed: int

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def timeline_entry(self) -> dict[str, Any]:
        """The second as ProbeReport.timeline (and the JSON report) keeps it."""
        return {
            "second": self.second,
            "sent": self.sent,
            "completed": self.completed,
            "ok": self.ok,
            "failed": self.failed,
            "failures": self.failures,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "releases": self.releases,
            "instances": self.instances,
        }


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
    # How late the client sent its requests against start + n/rate (p99/max, ms): high when
    # the client itself fell behind (short of CPU), whatever the shop did.
    schedule_lag: dict[str, float | None] = field(default_factory=dict)
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
            "schedule_lag_ms": self.schedule_lag,
            "releases": dict(sorted(self.releases.items())),
            "instances": dict(sorted(self.instances.items())),
            "release_spans": self.release_spans(),
            "release_windows": self.release_windows(),
            "timeline": self.timeline,
            "failure_samples": self.failure_samples,
        }


@dataclass
class _Bucket:
    """What happened in one second of the run."""

    sent: int = 0
    completed: int = 0
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    releases: Counter[str] = field(default_factory=Counter)
    instances: Counter[str] = field(default_factory=Counter)


class Recorder:
    """Adds up a run's results into per-second buckets and its report (one thread only)."""

    def __init__(self, report: ProbeReport) -> None:
        self.report = report
        self._buckets: dict[int, _Bucket] = {}
        self._latencies: list[float] = []
        self._lags: list[float] = []  # ms

    def _bucket(self, at: float) -> _Bucket:
        return self._buckets.setdefault(max(0, int(at)), _Bucket())

    def sent(self, at: float, lag: float) -> None:
        """A request sent `at` s after the start, `lag` s after its place in the schedule."""
        self._bucket(at).sent += 1
        self._lags.append(lag * 1000.0)

    def finished(self, result: RequestResult) -> None:
        report, bucket = self.report, self._bucket(result.ended_at)
        bucket.completed += 1
        report.total += 1
        if result.answered:
            latency = result.latency_ms
            report.answers.append((round(result.sent_at, 4), latency))
            self._latencies.append(latency)
            bucket.latencies.append(latency)
            release, instance = result.release or NO_HEADER, result.instance or NO_HEADER
            for counts in (bucket.releases, report.releases):
                counts[release] += 1
            for counts in (bucket.instances, report.instances):
                counts[instance] += 1
        if result.failure is None:
            bucket.ok += 1
            report.ok += 1
            report.degraded += result.degraded
            return
        bucket.failures[result.failure] += 1
        report.failures[result.failure] = report.failures.get(result.failure, 0) + 1
        if len(report.failure_samples) < MAX_FAILURE_SAMPLES:
            report.failure_samples.append({
                "second": int(result.ended_at),
                "sent_at": round(result.sent_at, 3),
                "ended_at": round(result.ended_at, 3),
                "kind": result.failure,
                "request_id": result.request_id,
                "detail": result.detail,
            })

    def second(self, second: int) -> SecondSummary:
        """The figures of `second` (call once it is over), with the totals so far."""
        bucket = self._buckets.get(second, _Bucket())
        ordered = sorted(bucket.latencies)
        return SecondSummary(
            second=second,
            sent=bucket.sent,
            completed=bucket.completed,
            ok=bucket.ok,
            failures=dict(sorted(bucket.failures.items())),
            p50_ms=rounded(percentile(ordered, 0.50)),
            p99_ms=rounded(percentile(ordered, 0.99)),
            releases=dict(sorted(bucket.releases.items())),
            instances=dict(sorted(bucket.instances.items())),
            total=self.report.total,
            total_failed=self.report.failed,
        )

    @property
    def last_second(self) -> int:
        return max(self._buckets, default=0)

    def finish(self, elapsed: float, seconds: list[SecondSummary]) -> ProbeReport:
        """The report, with `seconds` (every second of the run, in order) as its timeline."""
        ordered = sorted(self._latencies)
        self.report.elapsed = elapsed
        self.report.latencies = {
            "p50": rounded(percentile(ordered, 0.50)),
            "p90": rounded(percentile(ordered, 0.90)),
            "p99": rounded(percentile(ordered, 0.99)),
            "max": rounded(ordered[-1] if ordered else None),
        }
        lags = sorted(self._lags)
        self.report.schedule_lag = {
            "p99": rounded(percentile(lags, 0.99)),
            "max": rounded(lags[-1] if lags else None),
        }
        self.report.timeline = [summary.timeline_entry() for summary in seconds]
        return self.report
