"""The autoscaler loop with fake rate and swarm sources: what it scales, what it leaves alone,
and what it logs (one JSON line per action or change of state, not one per loop)."""

import io
import json
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import docker.errors
import pytest
from prometheus_client import generate_latest

from autoscaler.metrics import AutoscalerMetrics
from autoscaler.policy import Policy, Recommender
from autoscaler.prometheus import MetricsUnavailable
from autoscaler.scaler import Autoscaler
from autoscaler.swarm import ScalableService
from shop_common.logs import make_log

POLICY = Policy(min_replicas=2, max_replicas=6, target_rps=20)


def front(current: int = 2, update_state: str = "") -> ScalableService:
    return ScalableService(
        id="id-front", name="front_app", version=1, current=current,
        update_state=update_state, policy=POLICY, spec={},
    )


@dataclass
class FakeRates:
    rates: dict[str, float] | None = field(default_factory=dict)  # None: unreachable

    def request_rates(self) -> dict[str, float]:
        if self.rates is None:
            raise MetricsUnavailable("ConnectError: connection refused")
        return dict(self.rates)


@dataclass
class FakeSwarm:
    services: list[ScalableService]
    skipped: dict[str, str] = field(default_factory=dict)
    scaled: list[tuple[str, int]] = field(default_factory=list)
    fail_scale: Exception | None = None
    fail_list: Exception | None = None

    def autoscaled(self) -> tuple[list[ScalableService], dict[str, str]]:
        if self.fail_list is not None:
            raise self.fail_list
        return list(self.services), dict(self.skipped)

    def scale(self, service: ScalableService, replicas: int) -> None:
        if self.fail_scale is not None:
            raise self.fail_scale
        self.scaled.append((service.name, replicas))
        # The swarm now runs the new count: the next read shows it.
        self.services = [replace(s, current=replicas) if s.name == service.name else s
                         for s in self.services]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    rates: FakeRates
    swarm: FakeSwarm
    clock: Clock
    metrics: AutoscalerMetrics
    lines: list[dict[str, Any]]
    autoscaler: Autoscaler

    def loop(self, seconds: float = 5.0) -> None:
        self.autoscaler.run_once()
        self.clock.now += seconds

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == name]

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def rig() -> Rig:
    """An autoscaler over fakes, logging JSON into a list, with a 30 s window."""
    lines: list[dict[str, Any]] = []

    class Capture(io.BytesIO):
        """Parses every line written (so each must be one JSON object)."""

        def write(self, data: bytes) -> int:
            lines.extend(json.loads(line) for line in data.splitlines())
            return len(data)

    rates, swarm, clock, metrics = FakeRates(), FakeSwarm([front()]), Clock(), AutoscalerMetrics()
    autoscaler = Autoscaler(
        rates, swarm, Recommender(0.1, down_stabilization_s=30), metrics,
        make_log("autoscaler", "scaler-test", file=Capture()), clock,
    )
    return Rig(rates, swarm, clock, metrics, lines, autoscaler)


def test_load_scales_out_with_one_decision_line(rig):
    """100 req/s against 20 per replica: 2 -> 5, one JSON line with every input of the decision."""
    rig.rates.rates = {"front_app": 100.0}
    rig.loop()

    assert rig.swarm.scaled == [("front_app", 5)]
    (line,) = rig.events("decision")
    assert line["action"] == "scale_up"
    assert line["service"] == "autoscaler"
    assert {k: line[k] for k in ("swarm_service", "current", "desired", "reason",
                                 "recommendation", "total_rps", "observed_rps", "target_rps",
                                 "min", "max", "metrics")} == {
        "swarm_service": "front_app", "current": 2, "desired": 5, "reason": "scale_up",
        "recommendation": 5, "total_rps": 100.0, "observed_rps": 50.0, "target_rps": 20.0,
        "min": 2, "max": 6, "metrics": "ok",
    }
    assert rig.metric("autoscaler_scalings_total", service="front_app", direction="up") == 1
    assert rig.metric("autoscaler_desired_replicas", service="front_app") == 5
    assert rig.metric("autoscaler_current_replicas", service="front_app") == 2
    assert rig.metric("autoscaler_observed_rps", service="front_app") == 50
    assert rig.metric("autoscaler_decisions_total", service="front_app", reason="scale_up") == 1


def test_steady_state_is_logged_once_not_every_loop(rig):
    """Ten loops without change write one line; the decisions are still counted."""
    rig.rates.rates = {"front_app": 40.0}
    for _ in range(10):
        rig.loop()

    assert rig.swarm.scaled == []
    (line,) = rig.events("decision")
    assert (line["action"], line["reason"], line["desired"]) == ("none", "within_tolerance", 2)
    assert rig.metric("autoscaler_decisions_total", service="front_app",
                      reason="within_tolerance") == 10
    assert rig.metric("autoscaler_last_loop_timestamp_seconds") > 0


def test_scale_in_waits_for_the_window_then_goes_to_min(rig):
    """After the load, the count stays for the 30 s window, then drops to min in one step."""
    rig.rates.rates = {"front_app": 100.0}
    rig.loop()
    rig.rates.rates = {"front_app": 10.0}
    for _ in range(6):  # t = 5 .. 30 s: the t=0 recommendation of 5 is still in the window
        rig.loop()
    assert rig.swarm.scaled == [("front_app", 5)]
    rig.loop()  # t = 35 s
    assert rig.swarm.scaled == [("front_app", 5), ("front_app", 2)]
    assert rig.events("decision")[-1]["action"] == "scale_down"


