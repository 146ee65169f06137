"""The autoscaler's allow-list (stacks/docker-api/autoscaler.lst, what its Docker API proxy lets
through) is exactly the set of calls the autoscaler makes: `python -m autoscaler` runs against
a stand-in engine and a stand-in Prometheus on 127.0.0.1 until it has scaled a service, and
every call the engine received must match a line of the list, every line at least one call.
The proxy itself, with the real HAProxy and the real socket: tests/deploy/test_docker_api.py.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.docker_api import allow_list
from tests.support.steps import wait_for

REPO = Path(__file__).resolve().parents[2]

LABELS = {
    "io.swarm-shop.autoscale.min": "2",
    "io.swarm-shop.autoscale.max": "6",
    "io.swarm-shop.autoscale.target-rps": "10",
}
# One labelled service at 2 replicas, as the engine lists it (trimmed).
SERVICE = {
    "ID": "x1y2z3",
    "Version": {"Index": 7},
    "Spec": {
        "Name": "front_app",
        "Labels": LABELS,
        "TaskTemplate": {"ContainerSpec": {"Image": "shop/front-service:2"}},
        "Mode": {"Replicated": {"Replicas": 2}},
    },
}
# 100 req/s over 2 replicas against a target of 10 per replica: scale up.
RATES = {"status": "success", "data": {"resultType": "vector", "result": [
    {"metric": {"swarm_service": "front_app"}, "value": [0, "100"]},
]}}


class Stub(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 answering JSON by path, and noting "METHOD PATH" of
    every request it gets."""

    def __init__(self, answer: Callable[[str, str], Any]) -> None:
        self.answer = answer
        self.calls: list[str] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Stub

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        path = urlsplit(self.path).path
        self.server.calls.append(f"{self.command} {path}")
        body = self.server.answer(self.command, path)
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "text/plain" if isinstance(body, str) else
                         "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the calls are kept in `calls`


def engine_answer(method: str, path: str) -> Any:
    """What Docker Engine 20.10 (API 1.41) answers to the calls of a working autoscaler."""
    path = re.sub(r"^/v1\.41", "", path)
    if path == "/version":
        return {"ApiVersion": "1.41", "Version": "20.10.24", "MinAPIVersion": "1.12"}
    if path == "/_ping":
        return "OK"
    if (method, path) == ("GET", "/services"):
        return [SERVICE]
    if (method, path) == ("POST", f"/services/{SERVICE['ID']}/update"):
        return {"Warnings": None}
    return None


@pytest.fixture
def stubs() -> Iterator[tuple[Stub, Stub]]:
    """A stand-in engine and a stand-in Prometheus, each on a free loopback port."""
    engine = Stub(engine_answer)
    prometheus = Stub(lambda method, path: RATES if path == "/api/v1/query" else None)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (engine, prometheus)]
    for thread in threads:
        thread.start()
    yield engine, prometheus
    for server in (engine, prometheus):
        server.shutdown()
        server.server_close()


def test_allow_list_is_exactly_what_the_autoscaler_calls(
    stubs: tuple[Stub, Stub], free_port: Callable[[], int]
) -> None:
    """From start-up to its first scaling, every engine call of `python -m autoscaler` is on
    its allow-list, and every line of the list is used."""
    engine, prometheus = stubs
    env = {
        "PATH": "/usr/bin:/bin",
        "DOCKER_HOST": engine.url.replace("http://", "tcp://"),
        "AUTOSCALE_PROMETHEUS_URL": prometheus.url,
        "AUTOSCALE_INTERVAL_S": "0.2",
        "AUTOSCALE_METRICS_HOST": "127.0.0.1",
        "AUTOSCALE_METRICS_PORT": str(free_port()),
    }
    process = subprocess.Popen([sys.executable, "-m", "autoscaler"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for("the autoscaler to scale through the engine",
                 lambda: any(c.startswith("POST ") for c in engine.calls) or process.poll(),
                 timeout=30, interval=0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    actions = [json.loads(line).get("action") for line in output.splitlines()
               if line.startswith("{")]
    assert "scale_up" in actions, output[-3000:]

    rules = [re.compile(line) for line in allow_list("autoscaler")]
    calls = set(engine.calls)
    assert {c for c in calls if not any(r.search(c) for r in rules)} == set(), calls
    assert [r.pattern for r in rules if not any(r.search(c) for c in calls)] == [], calls


def test_allow_list_lines_are_anchored_method_and_path_patterns() -> None:
    """Each line is a whole "METHOD path" pattern: anchored at both ends (HAProxy's -m reg
    searches), a method first, a path starting with / (optionally after the API version)."""
    for line in allow_list("autoscaler"):
        assert re.fullmatch(r"\^(GET|HEAD|POST|PUT|DELETE) .+\$", line), line
        re.compile(line)
