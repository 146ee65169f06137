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


@dataclass
class TinyApp:
    """An ASGI app that answers like a shop service: X-Release/X-Instance, failures on demand."""

    release: str = "1"
    fail: bool = False
    slow_seconds: float = 1.0
    client_ports: list[int] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.client_ports.append(scope["client"][1])
        if scope["path"] == "/slow":
            await asyncio.sleep(self.slow_seconds)
        status = 500 if self.fail else 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"x-release", self.release.encode()),
                    (b"x-instance", b"tiny"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b'{"status":"OK"}'})


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
    app.release, app.fail = "1", False
    app.client_ports.clear()
    return base, app
