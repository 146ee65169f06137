"""One request's story: its lines in the services' logs, found by its request id.

Every read is bounded. `docker service logs` without --follow has been seen not to end on
Engine 20.10 after a rolling update replaced a service's tasks, and the Docker SDK gives no
way to interrupt a service-log read: each one runs in a worker thread, the page gets what has
arrived when the time is up, and the thread stops at its next line (the Docker API proxy
closes a read without follow that stays silent for 10 s, so a silent read ends too). At
the same time the logs of the services' containers on the console's own node are read
(`/containers/{id}/logs` with since and until, which always end): on a single node they hold
the whole story even when the service-log read does not end.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import docker
import docker.errors
import orjson

from console.engine import DOCKER_ERRORS, split_log_line, timestamp

# Seconds of logs read before the request was sent (clocks of nodes differ a little) and
# after its answer.
BEFORE_S = 2.0
AFTER_S = 3.0


@dataclass
class _Read:
    """Lines one reader found; filled by its worker thread, read by the waiter."""

    lines: list[tuple[str, str]] = field(default_factory=list)
    outcome: str = "not finished"
    stop: threading.Event = field(default_factory=threading.Event)


class StoryReader:
    """Reads a request's lines from the services' logs, in bounded time."""

    def __init__(self, connect: Callable[[], docker.DockerClient], services: list[str],
                 timeout_s: float, max_open_service_reads: int | None = None,
                 container_reads_at_once: int = 4) -> None:
        self.connect = connect  # a new client for one read (a client is not shared by threads)
        self.services = services
        self.timeout_s = timeout_s
        # Service-log reads whose thread has not ended yet (one the page stopped waiting for
        # included): past this many, a service-log read is not started, so threads that hang
        # cannot pile up. Four stories' worth by default. Container-log reads always end (since
        # and until), so they are never refused: a story's container reads take turns on
        # `container_reads_at_once` threads.
        self.slots = threading.BoundedSemaphore(max_open_service_reads or 4 * len(services))
        self.container_reads_at_once = container_reads_at_once

    async def story(self, request_id: str, sent: float, until: float,
                    containers: dict[str, list[str]]) -> dict[str, Any]:
        """The lines carrying `request_id` from each service, sorted by time.

        `containers`: per service, the ids of its containers that lived around `sent`.
        """
        since = sent - BEFORE_S
        until += AFTER_S
        needle = request_id.encode()
        reads: dict[tuple[str, str], _Read] = {}
        container_threads = anyio.CapacityLimiter(self.container_reads_at_once)
        with anyio.move_on_after(self.timeout_s):
            async with anyio.create_task_group() as group:
                for service in self.services:
                    read = reads[(service, "service")] = _Read()
                    group.start_soon(self._service_read, service, since, needle, read)
                    for container in containers.get(service, []):
                        read = reads[(service, container)] = _Read()
                        group.start_soon(partial(
                            anyio.to_thread.run_sync, self._container_logs, container, since,
                            until, needle, read, limiter=container_threads,
                            abandon_on_cancel=True))
        for read in reads.values():
            read.stop.set()  # a thread still reading stops at its next line
        return {"request_id": request_id, "lines": _merge(reads),
                "sources": _sources(self.services, reads, self.timeout_s)}

    async def _service_read(self, service: str, since: float, needle: bytes,
                            read: _Read) -> None:
        await anyio.to_thread.run_sync(self._bounded_service_logs, service, since, needle,
                                       read, abandon_on_cancel=True)

    def _bounded_service_logs(self, service: str, since: float, needle: bytes,
                              read: _Read) -> None:
        if not self.slots.acquire(blocking=False):
            read.outcome = "not read: earlier reads have not ended yet"
            return
        try:
            self._service_logs(service, since, needle, read)
        finally:
            self.slots.release()

    def _service_logs(self, service: str, since: float, needle: bytes, read: _Read) -> None:
        try:
            with contextlib.closing(self.connect()) as client:
                # is_tty given: the SDK would otherwise inspect the service first.
                stream = client.api.service_logs(service, stdout=True, stderr=True,
                                                 timestamps=True, since=int(since),
                                                 is_tty=False)
                _collect(stream, needle, read)
        except DOCKER_ERRORS as exc:
            read.outcome = f"error: {_short(exc)}"

    def _container_logs(self, container: str, since: float, until: float, needle: bytes,
                        read: _Read) -> None:
        try:
            with contextlib.closing(self.connect()) as client:
                stream = client.api.logs(container, stdout=True, stderr=True, timestamps=True,
                                         since=since, until=until, stream=True, follow=False)
                try:
                    _collect(stream, needle, read)
                finally:
                    stream.close()
        except docker.errors.NotFound:
            read.outcome = "elsewhere"  # on another node: its service logs tell
        except DOCKER_ERRORS as exc:
            read.outcome = f"error: {_short(exc)}"


def _collect(stream: Iterable[bytes], needle: bytes, read: _Read) -> None:
    for chunk in stream:
        if read.stop.is_set():
            read.outcome = "stopped"
            return
        for raw in chunk.splitlines():
            if needle in raw:
                read.lines.append(split_log_line(raw))
    read.outcome = "complete"


def _merge(reads: dict[tuple[str, str], _Read]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for (service, source), read in reads.items():
        for stamp, text in list(read.lines):
            if (stamp, text) in seen:
                continue
            try:
                fields = orjson.loads(text)
            except orjson.JSONDecodeError:
                fields = None
            seen[(stamp, text)] = {
                "t": timestamp(stamp), "service": service,
                "source": "service logs" if source == "service" else f"container {source[:12]}",
                "text": text, "fields": fields if isinstance(fields, dict) else None,
            }
    return sorted(seen.values(), key=lambda line: line["t"])


def _sources(services: list[str], reads: dict[tuple[str, str], _Read],
             timeout_s: float) -> list[dict[str, str]]:
    out = []
    for service in services:
        service_read = reads[(service, "service")]
        outcome = service_read.outcome
        if outcome in ("not finished", "stopped"):
            outcome = f"no end within {timeout_s:g} s: showing what arrived"
        containers = [r for (s, source), r in reads.items() if s == service and source != "service"]
        here = [r for r in containers if r.outcome != "elsewhere"]
        unread = sum(r.outcome != "complete" for r in here)
        out.append({
            "service": service,
            "service_logs": outcome,
            "container_logs": (f"{len(here)} of {len(containers)} containers on this node"
                               + (f", {unread} not read to the end" if unread else "")
                               if containers else "no containers known"),
        })
    return out


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
