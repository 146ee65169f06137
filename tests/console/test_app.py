"""The console app: its page and headers, its JSON and its stream, fed by a fake Docker Engine
on 127.0.0.1 through the real Docker SDK (tests/support/fake_engine.py); request stories
read in bounded time, also when a service-log read never ends."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from console.app import create_app
from console.model import RequestResult
from console.settings import ConsoleSettings
from tests.support.docker_api import allow_list, passes
from tests.support.fake_engine import FakeEngine, Served, node, service, task
from tests.support.steps import wait_for

FRONT_1 = "shop/front-service:1"
FRONT_2 = "shop/front-service:2"


def shop_swarm(engine: FakeEngine) -> float:
    """A node and the front at release 1 with two healthy tasks; returns when they started."""
    started = time.time() - 30
    engine.swarm.nodes = [node("node-1", "node1")]
    engine.swarm.services = [service("svc-front", "front_app", FRONT_1)]
    engine.swarm.tasks = [
        task("taskA", "svc-front", 1, FRONT_1, "running", since=started),
        task("taskB", "svc-front", 2, FRONT_1, "running", since=started),
    ]
    return started


def state(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/state")
    assert response.status_code == 200
    return response.json()


def test_page_and_its_headers(console_client: TestClient) -> None:
    """The page, its script and its stylesheet come from the console itself, under a
    Content-Security-Policy that allows nothing else (no inline script, no other host)."""
    page = console_client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs
    assert all(ref.startswith("/static/") for ref in refs)
    assert "<script>" not in page.text
    assert "style=" not in page.text
    for ref in refs:
        asset = console_client.get(ref)
        assert asset.status_code == 200, ref
        assert "content-security-policy" in asset.headers
    script = console_client.get("/static/console.js").text
    assert "innerHTML" not in script
    assert "insertAdjacentHTML" not in script
    assert "http://" not in script.replace("http://www.w3.org/2000/svg", "")


def test_state_follows_the_swarm(engine: FakeEngine, console_client: TestClient) -> None:
    """The first reading gives nodes, services and tasks; a change announced by an event is
    read again: the new task appears with its release."""
    shop_swarm(engine)
    first = wait_for("the swarm read", lambda: state(console_client)["tasks"], timeout=10)
    assert {t["release"] for t in first} == {"1"}
    assert state(console_client)["sources"]["docker"]["state"] == "ok"
    engine.swarm.tasks.append(task("taskC", "svc-front", 1, FRONT_2, "starting",
                                   since=time.time()))
    engine.send_event("container", "start")
    tasks = wait_for("the new task", lambda: {t["id"]: t for t in state(console_client)["tasks"]
                                              if t["id"] == "taskC"}, timeout=10)
    assert tasks["taskC"]["release"] == "2"
    assert tasks["taskC"]["phase"] == "starting"


def test_the_console_calls_pass_its_docker_api_proxy(engine: FakeEngine,
                                                     console_client: TestClient) -> None:
    """Every call the console made to the engine (the swarm read, the events, the
    autoscaler's log followed, a story's service and container logs) passes the Docker API
    proxy with the console's allow-list (stacks/docker-api/console.lst): a GET on one of its
    lines, with no %, // or /. in the path as the SDK sent it (the proxy refuses those
    whatever the list says). Every line of the list is used."""
    shop_swarm(engine)
    engine.swarm.services.append(service("svc-scaler", "autoscale_scaler", "shop/autoscaler:1",
                                         replicas=1))
    engine.swarm.container_logs = {"taskA" * 4: []}  # taskA's container, on this node
    wait_for("the swarm read", lambda: state(console_client)["tasks"], timeout=10)
    add_request(console_client.app, "console-abc-1")  # type: ignore[arg-type]
    assert console_client.get("/api/requests/console-abc-1/story").status_code == 200
    lines = allow_list("console")

    def used() -> set[str]:
        return {line for line in lines for method, path in list(engine.swarm.calls)
                if re.search(line, f"{method} {path}")}

    wait_for("a call on every line of the list", lambda: used() == set(lines), timeout=10)
    for method, path in engine.swarm.calls:
        assert passes(lines, method, path), (method, path)


def add_request(app: FastAPI, request_id: str, sent: float | None = None,
                error: str = "") -> RequestResult:
    """A probe request in the console's history, as the probe records one."""
    result = RequestResult(request_id, sent or time.time() - 1, 12.5, 503 if error else 200,
                           error, "1", "taskA" * 2 + "ta")
    app.state.console.state.add_request(result)
    return result


