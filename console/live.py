"""The console's sources, running: the swarm (events, then a reading of nodes, services and
tasks), the autoscaler's decisions (its log), Prometheus' request rates and the probe. Each
feeds the state (console.model) on the event loop and wakes the pages' streams.

The Docker SDK blocks: the events stream and the autoscaler's log each have a thread of their
own, and a reading of the swarm runs in a worker thread; what they read is handed to the
event loop, the only place the state changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import docker
import httpx
import orjson

from autoscaler.prometheus import RATE_QUERY, MetricsUnavailable, parse_vector
from console.engine import DOCKER_ERRORS, EVENT_FILTERS, read_swarm, split_log_line, timestamp
from console.model import ConsoleState, RequestResult
from console.probe import run_probe
from console.settings import ConsoleSettings
from shop_common.logs import Logger

# After an event, a reading of the swarm waits this long for the rest of its burst (a task
# replaced is a handful of container and service events).
DEBOUNCE_S = 0.1
# The swarm counts as changing for this long after the last event, so that task changes
# that come without events of their own (swarm has no task events) are read soon.
ACTIVE_AFTER_EVENT_S = 10.0
RETRY_S = 2.0
PRUNE_EVERY_S = 10.0


class Changes:
    """Wakes every page stream when the state has changed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, at_most_s: float) -> None:
        """Until the next change, or `at_most_s` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most_s):
                await self._event.wait()


class Docker:
    """Makes Docker SDK clients for the configured engine address; one per thread."""

    def __init__(self, host: str, timeout_s: float) -> None:
        self.host = host
        self.timeout_s = timeout_s
        self.version = "auto"  # negotiated once (GET /version), then reused

    def connect(self, timeout_s: float | None = None) -> docker.DockerClient:
        client = docker.DockerClient(base_url=self.host, version=self.version,
                                     timeout=int(timeout_s or self.timeout_s))
        self.version = client.api.api_version
        return client


class SwarmWatcher:
    """Keeps the state's nodes, services and tasks as the swarm has them."""

    def __init__(self, docker_: Docker, state: ConsoleState, changes: Changes,
                 settings: ConsoleSettings, log: Logger) -> None:
        self.docker = docker_
        self.state = state
        self.changes = changes
        self.settings = settings
        self.log = log
        self.stop = threading.Event()
        self.last_event = 0.0
        self.reads = 0
        self._wake: asyncio.Event | None = None
        self._client: docker.DockerClient | None = None
        self._stream: Any = None
        self._follower: threading.Thread | None = None
        self._follower_stop = threading.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()
        threading.Thread(target=self._follow_events, args=(loop,), daemon=True,
                         name="docker-events").start()
        try:
            while True:
                await self.refresh()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval()):
                        await wake.wait()
                if wake.is_set():
                    await asyncio.sleep(DEBOUNCE_S)
                    wake.clear()
        finally:
            self.stop.set()
            self._follower_stop.set()
            if self._stream is not None:
                with contextlib.suppress(*DOCKER_ERRORS, OSError):
                    self._stream.close()  # the SDK's events stream can be closed from here
            if self._client is not None:
                self._client.close()

    def _interval(self) -> float:
        recent = time.monotonic() - self.last_event < ACTIVE_AFTER_EVENT_S
        return self.settings.refresh_s if recent or self.state.settling \
            else self.settings.idle_refresh_s

    async def refresh(self) -> None:
        """Read nodes, services and tasks (three list calls) into the state."""
        try:
            if self._client is None:
                self._client = await anyio.to_thread.run_sync(self.docker.connect)
            nodes, services, tasks = await anyio.to_thread.run_sync(read_swarm, self._client)
        except DOCKER_ERRORS as exc:
            if self._client is not None:
                self._client.close()
                self._client = None
            self._source("unreachable", f"{type(exc).__name__}: {exc}"[:300])
            return
        self.reads += 1
        self.state.apply_swarm(time.time(), nodes, services, tasks)
        self._source("ok", "")
        self._autoscaler(any(s.name == self.settings.autoscaler_service for s in services))
        self.changes.notify()

    def _source(self, state: str, message: str) -> None:
        before = self.state.sources.get("docker", {}).get("state")
        self.state.set_source("docker", state=state, host=self.docker.host, message=message)
        if before != state:
            self.log.info("source", source="docker", state=state, message=message)
            self.changes.notify()

    def _on_event(self) -> None:
        self.last_event = time.monotonic()
        if self._wake is not None:
            self._wake.set()

    def _follow_events(self, loop: asyncio.AbstractEventLoop) -> None:
        """Thread: the engine's events stream; each event wakes a reading of the swarm."""
        since = time.time()
        while not self.stop.is_set():
            try:
                with contextlib.closing(self.docker.connect()) as client:
                    self._stream = client.events(decode=True, since=int(since),
                                                 filters=EVENT_FILTERS)
                    for event in self._stream:
                        since = max(since, event.get("timeNano", 0) / 1e9)
                        loop.call_soon_threadsafe(self._on_event)
            except DOCKER_ERRORS:
                pass  # the reading of the swarm reports the engine as unreachable
            except RuntimeError:
                return  # the event loop has closed: the console is stopping
            # The stream ended (the proxy closes one quiet for an hour): read what was missed.
            if not self.stop.wait(RETRY_S):
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._on_event)

    def _autoscaler(self, present: bool) -> None:
        running = self._follower is not None and self._follower.is_alive()
        if present and not running:
            self._follower_stop = threading.Event()
            self._follower = threading.Thread(
                target=follow_decisions, daemon=True, name="autoscaler-log",
                args=(self.docker, self.settings.autoscaler_service,
                      time.time() - self.settings.history_s, self._follower_stop,
                      self._decision_callback()))
            self._follower.start()
        elif not present and running:
            self._follower_stop.set()

    def _decision_callback(self) -> Callable[[float, dict[str, Any]], None]:
        loop = asyncio.get_running_loop()

        def deliver(t: float, line: dict[str, Any]) -> None:
            def apply() -> None:
                self.state.add_decision(t, line)
                self.changes.notify()
            loop.call_soon_threadsafe(apply)
        return deliver


