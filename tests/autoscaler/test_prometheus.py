from collections.abc import Iterator

import httpx
import pytest
import respx

from autoscaler.prometheus import MetricsUnavailable, PrometheusRates

BASE = "http://prometheus:9090"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """The autoscaler's Prometheus client, as __main__ builds it."""
    with httpx.Client(base_url=BASE, timeout=2, trust_env=False) as client:
        yield client


def vector(*samples: tuple[dict[str, str], str]) -> dict:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": m, "value": [1764576000.0, v]} for m, v in samples],
        },
    }


@respx.mock
def test_rates_per_swarm_service_from_one_query(client):
    """One instant query sums every replica's request rate per swarm service."""
    route = respx.get(f"{BASE}/api/v1/query").mock(
        return_value=httpx.Response(
            200,
            json=vector(
                ({"swarm_service": "front_app"}, "112.5"),
                ({"swarm_service": "prod_app"}, "0"),
            ),
        )
    )

    rates = PrometheusRates(client, window_s=20).request_rates()

    assert rates == {"front_app": 112.5, "prod_app": 0.0}
    (call,) = route.calls
    assert call.request.url.params["query"] == (
        "sum by (swarm_service) (rate(shop_http_requests_total[20s]))"
    )


@respx.mock
def test_not_a_number_and_unlabelled_series_are_no_data(client):
    """NaN or infinite rates, and series without the service label, are left out."""
    respx.get(f"{BASE}/api/v1/query").mock(
        return_value=httpx.Response(
            200,
            json=vector(
                ({"swarm_service": "front_app"}, "NaN"),
                ({"swarm_service": "coupon_app"}, "+Inf"),
                ({}, "12"),
                ({"swarm_service": "prod_app"}, "3.5"),
            ),
        )
    )
    assert PrometheusRates(client, 20).request_rates() == {"prod_app": 3.5}


@respx.mock
def test_empty_answer_is_no_rates(client):
    """Nothing scraped yet: an empty vector, so every service has no data (not zero)."""
    respx.get(f"{BASE}/api/v1/query").mock(return_value=httpx.Response(200, json=vector()))
    assert PrometheusRates(client, 20).request_rates() == {}


def answer(result: object, result_type: str = "vector") -> httpx.Response:
    return httpx.Response(
        200, json={"status": "success", "data": {"resultType": result_type, "result": result}}
    )


@pytest.mark.parametrize(
    "response",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.Response(503, text="service unavailable"),
        httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "parse"}),
        httpx.Response(200, text="<html>not json</html>"),
        httpx.Response(200, json=["not", "an", "object"]),
        answer([], result_type="matrix"),
        answer([{"metric": {"swarm_service": "x"}}]),
        answer([{"metric": {"swarm_service": "x"}, "value": [1, "many"]}]),
    ],
    ids=["refused", "timeout", "503", "400", "not-json", "list", "matrix", "no-value",
         "bad-number"],
)
@respx.mock
def test_unreachable_or_malformed_is_metrics_unavailable(client, response):
    """Anything but a well-formed vector raises MetricsUnavailable: the autoscaler holds."""
    route = respx.get(f"{BASE}/api/v1/query")
    if isinstance(response, Exception):
        route.mock(side_effect=response)
    else:
        route.mock(return_value=response)
    with pytest.raises(MetricsUnavailable):
        PrometheusRates(client, 20).request_rates()