def log_line(service: str, request_id: str, **fields: Any) -> bytes:
    return orjson.dumps({"ts": "x", "level": "info", "service": service, "instance": "i1",
                         "release": "1", "event": "request", "request_id": request_id,
                         **fields})


def test_story_collects_the_request_lines_of_the_three_services(
        engine: FakeEngine, console_client: TestClient) -> None:
    """A request's story: its lines from front, prod and coupon in time order, other
    requests' lines left out, each service's read said to be complete."""
    shop_swarm(engine)
    sent = time.time() - 5
    add_request(console_client.app, "console-abc-7", sent)  # type: ignore[arg-type]
    engine.swarm.service_logs = {
        "front_app": [(sent + 0.004, log_line("front", "console-abc-7", status=200)),
                      (sent + 0.002, log_line("front", "console-abc-8"))],
        "prod_app": [(sent + 0.001, log_line("prod", "console-abc-7", path="/products/2"))],
        "coupon_app": [(sent + 0.002, log_line("coupon", "console-abc-7"))],
    }
    story = console_client.get("/api/requests/console-abc-7/story").json()
    assert [line["service"] for line in story["lines"]] == ["prod_app", "coupon_app",
                                                             "front_app"]
    assert all(line["fields"]["request_id"] == "console-abc-7" for line in story["lines"])
    assert story["lines"][0]["fields"]["path"] == "/products/2"
    assert {s["service_logs"] for s in story["sources"]} == {"complete"}
    assert story["request"]["request_id"] == "console-abc-7"


def test_story_is_bounded_when_service_logs_never_end(
        engine: FakeEngine, console_app: FastAPI, console_server: Served) -> None:
    """A service-log read that never ends (Engine 20.10 after a rolling update) does not
    hold the page: after the story's time bound it gets what arrived, is told so, and the
    logs of the service's container on this node fill in what the service logs lacked."""
    shop_swarm(engine)
    wait_for("the swarm read",
             lambda: httpx.get(f"{console_server.url}/api/state").json()["tasks"], timeout=10)
    sent = time.time() - 2
    add_request(console_app, "console-abc-9", sent)
    container = "taskA" * 4  # the container of task taskA (tests/support/fake_engine.py)
    engine.swarm.endless_service_logs = {"front_app"}
    engine.swarm.container_logs = {
        container: [(sent + 0.01, log_line("front", "console-abc-9", status=200))]}
    started = time.monotonic()
    story = httpx.get(f"{console_server.url}/api/requests/console-abc-9/story",
                      timeout=20).json()
    assert time.monotonic() - started < 15  # bounded: it answered instead of hanging
    front = next(s for s in story["sources"] if s["service"] == "front_app")
    assert front["service_logs"].startswith("no end within 1 s")
    assert front["container_logs"] == "1 of 2 containers on this node"
    assert [line["source"] for line in story["lines"]] == [f"container {container[:12]}"]


def test_story_reads_every_container_of_a_busy_moment(
        engine: FakeEngine, console_app: FastAPI, console_server: Served) -> None:
    """Right after a rolling update of the front (four of its containers around the request,
    two of prod's, two of coupon's, every service-log read without an end), the story still
    has the lines of all three services: container-log reads are never refused for lack of
    threads, they wait for each other."""
    started = time.time() - 30
    sent = time.time() - 2
    engine.swarm.nodes = [node("node-1", "node1")]
    engine.swarm.services = [service("svc-front", "front_app", FRONT_2),
                             service("svc-prod", "prod_app", "shop/prod-service:1"),
                             service("svc-coupon", "coupon_app", "shop/coupon-service:1")]
    engine.swarm.tasks = [
        task("taskA", "svc-front", 1, FRONT_1, "shutdown", since=sent - 1, desired="shutdown",
             created=started),
        task("taskB", "svc-front", 2, FRONT_1, "shutdown", since=sent - 1, desired="shutdown",
             created=started),
        task("taskC", "svc-front", 1, FRONT_2, "running", since=sent - 8),
        task("taskD", "svc-front", 2, FRONT_2, "running", since=sent - 8),
        *(task(ident, "svc-prod", slot, "shop/prod-service:1", "running", since=started)
          for slot, ident in enumerate(("taskP", "taskQ"), 1)),
        *(task(ident, "svc-coupon", slot, "shop/coupon-service:1", "running", since=started)
          for slot, ident in enumerate(("taskK", "taskL"), 1)),
    ]
    wait_for("the swarm read", lambda: len(
        httpx.get(f"{console_server.url}/api/state").json()["tasks"]) == 8, timeout=10)
    add_request(console_app, "console-abc-5", sent)
    engine.swarm.endless_service_logs = {"front_app", "prod_app", "coupon_app"}
    engine.swarm.container_logs = {ident * 4: [] for ident in (
        "taskA", "taskB", "taskC", "taskD", "taskP", "taskQ", "taskK", "taskL")}
    engine.swarm.container_logs["taskD" * 4] = [
        (sent + 0.006, log_line("front", "console-abc-5", status=200))]
    engine.swarm.container_logs["taskQ" * 4] = [
        (sent + 0.002, log_line("prod", "console-abc-5"))]
    engine.swarm.container_logs["taskL" * 4] = [
        (sent + 0.003, log_line("coupon", "console-abc-5"))]
    story = httpx.get(f"{console_server.url}/api/requests/console-abc-5/story",
                      timeout=20).json()
    assert [line["service"] for line in story["lines"]] == ["prod_app", "coupon_app",
                                                             "front_app"]
    assert {s["service"]: s["container_logs"] for s in story["sources"]} == {
        "front_app": "4 of 4 containers on this node", "prod_app": "2 of 2 containers on this node",
        "coupon_app": "2 of 2 containers on this node"}


