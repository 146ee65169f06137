"""The front under every upstream fault we could think of, for each of its two upstreams, over
real sockets: the front's own aiohttp session against fault servers on 127.0.0.1
(tests/support/upstreams.py, tests/support/faults.py).

Product service faults end in a documented 502/503/504 JSON error; coupon service faults end
in a degraded 200 (no coupons, couponPrice = price, `X-Degraded: coupons`). Either way the
answer comes within the upstream budget plus a small margin, nothing goes unhandled, and the
front's metrics say what happened.

How many connections a fault costs: the front tries a call up to 1 + RETRIES times on
failures that mean "that replica went away" (a new try at once), a 5xx at most twice, anything
else once; a try that hangs gets a hedge beside it after the try timeout (hedging by delay is
off here), and keeps running until an answer or the budget ends the call. Inside each try,
aiohttp sends an idempotent GET a second time by itself when its connection was closed or reset
before the answer (`RESENT`): those faults cost two connections a try.
"""

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from front_service.settings import FrontSettings
from tests.support.faults import (
    Behaviour,
    MiB,
    answers,
    black_hole,
    closes_after_request,
    http_reply,
    never_answers,
    oversized_streamed,
    raw_reply,
    resets_after_request,
    resets_on_accept,
    stalls_mid_body,
)
from tests.support.front import Front, running_front
from tests.support.upstreams import Upstreams, front_settings_for

TIMEOUT = 0.6  # SHOP_UPSTREAM_TIMEOUT_SECONDS here: the whole budget of a call
# SHOP_UPSTREAM_ATTEMPT_TIMEOUT_SECONDS where a fault hangs: three hung tries fit in the
# budget. Other faults get the whole budget per try, so that a slow turn of a busy runner's
# loop does not add a try the fault did not cause.
HUNG_ATTEMPT = 0.15
# SHOP_UPSTREAM_CONNECT_TIMEOUT_SECONDS where connects never complete: three fit in the
# budget. Other faults get the whole budget for a connect, for the same reason as above.
CONNECT = 0.1
# Scheduling slack on a busy runner; still small enough that a budget spent twice (a retry
# that restarted the clock) fails the bound.
MARGIN = 0.3
# 100 requests on one event loop queue behind each other before and after their upstream
# calls; the bound here is "no request hangs", not the single-request budget.
BURST_BOUND = TIMEOUT + 2.0
RETRIES = 2
TRIES = 1 + RETRIES
RESENT = 2  # connections per try when aiohttp sends the GET again by itself
PRICE = 160_000  # product 2, as the real prod app answers it
PRODUCT = {"prodNo": 2, "name": "LG 19인치 모니터", "category": "PC 주변기기",
           "desc": "LG 모니터 너무 좋아요.", "price": PRICE}
REFUSED = "refused"  # nothing listens on the upstream's port
BLACK_HOLE = "black hole"  # connects to the upstream's port never complete


@dataclass(frozen=True)
class Fault:
    """An upstream misbehaviour and what the front makes of it."""

    behaviour: Behaviour | str
    # The `kind` label counted in shop_upstream_errors, one per failed try (None: not
    # counted); a tuple when the kernel's timing decides between them (see below).
    kind: str | tuple[str, ...] | None
    tries: int = 1  # tries the front makes before giving up
    connections_per_try: int | range = 1
    hangs: bool = False  # its tries are hedged (started beside the hung ones), not retried

    # The front's answer when the product service does this (several: timing decides).
    prod_status: int | tuple[int, ...] = 502
    attempt_timeout: float = TIMEOUT
    connect_timeout: float = TIMEOUT

    @property
    def connections(self) -> range:
        per_try = self.connections_per_try
        if isinstance(per_try, int):
            per_try = range(per_try, per_try + 1)
        return range(self.tries * per_try.start, self.tries * (per_try.stop - 1) + 1)


def body(data: Any) -> Behaviour:
    return answers(200, orjson.dumps(data))


def _chunked(payload: bytes, *headers: bytes) -> bytes:
    head = b"\r\n".join([b"HTTP/1.1 200 OK", b"transfer-encoding: chunked",
                         b"connection: close", *headers])
    half = len(payload) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part)
                      for part in (payload[:half], payload[half:]))
    return head + b"\r\n\r\n" + chunks + b"0\r\n\r\n"


