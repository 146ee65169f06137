import asyncio
import json
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from upstreams import Upstreams

from front_service.app import create_app
from front_service.settings import FrontSettings

EXPECTED_COUPON_PRICE = {1: 119310, 2: 155200, 3: 1455000, 4: 50000}


async def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def dropped(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("server disconnected without response", request=request)


async def hangs(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(30)
    raise AssertionError("the front should have given up long before")


def answers(status: int, body: bytes = b"") -> "object":
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})
    return handler


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
    """Release 1 answers the same product and coupons without couponPrice."""
    settings = FrontSettings(instance="front-r1", release="1")
    with TestClient(create_app(settings, transport=upstreams)) as client:
        response = client.get("/product-detail/2")
        assert response.status_code == 200
        assert "couponPrice" not in response.json()
        assert len(response.json()["coupons"]) == 2
        assert response.headers["x-release"] == "1"
        assert client.get("/health").json()["release"] == "1"


def test_upstream_calls_overlap(front_client: TestClient, upstreams: Upstreams) -> None:
    """The product and coupon calls run concurrently: two 0.2 s upstreams take ~0.2 s, not 0.4."""
    spans: dict[str, tuple[float, float]] = {}

    def slow(host: str) -> "object":
        async def handler(request: httpx.Request) -> httpx.Response:
            began = time.monotonic()
            await asyncio.sleep(0.2)
            response = await upstreams.apps[host].handle_async_request(request)
            spans[host] = (began, time.monotonic())
            return response
        return handler

    upstreams.always = {"prod.api": slow("prod.api"), "coupon.api": slow("coupon.api")}
    response = front_client.get("/product-detail/1")
    assert response.status_code == 200
    (prod_start, prod_end), (coupon_start, coupon_end) = spans["prod.api"], spans["coupon.api"]
    assert prod_start < coupon_end
    assert coupon_start < prod_end


def test_unknown_product_is_404(front_client: TestClient) -> None:
    """The product service's 404 is the front's 404."""
    response = front_client.get("/product-detail/77")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "product 77 does not exist"


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "1.5", "9" * 30])
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
    upstreams.requests.clear()
    generated = front_client.get("/product-detail/2").headers["x-request-id"]
    assert {r.headers["x-request-id"] for r in upstreams.requests} == {generated}


def test_retry_after_dropped_connection(front_client: TestClient, upstreams: Upstreams) -> None:
    """A pooled connection closed by a stopping replica is retried: the user sees a 200."""
    upstreams.faults["prod.api"] = [dropped]
    upstreams.faults["coupon.api"] = [refused]
    response = front_client.get("/product-detail/2")
    assert response.status_code == 200
    assert response.json()["couponsAvailable"] is True
    assert upstreams.calls_to("prod.api") == 2
    assert upstreams.calls_to("coupon.api") == 2
    assert counter(front_client, "shop_upstream_retries_total", upstream="prod") == 1


def test_retries_are_bounded(front_client: TestClient, upstreams: Upstreams) -> None:
    """A product service that keeps refusing gets 1 + 2 attempts, then the user gets a 503."""
    upstreams.always["prod.api"] = refused
    response = front_client.get("/product-detail/2")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert upstreams.calls_to("prod.api") == 3


def test_prod_timeout_is_504_within_budget(front_client: TestClient,
                                           upstreams: Upstreams) -> None:
    """A product service that never answers costs the total timeout (0.5 s here), then 504."""
    upstreams.always["prod.api"] = hangs
    began = time.monotonic()
    response = front_client.get("/product-detail/2")
    elapsed = time.monotonic() - began
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert 0.45 < elapsed < 1.0


def test_prod_5xx_is_retried_once_then_502(front_client: TestClient,
                                           upstreams: Upstreams) -> None:
    """A 500 from the product service is retried once, then reported as 502."""
    upstreams.always["prod.api"] = answers(500, b'{"error": "boom"}')
    response = front_client.get("/product-detail/2")
    assert response.status_code == 502
    assert upstreams.calls_to("prod.api") == 2


def test_prod_503_is_503(front_client: TestClient, upstreams: Upstreams) -> None:
    """A product service that says it is unavailable makes the front say so too."""
    upstreams.always["prod.api"] = answers(503)
    assert front_client.get("/product-detail/2").status_code == 503


def test_prod_5xx_then_recovery(front_client: TestClient, upstreams: Upstreams) -> None:
    """One 503 followed by a good answer is invisible to the user."""
    upstreams.faults["prod.api"] = [answers(503)]
    assert front_client.get("/product-detail/2").status_code == 200


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"prodNo": 2, "name": "x"}',
                                  b'{"prodNo": 2, "name": "x", "category": "c", "desc": "d", '
                                  b'"price": -1}'])
def test_prod_garbage_is_502(front_client: TestClient, upstreams: Upstreams,
                             body: bytes) -> None:
    """A product body that is not a valid product is a 502, never a 404 or a 500."""
    upstreams.always["prod.api"] = answers(200, body)
    response = front_client.get("/product-detail/2")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "bad_upstream_response"


def test_prod_4xx_is_not_retried(front_client: TestClient, upstreams: Upstreams) -> None:
    """A 4xx from the product service is an answer, not a failure to retry."""
    upstreams.always["prod.api"] = answers(400)
    assert front_client.get("/product-detail/2").status_code == 502
    assert upstreams.calls_to("prod.api") == 1


@pytest.mark.parametrize("fault", [refused, hangs, answers(500), answers(200, b"nope")],
                         ids=["refused", "timeout", "500", "garbage"])
def test_coupon_outage_degrades(front_client: TestClient, upstreams: Upstreams,
                                fault: "object") -> None:
    """Without coupons the front still answers 200, says so, and prices at the plain price."""
    upstreams.always["coupon.api"] = fault  # type: ignore[assignment]
    response = front_client.get("/product-detail/2")
    assert response.status_code == 200
    body = response.json()
    assert body["coupons"] == []
    assert body["couponsAvailable"] is False
    assert body["couponPrice"] == body["prod"]["price"] == 160000
    assert response.headers["x-degraded"] == "coupons"
    assert counter(front_client, "shop_degraded_responses_total", missing="coupons") == 1


def test_upstream_calls_are_logged(front_client: TestClient, upstreams: Upstreams,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Each upstream attempt is a JSON line with timing, attempt number and outcome."""
    upstreams.faults["prod.api"] = [refused]
    capsys.readouterr()
    front_client.get("/product-detail/1", headers={"X-Request-ID": "logged"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    calls = [(line["upstream"], line["attempt"], line["outcome"])
             for line in lines if line["event"] == "upstream"]
    assert sorted(calls) == [("coupon", 1, "ok"), ("prod", 1, "connect"), ("prod", 2, "ok")]
    assert all(line["request_id"] == "logged" for line in lines if line["event"] != "log")
