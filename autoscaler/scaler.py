"""One autoscaler loop: read the rates, read the labelled services, decide, scale, report."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import docker.errors
import requests

from autoscaler.metrics import AutoscalerMetrics
from autoscaler.policy import Decision, Recommender
from autoscaler.prometheus import MetricsUnavailable
from autoscaler.swarm import ScalableService
from shop_common.logs import LEVELS, Logger

# What the Docker SDK raises: its own errors, and the HTTP client's for a broken socket.
DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class RateSource(Protocol):
    def request_rates(self) -> dict[str, float]: ...


class ServiceSource(Protocol):
    def autoscaled(self) -> tuple[list[ScalableService], dict[str, str]]: ...

    def scale(self, service: ScalableService, replicas: int) -> None: ...


class Autoscaler:
    def __init__(
        self,
        rates: RateSource,
        swarm: ServiceSource,
        recommender: Recommender,
        metrics: AutoscalerMetrics,
        log: Logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rates = rates
        self.swarm = swarm
        self.recommender = recommender
        self.metrics = metrics
        self.log = log
        self.clock = clock
        # The last state reported per service (and for Prometheus, and per skipped service):
        # a line is written when it changes, not every loop.
        self._states: dict[str, tuple[object, ...]] = {}
        self._prometheus: str | None = None

    def run_once(self) -> list[tuple[ScalableService, Decision]]:
        """One pass over every labelled service; returns what was decided."""
        rates = self._read_rates()
        try:
            services, skipped = self.swarm.autoscaled()
        except DOCKER_ERRORS as exc:
            self.metrics.errors.labels("docker_list").inc()
            self.log.error("docker_error", action="list_services", error=str(exc))
            return []
        for name, problem in skipped.items():
            self.metrics.errors.labels("labels").inc()
            self._report_change(name, ("skipped", problem), "service_skipped", "warning",
                                swarm_service=name, problem=problem)

        now = self.clock()
        results = []
        for service in services:
            total = None if rates is None else rates.get(service.name)
            decision = self.recommender.decide(
                service.name, service.policy, service.current, total, now, service.update_state
            )
            self._apply(service, decision, "ok" if rates is not None else "unreachable")
            results.append((service, decision))

        names = {s.name for s in services}
        self.recommender.forget(names)
        for gone in {k for k in self._states if k not in names and k not in skipped}:
            del self._states[gone]
            self.metrics.forget(gone)
        self.metrics.last_loop.set_to_current_time()
        return results

    def run(self, interval_s: float, stop: threading.Event) -> None:
        """Loop every `interval_s` seconds until `stop` is set."""
        while not stop.is_set():
            started = self.clock()
            self.run_once()
            stop.wait(max(0.0, interval_s - (self.clock() - started)))

    def _read_rates(self) -> dict[str, float] | None:
        try:
            rates = self.rates.request_rates()
        except MetricsUnavailable as exc:
            self.metrics.prometheus_up.set(0)
            self.metrics.errors.labels("prometheus").inc()
            if self._prometheus != "unreachable":
                self.log.warning("prometheus_unreachable", error=str(exc),
                         effect="every autoscaled service holds its replica count")
            self._prometheus = "unreachable"
            return None
        self.metrics.prometheus_up.set(1)
        if self._prometheus == "unreachable":
            self.log.info("prometheus_reachable")
        self._prometheus = "ok"
        return rates

    def _apply(self, service: ScalableService, decision: Decision, metrics_state: str) -> None:
        name = service.name
        self.metrics.current.labels(name).set(service.current)
        self.metrics.desired.labels(name).set(decision.desired)
        self.metrics.target.labels(name).set(service.policy.target_rps)
        observed = decision.observed_rps
        self.metrics.observed.labels(name).set(math.nan if observed is None else observed)
        self.metrics.decisions.labels(name, decision.reason.value).inc()

        fields = {
            "swarm_service": name,
            "current": decision.current,
            "desired": decision.desired,
            "reason": decision.reason.value,
            "recommendation": decision.recommendation,
            "total_rps": _round(decision.total_rps),
            "observed_rps": _round(decision.observed_rps),
            "target_rps": service.policy.target_rps,
            "min": service.policy.min_replicas,
            "max": service.policy.max_replicas,
            "update_state": service.update_state or None,
            "metrics": metrics_state,
        }
        if not decision.changes:
            # Holding or steady: one line when the state changes, not one per loop.
            state = (decision.reason, decision.desired, metrics_state)
            self._report_change(name, state, "decision", "info", action="none", **fields)
            return
        direction = "up" if decision.desired > decision.current else "down"
        try:
            self.swarm.scale(service, decision.desired)
        except DOCKER_ERRORS as exc:
            self.metrics.errors.labels("docker_scale").inc()
            self.log.error("decision", action=f"scale_{direction}_failed",
                           error=str(exc), **fields)
            self._states.pop(name, None)
            return
        self.metrics.scalings.labels(name, direction).inc()
        self.log.info("decision", action=f"scale_{direction}", **fields)
        self._states[name] = (decision.reason, decision.desired, metrics_state)

    def _report_change(
        self, key: str, state: tuple[object, ...], event: str, level: str, **fields: object
    ) -> None:
        if self._states.get(key) != state:
            self._states[key] = state
            self.log.log(LEVELS[level], event, **fields)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
