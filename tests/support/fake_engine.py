"""A stand-in for the Docker Engine API on 127.0.0.1, for the console's tests without Docker:
the console's real Docker SDK client talks to it over a real socket. It serves what a test
puts in it (nodes, services and tasks as Engine 20.10 documents, log lines per service and per
container), streams the events a test sends, can leave a service-log read without an end (as
Engine 20.10 has been seen to do after a rolling update), and records every call it gets,
with its path as sent (not decoded). On a unix socket instead, it stands behind the Docker API
proxy in its test (tests/deploy/test_docker_api.py), where the socket is mounted.

The swarm end-to-end test (tests/deploy/test_console.py) runs the console against the real
engine; this serves the fast tests.
"""

from __future__ import annotations

import asyncio
import copy
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.upstreams import LoopThread

API = "1.41"


def rfc3339(t: float) -> str:
    """An engine timestamp (nanoseconds, Z) for epoch seconds `t`."""
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return stamp + "000Z"


def frame(line: bytes) -> bytes:
    """One line of a log stream as the engine sends it for a container without a TTY: an
    8-byte header (stream 1, stdout; the length) and the bytes."""
    return struct.pack(">BxxxL", 1, len(line)) + line


@dataclass
class Swarm:
    """What the fake engine answers; a test changes it between readings."""

    nodes: list[dict[str, Any]] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    # (engine time, line) per service name and per container id
    service_logs: dict[str, list[tuple[float, bytes]]] = field(default_factory=dict)
    container_logs: dict[str, list[tuple[float, bytes]]] = field(default_factory=dict)
    endless_service_logs: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)


def node(ident: str, hostname: str, state: str = "ready", role: str = "manager") -> dict[str, Any]:
    return {"ID": ident, "CreatedAt": rfc3339(0), "UpdatedAt": rfc3339(time.time()),
            "Spec": {"Role": role, "Availability": "active", "Labels": {}},
            "Description": {"Hostname": hostname}, "Status": {"State": state},
            "ManagerStatus": {"Leader": role == "manager"}}


def service(ident: str, name: str, image: str, replicas: int = 2,
            update: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "ID": ident, "CreatedAt": rfc3339(time.time() - 60), "UpdatedAt": rfc3339(time.time()),
        "Spec": {"Name": name, "TaskTemplate": {"ContainerSpec": {"Image": image}},
                 "Mode": {"Replicated": {"Replicas": replicas}}}}
    if update:
        doc["UpdateStatus"] = update
    return doc


def task(ident: str, service_id: str, slot: int, image: str, state: str, since: float,
         desired: str = "running", created: float | None = None, node_id: str = "node-1",
         container: str | None = None, error: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"Timestamp": rfc3339(since), "State": state, "Message": state,
                              "ContainerStatus": {"ContainerID": container or ident * 4,
                                                  "ExitCode": 0}}
    if error:
        status["Err"] = error
    return {"ID": ident, "ServiceID": service_id, "Slot": slot, "NodeID": node_id,
            "CreatedAt": rfc3339(created if created is not None else since - 2),
            "UpdatedAt": rfc3339(since), "DesiredState": desired, "Status": status,
            "Spec": {"ContainerSpec": {"Image": image,
                                       "Healthcheck": {"Test": ["CMD", "true"]}}}}


class Served:
    """An ASGI app served by uvicorn on 127.0.0.1 (or on a unix socket that its group may
    connect to, as the engine's), from an event loop in a background thread."""

    def __init__(self, app: Any, unix_socket: Path | None = None, **config: Any) -> None:
        self.loop = LoopThread()
        if unix_socket is None:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        else:
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(str(unix_socket))
            os.chmod(unix_socket, 0o660)  # a container's user in its group connects to it
            self.url = f"unix://{unix_socket}"
        # log_config=None: uvicorn leaves the test process's logging alone.
        self.server = uvicorn.Server(uvicorn.Config(
            app, log_config=None, timeout_graceful_shutdown=1, **{"lifespan": "on", **config}))
        self.task = self.loop.run(self._start(sock))

    async def _start(self, sock: socket.socket) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:  # noqa: ASYNC110  uvicorn says it is up with a flag
            await asyncio.sleep(0.01)
        return task

    def close(self) -> None:
        async def stop() -> None:
            self.server.should_exit = True
            await self.task
        self.loop.run(stop())
        self.loop.close()


