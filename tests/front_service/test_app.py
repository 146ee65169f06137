import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from front_service.app import create_app
from tests.support.faults import (
    answers,
    closes_after_request,
    never_answers,
    resets_after_request,
)
from tests.support.upstreams import Upstreams, front_settings_for

EXPECTED_COUPON_PRICE = {1: 119310, 2: 155200, 3: 1455000, 4: 50000}


def counter(client: TestClient, name: str, **labels: str) -> float:
    registry = client.app.state.metrics.registry  # type: ignore[attr-defined]
    return registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("prod_no", [1, 2, 3, 4])
def test_release_2_product_detail(front_client: TestClient, prod_no: int) -> None:
    """Release 2 combines product and coupons and adds the best coupon price."""
    response = front_client.get(f"/product-detail/{prod_no}")
    assert response.status_code == 200
    body = response.json()
    assert body["prod"]["prodNo"] == prod_no
    assert body["couponPrice"] == EXPECTED_COUPON_PRICE[prod_no]
    assert body["couponsAvailable"] is True
    assert response.headers["x-release"] == "2"
    assert "x-degraded" not in response.headers


def test_release_2_full_body(front_client: TestClient) -> None:
    """The whole release 2 answer for product 2, as the README shows it."""
    assert front_client.get("/product-detail/2").json() == {
        "prod": {"prodNo": 2, "name": "LG 19인치 모니터", "category": "PC 주변기기",
                 "desc": "LG 모니터 너무 좋아요.", "price": 160000},
        "coupons": [{"id": 1, "type": "RATE", "prodNos": [1, 2, 3], "value": 3},
                    {"id": 2, "type": "PRICE", "prodNos": [2], "value": 1000}],
        "couponsAvailable": True,
        "couponPrice": 155200,
    }


def test_release_1_has_no_coupon_price(upstreams: Upstreams) -> None:
    """Release 1 (built with SHOP_COUPON_PRICE off) answers the same product and coupons
    without couponPrice."""
    settings = front_settings_for(upstreams, instance="front-r1", release="1", coupon_price=False)
    with TestClient(create_app(settings)) as client:
        response = client.get("/product-detail/2")
        assert response.status_code == 200
        assert "couponPrice" not in response.json()
        assert len(response.json()["coupons"]) == 2
        assert response.headers["x-release"] == "1"
        assert client.get("/health").json()["release"] == "1"


def test_coupon_price_is_a_setting_not_a_release(upstreams: Upstreams) -> None:
    """Any release label prices coupons unless SHOP_COUPON_PRICE is off: the label names a
    build, the setting decides the feature."""
    for release, priced in (("3", True), ("1", True), ("2", False)):
        settings = front_settings_for(upstreams, release=release, coupon_price=priced)
        with TestClient(create_app(settings)) as client:
            body = client.get("/product-detail/2").json()
        assert ("couponPrice" in body) is priced, (release, body)


def test_upstream_calls_overlap() -> None:
    """The product and coupon calls run concurrently: two 0.3 s upstreams take about 0.3 s,
    not 0.6."""
    slow = Upstreams(simulated_latency_ms=300)
    try:
        settings = front_settings_for(slow, upstream_timeout_seconds=2.0,
                                      upstream_attempt_timeout_seconds=2.0)
        with TestClient(create_app(settings)) as client:
            client.get("/health")
            began = time.monotonic()
            response = client.get("/product-detail/1")
            elapsed = time.monotonic() - began
    finally:
        slow.close()
    assert response.status_code == 200
    assert 0.3 <= elapsed < 0.55


def test_unknown_product_is_404(front_client: TestClient) -> None:
    """The product service's 404 is the front's 404."""
    response = front_client.get("/product-detail/77")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "product 77 does not exist"


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "1.5", "01", "+1", "9" * 30])
def test_invalid_product_number_is_400_without_upstream_calls(
        front_client: TestClient, upstreams: Upstreams, raw: str) -> None:
    """Bad ids are refused by the front itself."""
    assert front_client.get(f"/product-detail/{raw}").status_code == 400
    assert upstreams.requests == []


