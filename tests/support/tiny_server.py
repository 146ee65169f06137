"""A tiny real HTTP server for the tools that call the shop (probe, load, the bench's wrk):
fixtures `tiny_server` (one per module) and `server` (reset for each test)."""

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn

from tests.support.steps import wait_for

OK_BODY = b'{"status":"OK"}'


@dataclass
class TinyApp:
    """An ASGI app that answers like a shop service (X-Release, X-Instance, a JSON body), with
    what it answers set by the test; it keeps each request's client port and headers."""

    release: str = "1"
    status: int = 200
    body: bytes = OK_BODY
    content_type: str = "application/json"
    degraded: bool = False  # X-Degraded on the answer, as the front serving without coupons
    delay: float = 0.0  # s before each answer
    client_ports: list[int] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)  # headers, lower-case names

    def reset(self) -> None:
        """Back to a healthy release 1 answering at once, nothing recorded."""
        self.release, self.status, self.body = "1", 200, OK_BODY
        self.content_type, self.degraded, self.delay = "application/json", False, 0.0
        self.client_ports.clear()
        self.requests.clear()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.client_ports.append(scope["client"][1])
        self.requests.append({name.decode(): value.decode() for name, value in scope["headers"]})
        if self.delay:
            await asyncio.sleep(self.delay)
        headers = [
            (b"content-type", self.content_type.encode()),
            (b"x-release", self.release.encode()),
            (b"x-instance", b"tiny"),
        ]
        if self.degraded:
            headers.append((b"x-degraded", b"coupons"))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


@pytest.fixture(scope="module")
def tiny_server() -> Iterator[tuple[str, TinyApp]]:
    """A real uvicorn on 127.0.0.1 (free port) in a thread, serving one TinyApp."""
    app = TinyApp()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="off",
        loop="asyncio",
        http="h11",
        ws="none",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for("the tiny server to start", lambda: server.started, timeout=5, interval=0.01)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(5)
    sock.close()


@pytest.fixture
def server(tiny_server: tuple[str, TinyApp]) -> tuple[str, TinyApp]:
    """The shared tiny server with its app reset to healthy release 1."""
    base, app = tiny_server
    app.reset()
    return base, app
