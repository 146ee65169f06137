"""The front under every upstream fault we could think of, for each of its two upstreams.

Product service faults end in a documented 502/503/504 JSON error; coupon service faults end
in a degraded 200 (no coupons, couponPrice = price, `X-Degraded: coupons`). Either way the
answer comes within the upstream budget plus a small margin, nothing goes unhandled, and the
front's metrics say what happened.

Most faults are injected as httpx handlers in front of the real in-process apps (`Upstreams`);
the last section sends the front's real HTTP/1.1 transport (front_service/http1.py) to a
misbehaving TCP server, since how a broken socket surfaces depends on that transport, not on
httpx.
"""

import asyncio
import gzip
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from faults import (
    Handler,
    MiB,
    RawServer,
    closed_port,
    closes_after_request,
    connect_timeout,
    dropped,
    hangs,
    http_reply,
    json_response,
    never_answers,
    oversized_declared,
    oversized_streamed,
    raw_reply,
    refused,
    reset_mid_body,
    resets_after_request,
    resets_on_accept,
    stalls_mid_body,
)
from upstreams import Upstreams

from front_service.app import create_app
from front_service.settings import FrontSettings

TIMEOUT = 0.5  # SHOP_UPSTREAM_TIMEOUT_SECONDS for these tests: whole budget, retries included
# Scheduling slack on a busy runner; still small enough that a budget spent twice (a retry
# that restarted the clock) fails the bound.
MARGIN = 0.3
# 100 requests on one event loop queue behind each other before and after their upstream
# calls; the bound here is "no request hangs", not the single-request budget.
BURST_BOUND = TIMEOUT + 2.0
RETRIES = 2
PRICE = 160_000  # product 2, as the real prod app answers it
PRODUCT = {"prodNo": 2, "name": "LG 19인치 모니터", "category": "PC 주변기기",
           "desc": "LG 모니터 너무 좋아요.", "price": PRICE}

@dataclass(frozen=True)
class Fault:
    """An upstream misbehaviour and what the front makes of it."""

    handler: Handler
    kind: str | None  # the `kind` label counted in shop_upstream_errors (None: not counted)
    attempts: int = 1  # calls the front makes before giving up
    prod_status: int = 502  # the front's answer when the product service does this

    @property
    def retries(self) -> int:
        return self.attempts - 1


def body(data: Any) -> Handler:
    return json_response(200, orjson.dumps(data))


# Faults either upstream can have.
TRANSPORT_FAULTS = {
    "refused": Fault(refused, "connect", attempts=1 + RETRIES, prod_status=503),
    "connect timeout": Fault(connect_timeout, "connect_timeout", attempts=1 + RETRIES,
                             prod_status=503),
    "dropped before answering": Fault(dropped, "disconnected", attempts=1 + RETRIES),
    "reset mid-response": Fault(reset_mid_body, "reset", attempts=1 + RETRIES),
    "no answer within the timeout": Fault(hangs, "timeout", prod_status=504),
    "body stalls beyond the timeout": Fault(stalls_mid_body, "timeout", prod_status=504),
    "500": Fault(json_response(500, b'{"error": "boom"}'), "http_5xx", attempts=2),
    "503": Fault(json_response(503, b"overloaded"), "http_5xx", attempts=2, prod_status=503),
    "429 (a 4xx is not retried)": Fault(json_response(429, b"{}"), None),
    "invalid JSON": Fault(json_response(200, b'{"prodNo": 2, "price": '), "invalid_body"),
    "HTML error page with 200": Fault(json_response(200, b"<html>502 Bad Gateway</html>",
                                                    **{"content-type": "text/html"}),
                                      "invalid_body"),
    "empty body": Fault(json_response(200, b""), "invalid_body"),
    "not UTF-8": Fault(json_response(200, b'{"name": "\xff\xfe"}'), "invalid_body"),
    "JSON nested 10 000 deep": Fault(json_response(200, b"[" * 10_000 + b"]" * 10_000),
                                     "invalid_body"),
    "body over 1 MiB, streamed": Fault(oversized_streamed, "too_large"),
    "Content-Length over 1 MiB": Fault(oversized_declared, "too_large"),
    "gzip that is not gzip": Fault(
        json_response(200, b"not gzip at all", **{"content-encoding": "gzip"}), "invalid_body"),
}