# Faults either upstream can have.
TRANSPORT_FAULTS = {
    "refused": Fault(REFUSED, "connect", tries=TRIES, prod_status=503),
    "connect timeout": Fault(BLACK_HOLE, "connect_timeout", tries=TRIES, prod_status=503,
                             connect_timeout=CONNECT),
    # A reset that arrives while aiohttp is still setting the connection up fails the connect
    # (not sent again); one that arrives after the request went out is a reset (sent again).
    "reset on accept": Fault(resets_on_accept, ("connect", "reset"), TRIES,
                             range(1, RESENT + 1), prod_status=(502, 503)),
    "reset after the request": Fault(resets_after_request, "reset", TRIES, RESENT),
    "closed without an answer": Fault(closes_after_request, "disconnected", TRIES, RESENT),
    "half the body, then closed": Fault(raw_reply(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"prodNo\": 2"), "payload", TRIES),
    "half the body, then reset": Fault(raw_reply(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"prodNo\": 2", then_rst=True),
        "payload", TRIES),
    "gzip that is not gzip": Fault(answers(200, b"not gzip", b"content-encoding: gzip"),
                                   "payload", TRIES),
    "no answer": Fault(never_answers, "timeout", TRIES, prod_status=504,
                       attempt_timeout=HUNG_ATTEMPT, hangs=True),
    "body stalls": Fault(stalls_mid_body, "timeout", TRIES, prod_status=504,
                         attempt_timeout=HUNG_ATTEMPT, hangs=True),
    "500": Fault(answers(500, b'{"error": "boom"}'), "http_5xx", tries=2),
    "503": Fault(answers(503, b"overloaded"), "http_5xx", tries=2, prod_status=503),
    "429 (a 4xx is not retried)": Fault(answers(429, b"{}"), None),
    "invalid JSON": Fault(answers(200, b'{"prodNo": 2, "price": '), "invalid_body"),
    "HTML error page with 200": Fault(answers(200, b"<html>502 Bad Gateway</html>",
                                              b"content-type: text/html"), "invalid_body"),
    "empty body": Fault(answers(200, b""), "invalid_body"),
    "not UTF-8": Fault(answers(200, b'{"name": "\xff\xfe"}'), "invalid_body"),
    "JSON nested 10 000 deep": Fault(answers(200, b"[" * 10_000 + b"]" * 10_000),
                                     "invalid_body"),
    # HTTP the client does not read: not retried (the same replica answers the same).
    "not HTTP at all": Fault(raw_reply(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), "invalid_body"),
    "bad status line": Fault(raw_reply(b"HTTP/1.1 abc OK\r\ncontent-length: 2\r\n\r\n{}"),
                             "invalid_body"),
    "bad chunked encoding": Fault(raw_reply(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n"), "invalid_body"),
    "20 KB header": Fault(raw_reply(b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 20_000
                                    + b"\r\n\r\n"), "invalid_body"),
    # Bodies over the 1 MiB limit: refused without holding them.
    "Content-Length of 2 MiB": Fault(raw_reply(
        f"HTTP/1.1 200 OK\r\ncontent-length: {2 * MiB}\r\n\r\n".encode()), "too_large"),
    "1 MiB chunked, no Content-Length": Fault(oversized_streamed, "too_large"),
    "2 MiB gzip bomb": Fault(raw_reply(_chunked(gzip.compress(b" " * 2 * MiB),
                                                b"content-encoding: gzip")), "too_large"),
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
    "price beyond 64 bits": Fault(answers(200, orjson.dumps(product(price=0))
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
        answers(200, b'[{"id": 1, "type": "PRICE", "prodNos": [2], "value": '
                + b"9" * 30 + b"}]"), "invalid_body"),
}


def settings_for(upstreams: Upstreams, **changes: Any) -> FrontSettings:
    return front_settings_for(upstreams, **{
        "instance": "front-faults", "upstream_timeout_seconds": TIMEOUT,
        "upstream_attempt_timeout_seconds": TIMEOUT, "upstream_connect_timeout_seconds": TIMEOUT,
        "upstream_retries": RETRIES, **changes})


@contextlib.contextmanager
def faulty(upstreams: Upstreams, upstream: str, fault: Fault) -> Iterator[dict[str, str]]:
    """Make one upstream misbehave; yields the front settings that point at it."""
    changes = {"upstream_attempt_timeout_seconds": fault.attempt_timeout,
               "upstream_connect_timeout_seconds": fault.connect_timeout}
    if fault.behaviour == REFUSED:
        upstreams.refuse(upstream)
        yield changes
    elif fault.behaviour == BLACK_HOLE:
        with black_hole() as url:
            yield {**changes, f"{upstream}_api_url": url}
    else:
        assert not isinstance(fault.behaviour, str)
        upstreams[upstream].always = fault.behaviour
        yield changes


@pytest.fixture
def anyio_backend() -> str:
    """The front runs on asyncio in production; so do these tests."""
    return "asyncio"


@pytest.fixture
async def front(upstreams: Upstreams) -> AsyncIterator[Front]:
    """The front (lifespan running, 0.6 s budget) in front of the healthy test upstreams."""
    async with running_front(settings_for(upstreams)) as running:
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


def assert_upstream_error(response: httpx.Response, status: int | tuple[int, ...]) -> None:
    codes = {502: "bad_upstream_response", 503: "upstream_unavailable", 504: "upstream_timeout"}
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses
    status = response.status_code
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


def assert_counted(front: Front, upstreams: Upstreams, upstream: str, fault: Fault) -> None:
    if fault.kind is not None:  # one per failed try
        kinds = (fault.kind,) if isinstance(fault.kind, str) else fault.kind
        assert sum(front.counter("shop_upstream_errors_total", upstream=upstream, kind=kind)
                   for kind in kinds) == fault.tries
    started_after = "hedges" if fault.hangs else "retries"
    assert front.counter(f"shop_upstream_{started_after}_total", upstream=upstream) \
        == fault.tries - 1
    assert front.counter("shop_upstream_retries_total", upstream=upstream) \
        + front.counter("shop_upstream_hedges_total", upstream=upstream) == fault.tries - 1
    if isinstance(fault.behaviour, str):
        assert upstreams[upstream].connections == 0
    else:
        assert upstreams[upstream].connections in fault.connections


@pytest.mark.anyio
@pytest.mark.parametrize("fault", list({**TRANSPORT_FAULTS, **PROD_BODIES}.values()),
                         ids=[*TRANSPORT_FAULTS, *PROD_BODIES])
async def test_product_service_fault(upstreams: Upstreams, fault: Fault,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A failing product service gives a 502/503/504 JSON error within the budget."""
    with faulty(upstreams, "prod", fault) as changes:
        async with running_front(settings_for(upstreams, **changes)) as front:
            response = await front.get()
            assert_upstream_error(response, fault.prod_status)
            assert front.elapsed[-1] <= TIMEOUT + MARGIN
            assert_counted(front, upstreams, "prod", fault)
            assert front.counter("shop_degraded_responses_total", missing="coupons") == 0
    assert_nothing_unhandled(capsys.readouterr().out, response.status_code)


@pytest.mark.anyio
@pytest.mark.parametrize("fault", list({**TRANSPORT_FAULTS, **COUPON_BODIES}.values()),
                         ids=[*TRANSPORT_FAULTS, *COUPON_BODIES])
async def test_coupon_service_fault(upstreams: Upstreams, fault: Fault,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A failing coupon service gives the product with no coupons, marked as degraded."""
    with faulty(upstreams, "coupon", fault) as changes:
        async with running_front(settings_for(upstreams, **changes)) as front:
            response = await front.get()
            assert_degraded(response)
            assert front.elapsed[-1] <= TIMEOUT + MARGIN
            assert_counted(front, upstreams, "coupon", fault)
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
async def test_coupon_data_that_is_not_fatal(front: Front, upstreams: Upstreams,
                                             coupons: list[dict[str, Any]],
                                             coupon_price: int) -> None:
    """Unknown coupon types are listed but ignored for pricing; boundary values are valid."""
    upstreams.coupon.always = body(coupons)
    response = await front.get()
    assert response.status_code == 200
    assert "x-degraded" not in response.headers
    assert response.json() == {"prod": PRODUCT, "coupons": coupons, "couponsAvailable": True,
                               "couponPrice": coupon_price}


@pytest.mark.anyio
@pytest.mark.parametrize("upstream", ["prod", "coupon"])
@pytest.mark.parametrize(("first_try", "connections", "attempt_timeout", "second_try"), [
    ([closes_after_request] * RESENT, RESENT + 1, TIMEOUT, "retries"),
    ([resets_after_request] * RESENT, RESENT + 1, TIMEOUT, "retries"),
    ([never_answers], 2, HUNG_ATTEMPT, "hedges"),
    ([answers(503, b"")], 2, TIMEOUT, "retries"),
], ids=["dropped", "reset", "hung", "503"])
async def test_one_failed_try_then_success(upstreams: Upstreams, upstream: str,
                                           first_try: list[Behaviour], connections: int,
                                           attempt_timeout: float, second_try: str) -> None:
    """A replica going away or answering one 5xx costs a retry, one hanging costs a hedge;
    neither is an error."""
    upstreams[upstream].faults = list(first_try)
    settings = settings_for(upstreams, upstream_attempt_timeout_seconds=attempt_timeout)
    async with running_front(settings) as front:
        response = await front.get()
        assert response.status_code == 200
        assert "x-degraded" not in response.headers
        assert response.json()["couponPrice"] == 155_200
        assert upstreams[upstream].connections == connections
        assert front.counter(f"shop_upstream_{second_try}_total", upstream=upstream) == 1


@pytest.mark.anyio
async def test_both_upstreams_hanging_stay_within_one_budget(front: Front,
                                                             upstreams: Upstreams) -> None:
    """The two calls run concurrently, so two hanging upstreams still cost one budget."""
    upstreams.prod.always = never_answers
    upstreams.coupon.always = never_answers
    response = await front.get()
    assert_upstream_error(response, 504)
    assert front.elapsed[-1] <= TIMEOUT + MARGIN


@pytest.mark.anyio
async def test_whole_budget_cuts_a_slow_try(upstreams: Upstreams) -> None:
    """With a try timeout longer than what is left of the budget, the budget wins: a hung
    upstream costs the whole budget once, not a try's timeout more."""
    upstreams.prod.always = never_answers
    settings = settings_for(upstreams, upstream_attempt_timeout_seconds=TIMEOUT)
    async with running_front(settings) as front:
        response = await front.get()
        assert_upstream_error(response, 504)
        assert TIMEOUT <= front.elapsed[-1] <= TIMEOUT + MARGIN
        assert front.counter("shop_upstream_errors_total", upstream="prod",
                             kind="timeout") == 1


@pytest.mark.anyio
async def test_a_burst_of_faults_leaves_the_front_healthy(front: Front,
                                                          upstreams: Upstreams) -> None:
    """100 concurrent requests into a refusing product service: each gets a 503 (or a 504
    when, with three tries each on one busy loop, the budget runs out first), none waits
    past the budget, and the next request after the outage is a 200."""
    upstreams.refuse("prod")
    responses = await asyncio.gather(*(front.get() for _ in range(100)))
    assert {response.status_code for response in responses} <= {503, 504}
    assert max(front.elapsed) <= BURST_BOUND
    upstreams.reset()
    assert (await front.get()).status_code == 200
    assert (await front.get("/health")).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize(("behaviour", "outcome"), [(never_answers, "timeout"),
                                                    (answers(200, b"{"), "invalid_body")],
                         ids=["timeout", "invalid_body"])
async def test_failed_upstream_call_is_logged_with_its_outcome(
        front: Front, upstreams: Upstreams, behaviour: Behaviour, outcome: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The contract's upstream log line names the failure, so an operator can see it."""
    upstreams.prod.always = behaviour
    await front.get()
    events = log_events(capsys.readouterr().out)
    assert outcome in [event["outcome"] for event in events if event["event"] == "upstream"]


@pytest.mark.anyio
@pytest.mark.parametrize("framing", ["gzip", "chunked", "chunked gzip"])
async def test_encoded_and_chunked_bodies_read_the_same(upstreams: Upstreams,
                                                        framing: str) -> None:
    """Bodies framed or encoded otherwise than plain Content-Length JSON read the same."""
    payload = orjson.dumps(PRODUCT)
    if framing == "gzip":
        reply = http_reply(200, gzip.compress(payload), b"content-encoding: gzip")
    elif framing == "chunked":
        reply = _chunked(payload)
    else:
        reply = _chunked(gzip.compress(payload), b"content-encoding: gzip")
    upstreams.prod.always = raw_reply(reply)
    async with running_front(settings_for(upstreams)) as front:
        response = await front.get()
    assert response.status_code == 200, response.text
    assert response.json()["prod"] == PRODUCT
