import asyncio
import time
from typing import Any

import aiohttp
import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from front_service.metrics import FrontMetrics
from shop_common.context import current_request_id
from shop_common.logs import JsonLog
from shop_common.prodno import MAX_PROD_NO


class UpstreamProduct(BaseModel):
    # Fields a newer product service adds pass through untouched (releases run side by side).
    model_config = ConfigDict(extra="allow")

    prodNo: int = Field(ge=1, le=MAX_PROD_NO)
    name: str
    category: str
    desc: str
    price: int = Field(ge=0, description="price in won")


class UpstreamCoupon(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    type: str = Field(description="RATE (percent off) or PRICE (won off); others are ignored "
                                  "for pricing")
    prodNos: list[int]
    value: int = Field(ge=0)

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
    """Name a transport failure: connect, connect_timeout, disconnected, reset, timeout, other.

    httpx-aiohttp maps several aiohttp errors to one httpx class (a refused connection and a
    server hang-up both surface as ConnectTimeout), so the aiohttp cause decides first.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return "connect_timeout"
    if isinstance(cause, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(cause, aiohttp.ClientOSError | aiohttp.ClientPayloadError):
        return "reset"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
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


class BodyTooLarge(Exception):
    pass


class UpstreamClient:
    """GETs over the shared keep-alive client: total deadline, bounded retries, logs, metrics."""

    def __init__(self, client: httpx.AsyncClient, *, total_timeout: float, retries: int,
                 max_body_bytes: int, log: JsonLog, metrics: FrontMetrics) -> None:
        self.client = client
        self.total_timeout = total_timeout
        self.retries = retries
        self.max_body_bytes = max_body_bytes
        self.log = log
        self.metrics = metrics

    async def get(self, upstream: str, url: str) -> tuple[int, bytes]:
        """Status and body of a GET; raises UpstreamError when no answer came in time."""
        try:
            async with asyncio.timeout(self.total_timeout):
                return await self._get_with_retries(upstream, url)
        except TimeoutError:
            self.metrics.errors.labels(upstream, "timeout").inc()
            raise UpstreamError(upstream, "timeout",
                                f"{upstream} service gave no answer within "
                                f"{self.total_timeout:g} s") from None

    async def _get_with_retries(self, upstream: str, url: str) -> tuple[int, bytes]:
        headers = {"x-request-id": current_request_id()}
        attempt = 0
        retried_5xx = False
        while True:
            attempt += 1
            start = time.perf_counter()
            try:
                status, body = await self._get_once(url, headers)
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
            self._record(upstream, url, status, start, attempt,
                         "http_5xx" if status >= 500 else "ok")
            return status, body

    async def _get_once(self, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        async with self.client.stream("GET", url, headers=headers) as response:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                raise BodyTooLarge
            chunks = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise BodyTooLarge
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)

    def _record(self, upstream: str, url: str, status: int | None, start: float, attempt: int,
                outcome: str) -> None:
        seconds = time.perf_counter() - start
        self.metrics.latency.labels(upstream).observe(seconds)
        if outcome != "ok":
            self.metrics.errors.labels(upstream, outcome).inc()
        self.log.event("upstream", level="info" if outcome == "ok" else "warning",
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
        status, body = await self.upstream.get("prod", f"{self.base_url}/products/{prod_no}")
        if status == 404:
            return None
        if status != 200:
            raise UpstreamError("prod", f"http_{status}",
                                f"prod service answered {status}", status=status)
        try:
            return UpstreamProduct.model_validate_json(body)
        except ValidationError as exc:
            self.upstream.metrics.errors.labels("prod", "invalid_body").inc()
            raise UpstreamError(
                "prod", "invalid_body",
                f"prod service sent an invalid product: {_first_error(exc)}") from exc


class CouponApi:
    """The coupon service, as the front sees it."""

    def __init__(self, upstream: UpstreamClient, base_url: str) -> None:
        self.upstream = upstream
        self.base_url = base_url

    async def list_coupons_for_product(self, prod_no: int) -> list[UpstreamCoupon]:
        status, body = await self.upstream.get(
            "coupon", f"{self.base_url}/products/{prod_no}/coupons")
        if status != 200:
            raise UpstreamError("coupon", f"http_{status}",
                                f"coupon service answered {status}", status=status)
        try:
            return _coupon_list.validate_json(body)
        except ValidationError as exc:
            self.upstream.metrics.errors.labels("coupon", "invalid_body").inc()
            raise UpstreamError(
                "coupon", "invalid_body",
                f"coupon service sent invalid coupons: {_first_error(exc)}") from exc


def _first_error(exc: ValidationError) -> str:
    first: dict[str, Any] = dict(exc.errors()[0])
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg')}"
