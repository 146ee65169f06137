"""The console's state, on one time axis: what the swarm, the probe, Prometheus and the
autoscaler said, kept for a while (events in, timeline out).

Pure code: no I/O and no clock of its own. Every input carries its own times (the engine's
timestamps, the probe's send times) and the caller says what "now" is. Every change bumps a
sequence number kept on what changed, so a page that has seen sequence N asks for what is
newer (`changes_since(N)`) and gets only that.

Longer than most modules here: it is one state machine (tasks, services, nodes and the marks
their transitions leave; request seconds; rates; the pruning that keeps all of it bounded),
and splitting it would spread one sequence counter over several files.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shop_tools.probe.report import percentile

# What a task is doing, for a person: derived from swarm's task state and desired state.
STARTING, HEALTHY, RUNNING, DRAINING = "starting", "healthy", "running", "draining"
SHUTDOWN, FAILED, REJECTED = "shutdown", "failed", "rejected"
# Before the console watched: the part of an old task's life it cannot know.
EARLIER = "earlier"
ENDED_PHASES = frozenset({SHUTDOWN, FAILED, REJECTED})
_PENDING_STATES = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
# UpdateStatus.State values, and the mark each one leaves when a service enters it.
UPDATE_MARKS = {
    "updating": "update_started",
    "paused": "update_paused",
    "completed": "update_completed",
    "rollback_started": "rollback_started",
    "rollback_paused": "rollback_paused",
    "rollback_completed": "rollback_completed",
}
UPDATE_RUNNING = frozenset({"updating", "rollback_started"})
SIGKILL_EXIT = 137  # 128 + 9: `docker kill`, the OOM killer, swarm after the grace period
MAX_FAILED_IDS = 10  # request ids kept per second for the failures, to click on
MAX_REMOVED = 10_000  # removals remembered for pages that catch up


def task_phase(state: str, desired: str, has_healthcheck: bool) -> str:
    """The phase a page shows for swarm's task state and desired state.

    Swarm reports a task `running` only once its healthcheck passed (it waits for the
    container's first healthy status), so running with a healthcheck means healthy. A running
    task whose desired state is no longer running has been told to stop: it is draining.
    """
    if state == "failed":
        return FAILED
    if state == "rejected":
        return REJECTED
    if state == "running":
        if desired != "running":
            return DRAINING
        return HEALTHY if has_healthcheck else RUNNING
    if state in _PENDING_STATES:
        return STARTING
    return SHUTDOWN  # shutdown, complete, orphaned, remove


def release_of(image: str) -> str:
    """The tag of an image reference, without a pinned digest: `reg:5000/shop/front:2@sha..`
    is release "2"; an untagged image is "latest"."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


# -- inputs -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NodeInfo:
    id: str
    hostname: str
    role: str  # manager, worker
    state: str  # ready, down, unknown, disconnected
    availability: str  # active, pause, drain
    leader: bool
    updated: float  # when the engine last changed the node (epoch seconds)


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    id: str
    name: str
    image: str
    replicas: int | None  # None: a global service
    update_state: str  # "" when the service never had an update
    update_started: float | None
    update_completed: float | None
    update_message: str
    created: float


@dataclass(frozen=True, slots=True)
class TaskInfo:
    id: str
    service_id: str
    slot: int | None
    node_id: str
    image: str
    state: str
    desired: str
    has_healthcheck: bool
    created: float
    state_since: float  # Status.Timestamp: when the task entered its state
    updated: float  # UpdatedAt: moves when the desired state changes too
    message: str
    error: str
    exit_code: int | None
    container_id: str


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One request of the probe."""

    request_id: str
    sent: float  # epoch seconds
    latency_ms: float
    status: int | None  # None: no answer (see error)
    error: str  # "" when it succeeded; else a kind: status_503, timeout, connect, ...
    release: str
    instance: str

    @property
    def failed(self) -> bool:
        return bool(self.error)


# -- kept state ---------------------------------------------------------------------------
@dataclass(slots=True)
class Node:
    info: NodeInfo
    seq: int
    first_seen: float


@dataclass(slots=True)
class Service:
    info: ServiceInfo
    seq: int
    removed: float | None = None


@dataclass(slots=True)
class Task:
    id: str
    service_id: str
    service: str
    slot: int | None
    node_id: str
    image: str
    release: str
    created: float
    phases: list[tuple[float, str]]
    seq: int
    desired: str = "running"
    message: str = ""
    error: str = ""
    exit_code: int | None = None
    container_id: str = ""

    @property
    def phase(self) -> str:
        return self.phases[-1][1]

    @property
    def ended(self) -> float | None:
        since, phase = self.phases[-1]
        return since if phase in ENDED_PHASES else None

    @property
    def name(self) -> str:
        return f"{self.service}.{self.slot}" if self.slot is not None else self.service


@dataclass(slots=True)
class Mark:
    seq: int
    t: float
    kind: str
    text: str
    service: str = ""
    node: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Second:
    t: int
    seq: int
    ok: int = 0
    failed: int = 0
    releases: Counter[str] = field(default_factory=Counter)
    instances: Counter[str] = field(default_factory=Counter)
    instance_release: dict[str, str] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    failed_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class RatePoint:
    seq: int
    t: float
    rates: dict[str, float]


class ConsoleState:
    """Everything the page shows, with a sequence number per change."""

    def __init__(self, history_s: float = 900.0, max_tasks: int = 1000,
                 max_marks: int = 2000, max_requests: int = 10_000) -> None:
        self.history_s = history_s
        self.max_tasks = max_tasks
        self.max_marks = max_marks
        self.seq = 0
        self.nodes: dict[str, Node] = {}
        self.services: dict[str, Service] = {}
        self.tasks: dict[str, Task] = {}
        self.marks: deque[Mark] = deque()
        self.seconds: dict[int, Second] = {}
        self.rates: deque[RatePoint] = deque()
        self.requests: deque[RequestResult] = deque(maxlen=max_requests)
        self.totals = {"requests": 0, "failed": 0}
        self.totals_seq = 0
        self.sources: dict[str, dict[str, Any]] = {}
        self.sources_seq = 0
        # (seq, kind, id) of what pruning removed, so a page drops it too; a page that last
        # saw a sequence below the floor may have missed some and starts over.
        self.removed: deque[tuple[int, str, str]] = deque()
        self._removed_floor = 0
        self._swarm_synced = False
        self._mark_keys: set[tuple[Any, ...]] = set()

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    # -- the swarm -----------------------------------------------------------------------
    def apply_swarm(self, now: float, nodes: Iterable[NodeInfo],
                    services: Iterable[ServiceInfo], tasks: Iterable[TaskInfo]) -> None:
        """One reading of the swarm (nodes, services, tasks as listed at `now`)."""
        initial = not self._swarm_synced
        self._apply_nodes(now, list(nodes), initial)
        self._apply_services(now, list(services), initial)
        self._apply_tasks(now, list(tasks), initial)
        self._swarm_synced = True

    def _apply_nodes(self, now: float, nodes: list[NodeInfo], initial: bool) -> None:
        for info in nodes:
            node = self.nodes.get(info.id)
            if node is None:
                self.nodes[info.id] = Node(info, self._next(), now)
                if not initial:
                    self._mark(now, "node_joined", f"node {info.hostname} joined ({info.role})",
                               node=info.hostname)
                continue
            if node.info == info:
                continue
            old = node.info
            node.info = info
            node.seq = self._next()
            when = max(info.updated, old.updated)
            if (old.state == "ready") != (info.state == "ready"):
                kind = "node_up" if info.state == "ready" else "node_down"
                self._mark(when, kind, f"node {info.hostname} {info.state}",
                           node=info.hostname, detail={"from": old.state, "to": info.state})
            if old.availability != info.availability:
                self._mark(when, "node_availability",
                           f"node {info.hostname} availability {info.availability}",
                           node=info.hostname,
                           detail={"from": old.availability, "to": info.availability})

    def _apply_services(self, now: float, services: list[ServiceInfo], initial: bool) -> None:
        seen = set()
        for info in services:
            seen.add(info.id)
            service = self.services.get(info.id)
            if service is None:
                self.services[info.id] = Service(info, self._next())
                if not initial:
                    self._mark(info.created, "service_created",
                               f"{info.name} created (release {release_of(info.image)})",
                               service=info.name)
                self._update_marks(now, None, info)
                continue
            if service.info == info and service.removed is None:
                continue
            old = service.info
            service.info = info
            service.removed = None
            service.seq = self._next()
            if old.replicas != info.replicas and old.replicas is not None:
                self._mark(now, "service_scaled",
                           f"{info.name} replicas {old.replicas} -> {info.replicas}",
                           service=info.name,
                           detail={"from": old.replicas, "to": info.replicas})
            self._update_marks(now, old, info)
        for service in self.services.values():
            if service.info.id not in seen and service.removed is None:
                service.removed = now
                service.seq = self._next()
                self._mark(now, "service_removed", f"{service.info.name} removed",
                           service=service.info.name)

    def _update_marks(self, now: float, old: ServiceInfo | None, new: ServiceInfo) -> None:
        if not new.update_state or new.update_state not in UPDATE_MARKS:
            return
        if old is not None and (old.update_state, old.update_started) == (
                new.update_state, new.update_started):
            return
        kind = UPDATE_MARKS[new.update_state]
        # The engine's own times where it keeps them; a pause has none: when it was seen.
        if new.update_state in ("completed", "rollback_completed"):
            when = new.update_completed or now
        elif new.update_state in ("updating", "rollback_started"):
            when = new.update_started or now
        else:
            when = now
        if old is None and new.update_state in ("completed", "paused") and new.update_started:
            # First sight of a service whose update already ran: its start too.
            self._mark(new.update_started, "update_started",
                       f"{new.name} update started", service=new.name,
                       key=(new.id, "update_started", new.update_started))
        self._mark(when, kind, f"{new.name} {kind.replace('_', ' ')}", service=new.name,
                   detail={"message": new.update_message, "release": release_of(new.image)},
                   key=(new.id, kind, new.update_started))

    def _apply_tasks(self, now: float, tasks: list[TaskInfo], initial: bool) -> None:
        listed = set()
        for info in tasks:
            listed.add(info.id)
            if info.service_id not in self.services:
                # Listed before its service was (they are separate calls): next time.
                continue
            phase = task_phase(info.state, info.desired, info.has_healthcheck)
            since = info.updated if phase == DRAINING else info.state_since
            task = self.tasks.get(info.id)
            if task is None:
                task = self._new_task(info, phase, since)
                self.tasks[info.id] = task
                self._task_marks(task, None)
                continue
            changed = (task.desired, task.message, task.error, task.node_id,
                       task.exit_code, task.container_id) != (
                info.desired, info.message, info.error, info.node_id, info.exit_code,
                info.container_id)

            before = task.phase
            if phase != before:
                task.phases.append((max(since, task.phases[-1][0]), phase))
                changed = True
            if changed:
                task.desired, task.message, task.error = info.desired, info.message, info.error
                task.node_id, task.exit_code = info.node_id, info.exit_code
                task.container_id = info.container_id
                task.seq = self._next()
                if phase != before:
                    self._task_marks(task, before)
        for task in self.tasks.values():
            # Swarm keeps a few old tasks per slot and forgets the rest; the console keeps
            # them. One that vanished without ending has ended now.
            if task.id not in listed and task.ended is None:
                task.phases.append((max(now, task.phases[-1][0]), SHUTDOWN))
                task.message = task.message or "no longer listed by the swarm"
                task.seq = self._next()

    def _new_task(self, info: TaskInfo, phase: str, since: float) -> Task:
        name = self.services[info.service_id].info.name
        if since <= info.created or phase == STARTING:
            phases = [(info.created, phase)]
        elif phase in (HEALTHY, RUNNING):
            phases = [(info.created, STARTING), (since, phase)]  # exactly its start-up
        else:
            phases = [(info.created, EARLIER), (since, phase)]
        return Task(
            id=info.id, service_id=info.service_id, service=name, slot=info.slot,
            node_id=info.node_id, image=info.image, release=release_of(info.image),
            created=info.created, phases=phases, seq=self._next(), desired=info.desired,
            message=info.message, error=info.error, exit_code=info.exit_code,
            container_id=info.container_id,
        )

    def _task_marks(self, task: Task, before: str | None) -> None:
        since, phase = task.phases[-1]
        detail = {"task": task.id, "release": task.release, "error": task.error,
                  "exit_code": task.exit_code}
        node = self.nodes.get(task.node_id)
        where = node.info.hostname if node else ""
        if phase in (HEALTHY, RUNNING) and before != phase:
            self._mark(since, "task_started", f"{task.name} {phase} (release {task.release})",
                       service=task.service, node=where, detail=detail)
        elif phase in (FAILED, REJECTED):
            killed = phase == FAILED and task.exit_code == SIGKILL_EXIT
            kind = "task_killed" if killed else f"task_{phase}"
            text = f"{task.name} {'killed' if killed else phase}"
            if task.error:
                text += f": {task.error}"
            self._mark(since, kind, text, service=task.service, node=where, detail=detail)

    # -- marks from elsewhere ----------------------------------------------------------------
    def add_decision(self, t: float, decision: dict[str, Any]) -> None:
        """One line the autoscaler logged with event "decision"."""
        service = str(decision.get("swarm_service", ""))
        action = str(decision.get("action", ""))
        figures: dict[str, Any] = {key: decision.get(key) for key in (
            "current", "desired", "reason", "total_rps", "observed_rps", "target_rps",
            "min", "max", "update_state", "metrics", "error") if key in decision}
        text = (f"autoscaler {action} {service}: {figures.get('current')} -> "
                f"{figures.get('desired')} ({figures.get('reason')})")
        self._mark(t, "autoscaler", text, service=service,
                   detail={"action": action, **figures}, key=("autoscaler", t, service, action))

    def _mark(self, t: float, kind: str, text: str, *, service: str = "", node: str = "",
              detail: dict[str, Any] | None = None, key: tuple[Any, ...] | None = None) -> None:
        key = key or (kind, t, service, node, text)
        if key in self._mark_keys:
            return
        self._mark_keys.add(key)
        self.marks.append(Mark(self._next(), t, kind, text, service, node, detail or {}))

    # -- requests --------------------------------------------------------------------------
    def add_request(self, result: RequestResult) -> None:
        t = int(result.sent)
        second = self.seconds.get(t)
        if second is None:
            second = self.seconds[t] = Second(t, 0)
        second.seq = self._next()
        if result.release and not result.failed:  # answers by release; failures apart
            second.releases[result.release] += 1
        if result.instance:
            second.instances[result.instance] += 1
            second.instance_release[result.instance] = result.release
        if result.failed:
            second.failed += 1
            second.failures[str(result.status or result.error)] += 1
            if len(second.failed_ids) < MAX_FAILED_IDS:
                second.failed_ids.append(result.request_id)
        else:
            second.ok += 1
        if result.status is not None:  # answered: its latency counts, whatever the status
            second.latencies.append(result.latency_ms)
        self.requests.append(result)
        self.totals["requests"] += 1
        self.totals["failed"] += int(result.failed)
        self.totals_seq = self.seq

    def requests_between(self, start: float, end: float) -> list[RequestResult]:
        return [r for r in self.requests if start <= r.sent < end]

    def request(self, request_id: str) -> RequestResult | None:
        for result in reversed(self.requests):
            if result.request_id == request_id:
                return result
        return None

    # -- rates and sources ----------------------------------------------------------------
    def add_rates(self, t: float, rates: dict[str, float]) -> None:
        """The shop's request rate per swarm service, as Prometheus had it at `t`."""
        self.rates.append(RatePoint(self._next(), t, dict(rates)))

    def set_source(self, name: str, **status: Any) -> None:
        """How a data source is doing (`state`: ok, off, unreachable, ...; a `message`)."""
        if self.sources.get(name) != status:
            self.sources[name] = status
            self.sources_seq = self._next()

    # -- bounds ------------------------------------------------------------------------------
    def prune(self, now: float) -> None:
        """Forget what ended before the history window, and keep the counts bounded."""
        horizon = now - self.history_s
        ended = sorted((t.ended, t.id) for t in self.tasks.values() if t.ended is not None)
        excess = len(self.tasks) - self.max_tasks
        for when, task_id in ended:
            if when >= horizon and excess <= 0:
                break
            del self.tasks[task_id]
            self._forget("task", task_id)
            excess -= 1
        for service_id in [s.info.id for s in self.services.values()
                           if s.removed is not None and s.removed < horizon]:
            del self.services[service_id]
            self._forget("service", service_id)
        while self.marks and (self.marks[0].t < horizon or len(self.marks) > self.max_marks):
            self._forget("mark", str(self.marks.popleft().seq))
        if len(self._mark_keys) > 4 * self.max_marks:
            self._mark_keys = {k for k in self._mark_keys if _key_time(k) >= horizon}
        for t in [t for t in self.seconds if t < horizon]:
            del self.seconds[t]
            self._forget("second", str(t))
        while self.rates and self.rates[0].t < horizon:
            self._forget("rate", str(self.rates.popleft().t))

    def _forget(self, kind: str, ident: str) -> None:
        self.removed.append((self._next(), kind, ident))
        while len(self.removed) > MAX_REMOVED:
            self._removed_floor = self.removed.popleft()[0]

    @property
    def settling(self) -> bool:
        """Whether the swarm is changing: an update runs, or a task starts or drains."""
        if any(s.info.update_state in UPDATE_RUNNING for s in self.services.values()
               if s.removed is None):
            return True
        return any(t.phase in (STARTING, DRAINING) for t in self.tasks.values())

    # -- output ------------------------------------------------------------------------------
    def changes_since(self, seq: int, now: float) -> dict[str, Any]:
        """What changed after sequence `seq` (everything for 0), ready to send as JSON.

        A caller too far behind (what was removed since is no longer known) gets everything,
        with "full": true, and starts over.
        """
        full = seq <= 0 or seq < self._removed_floor
        if full:
            seq = 0
        out: dict[str, Any] = {
            "seq": self.seq,
            "now": now,
            "full": full,
            "history_s": self.history_s,
            "nodes": [_node(n) for n in self.nodes.values() if n.seq > seq],
            "services": [_service(s) for s in self.services.values() if s.seq > seq],
            "tasks": [self._task(t) for t in self.tasks.values() if t.seq > seq],
            "marks": [_mark(m) for m in self.marks if m.seq > seq],
            "seconds": [_second(s) for s in self.seconds.values() if s.seq > seq],
            "rates": [{"t": r.t, "rates": r.rates} for r in self.rates if r.seq > seq],
            "removed": [] if full else [
                {"kind": kind, "id": ident} for s, kind, ident in self.removed if s > seq],
        }
        if full or self.totals_seq > seq:
            out["totals"] = dict(self.totals)
        if full or self.sources_seq > seq:
            out["sources"] = dict(self.sources)
        return out

    def _task(self, task: Task) -> dict[str, Any]:
        node = self.nodes.get(task.node_id)
        return {
            "id": task.id, "name": task.name, "service": task.service,
            "service_id": task.service_id, "slot": task.slot, "node_id": task.node_id,
            "node": node.info.hostname if node else "", "release": task.release,
            "image": task.image, "created": task.created,
            "phases": [[since, phase] for since, phase in task.phases], "phase": task.phase,
            "desired": task.desired, "message": task.message, "error": task.error,
            "exit_code": task.exit_code, "instance": task.container_id[:12],
        }


def _service(service: Service) -> dict[str, Any]:
    info = service.info
    return {
        "id": info.id, "name": info.name, "release": release_of(info.image),
        "image": info.image, "replicas": info.replicas,
        "update_state": info.update_state, "update_started": info.update_started,
        "update_completed": info.update_completed, "update_message": info.update_message,
        "removed": service.removed,
    }


def _key_time(key: tuple[Any, ...]) -> float:
    times = [k for k in key if isinstance(k, float)]
    return max(times) if times else math.inf


def _node(node: Node) -> dict[str, Any]:
    info = node.info
    return {"id": info.id, "hostname": info.hostname, "role": info.role, "state": info.state,
            "availability": info.availability, "leader": info.leader}


def _mark(mark: Mark) -> dict[str, Any]:
    return {"id": mark.seq, "t": mark.t, "kind": mark.kind, "text": mark.text,
            "service": mark.service, "node": mark.node, "detail": mark.detail}


def _second(second: Second) -> dict[str, Any]:
    ordered = sorted(second.latencies)
    return {
        "t": second.t, "ok": second.ok, "failed": second.failed,
        "releases": dict(second.releases),
        "instances": {instance: {"n": n, "release": second.instance_release[instance]}
                      for instance, n in second.instances.items()},
        "failures": dict(second.failures), "p50_ms": _round(percentile(ordered, 0.5)),
        "p99_ms": _round(percentile(ordered, 0.99)), "failed_ids": list(second.failed_ids),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