def product(**changes: Any) -> dict[str, Any]:
    """Product 2 with some fields changed; `...` leaves a field out."""
    return {key: value for key, value in {**PRODUCT, **changes}.items() if value is not ...}


# Product bodies of the wrong shape: all a 502.
PROD_BODIES = {
    "missing price": Fault(body(product(price=...)), "invalid_body"),
    "negative price": Fault(body(product(price=-1)), "invalid_body"),
    "fractional price": Fault(body(product(price=1.5)), "invalid_body"),
    "price not a number": Fault(body(product(price="cheap")), "invalid_body"),
    "price null": Fault(body(product(price=None)), "invalid_body"),
    "prodNo 0": Fault(body(product(prodNo=0)), "invalid_body"),
    "missing name": Fault(body(product(name=...)), "invalid_body"),
    "a list, not a product": Fault(body([PRODUCT]), "invalid_body"),
    "null": Fault(body(None), "invalid_body"),
    # Valid to pydantic, out of range for the JSON writer: caught in the route (no counter).
    "price beyond 64 bits": Fault(json_response(200, orjson.dumps(product(price=0))
                                                .replace(b'"price":0', b'"price":' + b"9" * 30)),
                                  None),
}

RATE_3 = {"id": 1, "type": "RATE", "prodNos": [1, 2, 3], "value": 3}

# Coupon lists of the wrong shape: the whole list is rejected and the page degrades.
COUPON_BODIES = {
    "an object, not a list": Fault(body(RATE_3), "invalid_body"),
    "RATE above 100": Fault(body([{**RATE_3, "value": 101}]), "invalid_body"),
    "RATE below 0": Fault(body([{**RATE_3, "value": -1}]), "invalid_body"),
    "negative PRICE": Fault(body([{**RATE_3, "type": "PRICE", "value": -1000}]),
                            "invalid_body"),
    "missing type": Fault(body([{"id": 1, "prodNos": [2], "value": 3}]), "invalid_body"),
    "fractional value": Fault(body([{**RATE_3, "value": 2.5}]), "invalid_body"),
    "null": Fault(body(None), "invalid_body"),
    "value beyond 64 bits": Fault(
        json_response(200, b'[{"id": 1, "type": "PRICE", "prodNos": [2], "value": '
                      + b"9" * 30 + b"}]"), "invalid_body"),
}

SETTINGS = FrontSettings(instance="front-faults", upstream_timeout_seconds=TIMEOUT,
                         upstream_connect_timeout_seconds=0.4, upstream_retries=RETRIES)


@dataclass
class Front:
    app: FastAPI
    client: httpx.AsyncClient
    upstreams: Upstreams | None = None
    elapsed: list[float] = field(default_factory=list)

    async def get(self, path: str = "/product-detail/2") -> httpx.Response:
        start = time.perf_counter()
        response = await self.client.get(path)
        self.elapsed.append(time.perf_counter() - start)
        return response

    def counter(self, name: str, **labels: str) -> float:
        return self.app.state.metrics.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def running_front(settings: FrontSettings,
                        transport: httpx.AsyncBaseTransport | None) -> AsyncIterator[Front]:
    app = create_app(settings, transport=transport)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://front.test") as client:
        yield Front(app, client, transport if isinstance(transport, Upstreams) else None)


@pytest.fixture
def anyio_backend() -> str:
    """The front runs on asyncio in production; so do these tests."""
    return "asyncio"


@pytest.fixture
async def front() -> AsyncIterator[Front]:
    """The front (lifespan running, 0.5 s budget) in front of the real in-process upstreams."""
    async with running_front(SETTINGS, Upstreams()) as running:
        yield running


def log_events(output: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in output.split("\n") if line.startswith("{")]


def assert_nothing_unhandled(output: str, status: int) -> None:
    assert "Traceback" not in output
    events = log_events(output)
    assert [event for event in events if event["event"] == "error"] == []
    front_requests = [event for event in events
                      if event["service"] == "front" and event["event"] == "request"]
    assert [event["status"] for event in front_requests] == [status]


