"""shop-swarm: what the shop's swarm steps wait for, and where things stand.

    shop-swarm wait SERVICE... [--rollback] [--served]
                                               until each service has converged (and the
                                               entry point answers 200)
    shop-swarm removed [--networks N,..] [--volumes V,..]   until the shop's stacks are gone
    shop-swarm status                          release, replicas, update state, entry point
    shop-swarm previous SERVICE                what `docker service rollback` returns to

Common options (before the subcommand): --stacks (the shop's stack names, comma-separated),
--url (its entry point), --timeout. `make deploy`, `update`, `scale`, `rollback`,
`autoscale` and `down` run their docker commands, then `wait` or `removed`: one progress line
per change, then one closing line, what runs now, on which release, at which URL.

`make deploy` (and `deploy-edge`, `shop-deploy`) also wait for the entry point to answer 200:
the edge takes a front in only after its health checks pass, a moment after the tasks run.

A service has converged when it runs as many tasks as it wants, all `running` (swarm counts a
task with a healthcheck as running only once it is healthy), all on the spec's image, none
left draining (told to shut down, still running; also the containers on this node of tasks a
rollback dropped from the task list), and no update or rollback in progress.
Reads the Docker Engine API through the Docker SDK (DOCKER_HOST as the docker client reads it).

Over 300 lines: the four subcommands share the one reading of the swarm (ServiceState) and
the one closing line; split, each module would import the others' halves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import docker
import httpx
from docker.errors import DockerException, NotFound
from docker.models.services import Service
from rich.console import Console
from rich.table import Table

STACKS = "prod,coupon,front,edge,autoscale"
URL = "http://127.0.0.1/product-detail/2"
TIMEOUT = 300.0  # s: an update of two tasks with its 30 s monitor takes about 45 s here
POLL = 1.0  # s between two looks at the swarm (or the entry point)
IN_PROGRESS = {"updating", "rollback_started"}
FAILED = {"paused", "rollback_paused"}
STACK_LABEL = "com.docker.stack.namespace"
SCALER = "autoscale_scaler"


def strip_digest(image: str) -> str:
    """`name:tag` of `name:tag@sha256:...` (images pinned by a registry digest)."""
    return image.split("@", 1)[0]


def image_tag(image: str) -> str:
    name = strip_digest(image)
    return name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else "latest"


@dataclass(frozen=True)
class ServiceState:
    """One service as the swarm reports it, reduced to what a person follows."""

    name: str
    image: str  # the spec's image, without a digest
    release: str | None  # SHOP_RELEASE baked into the image; None for other images
    desired: int  # replicas (replicated) or tasks the orchestrator wants (global)
    running: int  # running (healthy) on the spec's image
    starting: int  # wanted, not running yet
    old: int  # still running on another image (an update or rollback under way)
    draining: int  # told to shut down, still running
    update: str  # UpdateStatus.State, "" when none
    message: str  # UpdateStatus.Message
    error: str  # the last failed task's error, if any

    @property
    def converged(self) -> bool:
        return (
            self.running == self.desired
            and not (self.starting or self.old or self.draining)
            and self.update not in IN_PROGRESS
        )

    def label(self) -> str:
        """`front_app release 2 (2/2)`, `edge_proxy (1/1)`."""
        release = f" release {self.release}" if self.release else ""
        return f"{self.name}{release} ({self.running}/{self.desired})"

    def progress(self) -> str:
        parts = [self.label()]
        if self.starting:
            parts.append(f"{self.starting} starting")
        if self.old:
            parts.append(f"{self.old} on the previous image")
        if self.draining:
            parts.append(f"{self.draining} draining")
        if self.update:
            parts.append(f"update {self.update}")
        if self.error:
            parts.append(f"last task error: {self.error}")
        return ", ".join(parts)


class Swarm:
    """The Engine API, read the way the steps need it."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self._releases: dict[str, str | None] = {}

    def release_of(self, image: str) -> str | None:
        """SHOP_RELEASE from the image's environment (so `latest` reads as release 2); the
        tag when this engine does not hold the image; None for images not of the shop."""
        if image not in self._releases:
            try:
                env = self.client.images.get(image).attrs["Config"].get("Env") or []
            except NotFound:
                self._releases[image] = image_tag(image) if "-service" in image else None
            else:
                found = [e.partition("=")[2] for e in env if e.startswith("SHOP_RELEASE=")]
                self._releases[image] = found[0] if found else None
        return self._releases[image]

    def service(self, name: str) -> Service | None:
        with contextlib.suppress(NotFound):
            return cast(Service, self.client.services.get(name))  # type: ignore[no-untyped-call]
        return None

    def stack_services(self, stacks: Sequence[str]) -> list[Service]:
        """The services of these stacks, in the stacks' order."""
        found = self.client.services.list(filters={"label": STACK_LABEL})
        order = {stack: i for i, stack in enumerate(stacks)}
        mine = [s for s in found if s.attrs["Spec"]["Labels"].get(STACK_LABEL) in order]
        return sorted(mine, key=lambda s: (order[s.attrs["Spec"]["Labels"][STACK_LABEL]], s.name))

    def state(self, service: Service, since: float = 0.0) -> ServiceState:
        service.reload()
        spec = service.attrs["Spec"]
        image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
        tasks = tasks_of(service)
        wanted = [t for t in tasks if t["DesiredState"] == "running"]
        replicated = spec["Mode"].get("Replicated")
        desired = int(replicated["Replicas"]) if replicated else len(wanted)
        on_image = [t for t in wanted if t["Spec"]["ContainerSpec"]["Image"] == image]
        running = sum(t["Status"]["State"] == "running" for t in on_image)
        old = sum(
            t["Status"]["State"] == "running" and t["Spec"]["ContainerSpec"]["Image"] != image
            for t in wanted
        )
        draining = {
            t["ID"] for t in tasks
            if t["DesiredState"] != "running" and t["Status"]["State"] == "running"
        }
        # A rollback's scale-in drops the removed tasks from the task list at once while their
        # containers still drain: those on this node are found by their labels.
        wanted_ids = {t["ID"] for t in wanted}
        # sparse: the list's own data (labels included), no inspect per container: a draining
        # container may be gone between the list and its inspect.
        for container in self.client.containers.list(
            sparse=True, filters={"label": f"com.docker.swarm.service.id={service.id}"}
        ):
            labels = container.attrs.get("Labels") or {}
            task_id = labels.get("com.docker.swarm.task.id", container.id)
            if task_id not in wanted_ids:
                draining.add(task_id)
        failures = sorted(
            (t for t in tasks if t["Status"]["State"] in ("failed", "rejected")
             and _epoch(t["Status"]["Timestamp"]) >= since),
            key=lambda t: t["Status"]["Timestamp"],
        )
        status = service.attrs.get("UpdateStatus") or {}
        return ServiceState(
            name=service.name or "",
            image=strip_digest(image),
            release=self.release_of(strip_digest(image)),
            desired=desired,
            running=running,
            starting=len(on_image) - running,
            old=old,
            draining=len(draining),
            update=status.get("State", ""),
            message=status.get("Message", ""),
            error=failures[-1]["Status"].get("Err", "") if failures else "",
        )

    def closing_line(self, stacks: Sequence[str], url: str) -> str:
        """What runs now, on which release, at which URL: one line."""
        states = [self.state(s) for s in self.stack_services(stacks)]
        if not states:
            return f"nothing of the shop runs (stacks {', '.join(stacks)})"
        return "now: " + ", ".join(s.label() for s in states) + f" at {url}"


