"""The front's GETs to its upstreams: two aiohttp sessions, hedged tries, one deadline.

A call is a race of at most 1 + SHOP_UPSTREAM_RETRIES tries under one whole-call deadline
(SHOP_UPSTREAM_TIMEOUT_SECONDS). The first try starts at once. A try that has not answered after
SHOP_UPSTREAM_HEDGE_DELAY_SECONDS gets a hedge: a second try beside it, on a new connection
(so, on a swarm, another replica: see Sessions), and the first good answer wins while the others
are cancelled. Hedges are load, so they are budgeted (HedgeBudget); when the budget is spent, a
try that is still silent after SHOP_UPSTREAM_ATTEMPT_TIMEOUT_SECONDS gets its hedge anyway. No
try is abandoned because it is slow: on a node short of CPU, the slow first try may still be the
first to answer. A try that fails in a way that means "that replica is gone or going" is tried
again at once; a 5xx once; a 4xx never. See the README's latency budget.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from front_service.metrics import FrontMetrics
from front_service.resolver import CachingResolver
from front_service.settings import FrontSettings
from shop_common.context import access_fields, current_request_id
from shop_common.logs import Logger

T = TypeVar("T")

# Failures that mean "the replica this try went to is gone, going or stuck": worth another try
# of a GET, which gets another connection (and, on swarm, most likely another replica).
RETRYABLE = frozenset({"connect", "connect_timeout", "disconnected", "reset", "payload"})

# At most one early hedge per HEDGE_EVERY calls, after a burst of HEDGE_BURST: when everything
# is slow (the whole node short of CPU), hedging every call would double the load that made it
# slow. One in ten covers what one stalled replica out of several costs.
HEDGE_EVERY = 10
HEDGE_BURST = 10

# At the deadline, one short look at what the running tries have already received. When the
# whole node stalls (seen under heavy contention: every process of every container held for
# most of a second), the answers arrive in the sockets while the front is not running; when it
# runs again, uvloop (libuv) fires the due timers before it polls the sockets, so without this
# look the deadline would throw away answers that came in time.
LAST_LOOK_SECONDS = 0.02


def failure_kind(exc: BaseException) -> str:
    """Name a failed try: connect, connect_timeout, disconnected, reset, payload, invalid_body
    (HTTP the client cannot read), too_large, or other."""
    if isinstance(exc, BodyTooLarge):
        return "too_large"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect_timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "payload"  # the body broke off, or its content-encoding does not decode
    if isinstance(exc, aiohttp.ClientResponseError):
        return "invalid_body"  # not HTTP, a bad status line, framing or oversized head
    if isinstance(exc, aiohttp.ClientOSError):
        return "reset"
    return "other"


class UpstreamError(Exception):
    """An upstream call that did not produce a usable answer."""

    def __init__(self, upstream: str, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.upstream = upstream
        self.kind = kind
        self.status = status
        self.message = message


class BodyTooLarge(Exception):
    """An upstream body over SHOP_MAX_UPSTREAM_BODY_BYTES (declared, or as it arrived)."""


class HedgeBudget:
    """A token bucket counted in calls: each call earns one, a hedge costs HEDGE_EVERY, and at
    most HEDGE_BURST hedges' worth is saved up (Finagle's retry budget, for hedges)."""

    def __init__(self) -> None:
        self.calls = HEDGE_BURST * HEDGE_EVERY

    def earn(self) -> None:
        self.calls = min(HEDGE_BURST * HEDGE_EVERY, self.calls + 1)

    def spend(self) -> bool:
        if self.calls < HEDGE_EVERY:
            return False
        self.calls -= HEDGE_EVERY
        return True


@dataclass
class Sessions:
    """The front's two HTTP client sessions, over one resolver, for the process's life.

    `pooled` keeps connections alive and carries every call's first try. `fresh` opens a new
    connection for each request and closes it after: hedges and retries go there. A replica
    whose node died leaves its kept-alive connections in the pool looking healthy, and a
    pool hands them out again and again (most recent first), so a hedge taken from the pool
    can land on the same dead replica as the try it backs up. A new connection takes the
    next address in turn and races the one after it when a connect does not complete
    (happy eyeballs): it reaches a live replica.
    """

    pooled: aiohttp.ClientSession
    fresh: aiohttp.ClientSession


def pool_bounds(bound: int) -> tuple[int, int]:
    """How an upstream's connection bound is shared: (kept-alive, new per request). A quarter
    for hedges and retries: they are at most one call in ten when all is well, and when an
    upstream fails they must not take the connections its first tries need."""
    fresh = max(1, bound // 4)
    return bound - fresh, fresh


@asynccontextmanager
async def open_sessions(settings: FrontSettings) -> AsyncIterator[Sessions]:
    # Addresses come from memory, refreshed beside the requests (front_service.resolver);
    # aiohttp's own cache would look an expired name up on the request path.
    resolver = CachingResolver(aiohttp.ThreadedResolver(),
                               refresh_after=settings.upstream_dns_cache_seconds)
    try:
        async with _session(settings, resolver, keep_alive=True) as pooled, \
                _session(settings, resolver, keep_alive=False) as fresh:
            yield Sessions(pooled, fresh)
    finally:
        await resolver.close()


def _session(settings: FrontSettings, resolver: CachingResolver,
             keep_alive: bool) -> aiohttp.ClientSession:
    kept_alive, fresh = pool_bounds(settings.upstream_max_connections)
    connector = aiohttp.TCPConnector(
        # The bound is per upstream (prod.api, coupon.api): a failing one cannot take the
        # other's connections. The two sessions share it (pool_bounds).
        limit=0,
        limit_per_host=kept_alive if keep_alive else fresh,
        resolver=resolver,
        use_dns_cache=False,
        keepalive_timeout=settings.keepalive_expiry_seconds if keep_alive else None,
        force_close=not keep_alive,
        # A connect on an overlay network completes in well under a millisecond; one still
        # pending after 50 ms is most likely to a node that died, so the next address starts
        # racing it rather than waiting for the connect timeout.
        happy_eyeballs_delay=0.05,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # Only the connect timeout per address here; the whole call's deadline is the race's
        # own (UpstreamClient._race).
        timeout=aiohttp.ClientTimeout(total=None,
                                      sock_connect=settings.upstream_connect_timeout_seconds),
        headers={"User-Agent": f"shop-front/{settings.release}"},
        cookie_jar=aiohttp.DummyCookieJar(),  # backends set no cookies; none are kept
        trust_env=False,  # no proxy from the environment between the front and its APIs
    )


async def warm_up(session: aiohttp.ClientSession, base_urls: tuple[str, ...], seconds: float,
                  log: Logger) -> None:
    """Before the front listens: look each upstream up and open a connection to it (GET
    /health), so that its first requests find addresses in memory. Bounded, and only ever
    logged: an upstream that is not there yet does not stop the front from starting."""

    async def greet(base_url: str) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(seconds), session.get(f"{base_url}/health") as response:
                await response.read()
                status: int | str = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = failure_kind(exc) if not isinstance(exc, TimeoutError) else "timeout"
        log.info("warmup", url=f"{base_url}/health", status=status,
                 duration_ms=_ms_since(started))

    if seconds > 0:
        await asyncio.gather(*(greet(url) for url in base_urls))


@dataclass
class _Try:
    number: int
    kind: str  # first, hedge (started beside a slower try), retry (after a failed one)
    started: float
    task: "asyncio.Task[tuple[int, bytes]]" = field(repr=False)


@dataclass
class _Call:
    """One upstream call's tries, for its log lines and its part of the access line."""

    upstream: str
    url: str
    started: float
    tries: list[_Try] = field(default_factory=list)
    running: dict["asyncio.Task[tuple[int, bytes]]", _Try] = field(default_factory=dict)
    hedges: int = 0
    status: int | None = None
    won: bool = False