def assert_upstream_error(response: httpx.Response, status: int) -> None:
    codes = {502: "bad_upstream_response", 503: "upstream_unavailable", 504: "upstream_timeout"}
    assert response.status_code == status
    assert "Traceback" not in response.text
    error = response.json()["error"]
    assert error["status"] == status
    assert error["code"] == codes[status]
    assert error["message"].startswith(("prod service", "an upstream service"))
    assert error["request_id"] == response.headers["x-request-id"]
    assert "x-degraded" not in response.headers


def assert_degraded(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["x-degraded"] == "coupons"
    assert response.json() == {"prod": PRODUCT, "coupons": [], "couponsAvailable": False,
                               "couponPrice": PRICE}


def assert_counted(front: Front, upstream: str, fault: Fault) -> None:
    if fault.kind is not None:  # one per failed attempt
        assert front.counter("shop_upstream_errors_total", upstream=upstream,
                             kind=fault.kind) == fault.attempts
    assert front.counter("shop_upstream_retries_total", upstream=upstream) == fault.retries


@pytest.mark.anyio
@pytest.mark.parametrize("fault", list({**TRANSPORT_FAULTS, **PROD_BODIES}.values()),
                         ids=[*TRANSPORT_FAULTS, *PROD_BODIES])
async def test_product_service_fault(front: Front, fault: Fault,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A failing product service gives a 502/503/504 JSON error within the budget."""
    assert front.upstreams is not None
    front.upstreams.always["prod.api"] = fault.handler
    response = await front.get()
    assert_upstream_error(response, fault.prod_status)
    assert front.elapsed[-1] <= TIMEOUT + MARGIN
    assert front.upstreams.calls_to("prod.api") == fault.attempts
    assert_counted(front, "prod", fault)
    assert front.counter("shop_degraded_responses_total", missing="coupons") == 0
    assert_nothing_unhandled(capsys.readouterr().out, fault.prod_status)


@pytest.mark.anyio
@pytest.mark.parametrize("fault", list({**TRANSPORT_FAULTS, **COUPON_BODIES}.values()),
                         ids=[*TRANSPORT_FAULTS, *COUPON_BODIES])
async def test_coupon_service_fault(front: Front, fault: Fault,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A failing coupon service gives the product with no coupons, marked as degraded."""
    assert front.upstreams is not None
    front.upstreams.always["coupon.api"] = fault.handler
    response = await front.get()
    assert_degraded(response)
    assert front.elapsed[-1] <= TIMEOUT + MARGIN
    assert front.upstreams.calls_to("coupon.api") == fault.attempts
    assert_counted(front, "coupon", fault)
    assert front.counter("shop_degraded_responses_total", missing="coupons") == 1
    assert_nothing_unhandled(capsys.readouterr().out, 200)


@pytest.mark.anyio
@pytest.mark.parametrize(("coupons", "coupon_price"), [
    ([{"id": 7, "type": "BOGO", "prodNos": [2], "value": 500}], PRICE),
    ([{"id": 7, "type": "BOGO", "prodNos": [2], "value": 500},
      {"id": 2, "type": "PRICE", "prodNos": [2], "value": 1000}], PRICE - 1000),
    ([{**RATE_3, "value": 100}], 0),
    ([{**RATE_3, "value": 0}], PRICE),
    ([{"id": 2, "type": "PRICE", "prodNos": [2], "value": 10 * PRICE}], 0),
    ([], PRICE),
], ids=["unknown type only", "unknown type and PRICE", "RATE 100", "RATE 0",
        "PRICE above the price", "no coupons"])
async def test_coupon_data_that_is_not_fatal(front: Front, coupons: list[dict[str, Any]],
                                             coupon_price: int) -> None:
    """Unknown coupon types are listed but ignored for pricing; boundary values are valid."""
    assert front.upstreams is not None
    front.upstreams.always["coupon.api"] = body(coupons)
    response = await front.get()
    assert response.status_code == 200
    assert "x-degraded" not in response.headers
    assert response.json() == {"prod": PRODUCT, "coupons": coupons, "couponsAvailable": True,
                               "couponPrice": coupon_price}


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["prod.api", "coupon.api"])
@pytest.mark.parametrize("first_attempt", [refused, dropped, reset_mid_body,
                                           json_response(503, b"")],
                         ids=["refused", "dropped", "reset", "503"])
async def test_one_failed_attempt_then_success(front: Front, host: str,
                                               first_attempt: Handler) -> None:
    """A replica going away (or one 5xx) costs a retry, not an error: 200 after 2 attempts."""
    assert front.upstreams is not None
    front.upstreams.faults[host] = [first_attempt]
    response = await front.get()
    assert response.status_code == 200
    assert "x-degraded" not in response.headers
    assert response.json()["couponPrice"] == 155_200
    assert front.upstreams.calls_to(host) == 2
    upstream = host.split(".")[0]
    assert front.counter("shop_upstream_retries_total", upstream=upstream) == 1


@pytest.mark.anyio
async def test_both_upstreams_hanging_stay_within_one_budget(front: Front) -> None:
    """The two calls run concurrently, so two hanging upstreams still cost one budget."""
    assert front.upstreams is not None
    front.upstreams.always["prod.api"] = hangs
    front.upstreams.always["coupon.api"] = hangs
    response = await front.get()
    assert_upstream_error(response, 504)
    assert front.elapsed[-1] <= TIMEOUT + MARGIN


@pytest.mark.anyio
async def test_a_burst_of_faults_leaves_the_front_healthy(front: Front) -> None:
    """100 concurrent requests into a refusing product service: each gets a 503 (or a 504
    when, with three attempts each on one busy loop, the budget runs out first), none waits
    past the budget, and the next request after the outage is a 200."""
    assert front.upstreams is not None
    front.upstreams.always["prod.api"] = refused
    responses = await asyncio.gather(*(front.get() for _ in range(100)))
    assert {response.status_code for response in responses} <= {503, 504}
    assert max(front.elapsed) <= BURST_BOUND
    del front.upstreams.always["prod.api"]
    assert (await front.get()).status_code == 200
    assert (await front.get("/health")).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize(("handler", "outcome"), [(hangs, "timeout"),
                                                  (json_response(200, b"{"), "invalid_body")],
                         ids=["timeout", "invalid_body"])
async def test_failed_upstream_call_is_logged_with_its_outcome(
        front: Front, handler: Handler, outcome: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The contract's upstream log line names the failure, so an operator can see it."""
    assert front.upstreams is not None
    front.upstreams.always["prod.api"] = handler
    await front.get()
    events = log_events(capsys.readouterr().out)
    assert outcome in [event["outcome"] for event in events if event["event"] == "upstream"]


# --- The real transport against misbehaving TCP servers ------------------------------------

GOOD_PRODUCT = raw_reply(http_reply(200, orjson.dumps(PRODUCT)))
GOOD_COUPONS = raw_reply(http_reply(200, b"[]"))

# One connection per attempt of the front: the transport's own single retry is only for a
# reused keep-alive connection (tests/front_service/test_http1.py), and these are all new.
ATTEMPTS = range(1 + RETRIES, 1 + RETRIES + 1)

# (behaviour, connections the server sees, the front's answer when prod does this)
SOCKET_FAULTS = {
    "reset on accept": (resets_on_accept, ATTEMPTS, 502),
    "reset after the request": (resets_after_request, ATTEMPTS, 502),
    "closed without an answer": (closes_after_request, ATTEMPTS, 502),
    "half the body, then closed": (raw_reply(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"prodNo\": 2"), ATTEMPTS, 502),
    "half the body, then reset": (raw_reply(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"prodNo\": 2", then_rst=True),
        ATTEMPTS, 502),
    "no answer": (never_answers, range(1, 2), 504),
    "Content-Length of 2 MiB": (raw_reply(
        f"HTTP/1.1 200 OK\r\ncontent-length: {2 * MiB}\r\n\r\n".encode()), range(1, 2), 502),
    "500": (raw_reply(http_reply(500, b"{}")), range(2, 3), 502),
    # Not HTTP, or HTTP the transport does not read: not retried (the same replica answers
    # the same).
    "not HTTP at all": (raw_reply(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), range(1, 2), 502),
    "bad status line": (raw_reply(b"HTTP/1.1 abc OK\r\ncontent-length: 2\r\n\r\n{}"),
                        range(1, 2), 502),
    "bad chunked encoding": (raw_reply(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n"),
        range(1, 2), 502),
    "20 KB header": (raw_reply(b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 20_000 + b"\r\n\r\n"),
                     range(1, 2), 502),
    "gzip that is not gzip": (raw_reply(http_reply(200, b"not gzip", b"content-encoding: gzip")),
                              range(1, 2), 502),
    "2 MiB chunked, no Content-Length": (raw_reply(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        + (b"%x\r\n" % (64 * 1024) + b"[" * (64 * 1024) + b"\r\n") * 32), range(1, 2), 502),
}


def socket_matrix() -> list[Any]:
    return [pytest.param(upstream, *row, id=f"{upstream}-{name}")
            for name, row in SOCKET_FAULTS.items() for upstream in ("prod", "coupon")]


@pytest.mark.anyio
@pytest.mark.parametrize(("upstream", "behaviour", "connections", "prod_status"),
                         socket_matrix())
async def test_socket_fault_with_real_transport(
        upstream: str, behaviour: Any, connections: range, prod_status: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Broken sockets, as the real transport sees them, end like the injected faults."""
    good = GOOD_COUPONS if upstream == "prod" else GOOD_PRODUCT
    async with RawServer(behaviour) as faulty, RawServer(good) as healthy:
        urls = {upstream: faulty.url, "coupon" if upstream == "prod" else "prod": healthy.url}
        settings = SETTINGS.model_copy(update={"prod_api_url": urls["prod"],
                                               "coupon_api_url": urls["coupon"]})
        async with running_front(settings, None) as front:
            response = await front.get()
            if upstream == "prod":
                assert_upstream_error(response, prod_status)
            else:
                assert_degraded(response)
            assert front.elapsed[-1] <= TIMEOUT + MARGIN
            assert faulty.accepted in connections
    assert_nothing_unhandled(capsys.readouterr().out, response.status_code)


def _chunked(body: bytes, *headers: bytes) -> bytes:
    head = b"\r\n".join([b"HTTP/1.1 200 OK", b"transfer-encoding: chunked", *headers])
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))
    return head + b"\r\n\r\n" + chunks + b"0\r\n\r\n"


@pytest.mark.anyio
@pytest.mark.parametrize("framing", ["gzip", "chunked", "chunked gzip"])
async def test_real_transport_reads_encoded_and_chunked_bodies(framing: str) -> None:
    """Bodies framed or encoded otherwise than plain Content-Length JSON read the same."""
    body = orjson.dumps(PRODUCT)
    if framing == "gzip":
        reply = http_reply(200, gzip.compress(body), b"content-encoding: gzip")
    elif framing == "chunked":
        reply = _chunked(body)
    else:
        reply = _chunked(gzip.compress(body), b"content-encoding: gzip")
    async with RawServer(raw_reply(reply)) as prod, RawServer(GOOD_COUPONS) as coupon:
        settings = SETTINGS.model_copy(update={"prod_api_url": prod.url,
                                               "coupon_api_url": coupon.url})
        async with running_front(settings, None) as front:
            response = await front.get()
    assert response.status_code == 200, response.text
    assert response.json()["prod"] == PRODUCT


@pytest.mark.anyio
@pytest.mark.parametrize("upstream", ["prod", "coupon"])
async def test_refused_port_with_real_transport(upstream: str) -> None:
    """Nothing listening: 503 for the product service, degraded for the coupon service."""
    good = GOOD_COUPONS if upstream == "prod" else GOOD_PRODUCT
    async with RawServer(good) as healthy:
        urls = {upstream: closed_port(), "coupon" if upstream == "prod" else "prod": healthy.url}
        settings = SETTINGS.model_copy(update={"prod_api_url": urls["prod"],
                                               "coupon_api_url": urls["coupon"]})
        async with running_front(settings, None) as front:
            response = await front.get()
            if upstream == "prod":
                assert_upstream_error(response, 503)
            else:
                assert_degraded(response)
            assert front.elapsed[-1] <= TIMEOUT + MARGIN
            assert front.counter("shop_upstream_errors_total", upstream=upstream,
                                 kind="connect") == 1 + RETRIES
