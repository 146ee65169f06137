"""What the console asks the Engine API and how it reads the answers: documents recorded from
Engine 20.10 (tests/console/data) become the state's inputs, and the console's allow-list for
the Docker API proxy (stacks/docker-api/console.lst) is exactly its list of endpoints."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from console.engine import (
    ENGINE_ENDPOINTS,
    node_info,
    service_info,
    split_log_line,
    task_info,
    timestamp,
)
from tests.support.docker_api import allow_list

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def engine() -> dict[str, list[dict[str, Any]]]:
    """Nodes, services and tasks as Engine 20.10 listed them for a deployed shop."""
    return json.loads((DATA / "engine-20.10.json").read_text())


def test_timestamps_keep_their_nanoseconds_to_the_microsecond() -> None:
    """Engine times are RFC 3339 with nanoseconds; Go's zero time means none."""
    assert timestamp("2026-12-06T05:33:42.325544853Z") == pytest.approx(1796535222.325544)
    assert timestamp("0001-01-01T00:00:00Z") == 0.0
    assert timestamp(None) == 0.0


def test_node(engine: dict[str, list[dict[str, Any]]]) -> None:
    """A node: host name, role, state, availability, leadership."""
    node = node_info(engine["nodes"][0])
    assert (node.role, node.state, node.availability, node.leader) == (
        "manager", "ready", "active", True)
    assert node.hostname == engine["nodes"][0]["Description"]["Hostname"]


def test_services(engine: dict[str, list[dict[str, Any]]]) -> None:
    """A replicated service has its replica count, a global one none; the image is the
    spec's (the release the service is going to)."""
    services = {s.name: s for s in map(service_info, engine["services"])}
    assert services["front_app"].replicas == 2
    assert services["front_app"].image.startswith("shope2e/front-service:")
    assert services["edge_proxy"].replicas is None
    assert services["front_app"].update_state == ""


def test_service_update_status() -> None:
    """UpdateStatus: state, start, end and message."""
    doc = {"ID": "s", "Spec": {"Name": "front_app", "Mode": {"Replicated": {"Replicas": 2}}},
           "UpdateStatus": {"State": "completed", "StartedAt": "2026-12-06T05:34:30.104307249Z",
                            "CompletedAt": "2026-12-06T05:35:14.427963677Z",
                            "Message": "update completed"}}
    info = service_info(doc)
    assert info.update_state == "completed"
    assert info.update_completed - info.update_started == pytest.approx(44.32, abs=0.01)


def test_tasks(engine: dict[str, list[dict[str, Any]]]) -> None:
    """A task: its service, slot, node, image, state, desired state, healthcheck, times and
    container; a global service's task has no slot."""
    tasks = [task_info(doc) for doc in engine["tasks"]]
    front = [t for t in tasks if t.image.startswith("shope2e/front-service")]
    assert {t.slot for t in front} == {1, 2}
    assert all(t.has_healthcheck and t.state == "running" and t.desired == "running"
               for t in front)
    assert all(len(t.container_id) == 64 for t in front)
    assert all(t.created <= t.state_since for t in front)
    edge = [t for t in tasks if "haproxy" in t.image]
    assert edge[0].slot is None
    assert not edge[0].has_healthcheck


def test_failed_task_carries_exit_code_and_error(engine: dict[str, list[dict[str, Any]]]) -> None:
    """The exit code counts once the task has ended; the error is swarm's text."""
    doc = copy.deepcopy(engine["tasks"][0])
    doc["Status"].update({"State": "failed", "Err": "task: non-zero exit (137)",
                          "ContainerStatus": {"ContainerID": "c" * 64, "ExitCode": 137}})
    doc["DesiredState"] = "shutdown"
    info = task_info(doc)
    assert (info.exit_code, info.error) == (137, "task: non-zero exit (137)")


def test_log_lines_split_at_the_engine_timestamp() -> None:
    """A line read with timestamps=True: the engine's time, then the line as written."""
    raw = b'2026-12-06T05:37:45.718143379Z {"event":"request","request_id":"x"}\n'
    assert split_log_line(raw) == ("2026-12-06T05:37:45.718143379Z",
                                   '{"event":"request","request_id":"x"}')


def test_the_allow_list_is_exactly_the_console_endpoints() -> None:
    """One line per endpoint the console calls, in ENGINE_ENDPOINTS' order, and no other;
    every line an anchored GET: the console only reads."""
    assert allow_list("console") == [e.allow_line for e in ENGINE_ENDPOINTS]
    for line in allow_list("console"):
        assert re.fullmatch(r"\^GET [/(].+\$", line), line
        re.compile(line)
    assert {e.method for e in ENGINE_ENDPOINTS} == {"GET"}


def test_allow_lines_match_method_and_path() -> None:
    """A line matches "GET <path>" for the endpoint's path, with or without a version, and
    not the same path with another method."""
    for endpoint in ENGINE_ENDPOINTS:
        path = endpoint.path.replace("{id}", "front_app")
        for call in (f"GET {path}", f"GET /v1.41{path}"):
            assert re.search(endpoint.allow_line, call), (endpoint, call)
        for method in ("POST", "PUT", "DELETE", "HEAD"):
            assert not re.search(endpoint.allow_line, f"{method} /v1.41{path}"), method


@pytest.mark.parametrize(("path", "allowed"), [
    ("/v1.41/tasks", True),
    ("/tasks", True),
    ("/v1.41/services/front_app/logs", True),
    ("/v1.41/containers/0123abc/logs", True),
    ("/v1.41/services/front_app", False),  # inspect: not used, not allowed
    ("/v1.41/containers/json", False),
    ("/v1.41/containers/0123abc/exec", False),
    ("/v1.41/containers/../logs", False),
    ("/v1.41/tasks/x", False),
    ("/v1.41/secrets", False),
    ("/v1.41/swarm", False),
    ("/v1.41/info", False),
])
def test_endpoint_patterns(path: str, allowed: bool) -> None:
    """The patterns match the calls the SDK makes, with or without a version, and nothing
    else: no inspect, no exec, no secrets, no path that climbs out of an id."""
    assert any(re.search(e.pattern, path) for e in ENGINE_ENDPOINTS) is allowed