def test_prometheus_unreachable_holds_and_says_so_once(rig):
    """No Prometheus: no scaling, one warning and one hold line, however many loops; one line
    when it is back, then decisions resume."""
    rig.rates.rates = None
    for _ in range(5):
        rig.loop()

    assert rig.swarm.scaled == []
    (warning,) = rig.events("prometheus_unreachable")
    assert warning["level"] == "warning"
    assert "connection refused" in warning["error"]
    (hold,) = rig.events("decision")
    assert (hold["reason"], hold["metrics"], hold["desired"]) == ("no_data", "unreachable", 2)
    assert rig.metric("autoscaler_prometheus_up") == 0
    assert rig.metric("autoscaler_errors_total", kind="prometheus") == 5

    rig.rates.rates = {"front_app": 100.0}
    rig.loop()
    assert len(rig.events("prometheus_reachable")) == 1
    assert rig.swarm.scaled == [("front_app", 5)]
    assert rig.metric("autoscaler_prometheus_up") == 1


def test_no_series_for_the_service_holds(rig):
    """Prometheus answers but has nothing for the service: hold, logged once."""
    rig.rates.rates = {"prod_app": 500.0}
    for _ in range(3):
        rig.loop()
    assert rig.swarm.scaled == []
    (hold,) = rig.events("decision")
    assert (hold["reason"], hold["metrics"]) == ("no_data", "ok")


def test_service_mid_update_is_not_scaled(rig):
    """During the service's rolling update nothing is scaled, whatever the load."""
    rig.swarm.services = [front(update_state="updating")]
    rig.rates.rates = {"front_app": 500.0}
    rig.loop()
    assert rig.swarm.scaled == []
    assert rig.events("decision")[0]["reason"] == "update_in_progress"

    rig.swarm.services = [front(update_state="completed")]
    rig.loop()
    assert rig.swarm.scaled == [("front_app", 6)]


def test_skipped_services_are_reported_once_and_never_scaled(rig):
    """A service with unusable labels is named once in a warning and left alone."""
    rig.swarm.skipped = {"prod_app": "invalid autoscale labels: missing ...autoscale.max"}
    rig.rates.rates = {"front_app": 40.0, "prod_app": 900.0}
    for _ in range(3):
        rig.loop()
    (warning,) = rig.events("service_skipped")
    assert (warning["swarm_service"], warning["level"]) == ("prod_app", "warning")
    assert all(name == "front_app" for name, _ in rig.swarm.scaled)


def test_a_failed_scale_is_logged_and_tried_again(rig):
    """An engine error (e.g. a concurrent deploy changed the service) costs one loop, no crash."""
    rig.rates.rates = {"front_app": 100.0}
    rig.swarm.fail_scale = docker.errors.APIError("update out of sequence")
    rig.loop()
    (line,) = rig.events("decision")
    assert (line["level"], line["action"]) == ("error", "scale_up_failed")
    assert "out of sequence" in line["error"]
    assert rig.metric("autoscaler_errors_total", kind="docker_scale") == 1

    rig.swarm.fail_scale = None
    rig.loop()
    assert rig.swarm.scaled == [("front_app", 5)]


def test_a_failed_service_list_skips_the_loop(rig):
    """The engine not answering: an error line, nothing scaled, the next loop goes on."""
    rig.rates.rates = {"front_app": 100.0}
    rig.swarm.fail_list = docker.errors.DockerException("socket gone")
    rig.loop()
    assert rig.swarm.scaled == []
    assert rig.events("docker_error")[0]["action"] == "list_services"
    rig.swarm.fail_list = None
    rig.loop()
    assert rig.swarm.scaled == [("front_app", 5)]


def test_a_service_that_loses_its_labels_is_forgotten(rig):
    """Once a service is no longer autoscaled its gauges go (no stale series)."""
    rig.rates.rates = {"front_app": 40.0}
    rig.loop()
    assert b'autoscaler_current_replicas{service="front_app"}' in generate_latest(
        rig.metrics.registry
    )
    rig.swarm.services = []
    rig.loop()
    assert b'autoscaler_current_replicas{service="front_app"}' not in generate_latest(
        rig.metrics.registry
    )


def test_run_loops_until_stopped(rig):
    """run() passes every interval and returns once the stop event is set."""
    stop = threading.Event()
    passes: list[int] = []
    original = rig.autoscaler.run_once

    def counting() -> list:
        passes.append(1)
        if len(passes) == 3:
            stop.set()
        return original()

    rig.autoscaler.run_once = counting
    thread = threading.Thread(target=rig.autoscaler.run, args=(0.01, stop))
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    assert len(passes) == 3


def test_json_log_lines():
    """Each log call is one JSON object on its own line: time, level, service, event, then
    the fields, through the shop's one logging setup."""
    stream = io.BytesIO()
    log = make_log("autoscaler", "scaler-1", file=stream)
    log.info("decision", swarm_service="front_app", desired=4)
    log.warning("prometheus_unreachable", error="refused")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["ts"].endswith("Z")
    assert list(first)[:5] == ["ts", "level", "service", "instance", "event"]
    assert (first["level"], first["service"], first["event"], first["desired"]) == (
        "info", "autoscaler", "decision", 4)
    assert (second["level"], second["error"]) == ("warning", "refused")
