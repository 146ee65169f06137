import asyncio
import contextlib
import gc
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from shop_common.lifecycle import Lifecycle
from shop_common.logs import JsonLog, uvicorn_log_config
from shop_common.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)
YOUNG_GC_THRESHOLD = 10_000


class DrainingServer(uvicorn.Server):
    """uvicorn with a drain phase before its graceful shutdown, and exit status 0.

    SIGTERM: /health turns 503 and responses carry `Connection: close` for `drain_seconds`
    (the orchestrator and the edge notice and stop routing here), then uvicorn stops
    accepting and waits up to `timeout_graceful_shutdown` for requests in flight. SIGINT
    (Ctrl-C) skips the drain. Unlike plain `uvicorn`, the signal is not re-raised after the
    shutdown, so a clean stop exits 0.
    """

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, drain_seconds: float,
                 log: JsonLog) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.drain_seconds = drain_seconds
        self.log = log

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal, sig)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Everything built so far (modules, the app, its validators) lives as long as the
        # process: out of the collector's sight, a full collection takes about 1 ms instead of
        # 30-35 ms, each one a pause every request in flight waits out (bench/README.md).
        gc.collect()
        gc.freeze()
        # The young generation is collected after 700 net new container objects by default:
        # under load that is every few requests, each time over the objects of the requests
        # in flight (0.4 ms, 4% of the front's CPU). Almost all of them are freed by reference
        # counting, so a larger threshold leaves the collector little to do (bench/README.md).
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])

    def on_signal(self, sig: int) -> None:
        if sig == signal.SIGINT or self.lifecycle.draining:
            # Ctrl-C, or a second SIGTERM: the operator wants it gone now.
            self.force_exit = self.should_exit
            self.should_exit = True
            return
        self.lifecycle.start_draining()
        self.log.event("draining", message=(
            f"SIGTERM: draining for {self.drain_seconds:g} s, then up to "
            f"{self.config.timeout_graceful_shutdown} s for requests in flight"))
        asyncio.get_running_loop().call_later(self.drain_seconds, self.stop_after_drain)

    def stop_after_drain(self) -> None:
        self.log.event("draining", message="drain period over: no longer accepting connections")
        self.should_exit = True


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run a shop app the way it runs in production: one uvicorn worker, uvloop, httptools."""
    log: JsonLog = app.state.log
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # the shop middleware writes the access log
        log_config=uvicorn_log_config(log.service, log.instance, log.release, settings.log_level),
        server_header=False,
        # Longer than the front's client keep-alive expiry (2 s), so the client, not the
        # server, closes idle connections: no request is sent into a closing socket.
        timeout_keep_alive=5,
        timeout_graceful_shutdown=settings.graceful_timeout_seconds,
    )
    server = DrainingServer(config, app.state.lifecycle, settings.drain_seconds, log)
    server.run()
    if not server.started:
        sys.exit(3)


def run_service(settings_class: type[S], create_app: Callable[[S], FastAPI]) -> None:
    """Entry point body shared by the three services: settings, app, then serve.

    Bad settings or a bad data file stop the service before it listens, with a message
    that says which setting or file and what is wrong (exit status 2).
    """
    try:
        settings = settings_class()
        app = create_app(settings)
    except ValueError as exc:  # pydantic's ValidationError and DataFileError are ValueErrors
        print(f"{settings_class.__name__}: {exc}", file=sys.stderr)
        sys.exit(2)
    serve(app, settings)
