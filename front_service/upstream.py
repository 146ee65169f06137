import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from front_service.http1 import BodyTooLarge, Http1Transport, InvalidResponse, read_limited
from front_service.metrics import FrontMetrics
from shop_common.context import current_request_id
from shop_common.logs import JsonLog
from shop_common.prodno import MAX_PROD_NO

# Integers from upstream JSON stay within what every JSON reader holds exactly (2**53 - 1), so
# a validated value can always be written back out and read by the front's own clients.
JsonInt = Annotated[int, Field(ge=-(2**53 - 1), le=2**53 - 1)]
T = TypeVar("T")


class UpstreamProduct(BaseModel):
    # Fields a newer product service adds pass through untouched (releases run side by side).
    model_config = ConfigDict(extra="allow")

    prodNo: int = Field(ge=1, le=MAX_PROD_NO)
    name: str
    category: str
    desc: str
    price: int = Field(ge=0, le=2**53 - 1, description="price in won")


class UpstreamCoupon(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: JsonInt
    type: str = Field(description="RATE (percent off) or PRICE (won off); others are ignored "
                                  "for pricing")
    prodNos: list[JsonInt]
    value: int = Field(ge=0, le=2**53 - 1)

    @model_validator(mode="after")
    def _rate_is_a_percentage(self) -> "UpstreamCoupon":
        if self.type == "RATE" and self.value > 100:
            raise ValueError("RATE coupon above 100 percent")
        return self


_coupon_list = TypeAdapter(list[UpstreamCoupon])

# Failures that mean "the replica this went to is gone or going": safe and useful to retry a
# GET on, since the next attempt gets a fresh connection (and, on swarm, another replica).
RETRYABLE = frozenset({"connect", "connect_timeout", "disconnected", "reset"})


def failure_kind(exc: BaseException) -> str:
    """Name a transport failure: connect, connect_timeout, disconnected, reset, timeout, other."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "disconnected"
    if isinstance(exc, httpx.NetworkError):
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


# Upstream URLs parsed once each: parsing one (an IPv4 check included) costs more than the rest
# of building the request. Bounded, since the product number in the URL comes from the user.
_parse_url = functools.lru_cache(maxsize=256)(httpx.URL)


# Not HTTP, or HTTP the client cannot read: a bad status line, broken chunked framing, a head
# over the client's limit, or a content-encoding the body does not match. The same replica
# would answer the same: no retry.
UNREADABLE = (InvalidResponse, httpx.DecodingError)


@dataclass
class _Call:
    """Where one upstream call has got to, for the log line when the total deadline cuts it."""

    attempt: int = 0
    start: float = 0.0


class UpstreamClient:
    """GETs over the shared keep-alive client: total deadline, bounded retries, logs, metrics."""

    def __init__(self, client: httpx.AsyncClient, *, total_timeout: float, retries: int,
                 max_body_bytes: int, log: JsonLog, metrics: FrontMetrics) -> None:
        self.client = client
        # What AsyncClient.send would add to every request, worked out once: the upstream GET
        # goes straight to the client's transport (see _get_once).
        self.default_headers = list(client.headers.raw)
        self.extensions = {"timeout": client.timeout.as_dict()}
        self.connect_timeout = client.timeout.connect
        self.pool_timeout = client.timeout.pool
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
        request_id = current_request_id()
        retried_5xx = False
        while True:
            call.attempt += 1
            attempt = call.attempt
            start = call.start = time.perf_counter()
            try:
                status, body = await self._get_once(url, request_id)
            except UNREADABLE as exc:
                self._record(upstream, url, None, start, attempt, "invalid_body")
                raise UpstreamError(upstream, "invalid_body",
                                    f"{upstream} service sent a response that is not readable "
                                    f"HTTP ({type(exc).__name__})") from exc
            except (httpx.TransportError, BodyTooLarge) as exc:
                kind = "too_large" if isinstance(exc, BodyTooLarge) else failure_kind(exc)
                self._record(upstream, url, None, start, attempt, kind)
                if kind in RETRYABLE and attempt <= self.retries:
                    self.metrics.retries.labels(upstream).inc()
                    await asyncio.sleep(0.01 * attempt)  # a beat for DNS/routing to move on
                    continue
                raise UpstreamError(upstream, kind, _transport_message(upstream, kind)) from exc
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

    async def _get_once(self, url: str, request_id: str) -> tuple[int, bytes]:
        # Straight to the transport the client would pick for this URL (the injected one in
        # tests, respx's when it patches the client), with the client's headers and timeouts.
        # AsyncClient.send's generic machinery (header merging, auth and redirect wrappers,
        # cookie-jar extraction through http.cookiejar) cost almost a quarter of the front's whole
        # request (bench/README.md), and a GET to a backend needs none of it.
        parsed_url = _parse_url(url)
        transport = self.client._transport_for_url(parsed_url)
        headers = [*self.default_headers, (b"x-request-id", request_id.encode())]
        if isinstance(transport, Http1Transport):
            return await transport.get_body(
                url, headers, connect_timeout=self.connect_timeout,
                pool_timeout=self.pool_timeout, max_body_bytes=self.max_body_bytes)
        request = httpx.Request("GET", parsed_url, headers=headers, extensions=self.extensions)
        response = await transport.handle_async_request(request)
        try:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                raise BodyTooLarge
            # A content-encoding is undone (aiter_bytes), as the client's stream() did; without
            # one, the transport's chunks are the body and httpx's decoder chain is skipped.
            chunk_source = (response.aiter_bytes() if "content-encoding" in response.headers
                            else response.stream)
            return response.status_code, await read_limited(
                chunk_source, self.max_body_bytes)  # type: ignore[arg-type]
        finally:
            await response.aclose()

    def _record(self, upstream: str, url: str, status: int | None, start: float, attempt: int,
                outcome: str) -> None:
        seconds = time.perf_counter() - start
        self.metrics.upstream_latency(upstream).observe(seconds)
        if outcome != "ok":
            self.metrics.errors.labels(upstream, outcome).inc()
        # A good call's line goes out with its request's access line (one write for all).
        self.log.event("upstream", level="info" if outcome == "ok" else "warning",
                       flush=outcome != "ok",
                       upstream=upstream, method="GET", url=url, status=status,
                       duration_ms=round(seconds * 1000, 2), attempt=attempt, outcome=outcome,
                       request_id=current_request_id())


def _transport_message(upstream: str, kind: str) -> str:
    reasons = {
        "connect": "refused or unreachable",
        "connect_timeout": "did not accept a connection in time",
        "disconnected": "closed the connection without answering",
        "reset": "reset the connection",
        "timeout": "did not answer in time",
        "too_large": "sent a body over the size limit",
    }
    return f"{upstream} service {reasons.get(kind, 'failed')}"


class ProdApi:
    """The product service, as the front sees it."""

    def __init__(self, upstream: UpstreamClient, base_url: str) -> None:
        self.upstream = upstream
        self.base_url = base_url

    async def get_product(self, prod_no: int) -> UpstreamProduct | None:
        """The product, None when the product service says it does not exist."""
        return await self.upstream.get("prod", f"{self.base_url}/products/{prod_no}",
                                       _parse_product)


def _parse_product(status: int, body: bytes) -> UpstreamProduct | None:
    if status == 404:
        return None
    if status != 200:
        raise UpstreamError("prod", f"http_{status}", f"prod service answered {status}",
                            status=status)
    try:
        return UpstreamProduct.model_validate_json(body)
    except ValidationError as exc:
        raise UpstreamError("prod", "invalid_body",
                            f"prod service sent an invalid product: {_first_error(exc)}") from exc


class CouponApi:
    """The coupon service, as the front sees it."""

    def __init__(self, upstream: UpstreamClient, base_url: str) -> None:
        self.upstream = upstream
        self.base_url = base_url

    async def list_coupons_for_product(self, prod_no: int) -> list[UpstreamCoupon]:
        return await self.upstream.get(
            "coupon", f"{self.base_url}/products/{prod_no}/coupons", _parse_coupons)


def _parse_coupons(status: int, body: bytes) -> list[UpstreamCoupon]:
    if status != 200:
        raise UpstreamError("coupon", f"http_{status}", f"coupon service answered {status}",
                            status=status)
    try:
        return _coupon_list.validate_json(body)
    except ValidationError as exc:
        raise UpstreamError("coupon", "invalid_body",
                            f"coupon service sent invalid coupons: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    first: dict[str, Any] = dict(exc.errors()[0])
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg')}"
