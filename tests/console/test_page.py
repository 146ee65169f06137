"""The console's page in a real browser (Debian's chromium through Selenium): the console
served on 127.0.0.1, reading a fake Docker Engine through the Docker SDK and probing the real
prod app. The page draws the swarm and the requests, shows every name, error and log line as
text, loads nothing the Content-Security-Policy forbids, and tells a request's story."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from selenium.webdriver.common.by import By

from console.settings import ConsoleSettings
from tests.support.browser import console_errors, read_all
from tests.support.fake_engine import FakeEngine, Served, node, service, task
from tests.support.faults import answers
from tests.support.steps import wait_for
from tests.support.upstreams import Upstreams

HOSTILE = '<img src=x onerror="document.title=\'pwned\'">'


@pytest.fixture
def console_settings(engine: FakeEngine, upstreams: Upstreams) -> ConsoleSettings:
    """The console probing the real prod app 20 times a second."""
    return ConsoleSettings(instance="console-test", docker_host=engine.url, probe_rate=20,
                           probe_url=f"{upstreams.prod.url}/products/2", probe_timeout_s=1.0,
                           prometheus_url="", refresh_s=0.1, idle_refresh_s=0.5,
                           story_timeout_s=1.0, access_log=False)


def swarm_with_a_failed_task(engine: FakeEngine) -> None:
    """One node, prod at release 2 with two tasks, and a task that failed with an error text
    that looks like markup (names and errors are data)."""
    now = time.time()
    engine.swarm.nodes = [node("node-1", f"node1{HOSTILE}")]
    engine.swarm.services = [service("svc-prod", "prod_app", "shop/prod-service:2")]
    engine.swarm.tasks = [
        task("taskA", "svc-prod", 1, "shop/prod-service:2", "running", since=now - 20),
        task("taskB", "svc-prod", 2, "shop/prod-service:2", "running", since=now - 20),
        task("taskF", "svc-prod", 2, "shop/prod-service:2", "failed", since=now - 25,
             desired="shutdown", created=now - 40, error=f"task: {HOSTILE}"),
    ]


def test_page_draws_swarm_and_requests_as_text(
        console_server: Served, engine: FakeEngine, browser: Any) -> None:
    """Tasks are bars with their release and phase, the node's row carries its name, the
    requests are counted by release, a failed task's error is a mark; markup in names and
    errors is shown as text and never runs; no console error, no CSP violation."""
    swarm_with_a_failed_task(engine)
    browser.get(console_server.url)
    bars = wait_for("the tasks drawn", lambda: read_all(
        browser, "g[data-kind=task][data-service=prod_app]"), timeout=15)
    assert {(b["data-task"], b["data-release"], b["data-phase"]) for b in bars} == {
        ("taskA", "2", "healthy"), ("taskB", "2", "healthy"), ("taskF", "2", "failed")}
    wait_for("answers counted", lambda: browser.find_element(By.ID, "answering").text.startswith(
        "2: "), timeout=15)
    assert browser.find_element(By.ID, "total-failed").text == "0"
    (node_label,) = read_all(browser, "[data-kind=node]")
    assert HOSTILE in node_label["text"]
    marks = " ".join(m["text"] for m in read_all(browser, "#marks li"))
    assert f"prod_app.2 failed: task: {HOSTILE}" in marks
    assert not browser.find_elements(By.CSS_SELECTOR, "body img")
    assert browser.title == "swarm-shop console"
    assert browser.find_element(By.ID, "source-docker").text == "Docker: ok"
    assert console_errors(browser) == []


def test_failures_are_red_and_a_request_tells_its_story(
        console_app: FastAPI, console_server: Served, engine: FakeEngine,
        upstreams: Upstreams, browser: Any) -> None:
    """Failed answers are counted and drawn in red; clicking their second lists its
    requests, and clicking one shows its lines from the services' logs."""
    swarm_with_a_failed_task(engine)
    browser.get(console_server.url)
    wait_for("answers", lambda: browser.find_element(By.ID, "total-requests").text not in (
        "", "0"), timeout=15)
    upstreams.prod.always = answers(503, b'{"error": {"status": 503}}',
                                    b"Content-Type: application/json")
    failed = wait_for("failures shown", lambda: read_all(
        browser, "rect[data-kind=failed-second]"), timeout=15)[0]
    upstreams.prod.always = None
    assert int(browser.find_element(By.ID, "total-failed").text) > 0
    # A log line for each request the console sent, as the engine would serve it.
    lines = [(r.sent + 0.01, orjson.dumps({"service": "prod", "instance": "prod-1",
                                           "event": "request", "status": r.status,
                                           "request_id": r.request_id, "note": HOSTILE}))
             for r in console_app.state.console.state.requests]
    engine.swarm.service_logs = {"prod_app": lines}
    # A click on that second, in the page's own script: the chart may be redrawn between two
    # WebDriver calls.
    browser.execute_script("""
        const bar = document.querySelector(
          `rect[data-kind=failed-second][data-t='${arguments[0]}']`);
        const box = bar.getBoundingClientRect();
        document.querySelector("rect[data-kind=seconds]").dispatchEvent(new MouseEvent("click", {
          clientX: box.left + box.width / 2, clientY: box.top + 1}));""", failed["data-t"])
    rows = wait_for("the second's requests", lambda: browser.find_elements(
        By.CSS_SELECTOR, "#requests tbody tr.failed"), timeout=10)
    request_id = rows[0].get_attribute("data-request")
    rows[0].click()
    story = wait_for("the story", lambda: browser.find_elements(By.CSS_SELECTOR, "#story tbody tr"),
                     timeout=10)
    assert request_id in browser.find_element(By.ID, "story-id").text
    assert len(story) == 1
    assert HOSTILE in story[0].text
    assert not browser.find_elements(By.CSS_SELECTOR, "body img")
    assert console_errors(browser) == []
