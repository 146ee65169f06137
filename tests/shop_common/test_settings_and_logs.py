import asyncio
import logging

import orjson
import pytest
from pydantic import Field, ValidationError

from front_service.settings import FrontSettings
from shop_common.context import request_id_var
from shop_common.logs import make_log, stdlib_formatter
from shop_common.metrics import ServiceMetrics
from shop_common.serve import settings_problems
from shop_common.settings import ServiceSettings


def test_settings_come_from_shop_variables_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """SHOP_<FIELD> in any case sets a field; a variable without the prefix does not."""
    monkeypatch.setenv("SHOP_PORT", "9001")
    monkeypatch.setenv("shop_access_log", "false")
    monkeypatch.setenv("SHOP_UPSTREAM_TIMEOUT_SECONDS", "1.5")
    monkeypatch.setenv("PORT", "1")  # no prefix: not a shop setting
    settings = FrontSettings()
    assert settings.port == 9001
    assert settings.access_log is False
    assert settings.upstream_timeout_seconds == 1.5


def test_constructor_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the code passes is what it gets, whatever the environment says."""
    monkeypatch.setenv("SHOP_PORT", "9001")
    assert FrontSettings(port=9002).port == 9002


@pytest.mark.parametrize("value", ["99999", "", "eighty"])
def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                  value: str) -> None:
    """A bad value is refused, and the message names the environment variable to fix."""
    monkeypatch.setenv("SHOP_PORT", value)
    with pytest.raises(ValidationError) as caught:
        FrontSettings()
    assert settings_problems(caught.value).startswith("SHOP_PORT: ")


def test_settings_that_contradict_each_other_are_refused() -> None:
    """A try timeout longer than the whole upstream budget is a mistake, said at start-up."""
    with pytest.raises(ValidationError) as caught:
        FrontSettings(upstream_attempt_timeout_seconds=2, upstream_timeout_seconds=1)
    assert "upstream_attempt_timeout_seconds must not exceed" in settings_problems(caught.value)


def test_defaults_are_validated_too() -> None:
    """A subclass's bad default fails as loudly as a bad environment value."""
    class BadDefault(ServiceSettings):
        port: int = Field(default=0, ge=1)

    with pytest.raises(ValidationError, match="port"):
        BadDefault()


def _lines(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines()]


def test_each_line_is_written_when_it_happens(capsys: pytest.CaptureFixture[str]) -> None:
    """A line is on stdout as soon as it is logged, with the keys every shop line has."""
    log = make_log("front", "front-1", "2")
    log.warning("upstream", upstream="prod", attempt=1)
    (line,) = _lines(capsys.readouterr().out)
    assert list(line)[:6] == ["ts", "level", "service", "instance", "release", "event"]
    assert line["level"] == "warning"
    assert (line["service"], line["instance"], line["release"]) == ("front", "front-1", "2")
    assert (line["event"], line["upstream"], line["attempt"]) == ("upstream", "prod", 1)
    assert str(line["ts"]).endswith("Z")
    assert "request_id" not in line  # outside a request


def test_lines_carry_their_own_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    """Two requests in flight at once: each line carries the id of the request it belongs to,
    however the lines interleave."""
    log = make_log("front", "front-1", "2")

    async def request(request_id: str) -> None:
        request_id_var.set(request_id)
        for step in range(3):
            log.info("upstream", step=step)
            await asyncio.sleep(0)

    async def both() -> None:
        await asyncio.gather(request("a"), request("b"))

    asyncio.run(both())
    lines = _lines(capsys.readouterr().out)
    assert [line["request_id"] for line in lines] == ["a", "b"] * 3


def test_levels_below_the_setting_are_not_written(capsys: pytest.CaptureFixture[str]) -> None:
    """SHOP_LOG_LEVEL=warning keeps info lines out."""
    log = make_log("prod", "prod-1", "2", level="warning")
    log.info("request")
    log.error("error", message="boom")
    assert [line["event"] for line in _lines(capsys.readouterr().out)] == ["error"]


def test_server_messages_become_log_lines() -> None:
    """uvicorn's own messages (stdlib logging) come out as the shop's JSON lines."""
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1,
                               "Started server process [%d]", (42,), None)
    line = orjson.loads(stdlib_formatter("coupon", "coupon-1", "2").format(record))
    assert line["event"] == "log"
    assert line["level"] == "info"
    assert line["logger"] == "uvicorn.error"
    assert line["message"] == "Started server process [42]"
    assert (line["service"], line["instance"], line["release"]) == ("coupon", "coupon-1", "2")


def test_cached_metric_children_still_count_per_label() -> None:
    """Requests are counted by route template, method (unknown ones as "other") and class."""
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
