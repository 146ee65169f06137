import orjson
import pytest
from pydantic import Field, ValidationError

from front_service.settings import FrontSettings
from shop_common.logs import JsonLog
from shop_common.metrics import ServiceMetrics
from shop_common.settings import ServiceSettings


def test_settings_come_from_shop_variables_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_PORT", "9001")
    monkeypatch.setenv("shop_access_log", "false")
    monkeypatch.setenv("SHOP_UPSTREAM_TIMEOUT_SECONDS", "1.5")
    monkeypatch.setenv("PORT", "1")  # no prefix: not a shop setting
    settings = FrontSettings()
    assert settings.port == 9001
    assert settings.access_log is False
    assert settings.upstream_timeout_seconds == 1.5


def test_constructor_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_PORT", "9001")
    assert FrontSettings(port=9002).port == 9002


def test_bad_environment_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_PORT", "99999")
    with pytest.raises(ValidationError, match="port"):
        FrontSettings()
    monkeypatch.setenv("SHOP_PORT", "")
    with pytest.raises(ValidationError, match="port"):
        FrontSettings()


def test_defaults_are_validated_too() -> None:
    class BadDefault(ServiceSettings):
        port: int = Field(default=0, ge=1)

    with pytest.raises(ValidationError, match="port"):
        BadDefault()


def _lines(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines()]


def test_unflushed_lines_go_out_with_the_next_line(capsys: pytest.CaptureFixture[str]) -> None:
    log = JsonLog("front", "i", "2")
    log.event("upstream", flush=False, n=1)
    log.event("upstream", flush=False, n=2)
    assert capsys.readouterr().out == ""
    log.event("request", n=3)
    assert [line["n"] for line in _lines(capsys.readouterr().out)] == [1, 2, 3]


def test_flush_writes_what_waits(capsys: pytest.CaptureFixture[str]) -> None:
    log = JsonLog("front", "i", "2")
    log.flush()
    assert capsys.readouterr().out == ""
    log.event("upstream", flush=False, n=1)
    log.flush()
    assert [line["n"] for line in _lines(capsys.readouterr().out)] == [1]
    log.flush()
    assert capsys.readouterr().out == ""


def test_cached_metric_children_still_count_per_label() -> None:
    metrics = ServiceMetrics("prod", "2")
    for method, status in [("GET", 200), ("GET", 200), ("BREW", 200), ("GET", 404)]:
        metrics.observe("/products/{prodNo}", method, status, 0.001)
    value = metrics.registry.get_sample_value
    route = "/products/{prodNo}"
    assert value("shop_http_requests_total",
                 {"route": route, "method": "GET", "status_class": "2xx"}) == 2
    assert value("shop_http_requests_total",
                 {"route": route, "method": "other", "status_class": "2xx"}) == 1
    assert value("shop_http_requests_total",
                 {"route": route, "method": "GET", "status_class": "4xx"}) == 1
    assert value("shop_http_request_duration_seconds_count", {"route": route}) == 4
