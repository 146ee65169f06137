import asyncio
import gc
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from shop_common.datafile import DataFileError
from shop_common.lifecycle import Lifecycle
from shop_common.logs import Logger, uvicorn_log_config
from shop_common.settings import ServiceSettings, env_name

S = TypeVar("S", bound=ServiceSettings)
# Young-generation collections run after this many net new container objects (700 by
# default): under load that is every few requests, each time over the objects of every
# request in flight, and nearly all of them are freed by reference counting anyway.
YOUNG_GC_THRESHOLD = 10_000


def tune_gc_for_serving() -> None:
    """Garbage collection for a long-lived server, once the app is built.

    What exists now (modules, the app, its validators and data) lives as long as the process:
    frozen, the collector no longer walks it on every full collection, each of which is a
    pause that every request in flight waits out. Young collections run less often (see
    YOUNG_GC_THRESHOLD). Only for the served process: tests build many apps in one.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])


class DrainingServer(uvicorn.Server):
    """uvicorn with a drain phase before its graceful shutdown.

    The first SIGTERM: /health turns 503 and responses carry `Connection: close` for
    `drain_seconds` (the orchestrator and the edge notice and stop routing here), then uvicorn
    stops accepting and waits up to `timeout_graceful_shutdown` for requests in flight, and
    the process exits 0. SIGINT (Ctrl-C) or a second SIGTERM skips the drain (and a second
    Ctrl-C skips the graceful wait too).
    """

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, drain_seconds: float,
                 log: Logger) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.drain_seconds = drain_seconds
        self.log = log
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.loop = asyncio.get_running_loop()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.lifecycle.draining or self.loop is None:
            # Ctrl-C, or a second SIGTERM: the operator wants it gone now. Not through
            # uvicorn's own handler, which raises the signal again once stopped: a stop the
            # operator asked for exits 0.
            self.force_exit = self.should_exit
            self.should_exit = True
            return
        self.lifecycle.start_draining()
        # Called as a signal handler: hand the rest to the event loop.
        self.loop.call_soon_threadsafe(self.drain)

    def drain(self) -> None:
        self.log.info("draining", message=(
            f"SIGTERM: draining for {self.drain_seconds:g} s, then up to "
            f"{self.config.timeout_graceful_shutdown} s for requests in flight"))
        assert self.loop is not None
        self.loop.call_later(self.drain_seconds, self.stop_after_drain)

    def stop_after_drain(self) -> None:
        self.log.info("draining", message="drain period over: no longer accepting connections")
        self.should_exit = True


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """Run a shop app the way it runs in production: one uvicorn worker, uvloop, httptools."""
    info = app.state.service_info
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # the shop middleware writes the access log
        log_config=uvicorn_log_config(info.service, info.instance, info.release,
                                      settings.log_level),
        server_header=False,
        # Longer than the front's client keep-alive expiry (2 s), so the client, not the
        # server, closes idle connections: no request is sent into a closing socket.
        timeout_keep_alive=5,
        timeout_graceful_shutdown=settings.graceful_timeout_seconds,
    )
    server = DrainingServer(config, app.state.lifecycle, settings.drain_seconds, app.state.log)
    tune_gc_for_serving()
    server.run()
    if not server.started:
        sys.exit(3)


def settings_problems(exc: ValidationError) -> str:
    """A settings error as one line per problem, named by its environment variable."""
    lines = []
    for error in exc.errors():
        where = env_name(str(error["loc"][0])) if error["loc"] else "settings"
        lines.append(f"{where}: {error['msg']}")
    return "\n".join(lines)


def run_service(settings_class: type[S], create_app: Callable[[S], FastAPI]) -> None:
    """Entry point body shared by the three services: settings, app, then serve.

    Bad settings or a bad data file stop the service before it listens, with a message
    that says which variable or file and what is wrong (exit status 2).
    """
    try:
        settings = settings_class()
    except ValidationError as exc:
        print(f"{settings_class.__name__}: invalid settings\n{settings_problems(exc)}",
              file=sys.stderr)
        sys.exit(2)
    try:
        app = create_app(settings)
    except DataFileError as exc:
        print(f"{settings_class.__name__}: {exc}", file=sys.stderr)
        sys.exit(2)
    serve(app, settings)
