"""The console: one page that shows the swarm, the requests and what changed, live.

The page (console/static: HTML, one script, one stylesheet; no build step, nothing from
another host) reads `/api/events`, a stream of server-sent events: first everything the
console knows, then what changed, at most a few times a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Response
from fastapi import Path as PathParam
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console.live import Changes, Docker, SwarmWatcher, keep_pruned, poll_prometheus, probe
from console.model import ConsoleState, RequestResult
from console.settings import ConsoleSettings
from console.stories import StoryReader
from shop_common.app import app_state, build_app
from shop_common.errors import ApiError, error_responses

STATIC = Path(__file__).parent / "static"
# Pages' streams get what changed at most this often: each change is one line of JSON, and
# the swarm changes in bursts.
PUSH_INTERVAL_S = 0.25
# A stream with nothing new still sends the console's time this often (the page's clock).
QUIET_PUSH_S = 5.0
MAX_REQUEST_SPAN_S = 120.0

# Everything the page loads comes from here; no inline script or style; data is shown as
# text (the script builds the page with textContent, never with HTML strings).
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
     b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the page's security headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message,
                           "headers": [*message.get("headers", ()), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)


class Console:
    """What the routes share: the state, its change signal, the story reader."""

    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self.state = ConsoleState(history_s=settings.history_s, max_tasks=settings.max_tasks)
        self.changes = Changes()
        self.docker = (Docker(settings.docker_host, settings.docker_timeout_s)
                       if settings.docker_host else None)
        self.stories = (StoryReader(self.docker.connect, settings.story_services,
                                    settings.story_timeout_s) if self.docker else None)
        self.watcher: SwarmWatcher | None = None

    def containers_around(self, sent: float) -> dict[str, list[str]]:
        """Per story service, the containers of its tasks alive around `sent`."""
        out: dict[str, list[str]] = {name: [] for name in self.settings.story_services}
        for task in self.state.tasks.values():
            ended = task.ended or float("inf")
            if (task.service in out and task.container_id
                    and task.created - 5 <= sent <= ended + 5):
                out[task.service].append(task.container_id)
        return out


ConsoleDep = Annotated[Console, Depends(app_state("console"))]
router = APIRouter()


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


@router.get("/", include_in_schema=False)
async def page(console: ConsoleDep) -> Response:
    """The page."""
    return Response((STATIC / "index.html").read_bytes(), media_type="text/html")


@router.get("/api/state", tags=["console"])
async def state(console: ConsoleDep) -> Response:
    """Everything the console knows now (what the page's stream starts with)."""
    return _json(console.state.changes_since(0, time.time()))


@router.get("/api/events", response_class=EventSourceResponse, tags=["console"])
async def events(console: ConsoleDep) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: `state` with everything first, then what changed."""
    seq = 0
    while True:
        patch = console.state.changes_since(seq, time.time())
        seq = patch["seq"]
        yield ServerSentEvent(raw_data=orjson.dumps(patch).decode(), event="state")
        await asyncio.sleep(PUSH_INTERVAL_S)
        if console.state.seq == seq:  # nothing new yet: until something is (no await between)
            await console.changes.wait(QUIET_PUSH_S)


@router.get("/api/requests", tags=["console"], responses=error_responses(400))
async def requests_sent(
    console: ConsoleDep,
    start: Annotated[float, Query(description="from (epoch seconds)")],
    end: Annotated[float, Query(description="until, at most 120 s later")],
) -> Response:
    """The probe's requests sent in [start, end)."""
    if not 0 <= end - start <= MAX_REQUEST_SPAN_S:
        raise ApiError(400, f"end must be after start, by at most {MAX_REQUEST_SPAN_S:g} s")
    return _json([_request(r) for r in console.state.requests_between(start, end)])


@router.get("/api/requests/{request_id}/story", tags=["console"],
            responses=error_responses(400, 404, 503))
async def story(
    console: ConsoleDep,
    request_id: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9._-]{1,64}$")],
) -> Response:
    """One probe request and its lines in the services' logs (bounded in time)."""
    result = console.state.request(request_id)
    if result is None:
        raise ApiError(404, "no such request in the console's history")
    if console.stories is None:
        raise ApiError(503, "the console has no Docker access (CONSOLE_DOCKER_HOST is empty)",
                       code="docker_unavailable")
    until = result.sent + result.latency_ms / 1000
    found = await console.stories.story(request_id, result.sent, until,
                                        console.containers_around(result.sent))
    return _json({**found, "request": _request(result)})


def _request(result: RequestResult) -> dict[str, Any]:
    return {"request_id": result.request_id, "sent": result.sent,
            "latency_ms": round(result.latency_ms, 2), "status": result.status,
            "error": result.error, "release": result.release, "instance": result.instance}


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()
    console = Console(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = list(_start_sources(console, app))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    app = build_app(
        service="console", title="Shop console",
        description="The swarm, the requests and what changed, live, on one page.",
        settings=settings, routers=[router], lifespan=lifespan, state={"console": console},
    )
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _start_sources(console: Console, app: FastAPI) -> Iterator[asyncio.Task[None]]:
    settings, state, changes = console.settings, console.state, console.changes
    if console.docker is not None:
        console.watcher = SwarmWatcher(console.docker, state, changes, settings, app.state.log)
        yield asyncio.create_task(console.watcher.run())
    else:
        state.set_source("docker", state="off", message="CONSOLE_DOCKER_HOST is empty")
    if settings.probe_rate > 0:
        state.set_source("probe", state="on", url=settings.probe_url, rate=settings.probe_rate)
        yield asyncio.create_task(probe(settings, state, changes))
    else:
        state.set_source("probe", state="off", url=settings.probe_url,
                         message="CONSOLE_PROBE_RATE is 0")
    if settings.prometheus_url:
        yield asyncio.create_task(poll_prometheus(settings, state, changes))
    else:
        state.set_source("prometheus", state="off", message="CONSOLE_PROMETHEUS_URL is empty")
    yield asyncio.create_task(keep_pruned(state, changes))
