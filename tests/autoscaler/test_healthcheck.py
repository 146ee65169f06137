import time
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import generate_latest, start_http_server
from pydantic import ValidationError

from autoscaler import healthcheck
from autoscaler.metrics import AutoscalerMetrics
from autoscaler.settings import AutoscalerSettings


@pytest.fixture
def serving(
    free_port: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> Iterator[AutoscalerMetrics]:
    """The autoscaler's metrics served on a free loopback port, named in its settings."""
    metrics = AutoscalerMetrics()
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", registry=metrics.registry)
    monkeypatch.setenv("AUTOSCALE_METRICS_PORT", str(port))
    monkeypatch.setenv("AUTOSCALE_INTERVAL_S", "5")
    yield metrics
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_healthy_while_the_loop_runs(serving):
    """A pass finished just now: exit 0."""
    serving.last_loop.set_to_current_time()
    assert healthcheck.main() == 0


def test_unhealthy_when_the_loop_is_stuck(serving, capsys):
    """The last pass ended longer ago than 3 intervals (at least 30 s): exit 1."""
    serving.last_loop.set(time.time() - 31)
    assert healthcheck.main() == 1
    assert "no loop finished" in capsys.readouterr().out


def test_unhealthy_before_the_first_pass(serving):
    """Until a first pass ends the gauge is 0: unhealthy (the start period covers it)."""
    assert healthcheck.main() == 1


def test_unhealthy_when_nothing_answers(free_port, monkeypatch, capsys):
    """No metrics server: exit 1 with the reason."""
    monkeypatch.setenv("AUTOSCALE_METRICS_PORT", str(free_port()))
    assert healthcheck.main() == 1
    assert "unhealthy" in capsys.readouterr().out


def test_last_loop_reads_the_gauge():
    """The timestamp is read back from the exposition text."""
    metrics = AutoscalerMetrics()
    metrics.last_loop.set(1234.5)
    assert healthcheck.last_loop(generate_latest(metrics.registry).decode()) == 1234.5
    assert healthcheck.last_loop("") is None


def test_settings_from_autoscale_environment(monkeypatch):
    """AUTOSCALE_* variables set the loop; the per-service labels' variables do not matter."""
    monkeypatch.setenv("AUTOSCALE_INTERVAL_S", "2.5")
    monkeypatch.setenv("autoscale_down_stabilization_s", "30")
    monkeypatch.setenv("AUTOSCALE_PROMETHEUS_URL", "http://127.0.0.1:19090")
    monkeypatch.setenv("AUTOSCALE_TARGET_RPS", "20")  # a stack variable, not a setting
    settings = AutoscalerSettings()
    assert (settings.interval_s, settings.down_stabilization_s) == (2.5, 30.0)
    assert str(settings.prometheus_url) == "http://127.0.0.1:19090/"
    assert (settings.tolerance, settings.rate_window_s) == (0.1, 20)


@pytest.mark.parametrize(
    ("name", "value"),
    [("INTERVAL_S", "0"), ("TOLERANCE", "-0.1"), ("RATE_WINDOW_S", "5"),
     ("PROMETHEUS_URL", "not a url"), ("DOWN_STABILIZATION_S", "soon")],
)
def test_bad_settings_are_refused(monkeypatch, name, value):
    """A setting out of range stops the autoscaler at start-up with the variable named."""
    monkeypatch.setenv(f"AUTOSCALE_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        AutoscalerSettings()
