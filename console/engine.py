"""What the console asks the Docker Engine, and how its answers become the state's inputs.

ENGINE_ENDPOINTS is the one list of Engine API calls the console makes, all GET: the console
only reads. The console's Docker access goes through the shop's filtering proxy
(stacks/docker-api.yml, deployed in the console's stack), whose allow-list for the console,
stacks/docker-api/console.lst, lets these through and nothing else;
tests/console/test_engine.py checks that the list's lines are exactly these calls, so adding
a call here without allowing it there (or the reverse) fails a test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import docker.errors
import requests

from console.model import NodeInfo, ServiceInfo, TaskInfo

# What the Docker SDK raises: its own errors, and its HTTP client's for a broken connection.
DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)

# The API version prefix the SDK adds (/v1.41), as the proxy's allow-lists write it.
_VERSION = r"(/v[0-9]+\.[0-9]+)?"
# A name or id in a path: what Docker allows for names (no leading dot, so `..` never passes).
_ID = "[A-Za-z0-9][A-Za-z0-9_.-]*"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as in the Engine API reference; {id} is a name or an id
    why: str

    @property
    def pattern(self) -> str:
        """The request path as a regular expression, with the /vX.Y prefix the SDK adds."""
        parts = [re.escape(part) for part in self.path.split("{id}")]
        return f"^{_VERSION}" + _ID.join(parts) + "$"

    @property
    def allow_line(self) -> str:
        """This call as a line of the Docker API proxy's allow-list: "METHOD path", anchored."""
        return f"^{self.method} {self.pattern.removeprefix('^')}"


ENGINE_ENDPOINTS = (
    Endpoint("GET", "/version", "the Docker SDK's API version negotiation"),
    Endpoint("GET", "/events", "the stream of changes (services, nodes, containers)"),
    Endpoint("GET", "/nodes", "nodes: state, availability, role"),
    Endpoint("GET", "/services", "services: image, replicas, update status"),
    Endpoint("GET", "/tasks", "tasks: state, desired state, node, image, error"),
    Endpoint("GET", "/services/{id}/logs", "a request's story; the autoscaler's decisions"),
    Endpoint("GET", "/containers/{id}/json",
             "the Docker SDK reads a container's TTY setting before reading its logs"),
    Endpoint("GET", "/containers/{id}/logs",
             "a request's story from this node's containers, when service logs do not end"),
)

# Events that can change what the page shows. Swarm has no task events: task changes are
# read by listing tasks when one of these arrives, and on a timer (see console.live). Not
# the exec events every healthcheck makes (several a second on a busy node): a container's
# health shows as `health_status` only when it changes (the engine matches that prefix).
EVENT_FILTERS = {
    "type": ["service", "node", "container"],
    "event": ["create", "update", "remove", "start", "die", "kill", "oom", "destroy",
              "health_status"],
}


def timestamp(value: str | None) -> float:
    """Epoch seconds of an engine timestamp (RFC 3339 with nanoseconds); 0 when missing."""
    if not value or value.startswith("0001-"):
        return 0.0
    return datetime.fromisoformat(value).timestamp()


def node_info(doc: dict[str, Any]) -> NodeInfo:
    spec = doc.get("Spec", {})
    return NodeInfo(
        id=doc["ID"],
        hostname=doc.get("Description", {}).get("Hostname", doc["ID"][:12]),
        role=spec.get("Role", ""),
        state=doc.get("Status", {}).get("State", ""),
        availability=spec.get("Availability", ""),
        leader=bool((doc.get("ManagerStatus") or {}).get("Leader")),
        updated=timestamp(doc.get("UpdatedAt")),
    )


def service_info(doc: dict[str, Any]) -> ServiceInfo:
    spec = doc.get("Spec", {})
    replicated = spec.get("Mode", {}).get("Replicated")
    status = doc.get("UpdateStatus") or {}
    return ServiceInfo(
        id=doc["ID"],
        name=spec.get("Name", doc["ID"][:12]),
        image=spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image", ""),
        replicas=None if replicated is None else int(replicated.get("Replicas", 0)),
        update_state=status.get("State", ""),
        update_started=timestamp(status.get("StartedAt")) or None,
        update_completed=timestamp(status.get("CompletedAt")) or None,
        update_message=status.get("Message", ""),
        created=timestamp(doc.get("CreatedAt")),
    )


def task_info(doc: dict[str, Any]) -> TaskInfo:
    container = doc.get("Spec", {}).get("ContainerSpec", {})
    status = doc.get("Status", {})
    test = (container.get("Healthcheck") or {}).get("Test") or []
    exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
    return TaskInfo(
        id=doc["ID"],
        service_id=doc.get("ServiceID", ""),
        slot=doc.get("Slot"),
        node_id=doc.get("NodeID", ""),
        image=container.get("Image", ""),
        state=status.get("State", ""),
        desired=doc.get("DesiredState", ""),
        has_healthcheck=bool(test) and test[0] != "NONE",
        created=timestamp(doc.get("CreatedAt")),
        state_since=timestamp(status.get("Timestamp")),
        updated=timestamp(doc.get("UpdatedAt")),
        message=status.get("Message", ""),
        error=status.get("Err", ""),
        exit_code=exit_code if status.get("State") in ("failed", "complete", "shutdown")
        else None,
        container_id=(status.get("ContainerStatus") or {}).get("ContainerID", ""),
    )


def read_swarm(client: docker.DockerClient) -> tuple[list[NodeInfo], list[ServiceInfo],
                                                      list[TaskInfo]]:
    """One reading of the swarm: three list calls (GET /nodes, /services, /tasks)."""
    api = client.api
    nodes = api.nodes()
    # types-docker leaves these two untyped; like nodes(), they return the Engine API's JSON.
    services: list[dict[str, Any]] = api.services()  # type: ignore[no-untyped-call]
    tasks: list[dict[str, Any]] = api.tasks()  # type: ignore[no-untyped-call]
    return ([node_info(d) for d in nodes], [service_info(d) for d in services],
            [task_info(d) for d in tasks])


def split_log_line(raw: bytes) -> tuple[str, str]:
    """(engine timestamp, text) of a log line read with timestamps=True."""
    line = raw.decode("utf-8", "replace").rstrip("\n")
    stamp, _, text = line.partition(" ")
    return stamp, text