class UpstreamClient:
    """GETs over the shared session: hedged tries under one deadline, a body size limit, a
    per-call summary on the request's access line, one log line per try that was not the
    call's plain single success, and metrics per try."""

    def __init__(self, sessions: Sessions, *, hedge_delay: float,
                 attempt_timeout: float, total_timeout: float, retries: int,
                 max_body_bytes: int, log: Logger, metrics: FrontMetrics) -> None:
        self.sessions = sessions
        self.hedge_delay = hedge_delay
        self.attempt_timeout = attempt_timeout
        self.total_timeout = total_timeout
        self.max_tries = 1 + retries
        self.max_body_bytes = max_body_bytes
        self.log = log
        self.metrics = metrics
        self.budgets: dict[str, HedgeBudget] = {}

    async def get(self, upstream: str, url: str, parse: Callable[[int, bytes], T]) -> T:
        """The parsed answer to a GET; raises UpstreamError when no usable answer came in time.

        `parse` turns status and body into the result, raising UpstreamError for an answer it
        cannot use (kind `invalid_body`, or `http_<status>`).
        """
        call = _Call(upstream, url, time.perf_counter())
        outcome = "ok"
        try:
            return await self._race(call, parse)
        except TimeoutError:
            outcome = "timeout"
            raise UpstreamError(upstream, "timeout",
                                f"{upstream} service gave no answer within "
                                f"{self.total_timeout:g} s") from None
        except UpstreamError as exc:
            outcome = exc.kind
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"  # the request no longer needs it (the product call failed)
            raise
        finally:
            # Tries still running lost the race, or were cut by the deadline or the request.
            loser = "lost" if call.won else outcome if outcome == "timeout" else "cancelled"
            for task, running in call.running.items():
                task.cancel()
                self._ended(call, running, None, loser)
            access_fields().setdefault("upstreams", {})[upstream] = {
                "status": call.status, "ms": _ms_since(call.started), "tries": len(call.tries),
                "hedges": call.hedges, "outcome": outcome}

    async def _race(self, call: _Call, parse: Callable[[int, bytes], T]) -> T:
        budget = self.budgets.setdefault(call.upstream, HedgeBudget())
        budget.earn()
        headers = {"X-Request-ID": current_request_id()}
        running = call.running
        failure: UpstreamError | None = None
        retried_5xx = False
        next_kind: str | None = "first"
        next_at = 0.0
        deadline = call.started + self.total_timeout
        last_look = False
        while True:
            now = time.perf_counter()
            if now >= deadline:
                if last_look or not running:
                    raise TimeoutError
                last_look, deadline = True, now + LAST_LOOK_SECONDS
            if last_look:
                next_kind = None  # no new try: only what has arrived
            if next_kind is not None and now >= next_at:
                if next_kind == "hedge" and not budget.spend():
                    # No budget for an early hedge: the attempt timeout's backstop instead.
                    next_kind, next_at = "backstop", call.tries[-1].started + self.attempt_timeout
                else:
                    started = self._start(call, next_kind, headers)
                    running[started.task] = started
                    next_kind, next_at = self._after_start(call, now)
            if not running:
                if next_kind is None:
                    assert failure is not None  # nothing runs and nothing is due: all failed
                    raise failure
                await asyncio.sleep(min(next_at, deadline) - now)
                continue
            wake_at = deadline if next_kind is None else min(next_at, deadline)
            done, _ = await asyncio.wait(running, timeout=max(0.0, wake_at - now),
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                ended = running.pop(task)
                try:
                    status, body = task.result()
                except (aiohttp.ClientError, TimeoutError, BodyTooLarge) as exc:
                    kind = failure_kind(exc)
                    self._ended(call, ended, None, kind)
                    failure = UpstreamError(call.upstream, kind,
                                            _failure_message(call.upstream, kind))
                    if kind not in RETRYABLE:
                        raise failure from exc
                    next_kind, next_at = self._retry(call, next_kind, next_at)
                    continue
                call.status = status
                if status >= 500:
                    self._ended(call, ended, status, "http_5xx")
                    failure = _rejected(parse, status, body)
                    if retried_5xx:
                        next_kind = None  # a second 5xx: no more tries, only those running
                    else:
                        retried_5xx = True
                        next_kind, next_at = self._retry(call, next_kind, next_at)
                    continue
                try:
                    result = parse(status, body)
                except UpstreamError as exc:
                    self._ended(call, ended, status, exc.kind)
                    raise
                call.won = True
                self._ended(call, ended, status, "ok")
                return result

    def _start(self, call: _Call, kind: str, headers: dict[str, str]) -> _Try:
        if kind in ("hedge", "backstop"):
            kind = "hedge"
            call.hedges += 1
            self.metrics.hedges.labels(call.upstream).inc()
        elif kind == "retry":
            self.metrics.retries.labels(call.upstream).inc()
        # The first try on a kept-alive connection; the others on new ones (Sessions).
        session = self.sessions.pooled if kind == "first" else self.sessions.fresh
        started = _Try(len(call.tries) + 1, kind, time.perf_counter(),
                       asyncio.create_task(self._get_once(session, call.url, headers)))
        call.tries.append(started)
        return started

    def _after_start(self, call: _Call, now: float) -> tuple[str | None, float]:
        """What starts next if nothing answers first: a hedge after the hedge delay (if the
        budget allows one then) or, as a backstop, after the attempt timeout; nothing once
        the tries are used up."""
        if len(call.tries) >= self.max_tries:
            return None, 0.0
        if 0 < self.hedge_delay < self.attempt_timeout:
            return "hedge", now + self.hedge_delay
        return "backstop", now + self.attempt_timeout

    def _retry(self, call: _Call, next_kind: str | None,
               next_at: float) -> tuple[str | None, float]:
        """After a failed try: another one soon (a beat for DNS and routing to move on),
        unless a try is already due sooner or the tries are used up."""
        if len(call.tries) >= self.max_tries:
            return None, 0.0
        soon = time.perf_counter() + 0.01 * len(call.tries)
        if next_kind is not None and next_at <= soon:
            return next_kind, next_at
        return "retry", soon

    def _ended(self, call: _Call, ended: _Try, status: int | None, outcome: str) -> None:
        seconds = time.perf_counter() - ended.started
        if outcome not in ("lost", "cancelled"):
            self.metrics.upstream_latency(call.upstream).observe(seconds)
        if outcome not in ("ok", "lost", "cancelled"):
            self.metrics.errors.labels(call.upstream, outcome).inc()
        if outcome == "ok" and len(call.tries) == 1:
            return  # the plain case: the access line's summary says it all
        write = self.log.info if outcome in ("ok", "lost", "cancelled") else self.log.warning
        write("upstream", upstream=call.upstream, method="GET", url=call.url, status=status,
              duration_ms=round(seconds * 1000, 2), attempt=ended.number, kind=ended.kind,
              outcome=outcome)

    async def _get_once(self, session: aiohttp.ClientSession, url: str,
                        headers: dict[str, str]) -> tuple[int, bytes]:
        # aiohttp sends an idempotent GET again by itself, once, when its connection breaks
        # before the answer: that second send is part of this try.
        async with session.get(url, headers=headers) as response:
            declared = response.content_length
            if declared is not None and declared > self.max_body_bytes:
                raise BodyTooLarge
            # Read as it arrives, so an undeclared (chunked) or decompressed body is cut off
            # at the limit instead of being held whole first.
            body = bytearray()
            async for chunk in response.content.iter_any():
                body += chunk
                if len(body) > self.max_body_bytes:
                    raise BodyTooLarge
            return response.status, bytes(body)


def _rejected(parse: Callable[[int, bytes], Any], status: int, body: bytes) -> UpstreamError:
    """The error `parse` gives for an answer it cannot use."""
    try:
        parse(status, body)
    except UpstreamError as exc:
        return exc
    raise AssertionError(f"parse accepted a {status}")


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def _failure_message(upstream: str, kind: str) -> str:
    reasons = {
        "connect": "refused or unreachable",
        "connect_timeout": "did not accept a connection in time",
        "disconnected": "closed the connection without answering",
        "reset": "reset the connection",
        "payload": "sent a broken body",
        "too_large": "sent a body over the size limit",
        "invalid_body": "sent a response that is not readable HTTP",
    }
    return f"{upstream} service {reasons.get(kind, 'failed')}"