def follow_decisions(docker_: Docker, service: str, since: float, stop: threading.Event,
                     deliver: Callable[[float, dict[str, Any]], None]) -> None:
    """Thread: the autoscaler's log, followed; each "decision" line is delivered.

    A stream that ends (the service's task replaced, the proxy closing one quiet for an hour)
    is opened again from the last line's time; lines read twice are marked once.
    """
    while not stop.is_set():
        try:
            with contextlib.closing(docker_.connect(timeout_s=60)) as client:
                stream = client.api.service_logs(service, stdout=True, follow=True,
                                                 timestamps=True, since=int(since),
                                                 is_tty=False)
                for chunk in stream:
                    if stop.is_set():
                        return
                    for raw in chunk.splitlines():
                        stamp, text = split_log_line(raw)
                        since = max(since, timestamp(stamp))
                        if b'"decision"' in raw:
                            _deliver_decision(text, stamp, deliver)
        except DOCKER_ERRORS:
            pass
        except RuntimeError:
            return  # the event loop has closed
        stop.wait(RETRY_S)


def _deliver_decision(text: str, stamp: str, deliver: Callable[[float, dict[str, Any]],
                                                               None]) -> None:
    try:
        line = orjson.loads(text)
    except orjson.JSONDecodeError:
        return
    if isinstance(line, dict) and line.get("event") == "decision":
        deliver(timestamp(str(line.get("ts") or stamp)), line)


async def poll_prometheus(settings: ConsoleSettings, state: ConsoleState,
                          changes: Changes) -> None:
    """The shop's request rate per swarm service, as the autoscaler reads it."""
    query = RATE_QUERY.format(window=settings.rate_window_s)
    async with httpx.AsyncClient(base_url=settings.prometheus_url, timeout=3,
                                 trust_env=False) as client:
        while True:
            try:
                response = await client.get("/api/v1/query", params={"query": query})
                response.raise_for_status()
                rates = parse_vector(response.json())
            except (httpx.HTTPError, ValueError, MetricsUnavailable) as exc:
                state.set_source("prometheus", state="unreachable", url=settings.prometheus_url,
                                 message=f"{type(exc).__name__}: {exc}"[:300])
            else:
                state.add_rates(time.time(), rates)
                state.set_source("prometheus", state="ok", url=settings.prometheus_url,
                                 message="")
            changes.notify()
            await asyncio.sleep(settings.prometheus_interval_s)


async def keep_pruned(state: ConsoleState, changes: Changes) -> None:
    while True:
        await asyncio.sleep(PRUNE_EVERY_S)
        state.prune(time.time())
        changes.notify()


async def probe(settings: ConsoleSettings, state: ConsoleState, changes: Changes) -> None:
    def record(result: RequestResult) -> None:
        state.add_request(result)
        changes.notify()

    try:
        await run_probe(settings.probe_url, settings.probe_rate, settings.probe_timeout_s,
                        record)
    except ValueError as exc:  # a URL the probe refuses (not http(s))
        state.set_source("probe", state="off", url=settings.probe_url, message=str(exc))
        changes.notify()
