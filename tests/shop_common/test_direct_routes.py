"""The direct path (ShopApp) answers exactly as FastAPI's full path would.

Each case goes to two copies of a service: one as built (its hot GET route answered
directly) and one with the direct routes removed (everything through FastAPI). Status,
body and headers must be identical, request id included (the client sends one).
"""
from collections.abc import Callable

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.testclient import TestClient
from upstreams import Upstreams

from coupon_service.app import create_app as create_coupon_app
from coupon_service.settings import CouponSettings
from front_service.app import create_app as create_front_app
from front_service.settings import FrontSettings
from prod_service.app import create_app as create_prod_app
from prod_service.settings import ProdSettings
from shop_common.app import ShopApp, build_app
from shop_common.settings import ServiceSettings

PRODUCT_NUMBERS = ["1", "2", "5", "999", "0", "-1", "x", "1.5", "2147483648", "%20", "１", "2 "]


def _paths(template: str) -> list[str]:
    return [template.format(n) for n in PRODUCT_NUMBERS] + [
        template.format("2") + "/", template.format("2") + "?verbose=1"]


def _answers(app: FastAPI, paths: list[str], direct: bool,
             before_each: Callable[[], None] = lambda: None) -> list[tuple[object, ...]]:
    assert isinstance(app, ShopApp)
    assert app.direct_routes, "the service has a direct route"
    if not direct:
        app.direct_routes = []
    answers = []
    with TestClient(app) as client:
        for number, path in enumerate(paths):
            before_each()
            response = client.get(path, headers={"x-request-id": f"case-{number}"})
            answers.append((path, response.status_code, response.content,
                            list(response.headers.items())))
        metrics = client.get("/metrics").text
    served = [line for line in metrics.splitlines()
              if line.startswith("shop_http_requests_total{")]
    return [*answers, tuple(sorted(served))]


@pytest.mark.parametrize("service", ["prod", "coupon"])
def test_backend_direct_path_answers_as_fastapi(service: str) -> None:
    if service == "prod":
        def build() -> FastAPI:
            return create_prod_app(ProdSettings(instance="t"))
        paths = _paths("/products/{}")
    else:
        def build() -> FastAPI:
            return create_coupon_app(CouponSettings(instance="t"))
        paths = _paths("/products/{}/coupons")
    direct = _answers(build(), paths, direct=True)
    assert direct == _answers(build(), paths, direct=False)
    assert any(status == 200 for _, status, *_ in direct[:-1])
    assert any(status == 400 for _, status, *_ in direct[:-1])


def test_front_direct_path_answers_as_fastapi_with_faults() -> None:
    paths = _paths("/product-detail/{}") + ["/product-detail/2"] * 3

    def faults(upstreams: Upstreams) -> Callable[[], None]:
        plan: list[tuple[str, int]] = [("", 0)] * (len(paths) - 3) + [
            ("coupon.api", 503), ("prod.api", 500), ("prod.api", 404)]
        steps = iter(plan)

        def before_each() -> None:
            host, status = next(steps)
            if host:
                async def answer(request: httpx.Request, status: int = status) -> httpx.Response:
                    return httpx.Response(status, json={"error": "fault"})
                # Every attempt (retries included) gets the fault.
                upstreams.faults[host].extend([answer] * 3)
        return before_each

    results = []
    for direct in (True, False):
        upstreams = Upstreams()
        settings = FrontSettings(instance="t", release="2", upstream_timeout_seconds=0.5)
        results.append(_answers(create_front_app(settings, transport=upstreams), paths,
                                direct, faults(upstreams)))
    assert results[0] == results[1]
    statuses = [status for _, status, *_ in results[0][:-1]]
    assert {200, 400, 404, 502}.issubset(statuses)


def test_direct_path_carries_request_id_headers_log_and_metrics(
        capsys: pytest.CaptureFixture[str]) -> None:
    with TestClient(create_prod_app(ProdSettings(instance="p1"))) as client:
        capsys.readouterr()
        response = client.get("/products/2", headers={"x-request-id": "abc-1"})
        metrics = client.get("/metrics").text
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc-1"
    assert response.headers["x-instance"] == "p1"
    log = capsys.readouterr().out
    assert '"event":"request"' in log
    assert '"request_id":"abc-1"' in log
    assert ('shop_http_requests_total{method="GET",route="/products/{prodNo}",'
            'status_class="2xx"} 1.0') in metrics


def test_no_direct_path_while_a_simulated_latency_is_set() -> None:
    app = create_prod_app(ProdSettings(instance="t", simulated_latency_ms=1))
    assert isinstance(app, ShopApp)
    assert app.direct_routes == []


def _app_with(router: APIRouter, path: str) -> FastAPI:
    return build_app(service="t", title="t", description="t", settings=ServiceSettings(),
                     routers=[router], direct_paths=[path])


def test_direct_routes_take_only_str_path_parameters_and_the_request() -> None:
    router = APIRouter()

    @router.get("/a/{n}")
    async def typed(n: int, request: Request) -> None: ...

    async def dependency() -> None: ...

    @router.get("/b/{n}", dependencies=[Depends(dependency)])
    async def with_dependency(n: str) -> None: ...

    with pytest.raises(TypeError, match="str path parameters"):
        _app_with(router, "/a/{n}")
    with pytest.raises(TypeError, match="dependencies"):
        _app_with(router, "/b/{n}")
    with pytest.raises(LookupError):
        _app_with(router, "/c/{n}")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOP_SIMULATED_LATENCY_MS", raising=False)
