import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from prod_service.app import create_app
from prod_service.settings import ProdSettings
from shop_common.datafile import DataFileError

CATALOGUE = {
    1: ("LG 17인치 모니터", "PC 주변기기", "LG 모니터 너무 좋아요.", 123000),
    2: ("LG 19인치 모니터", "PC 주변기기", "LG 모니터 너무 좋아요.", 160000),
    3: ("맥북 프로 15인치", "랩탑/노트북", "맥북 좋아요!", 1500000),
    4: ("공유기", "PC 주변기기", "공유 잘됩니다.", 50000),
}


@pytest.mark.parametrize("prod_no", sorted(CATALOGUE))
def test_get_product(prod_client: TestClient, prod_no: int) -> None:
    """Each catalogue product is served with its name, category, description and price."""
    response = prod_client.get(f"/products/{prod_no}")
    assert response.status_code == 200
    name, category, desc, price = CATALOGUE[prod_no]
    assert response.json() == {"prodNo": prod_no, "name": name, "category": category,
                               "desc": desc, "price": price}
    assert response.headers["content-type"] == "application/json"


def test_list_products(prod_client: TestClient) -> None:
    """GET /products lists the whole catalogue in order."""
    response = prod_client.get("/products")
    assert [p["prodNo"] for p in response.json()] == [1, 2, 3, 4]


def test_unknown_product_is_404(prod_client: TestClient) -> None:
    """A well-formed number that is not in the catalogue is a 404 with the JSON error shape."""
    response = prod_client.get("/products/5", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 404
    assert response.json() == {"error": {"status": 404, "code": "not_found",
                                         "message": "product 5 does not exist",
                                         "request_id": "abc-123"}}


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "1.5", "9" * 30, "%20", "1e3"])
def test_invalid_product_number_is_400(prod_client: TestClient, raw: str) -> None:
    """Product numbers that are not positive integers in range are a 400, never a 404/422."""
    response = prod_client.get(f"/products/{raw}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_every_response_names_service_instance_release_and_request(
        prod_client: TestClient) -> None:
    """Instance, release, service and request id headers are on every response, errors too."""
    for path in ("/products/1", "/products/99", "/nowhere", "/health"):
        headers = prod_client.get(path).headers
        assert headers["x-instance"] == "prod-test"
        assert headers["x-release"] == "2"
        assert headers["x-service"] == "prod"
        assert len(headers["x-request-id"]) == 32


def test_request_id_is_kept_when_safe(prod_client: TestClient) -> None:
    """A client's plain request id is returned as is; an unsafe one is replaced."""
    assert prod_client.get("/products/1", headers={"X-Request-ID": "req.1_A-b"}).headers[
        "x-request-id"] == "req.1_A-b"
    replaced = prod_client.get("/products/1", headers={"X-Request-ID": "bad id;<x>"})
    assert replaced.headers["x-request-id"] != "bad id;<x>"
    assert len(replaced.headers["x-request-id"]) == 32


def test_health(prod_client: TestClient) -> None:
    """/health says OK with service, release and instance."""
    assert prod_client.get("/health").json() == {
        "status": "OK", "service": "prod", "release": "2", "instance": "prod-test"}


def test_health_is_503_while_draining(prod_client: TestClient) -> None:
    """Once draining starts, /health answers 503 and responses ask clients to reconnect."""
    prod_client.app.state.lifecycle.start_draining()  # type: ignore[attr-defined]
    response = prod_client.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "DRAINING"
    assert prod_client.get("/products/1").headers["connection"] == "close"


def test_access_log_line(prod_client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    """One JSON line per request with method, path, status, duration and request id."""
    capsys.readouterr()
    prod_client.get("/products/3", headers={"X-Request-ID": "log-me"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [line] = [line for line in lines if line.get("event") == "request"]
    assert line["method"] == "GET"
    assert line["path"] == "/products/3"
    assert line["status"] == 200
    assert line["request_id"] == "log-me"
    assert line["service"] == "prod"
    assert isinstance(line["duration_ms"], float)
    assert line["ts"].endswith("Z")


def test_openapi_docs(prod_client: TestClient) -> None:
    """The API is documented at /docs and /openapi.json."""
    assert prod_client.get("/docs").status_code == 200
    assert "/products/{prodNo}" in prod_client.get("/openapi.json").json()["paths"]


def test_catalogue_file_setting(tmp_path: Path) -> None:
    """A catalogue file named in the settings replaces the packaged one."""
    data = tmp_path / "products.json"
    data.write_text(json.dumps([{"prodNo": 7, "name": "키보드", "category": "PC",
                                 "desc": "좋아요", "price": 30000}]))
    with TestClient(create_app(ProdSettings(catalogue_file=data))) as client:
        assert client.get("/products/7").json()["price"] == 30000
        assert client.get("/products/1").status_code == 404


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read data file"),
    ("{not json", "invalid data file"),
    ('[{"prodNo": 1, "name": "x", "category": "c", "desc": "d"}]', "price"),
    ('[{"prodNo": 1, "name": "x", "category": "c", "desc": "d", "price": -5}]', "price"),
    ('[{"prodNo": 1, "name": "x", "category": "c", "desc": "d", "price": 1.5}]', "price"),
    ('{"prodNo": 1}', "invalid data file"),
    ('[{"prodNo": 1, "name": "a", "category": "c", "desc": "d", "price": 1},'
     ' {"prodNo": 1, "name": "b", "category": "c", "desc": "d", "price": 2}]', "duplicate"),
])
def test_bad_catalogue_file_stops_start_up(tmp_path: Path, content: str | None,
                                           problem: str) -> None:
    """A missing or malformed catalogue stops the service with the file name and the problem."""
    data = tmp_path / "products.json"
    if content is not None:
        data.write_text(content)
    with pytest.raises(DataFileError) as caught:
        create_app(ProdSettings(catalogue_file=data))
    assert str(data) in str(caught.value)
    assert problem in str(caught.value)


def test_simulated_latency_delays_api_answers_only() -> None:
    """SHOP_SIMULATED_LATENCY_MS delays the API answers, never /health."""
    latency = 0.3
    settings = ProdSettings(simulated_latency_ms=int(latency * 1000))
    with TestClient(create_app(settings)) as client:
        client.get("/health")  # the first request of a client pays for its set-up
        started = time.monotonic()
        assert client.get("/products/1").status_code == 200
        api_seconds = time.monotonic() - started
        started = time.monotonic()
        assert client.get("/health").status_code == 200
        health_seconds = time.monotonic() - started
    assert api_seconds >= latency
    assert health_seconds < latency