def test_request_id_is_forwarded_to_both_upstreams(front_client: TestClient,
                                                   upstreams: Upstreams) -> None:
    """The front's request id (given or generated) goes to prod and coupon."""
    front_client.get("/product-detail/2", headers={"X-Request-ID": "trace-42"})
    assert [r.headers["x-request-id"] for r in upstreams.requests] == ["trace-42", "trace-42"]
    upstreams.prod.requests.clear()
    upstreams.coupon.requests.clear()
    generated = front_client.get("/product-detail/2").headers["x-request-id"]
    assert {r.headers["x-request-id"] for r in upstreams.requests} == {generated}


def test_broken_connection_is_retried(front_client: TestClient, upstreams: Upstreams) -> None:
    """A connection a stopping replica closes without an answer costs a retry, not an error:
    aiohttp sends an idempotent GET again once by itself, and the front's own retry follows
    if that fails too."""
    upstreams.prod.faults = [closes_after_request, closes_after_request]
    upstreams.coupon.faults = [resets_after_request]
    response = front_client.get("/product-detail/2")
    assert response.status_code == 200
    assert response.json()["couponsAvailable"] is True
    assert upstreams.prod.connections == 3  # aiohttp's two tries, then the front's retry
    assert upstreams.coupon.connections == 2  # aiohttp's own retry was enough
    assert counter(front_client, "shop_upstream_retries_total", upstream="prod") == 1
    assert counter(front_client, "shop_upstream_retries_total", upstream="coupon") == 0


def test_retries_are_bounded(front_client: TestClient, upstreams: Upstreams) -> None:
    """A product service that keeps refusing gets 1 + 2 tries, then the user gets a 503."""
    upstreams.refuse("prod")
    response = front_client.get("/product-detail/2")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert counter(front_client, "shop_upstream_errors_total", upstream="prod",
                   kind="connect") == 3


@pytest.fixture
def short_tries_client(upstreams: Upstreams) -> Iterator[TestClient]:
    """The front with 0.15 s per try inside its 0.5 s budget."""
    settings = front_settings_for(upstreams, upstream_attempt_timeout_seconds=0.15)
    with TestClient(create_app(settings)) as client:
        yield client


def test_hung_try_gets_a_hedge_within_the_budget(short_tries_client: TestClient,
                                                upstreams: Upstreams) -> None:
    """A replica that hangs costs one try's timeout (0.15 s here): then a hedge starts beside
    the hung try, on another connection, and answers; the hung try is cancelled, not counted
    as an error."""
    upstreams.prod.faults = [never_answers]
    began = time.monotonic()
    response = short_tries_client.get("/product-detail/2")
    elapsed = time.monotonic() - began
    assert response.status_code == 200
    assert 0.15 <= elapsed < 0.45
    assert counter(short_tries_client, "shop_upstream_hedges_total", upstream="prod") == 1
    assert counter(short_tries_client, "shop_upstream_errors_total", upstream="prod",
                   kind="timeout") == 0
    assert upstreams.prod.connections == 2


def test_prod_timeout_is_504_within_budget(front_client: TestClient,
                                           upstreams: Upstreams) -> None:
    """A product service that never answers costs the whole budget at most (0.5 s), then 504."""
    upstreams.prod.always = never_answers
    began = time.monotonic()
    response = front_client.get("/product-detail/2")
    elapsed = time.monotonic() - began
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert 0.45 < elapsed < 0.8


def test_prod_5xx_is_retried_once_then_502(front_client: TestClient,
                                           upstreams: Upstreams) -> None:
    """A 500 from the product service is retried once, then reported as 502."""
    upstreams.prod.always = answers(500, b'{"error": "boom"}')
    response = front_client.get("/product-detail/2")
    assert response.status_code == 502
    assert upstreams.prod.connections == 2


def test_prod_503_is_503(front_client: TestClient, upstreams: Upstreams) -> None:
    """A product service that says it is unavailable makes the front say so too."""
    upstreams.prod.always = answers(503, b"")
    assert front_client.get("/product-detail/2").status_code == 503


def test_prod_5xx_then_recovery(front_client: TestClient, upstreams: Upstreams) -> None:
    """One 503 followed by a good answer is invisible to the user."""
    upstreams.prod.faults = [answers(503, b"")]
    assert front_client.get("/product-detail/2").status_code == 200


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"prodNo": 2, "name": "x"}',
                                  b'{"prodNo": 2, "name": "x", "category": "c", "desc": "d", '
                                  b'"price": -1}'])
def test_prod_garbage_is_502(front_client: TestClient, upstreams: Upstreams,
                             body: bytes) -> None:
    """A product body that is not a valid product is a 502, never a 404 or a 500."""
    upstreams.prod.always = answers(200, body)
    response = front_client.get("/product-detail/2")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "bad_upstream_response"