class FakeEngine:
    """The fake engine served by uvicorn on a background event loop."""

    def __init__(self, unix_socket: Path | None = None) -> None:
        self.swarm = Swarm()
        self._listeners: list[asyncio.Queue[bytes]] = []
        app = Starlette(routes=[
            Route("/version", self._version),
            Route("/v{v}/version", self._version),
            Route("/v{v}/nodes", self._list("nodes")),
            Route("/v{v}/services", self._list("services")),
            Route("/v{v}/tasks", self._list("tasks")),
            Route("/v{v}/events", self._events),
            Route("/v{v}/services/{name}/logs", self._service_logs),
            Route("/v{v}/containers/{ident}/json", self._container),
            Route("/v{v}/containers/{ident}/logs", self._container_logs),
        ])
        self._app = app
        self.served = Served(self._recording, unix_socket, lifespan="off", interface="asgi3")

    @property
    def url(self) -> str:
        return self.served.url.replace("http://", "tcp://")

    async def _recording(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.swarm.calls.append((scope["method"], scope["raw_path"].decode("latin-1")))
        await self._app(scope, receive, send)

    def close(self) -> None:
        self.served.close()

    def send_event(self, kind: str, action: str, **attributes: str) -> None:
        """An event to every open events stream (as `docker events` shows it)."""
        now = time.time()
        line = orjson.dumps({"Type": kind, "Action": action, "Actor": {"ID": "x",
                             "Attributes": attributes}, "time": int(now),
                             "timeNano": int(now * 1e9)}) + b"\n"

        def put() -> None:
            for queue in self._listeners:
                queue.put_nowait(line)
        self.served.loop.loop.call_soon_threadsafe(put)

    # -- routes ----------------------------------------------------------------------------
    async def _version(self, request: Request) -> Response:
        return JSONResponse({"ApiVersion": API, "MinAPIVersion": "1.12", "Version": "20.10.24"})

    def _list(self, what: str) -> Any:
        async def answer(request: Request) -> Response:
            return JSONResponse(copy.deepcopy(getattr(self.swarm, what)))
        return answer

    async def _events(self, request: Request) -> Response:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._listeners.append(queue)

        async def stream() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield await queue.get()
            finally:
                self._listeners.remove(queue)
        return StreamingResponse(stream(), media_type="application/json")

    def _lines(self, lines: list[tuple[float, bytes]], request: Request) -> list[bytes]:
        since = float(request.query_params.get("since") or 0)
        until = float(request.query_params.get("until") or 0) or float("inf")
        stamps = request.query_params.get("timestamps") in ("1", "True", "true")
        return [frame((rfc3339(t).encode() + b" " if stamps else b"") + line + b"\n")
                for t, line in lines if since <= t <= until]

    async def _service_logs(self, request: Request) -> Response:
        name = request.path_params["name"]
        lines = self._lines(self.swarm.service_logs.get(name, []), request)
        endless = name in self.swarm.endless_service_logs

        async def stream() -> AsyncIterator[bytes]:
            for line in lines:
                yield line
            if endless:
                await asyncio.Event().wait()  # until the client goes or the server stops
        return StreamingResponse(stream(), media_type="application/vnd.docker.multiplexed-stream")

    async def _container(self, request: Request) -> Response:
        if request.path_params["ident"] not in self.swarm.container_logs:
            return JSONResponse({"message": "No such container"}, status_code=404)
        return JSONResponse({"Id": request.path_params["ident"], "Config": {"Tty": False}})

    async def _container_logs(self, request: Request) -> Response:
        ident = request.path_params["ident"]
        if ident not in self.swarm.container_logs:
            return JSONResponse({"message": "No such container"}, status_code=404)
        return Response(b"".join(self._lines(self.swarm.container_logs[ident], request)),
                        media_type="application/vnd.docker.multiplexed-stream")