def tasks_of(service: Service, filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
    # The SDK's stubs leave Service.tasks untyped; it returns the Engine API's task objects.
    return cast(list[dict[str, Any]], service.tasks(filters))  # type: ignore[no-untyped-call]


def _epoch(timestamp: str) -> float:
    """Seconds since the epoch of an Engine API timestamp (RFC 3339, nanoseconds, Z): Python
    3.11's fromisoformat reads it as it is (to the microsecond)."""
    return datetime.fromisoformat(timestamp).timestamp()


class Progress:
    """One line per change of what a service looks like, with the time since the start."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.start = time.monotonic()
        self.last: dict[str, str] = {}

    def show(self, key: str, line: str) -> None:
        if self.last.get(key) != line:
            self.last[key] = line
            self.console.print(f"[{time.monotonic() - self.start:6.1f}s] {line}")


def wait(swarm: Swarm, names: Sequence[str], args: argparse.Namespace, console: Console) -> int:
    """Until every named service has converged; 1 when an update failed, 2 on timeout."""
    services = {}
    for name in names:
        service = swarm.service(name)
        if service is None:
            console.print(f"{name}: no such service")
            return 1
        services[name] = service
    since = time.time() - 5  # task failures from this step on (clocks of one host)
    first = {name: swarm.state(s, since) for name, s in services.items()}
    progress = Progress(console)
    deadline = time.monotonic() + args.timeout
    pending = set(names)
    while pending:
        for name in sorted(pending):
            state = swarm.state(services[name], since)
            progress.show(name, state.progress())
            failure = update_failure(first[name], state, args.rollback)
            if failure:
                console.print(f"{name}: {failure}")
                return 1
            if state.converged:
                pending.discard(name)
        if pending and time.monotonic() > deadline:
            console.print(
                f"not converged after {args.timeout:.0f} s: {', '.join(sorted(pending))} "
                f"(docker service ps {' '.join(sorted(pending))} shows why)"
            )
            return 2
        if pending:
            time.sleep(POLL)
    if args.served and not served(args.url, deadline, progress, console):
        return 2
    console.print(swarm.closing_line(args.stacks, args.url))
    return 0


def served(url: str, deadline: float, progress: Progress, console: Console) -> bool:
    """Until the entry point answers 200: converged tasks are not yet a served shop (the
    edge takes a front in after its health checks pass). False at the deadline."""
    while True:
        status = answer(url)
        progress.show("entry point", f"entry point: {status}")
        if status.startswith("200"):
            return True
        if time.monotonic() > deadline:
            console.print(f"the entry point {url} does not answer 200: {status}")
            return False
        time.sleep(POLL)


def update_failure(first: ServiceState, now: ServiceState, rollback: bool) -> str:
    """Why this step failed, or "": an update that swarm paused or rolled back by itself
    (not the end of a rollback that was asked for), or an image that changed under us."""
    new_state = (now.update, now.message) != (first.update, first.message)
    if now.update in FAILED and new_state:
        return f"update {now.update}: {now.message}"
    if not rollback and now.update == "rollback_completed" and new_state:
        return (f"the update failed and swarm rolled it back ({now.message}); "
                f"{now.label()} on {now.image}")
    if not rollback and now.image != first.image and now.update != "rollback_started":
        return f"the spec's image changed to {now.image} while waiting"
    return ""


def removed(swarm: Swarm, args: argparse.Namespace, console: Console) -> int:
    """Until no service, task container, network or volume of the shop's stacks is left
    (and the named networks and volumes are gone); 2 on timeout."""
    progress = Progress(console)
    deadline = time.monotonic() + args.timeout
    while True:
        left = leftovers(swarm.client, args.stacks, args.networks, args.volumes)
        progress.show("left", "left: " + ("; ".join(left) if left else "nothing"))
        if not left:
            break
        if time.monotonic() > deadline:
            console.print(f"still there after {args.timeout:.0f} s: {'; '.join(left)}")
            return 2
        time.sleep(POLL)
    gone = ["stacks " + ", ".join(args.stacks)]
    if args.networks:
        gone.append("networks " + ", ".join(args.networks))
    if args.volumes:
        gone.append("volumes " + ", ".join(args.volumes))
    console.print(f"nothing of the shop runs: {'; '.join(gone)} removed")
    return 0


def leftovers(
    client: docker.DockerClient, stacks: Sequence[str], networks: Sequence[str],
    volumes: Sequence[str],
) -> list[str]:
    left = []
    for stack in stacks:
        label = f"{STACK_LABEL}={stack}"
        services = [s.name for s in client.services.list(filters={"label": label})]
        containers = client.containers.list(all=True, sparse=True, filters={"label": label})
        nets = [n.name for n in client.networks.list(filters={"label": label})]
        if services:
            left.append(f"services {', '.join(str(s) for s in services)}")
        if containers:
            left.append(f"{len(containers)} task container(s) of {stack}")
        if nets:
            left.append(f"networks {', '.join(str(n) for n in nets)}")
    names = {str(n.name) for n in client.networks.list(names=list(networks))} if networks else set()
    left += [f"network {n}" for n in networks if n in names]
    for volume in volumes:
        with contextlib.suppress(NotFound):
            client.volumes.get(volume)
            left.append(f"volume {volume}")
    return left


def previous(swarm: Swarm, name: str, console: Console) -> int:
    """Say what a rollback of the service returns to (its PreviousSpec); 1 when nothing."""
    service = swarm.service(name)
    if service is None:
        console.print(f"{name}: no such service")
        return 1
    before = service.attrs.get("PreviousSpec")
    if not before:
        console.print(f"{name} has no previous spec: there is nothing to roll back")
        return 1

    def describe(spec: dict[str, Any]) -> str:
        image = strip_digest(spec["TaskTemplate"]["ContainerSpec"]["Image"])
        release = swarm.release_of(image)
        replicated = spec["Mode"].get("Replicated")
        count = f", {replicated['Replicas']} replicas" if replicated else ""
        return f"{'release ' + release + ' ' if release else ''}({image}){count}"

    console.print(
        f"{name} goes back to its previous spec: {describe(before)}; "
        f"it runs {describe(service.attrs['Spec'])} now. A rollback undoes the service's "
        "last spec change, whatever it was (an update, a scale, a label)."
    )
    return 0


def status(swarm: Swarm, args: argparse.Namespace, console: Console) -> int:
    """A table of the shop's services, its entry point, and the autoscaler's last decision."""
    services = swarm.stack_services(args.stacks)
    if not services:
        console.print(f"nothing of the shop runs (stacks {', '.join(args.stacks)})")
        return 0
    table = Table("service", "release", "image", "running/desired", "draining", "update")
    for service in services:
        state = swarm.state(service)
        table.add_row(
            state.name, state.release or "-", state.image, f"{state.running}/{state.desired}",
            str(state.draining), state.update or "-",
        )
    console.print(table)
    console.print(f"entry point: {args.url} ({answer(args.url)})")
    scaler = swarm.service(SCALER)
    if scaler is not None:
        console.print(f"autoscaler: {last_decision(swarm.client, scaler)}")
    return 0


def answer(url: str) -> str:
    """One GET on the entry point (on this machine): what answers there."""
    try:
        response = httpx.get(url, timeout=2, headers={"Connection": "close"})
    except httpx.HTTPError as error:
        return f"no answer: {type(error).__name__}"
    release = response.headers.get("X-Release")
    return f"{response.status_code}" + (f" from release {release}" if release else "")


def last_decision(client: docker.DockerClient, scaler: Service) -> str:
    """The autoscaler's last `decision` log line, read from its container on this node
    (`docker service logs` without --follow can hang on Engine 20.10)."""
    running = [t for t in tasks_of(scaler, {"desired-state": "running"})
               if t["Status"]["State"] == "running"]
    if not running:
        return "no running task"
    container_id = running[0]["Status"].get("ContainerStatus", {}).get("ContainerID", "")
    try:
        logs = client.containers.get(container_id).logs(tail=500).decode(errors="replace")
    except (NotFound, DockerException):
        return f"runs on another node (docker service logs --tail 50 {SCALER})"
    decisions = []
    for line in logs.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == "decision":
                decisions.append(entry)
    if not decisions:
        return "running, no decision yet"
    d = decisions[-1]
    return (
        f"{d.get('swarm_service')} {d.get('current')} -> {d.get('desired')} replicas, "
        f"{d.get('reason')} (observed {d.get('observed_rps')} req/s per replica, target "
        f"{d.get('target_rps')}) at {d.get('ts')}"
    )


def _names(value: str) -> list[str]:
    return [item for item in value.split(",") if item]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="shop-swarm", description=__doc__.split("\n")[0])
    parser.add_argument("--stacks", type=_names, default=_names(STACKS),
                        help=f"the shop's stack names, comma-separated ({STACKS})")
    parser.add_argument("--url", default=URL, help=f"the shop's entry point ({URL})")
    parser.add_argument("--timeout", type=float, default=TIMEOUT,
                        help=f"seconds to wait at most ({TIMEOUT:.0f})")
    commands = parser.add_subparsers(dest="command", required=True)
    wait_cmd = commands.add_parser("wait", help="until the services have converged")
    wait_cmd.add_argument("services", nargs="+")
    wait_cmd.add_argument("--rollback", action="store_true",
                          help="a rollback was asked for: its end is the goal")
    wait_cmd.add_argument("--served", action="store_true",
                          help="then until the entry point (--url) answers 200")
    removed_cmd = commands.add_parser("removed", help="until the shop's stacks are gone")
    removed_cmd.add_argument("--networks", type=_names, default=[])
    removed_cmd.add_argument("--volumes", type=_names, default=[])
    commands.add_parser("status", help="release, replicas, update state, entry point")
    previous_cmd = commands.add_parser("previous", help="what a rollback returns to")
    previous_cmd.add_argument("service")
    return parser.parse_args(argv)


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(list(argv) if argv is not None else None)
    console = Console(highlight=False, soft_wrap=True, markup=False)
    try:
        swarm = Swarm(docker.from_env())
        if args.command == "wait":
            return wait(swarm, args.services, args, console)
        if args.command == "removed":
            return removed(swarm, args, console)
        if args.command == "previous":
            return previous(swarm, args.service, console)
        return status(swarm, args, console)
    except DockerException as error:
        console.print(f"shop-swarm: the Docker Engine did not answer: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