def test_prod_4xx_is_not_retried(front_client: TestClient, upstreams: Upstreams) -> None:
    """A 4xx from the product service is an answer, not a failure to retry."""
    upstreams.prod.always = answers(400, b"{}")
    assert front_client.get("/product-detail/2").status_code == 502
    assert upstreams.prod.connections == 1


@pytest.mark.parametrize("fault", ["refused", "timeout", "500", "garbage"])
def test_coupon_outage_degrades(front_client: TestClient, upstreams: Upstreams,
                                fault: str) -> None:
    """Without coupons the front still answers 200, says so, and prices at the plain price."""
    if fault == "refused":
        upstreams.refuse("coupon")
    else:
        upstreams.coupon.always = {"timeout": never_answers, "500": answers(500, b"{}"),
                                   "garbage": answers(200, b"nope")}[fault]
    response = front_client.get("/product-detail/2")
    assert response.status_code == 200
    body = response.json()
    assert body["coupons"] == []
    assert body["couponsAvailable"] is False
    assert body["couponPrice"] == body["prod"]["price"] == 160000
    assert response.headers["x-degraded"] == "coupons"
    assert counter(front_client, "shop_degraded_responses_total", missing="coupons") == 1


def test_a_plain_request_is_one_line(front_client: TestClient,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A product detail whose upstream calls each answered at the first try writes one line
    in the front, its access line, which carries what each upstream call did."""
    capsys.readouterr()
    front_client.get("/product-detail/2", headers={"X-Request-ID": "plain"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (line,) = [line for line in lines if line["service"] == "front"]
    assert (line["event"], line["status"], line["request_id"]) == ("request", 200, "plain")
    for upstream in ("prod", "coupon"):
        summary = line["upstreams"][upstream]
        assert (summary["status"], summary["tries"], summary["hedges"], summary["outcome"]) \
            == (200, 1, 0, "ok")
        assert 0 < summary["ms"] < 500


def test_upstream_calls_are_logged(short_tries_client: TestClient, upstreams: Upstreams,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A call that needed more than one try logs each try as it ends (number, kind, outcome);
    its summary on the access line counts them; every line of the request carries its id."""
    upstreams.prod.faults = [never_answers]
    capsys.readouterr()
    short_tries_client.get("/product-detail/1", headers={"X-Request-ID": "logged"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    calls = [(line["upstream"], line["attempt"], line["kind"], line["outcome"])
             for line in lines if line["event"] == "upstream"]
    assert sorted(calls) == [("prod", 1, "first", "lost"), ("prod", 2, "hedge", "ok")]
    (access,) = [line for line in lines if line["event"] == "request"]
    assert access["upstreams"]["prod"]["tries"] == 2
    assert access["upstreams"]["prod"]["hedges"] == 1
    assert access["upstreams"]["coupon"]["tries"] == 1
    front_lines = [line for line in lines if line["service"] == "front"]
    assert {line["request_id"] for line in front_lines} == {"logged"}
    assert [line["event"] for line in front_lines][-1] == "request"


def test_warm_up_greets_each_upstream_before_serving(upstreams: Upstreams,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Before it listens, the front asks each upstream's /health once (its addresses are then
    in memory and a connection is open), and logs what it found."""
    settings = front_settings_for(upstreams, upstream_warmup_seconds=2)
    with TestClient(create_app(settings)):
        assert [r.path for r in upstreams.prod.requests] == ["/health"]
        assert [r.path for r in upstreams.coupon.requests] == ["/health"]
    warmups = [json.loads(line) for line in capsys.readouterr().out.splitlines()
               if '"warmup"' in line]
    assert sorted((w["url"].rsplit("/", 1)[0], w["status"]) for w in warmups) == sorted(
        [(upstreams.prod.url, 200), (upstreams.coupon.url, 200)])


def test_warm_up_never_blocks_the_start(upstreams: Upstreams) -> None:
    """An upstream that does not answer yet (a first deploy) costs the warm-up's bound, and
    the front starts anyway."""
    upstreams.prod.always = never_answers
    settings = front_settings_for(upstreams, upstream_warmup_seconds=0.3)
    began = time.monotonic()
    with TestClient(create_app(settings)) as client:
        assert time.monotonic() - began < 1.0
        assert client.get("/health").status_code == 200
