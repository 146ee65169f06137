"""The probe's engine: call one URL on an open-loop schedule from any running event loop.

    probe = Probe(url, rate=20, duration=30, on_request=..., on_second=...)
    report = await probe.run()          # in a task; probe.stop() (same loop) ends it early

The schedule is open-loop: request n is sent at start + n/rate whether or not earlier
requests have answered, so a stalled service shows up as timeouts instead of quietly
lowering the request rate. Each request opens its own connection (no keep-alive), the way
many independent users would, so a rolling update cannot hide behind one pinned connection.
A run ends after `duration` seconds or rate*duration requests, whichever comes first, plus at
most `timeout` seconds for requests still in flight.

A request succeeded when it got a 2xx answer whose body is JSON (every shop answer is): a
2xx with something else (a proxy's HTML page, a cut-off body) is a `bad_body` failure.

Written on anyio, so it runs in asyncio (uvloop included, e.g. in a FastAPI lifespan) or trio;
shop_tools.probe.blocking runs it from synchronous code.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import anyio
import httpx

from shop_tools.probe.report import ProbeReport, Recorder, RequestResult, SecondSummary

MAX_RATE = 1000.0  # one asyncio client cannot hold an open-loop schedule much beyond this
DEFAULT_TIMEOUT = 2.0  # s: a client's patience (the README's latency budget)

RequestHook = Callable[[RequestResult], None]
SecondHook = Callable[[SecondSummary], None]


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


def _is_json(response: httpx.Response) -> bool:
    try:
        response.json()
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return False
    return True


def _failure_kind(exc: Exception) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.TransportError):
        return "reset"
    return "other"  # an unexpected error is a failed request, not a crash


class Probe:
    """One bounded probe run. `on_request` hears of every finished request, `on_second` of
    every finished second; both are called in the probe's event loop and must not block."""

    def __init__(
        self,
        url: str,
        rate: float,
        duration: float,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        allow_remote: bool = False,
        on_request: RequestHook | None = None,
        on_second: SecondHook | None = None,
    ) -> None:
        check_probe_args(url, rate, duration, timeout, allow_remote=allow_remote)
        self.url, self.rate, self.duration, self.timeout = url, rate, duration, timeout
        self.on_request = on_request
        self.on_second = on_second
        self.completed = 0  # requests finished so far (answered or failed)
        self._stop_requested = False
        self._stopped: anyio.Event | None = None  # made in run(): it belongs to that loop
        self._run_id = secrets.token_hex(3)

    @property
    def planned(self) -> int:
        """How many requests the whole schedule sends."""
        return request_cap(self.rate, self.duration)

    def stop(self) -> None:
        """Stop sending; run() returns once the requests in flight have finished. Call it
        from the probe's event loop (the blocking wrapper does that for other threads)."""
        self._stop_requested = True
        if self._stopped is not None:
            self._stopped.set()

    async def run(self) -> ProbeReport:
        self._stopped = anyio.Event()
        if self._stop_requested:
            self._stopped.set()
        t0 = anyio.current_time()
        recorder = Recorder(ProbeReport(self.url, self.rate, self.duration,
                                        started_at=time.monotonic()))
        seconds: list[SecondSummary] = []

        def second_over(second: int) -> None:
            summary = recorder.second(second)
            seconds.append(summary)
            if self.on_second is not None:
                self.on_second(summary)

        async def one(client: httpx.AsyncClient, n: int) -> None:
            # An id per request lets a failure be followed through the logs (shop-logs).
            request_id = f"probe-{self._run_id}-{n}"
            sent = anyio.current_time() - t0
            recorder.sent(sent)
            try:
                # httpx timeouts apply per phase; this bounds the whole call.
                with anyio.fail_after(self.timeout):
                    response = await client.get(self.url, headers={"X-Request-ID": request_id})
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
                result = RequestResult(n, request_id, sent, anyio.current_time() - t0,
                                       _failure_kind(exc), detail=detail)
            else:
                ended = anyio.current_time() - t0
                failure = None
                if not response.is_success:
                    failure = f"status_{response.status_code}"
                elif not _is_json(response):
                    failure = "bad_body"
                result = RequestResult(
                    n, request_id, sent, ended, failure, status=response.status_code,
                    release=response.headers.get("x-release"),
                    instance=response.headers.get("x-instance"),
                    degraded=failure is None and "x-degraded" in response.headers,
                    detail="" if failure is None else response.text[:200],
                )
            recorder.finished(result)
            self.completed += 1
            if self.on_request is not None:
                self.on_request(result)

        async def tick() -> None:
            second = 1
            while True:
                await anyio.sleep_until(t0 + second)
                second_over(second - 1)
                second += 1

        client = httpx.AsyncClient(
            # No pooled connections: every request connects anew, like a separate user would.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
            timeout=httpx.Timeout(self.timeout),
            headers={"User-Agent": "shop-probe", "Connection": "close"},
            follow_redirects=False,
            trust_env=False,  # never route the probe through a proxy from the environment
        )
        async with client, anyio.create_task_group() as ticking:
            ticking.start_soon(tick)
            async with anyio.create_task_group() as requests:
                interval = 1.0 / self.rate
                for n in range(self.planned):
                    due = t0 + n * interval
                    if due - t0 >= self.duration:
                        break
                    with anyio.move_on_after(due - anyio.current_time()):
                        await self._stopped.wait()
                    if self._stopped.is_set():
                        recorder.report.stopped_early = True
                        break
                    requests.start_soon(one, client, n)
            # Every request has finished: the seconds not reported yet are reported now.
            ticking.cancel_scope.cancel()
        elapsed = anyio.current_time() - t0
        for second in range(len(seconds), max(int(elapsed), recorder.last_second) + 1):
            second_over(second)
        return recorder.finish(elapsed, seconds)