def test_story_errors(engine: FakeEngine, console_client: TestClient) -> None:
    """Unknown ids are a 404, malformed ones a 400, both in the shop's error shape."""
    missing = console_client.get("/api/requests/console-nope/story")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert console_client.get("/api/requests/bad%20id/story").status_code == 400


def test_story_without_docker() -> None:
    """Without Docker access (CONSOLE_DOCKER_HOST empty) the page still works, and a story
    says why it cannot be read (503)."""
    settings = ConsoleSettings(instance="t", docker_host="", probe_rate=0, prometheus_url="",
                               access_log=False)
    app = create_app(settings)
    with TestClient(app) as client:
        add_request(app, "console-x-1")
        response = client.get("/api/requests/console-x-1/story")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "docker_unavailable"
        assert state(client)["sources"]["docker"]["state"] == "off"


def test_requests_of_a_second(console_client: TestClient) -> None:
    """The requests sent in a span, for the page's table; a span backwards or over two
    minutes is a 400."""
    add_request(console_client.app, "console-s-1", 1000.2)  # type: ignore[arg-type]
    add_request(console_client.app, "console-s-2", 1000.7, error="status_503")  # type: ignore[arg-type]
    add_request(console_client.app, "console-s-3", 1001.1)  # type: ignore[arg-type]
    rows = console_client.get("/api/requests", params={"start": 1000, "end": 1001}).json()
    assert [(r["request_id"], r["status"], r["error"]) for r in rows] == [
        ("console-s-1", 200, ""), ("console-s-2", 503, "status_503")]
    for start, end in ((10, 5), (0, 500)):
        bad = console_client.get("/api/requests", params={"start": start, "end": end})
        assert bad.status_code == 400


def test_stream_sends_everything_then_what_changed(engine: FakeEngine,
                                                   console_server: Served) -> None:
    """The page's stream: a first event with everything (full), then events with only what
    changed (here the task that started, not the two that did not)."""
    shop_swarm(engine)
    wait_for("the swarm read",
             lambda: httpx.get(f"{console_server.url}/api/state").json()["tasks"], timeout=10)

    def change() -> None:
        engine.swarm.tasks.append(task("taskC", "svc-front", 1, FRONT_2, "starting",
                                       since=time.time()))
        engine.send_event("service", "update", name="front_app")

    with httpx.stream("GET", f"{console_server.url}/api/events", timeout=10) as response:
        lines = response.iter_lines()
        first = next_event(lines)
        assert first["full"] is True
        assert {t["id"] for t in first["tasks"]} == {"taskA", "taskB"}
        change()
        later = next_event(lines)
        while not later["tasks"]:
            later = next_event(lines)
    assert later["full"] is False
    assert [t["id"] for t in later["tasks"]] == ["taskC"]
    assert later["seq"] > first["seq"]


def next_event(lines: Any) -> dict[str, Any]:
    for line in lines:
        if line.startswith("data: "):
            return orjson.loads(line[6:])
    pytest.fail("the stream ended")
