"""The console's other sources: Prometheus' request rates (through respx, which stands in for
the network under httpx), and the autoscaler's decisions read from its service's log on the
fake engine."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import orjson
import pytest
import respx
from fastapi.testclient import TestClient

from console.live import Changes, poll_prometheus
from console.model import ConsoleState
from console.settings import ConsoleSettings
from tests.support.fake_engine import FakeEngine, node, rfc3339, service
from tests.support.steps import wait_for

PROMETHEUS = "http://prometheus.test:9090"
VECTOR = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {"swarm_service": "front_app"}, "value": [1, "42.5"]},
    {"metric": {"swarm_service": "prod_app"}, "value": [1, "85"]}]}}


def poll_once(state: ConsoleState) -> None:
    """One pass of the Prometheus poller (it then sleeps; cancelled there)."""
    settings = ConsoleSettings(instance="t", prometheus_url=PROMETHEUS, prometheus_interval_s=60)

    async def run() -> None:
        task = asyncio.create_task(poll_prometheus(settings, state, Changes()))
        while not state.sources:  # noqa: ASYNC110  the state is the poller's only output
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())


@respx.mock
def test_prometheus_rates_per_service() -> None:
    """The autoscaler's query, once per interval: the rate of each swarm service."""
    route = respx.get(f"{PROMETHEUS}/api/v1/query").mock(
        return_value=httpx.Response(200, json=VECTOR))
    state = ConsoleState()
    poll_once(state)
    assert "shop_http_requests_total" in route.calls[0].request.url.params["query"]
    assert [r.rates for r in state.rates] == [{"front_app": 42.5, "prod_app": 85.0}]
    assert state.sources["prometheus"]["state"] == "ok"


@respx.mock
def test_prometheus_unreachable_is_said_not_guessed() -> None:
    """Without Prometheus (`make autoscale` not run) the page is told so; no rate is made up."""
    respx.get(f"{PROMETHEUS}/api/v1/query").mock(side_effect=httpx.ConnectError("refused"))
    state = ConsoleState()
    poll_once(state)
    assert state.rates == type(state.rates)()
    assert state.sources["prometheus"]["state"] == "unreachable"
    assert "ConnectError" in state.sources["prometheus"]["message"]


def test_autoscaler_decisions_become_marks(engine: FakeEngine,
                                           console_client: TestClient) -> None:
    """When the autoscaler's service runs, its "decision" lines (and only those) are marks
    with their figures, at the autoscaler's own time."""
    now = time.time()
    decision = {"ts": rfc3339(now - 4.5), "level": "info", "service": "autoscaler",
                "event": "decision", "action": "scale_up", "swarm_service": "front_app",
                "current": 4, "desired": 5, "reason": "scale_up", "total_rps": 99.385,
                "observed_rps": 24.846, "target_rps": 20.0}
    engine.swarm.service_logs = {"autoscale_scaler": [
        (now - 5, orjson.dumps({"event": "startup", "service": "autoscaler"})),
        (now - 4, orjson.dumps(decision))]}
    engine.swarm.nodes = [node("node-1", "node1")]
    engine.swarm.services = [service("svc-as", "autoscale_scaler", "shop/autoscaler:latest", 1)]
    marks = wait_for("the decision marked", lambda: [
        m for m in console_client.get("/api/state").json()["marks"]
        if m["kind"] == "autoscaler"], timeout=15)
    assert len(marks) == 1
    assert marks[0]["text"] == "autoscaler scale_up front_app: 4 -> 5 (scale_up)"
    assert marks[0]["detail"]["observed_rps"] == 24.846
    assert marks[0]["t"] == pytest.approx(now - 4.5, abs=1e-5)
