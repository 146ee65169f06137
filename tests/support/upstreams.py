"""The front's upstreams in tests, over real sockets: the real prod and coupon apps served by
uvicorn on 127.0.0.1, each behind a fault server that passes connections through to the app or
misbehaves on demand (tests/support/faults.py). They run on an event loop in a background thread, so
tests that drive the front through TestClient and async tests use them alike.
"""

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
import uvloop
from starlette.types import ASGIApp, Receive, Scope, Send

from coupon_service.app import create_app as create_coupon_app
from coupon_service.settings import CouponSettings
from front_service.settings import FrontSettings
from prod_service.app import create_app as create_prod_app
from prod_service.settings import ProdSettings
from tests.support.faults import Behaviour

T = TypeVar("T")


class LoopThread:
    """A uvloop event loop, as the services run on, in a daemon thread.

    uvloop, not asyncio's default loop: uvicorn on the default loop answered a request on a
    reused keep-alive connection about 40 ms late (the client's delayed ACK waiting for a
    second segment), which is not how the deployed services behave.
    """

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="upstreams",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@dataclass(frozen=True)
class SeenRequest:
    path: str
    headers: dict[str, str]


class Recorder:
    """ASGI middleware that notes every HTTP request reaching the app."""

    def __init__(self, app: ASGIApp, seen: list[SeenRequest]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(SeenRequest(scope["path"], {
                name.decode("latin-1"): value.decode("latin-1")
                for name, value in scope["headers"]}))
        await self.app(scope, receive, send)


class Upstream:
    """One upstream of the front: its real app on uvicorn, behind a fault server.

    A connection to `url` goes to the first behaviour in `faults` (each used once), else to
    `always`, else through to the app. `refuse()` stops listening on the port (connections
    are refused) until `reset()`. `connections` counts connections at the fault server,
    `requests` the requests that reached the app.
    """

    def __init__(self, name: str, app: ASGIApp) -> None:
        self.name = name
        self.requests: list[SeenRequest] = []
        self.app = Recorder(app, self.requests)
        self.faults: list[Behaviour] = []
        self.always: Behaviour | None = None
        self.connections = 0
        self.port = 0
        self.app_port = 0
        self.listener: asyncio.Server | None = None
        self.server: uvicorn.Server | None = None
        self.serving: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app_socket = socket.socket()
        app_socket.bind(("127.0.0.1", 0))
        self.app_port = app_socket.getsockname()[1]
        # log_config=None: uvicorn leaves the test process's logging alone.
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, lifespan="on", log_config=None, timeout_keep_alive=5))
        self.serving = asyncio.get_running_loop().create_task(
            self.server.serve(sockets=[app_socket]))
        # uvicorn.Server says it is up with a flag, not an event: polled.
        while not self.server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await self.listen()

    async def listen(self) -> None:
        self.listener = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, backlog=1024, reuse_address=True)
        self.port = self.listener.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        if self.listener is not None:
            self.listener.close()
            await self.listener.wait_closed()
            self.listener = None

    async def stop(self) -> None:
        await self.stop_listening()
        if self.server is not None and self.serving is not None:
            self.server.should_exit = True
            await self.serving

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        behaviour = self.faults.pop(0) if self.faults else self.always
        try:
            if behaviour is None:
                await self._pass_through(reader, writer)
            else:
                await behaviour(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the front went away first, or the test is over: both expected here
        finally:
            writer.transport.abort()

    async def _pass_through(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        app_reader, app_writer = await asyncio.open_connection("127.0.0.1", self.app_port)

        async def pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    target.write(data)
                    await target.drain()

        try:
            # Either side closing ends both: a keep-alive connection lives as long as both do.
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(pipe(reader, app_writer)),
                 asyncio.ensure_future(pipe(app_reader, writer))],
                return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        finally:
            app_writer.transport.abort()


class Upstreams:
    """The front's two upstreams, prod and coupon, on one background event loop."""

    def __init__(self, simulated_latency_ms: int = 0) -> None:
        self.loop = LoopThread()
        common: dict[str, Any] = {"access_log": False,
                                  "simulated_latency_ms": simulated_latency_ms}
        self.prod = Upstream("prod", create_prod_app(ProdSettings(instance="prod-1", **common)))
        self.coupon = Upstream("coupon", create_coupon_app(
            CouponSettings(instance="coupon-1", **common)))
        for upstream in self:
            self.loop.run(upstream.start())

    def __iter__(self) -> Iterator[Upstream]:
        return iter((self.prod, self.coupon))

    def __getitem__(self, name: str) -> Upstream:
        return {"prod": self.prod, "coupon": self.coupon}[name]

    @property
    def requests(self) -> list[SeenRequest]:
        return [*self.prod.requests, *self.coupon.requests]

    def refuse(self, name: str) -> None:
        """Nothing listens on that upstream's port until reset(): connections are refused."""
        self.loop.run(self[name].stop_listening())

    def reset(self) -> None:
        """Back to healthy pass-through, with fresh counts."""
        for upstream in self:
            upstream.faults.clear()
            upstream.always = None
            upstream.requests.clear()
            upstream.connections = 0
            if upstream.listener is None:
                self.loop.run(upstream.listen())

    def close(self) -> None:
        for upstream in self:
            self.loop.run(upstream.stop())
        self.loop.close()


def front_settings_for(upstreams: Upstreams, **changes: Any) -> FrontSettings:
    """Front settings pointed at these upstreams, with a short budget so faults end fast
    (0.5 s). A try, and a connect, may take the whole budget, and no hedge starts, unless a
    test says otherwise: on a busy runner a short try or connect timeout, or a hedge, would
    add tries the test did not ask for. No warm-up either: the tests count the requests that
    reach the upstreams."""
    values: dict[str, Any] = {
        "instance": "front-test", "release": "2", "prod_api_url": upstreams.prod.url,
        "coupon_api_url": upstreams.coupon.url, "upstream_timeout_seconds": 0.5,
        "upstream_attempt_timeout_seconds": 0.5, "upstream_connect_timeout_seconds": 0.5,
        "upstream_hedge_delay_seconds": 0, "upstream_warmup_seconds": 0, **changes}
    return FrontSettings(**values)
