"""The probe's engine: call one URL on an open-loop schedule from a running asyncio loop.

    probe = Probe(url, rate=20, duration=30, on_request=..., on_second=...)
    report = await probe.run()          # in a task; probe.stop() (same loop) ends it early

The schedule is open-loop: request n is sent at start + n/rate whether or not earlier
requests have answered, so a stalled service shows up as timeouts instead of quietly
lowering the request rate. Each request opens its own connection (no keep-alive), the way
many independent users would, so a rolling update cannot hide behind one pinned connection.
A run ends after `duration` seconds or rate*duration requests, whichever comes first, plus at
most `timeout` seconds for requests still in flight. How late each request left against its
place in the schedule is the report's schedule lag: a client that falls behind (short of
CPU) shows there, not as the shop failing.

A request succeeded when it got a 2xx answer whose body is JSON (every shop answer is): a
2xx with something else (a proxy's HTML page, a cut-off body) is a `bad_body` failure.

The client is aiohttp (a session per run), which runs on asyncio only: run() needs anyio's
asyncio backend (uvloop included, e.g. in a FastAPI lifespan), not trio.
shop_tools.probe.blocking runs it from synchronous code.
"""

from __future__ import annotations

import ipaddress
import json
import math
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
import anyio

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


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return False
    return True


def _failure_kind(exc: Exception) -> str:
    # aiohttp's own timeouts (connect, read, the whole call) are TimeoutErrors too; they are
    # also connection errors, so they are looked for first.
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, no such name
        return "connect"
    if isinstance(exc, aiohttp.ClientError):  # reset, closed, cut off, not HTTP
        return "reset"
    return "other"  # an unexpected error is a failed request, not a crash


def _session(timeout: float, user_agent: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            # No pooled connections and no bound on them: every request connects anew, like
            # a separate user would, whatever is still in flight.
            force_close=True,
            limit=0,
            # A new lookup per connection, as a separate user's client makes: cached addresses
            # would keep sending to a replica that DNS no longer lists.
            use_dns_cache=False,
        ),
        # The whole call (connect, send, the answer's head and body), not each phase; never
        # rounded up to the loop's next whole second, as aiohttp does past ceil_threshold.
        timeout=aiohttp.ClientTimeout(total=timeout, ceil_threshold=math.inf),
        # "close" makes the server close first, so its side keeps the TIME_WAIT sockets,
        # not the client's ports.
        headers={"User-Agent": user_agent, "Connection": "close"},
        cookie_jar=aiohttp.DummyCookieJar(),  # each request as a new visitor
        trust_env=False,  # never route the probe through a proxy from the environment
    )


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
        name: str = "probe",
    ) -> None:
        check_probe_args(url, rate, duration, timeout, allow_remote=allow_remote)
        self.url, self.rate, self.duration, self.timeout = url, rate, duration, timeout
        self.name = name  # who asks: request ids <name>-<run>-<n>, User-Agent shop-<name>
        self.on_request = on_request
        self.on_second = on_second
        self.completed = 0  # requests finished so far (answered or failed)
        self._stop_requested = False
        self._sending: anyio.CancelScope | None = None  # run()'s schedule, while it sends
        self._run_id = secrets.token_hex(3)

    @property
    def planned(self) -> int:
        """How many requests the whole schedule sends."""
        return request_cap(self.rate, self.duration)

    def stop(self) -> None:
        """Stop sending; run() returns once the requests in flight have finished. Call it
        from the probe's event loop (the blocking wrapper does that for other threads)."""
        self._stop_requested = True
        if self._sending is not None:
            self._sending.cancel()

    async def run(self) -> ProbeReport:
        t0 = anyio.current_time()
        interval = 1.0 / self.rate
        recorder = Recorder(ProbeReport(self.url, self.rate, self.duration,
                                        started_at=time.monotonic()))
        seconds: list[SecondSummary] = []

        def second_over(second: int) -> None:
            summary = recorder.second(second)
            seconds.append(summary)
            if self.on_second is not None:
                self.on_second(summary)

        async def one(session: aiohttp.ClientSession, n: int) -> None:
            # An id per request lets a failure be followed through the logs (shop-logs).
            request_id = f"{self.name}-{self._run_id}-{n}"
            sent = anyio.current_time() - t0
            recorder.sent(sent, lag=sent - n * interval)
            try:
                async with session.get(self.url, headers={"X-Request-ID": request_id},
                                       allow_redirects=False) as response:
                    body = await response.read()
                    ended = anyio.current_time() - t0
                    failure = None
                    if not 200 <= response.status < 300:
                        failure = f"status_{response.status}"
                    elif not _is_json(body):
                        failure = "bad_body"
                    result = RequestResult(
                        n, request_id, sent, ended, failure, status=response.status,
                        release=response.headers.get("X-Release"),
                        instance=response.headers.get("X-Instance"),
                        degraded=failure is None and "X-Degraded" in response.headers,
                        detail="" if failure is None else (
                            await response.text(errors="replace"))[:200],
                    )
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
                result = RequestResult(n, request_id, sent, anyio.current_time() - t0,
                                       _failure_kind(exc), detail=detail)
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

        session = _session(self.timeout, user_agent=f"shop-{self.name}")
        async with session, anyio.create_task_group() as ticking:
            ticking.start_soon(tick)
            async with anyio.create_task_group() as requests:
                # stop() cancels the sending, not the requests already sent.
                with anyio.CancelScope() as self._sending:
                    if self._stop_requested:
                        self._sending.cancel()
                    for n in range(self.planned):
                        due = t0 + n * interval
                        if due - t0 >= self.duration:
                            break
                        await anyio.sleep_until(due)
                        requests.start_soon(one, session, n)
                recorder.report.stopped_early = self._sending.cancel_called
                self._sending = None
            # Every request has finished: the seconds not reported yet are reported now.
            ticking.cancel_scope.cancel()
        elapsed = anyio.current_time() - t0
        for second in range(len(seconds), max(int(elapsed), recorder.last_second) + 1):
            second_over(second)
        return recorder.finish(elapsed, seconds)
