import asyncio

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from front_service.app import create_app as create_front_app
from prod_service.app import create_app as create_prod_app
from prod_service.settings import ProdSettings
from tests.support.upstreams import Upstreams, front_settings_for


def sample(client: TestClient, name: str, **labels: str) -> float:
    registry = client.app.state.metrics.registry  # type: ignore[attr-defined]
    return registry.get_sample_value(name, labels) or 0.0


def test_request_counts_by_route_template(prod_client: TestClient) -> None:
    """Requests are counted by route template, method and status class."""
    for path in ("/products/1", "/products/2", "/products/99", "/products/abc"):
        prod_client.get(path)
    route = "/products/{prodNo}"
    assert sample(prod_client, "shop_http_requests_total", route=route, method="GET",
                  status_class="2xx") == 2
    assert sample(prod_client, "shop_http_requests_total", route=route, method="GET",
                  status_class="4xx") == 2


def test_latency_histogram_buckets(prod_client: TestClient) -> None:
    """Each request lands in the latency histogram of its route."""
    for _ in range(3):
        prod_client.get("/products/1")
    route = "/products/{prodNo}"
    assert sample(prod_client, "shop_http_request_duration_seconds_count", route=route) == 3
    assert sample(prod_client, "shop_http_request_duration_seconds_bucket", route=route,
                  le="5.0") == 3
    assert sample(prod_client, "shop_http_request_duration_seconds_sum", route=route) > 0


def test_health_and_metrics_are_not_counted(prod_client: TestClient) -> None:
    """Probes and scrapes stay out of the request metrics."""
    prod_client.get("/health")
    prod_client.get("/metrics")
    text = prod_client.get("/metrics").text
    assert '/health"' not in text
    assert '/metrics"' not in text


def test_metrics_endpoint_is_prometheus_text(prod_client: TestClient) -> None:
    """/metrics parses as Prometheus text and carries the build info and drain gauge."""
    prod_client.get("/products/1")
    response = prod_client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"shop_http_requests", "shop_http_request_duration_seconds",
            "shop_http_requests_in_flight", "shop_draining", "shop_build_info"} <= names
    assert sample(prod_client, "shop_build_info", service="prod", release="2") == 1


def test_distinct_bad_paths_do_not_grow_series(prod_settings: ProdSettings) -> None:
    """Thousands of distinct invalid ids and unknown paths add no label values."""
    app = create_prod_app(prod_settings)

    async def flood() -> tuple[str, str]:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://prod") as client:
            await client.get("/products/abc")
            await client.get("/nowhere")
            before = (await client.get("/metrics")).text
            for n in range(3000):
                await client.get(f"/products/x{n}")
                if n % 3 == 0:
                    await client.get(f"/random/{n}")
            return before, (await client.get("/metrics")).text

    before, after = asyncio.run(flood())
    assert len(after) < len(before) + 200  # only counter values changed, no new series
    assert "x2999" not in after
    assert "/random" not in after
    assert 'route="unmatched"' in after
    registry = app.state.metrics.registry
    assert registry.get_sample_value("shop_http_requests_total", {
        "route": "/products/{prodNo}", "method": "GET", "status_class": "4xx"}) == 3001


@pytest.mark.parametrize("release", ["1", "2"])
def test_release_label_follows_the_setting(upstreams: Upstreams, release: str) -> None:
    """The build info gauge and X-Release follow the release setting of each app."""
    settings = front_settings_for(upstreams, instance="front-m", release=release)
    with TestClient(create_front_app(settings)) as client:
        client.get("/product-detail/1")
        assert sample(client, "shop_build_info", service="front", release=release) == 1
        assert sample(client, "shop_http_requests_total", route="/product-detail/{prodNo}",
                      method="GET", status_class="2xx") == 1


def test_front_upstream_metrics(front_client: TestClient) -> None:
    """The front records each upstream call's latency."""
    front_client.get("/product-detail/2")
    for upstream in ("prod", "coupon"):
        assert sample(front_client, "shop_upstream_request_duration_seconds_count",
                      upstream=upstream) == 1


def test_draining_gauge(prod_client: TestClient) -> None:
    """The draining gauge turns 1 when the drain starts."""
    assert sample(prod_client, "shop_draining") == 0
    prod_client.app.state.lifecycle.start_draining()  # type: ignore[attr-defined]
    assert sample(prod_client, "shop_draining") == 1
