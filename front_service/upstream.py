import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from front_service.metrics import FrontMetrics
from front_service.settings import FrontSettings
from shop_common.context import current_request_id
from shop_common.logs import Log

T = TypeVar("T")


# Failures that mean "the replica this try went to is gone, going or stuck": worth another try
# of a GET, which gets another connection (and, on swarm, most likely another replica).
RETRYABLE = frozenset({"connect", "connect_timeout", "disconnected", "reset", "payload",
                       "timeout"})


def failure_kind(exc: BaseException) -> str:
    """Name a failed try: connect, connect_timeout, disconnected, reset, payload, timeout,
    invalid_body (HTTP the client cannot read), or other."""
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
    if isinstance(exc, TimeoutError):
        return "timeout"  # this try's timeout (read timeouts included)
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


@dataclass
class _Call:
    """Where one upstream call has got to, for the log line when the total deadline cuts it."""

    attempt: int = 0
    start: float = 0.0


def open_session(settings: FrontSettings) -> aiohttp.ClientSession:
    """The front's one HTTP client session, shared by both upstreams for the process's life."""
    connector = aiohttp.TCPConnector(
        # The pool bound is per upstream (prod.api, coupon.api): a failing one cannot take
        # the other's connections.
        limit=0,
        limit_per_host=settings.upstream_max_connections,
        # dnsrr aliases resolve to every replica: looked up again after this long, and new
        # connections take turns over the addresses.
        use_dns_cache=settings.upstream_dns_cache_seconds > 0,
        ttl_dns_cache=settings.upstream_dns_cache_seconds or None,
        keepalive_timeout=settings.keepalive_expiry_seconds,
        # A connect on an overlay network completes in well under a millisecond; one still
        # pending after 50 ms is most likely to a node that died, so the next address starts
        # racing it rather than waiting for the connect timeout.
        happy_eyeballs_delay=0.05,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # Only the connect timeout per address here. The per-try and whole-call deadlines are
        # two nested asyncio.timeout scopes (UpstreamClient): when both expire together the
        # outer one still ends the call. With aiohttp's own total timeout as the per-try
        # deadline, the outer cancellation was lost and the call went on for more tries.
        timeout=aiohttp.ClientTimeout(total=None,
                                      sock_connect=settings.upstream_connect_timeout_seconds),
        headers={"User-Agent": f"shop-front/{settings.release}"},
        cookie_jar=aiohttp.DummyCookieJar(),  # backends set no cookies; none are kept
        trust_env=False,  # no proxy from the environment between the front and its APIs
    )


class UpstreamClient:
    """GETs over the shared session: per-try timeouts, bounded retries, a total deadline, a
    body size limit, one log line and metrics per try."""

    def __init__(self, session: aiohttp.ClientSession, *, attempt_timeout: float,
                 total_timeout: float, retries: int, max_body_bytes: int, log: Log,
                 metrics: FrontMetrics) -> None:
        self.session = session
        self.attempt_timeout = attempt_timeout
        self.total_timeout = total_timeout
        self.retries = retries
        self.max_body_bytes = max_body_bytes
        self.log = log
        self.metrics = metrics

    async def get(self, upstream: str, url: str, parse: Callable[[int, bytes], T]) -> T:
        """The parsed answer to a GET; raises UpstreamError when no usable answer came in time.

        `parse` turns status and body into the result, raising UpstreamError (kind
        `invalid_body` for a body it cannot use); the call's log line carries its outcome.
        """
        call = _Call()
        try:
            async with asyncio.timeout(self.total_timeout):
                return await self._get_with_retries(upstream, url, parse, call)
        except TimeoutError:
            self._record(upstream, url, None, call.start, call.attempt, "timeout")
            raise UpstreamError(upstream, "timeout",
                                f"{upstream} service gave no answer within "
                                f"{self.total_timeout:g} s") from None

    async def _get_with_retries(self, upstream: str, url: str,
                                parse: Callable[[int, bytes], T], call: _Call) -> T:
        headers = {"X-Request-ID": current_request_id()}
        retried_5xx = False
        while True:
            call.attempt += 1
            attempt = call.attempt
            start = call.start = time.perf_counter()
            try:
                # aiohttp sends an idempotent GET again by itself, once, when its connection
                # breaks before the answer: that second send is part of this try.
                async with asyncio.timeout(self.attempt_timeout):
                    status, body = await self._get_once(url, headers)
            except (aiohttp.ClientError, TimeoutError, BodyTooLarge) as exc:
                kind = "too_large" if isinstance(exc, BodyTooLarge) else failure_kind(exc)
                self._record(upstream, url, None, start, attempt, kind)
                if kind in RETRYABLE and attempt <= self.retries:
                    self.metrics.retries.labels(upstream).inc()
                    await asyncio.sleep(0.01 * attempt)  # a beat for DNS/routing to move on
                    continue
                raise UpstreamError(upstream, kind, _failure_message(upstream, kind)) from exc
            if status >= 500 and not retried_5xx and attempt <= self.retries:
                retried_5xx = True
                self._record(upstream, url, status, start, attempt, "http_5xx")
                self.metrics.retries.labels(upstream).inc()
                continue
            outcome = "http_5xx" if status >= 500 else "ok"
            try:
                result = parse(status, body)
            except UpstreamError as exc:
                if exc.kind == "invalid_body":
                    outcome = exc.kind
                raise
            finally:
                self._record(upstream, url, status, start, attempt, outcome)
            return result

    async def _get_once(self, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        async with self.session.get(url, headers=headers) as response:
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

    def _record(self, upstream: str, url: str, status: int | None, start: float, attempt: int,
                outcome: str) -> None:
        seconds = time.perf_counter() - start
        self.metrics.upstream_latency(upstream).observe(seconds)
        if outcome != "ok":
            self.metrics.errors.labels(upstream, outcome).inc()
        write = self.log.info if outcome == "ok" else self.log.warning
        write("upstream", upstream=upstream, method="GET", url=url, status=status,
              duration_ms=round(seconds * 1000, 2), attempt=attempt, outcome=outcome)


def _failure_message(upstream: str, kind: str) -> str:
    reasons = {
        "connect": "refused or unreachable",
        "connect_timeout": "did not accept a connection in time",
        "disconnected": "closed the connection without answering",
        "reset": "reset the connection",
        "payload": "sent a broken body",
        "timeout": "did not answer in time",
        "too_large": "sent a body over the size limit",
        "invalid_body": "sent a response that is not readable HTTP",
    }
    return f"{upstream} service {reasons.get(kind, 'failed')}"
