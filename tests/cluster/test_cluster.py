"""The shop on a three-node swarm on one machine (scripts/cluster.sh: Docker-in-Docker nodes),
its images pulled from a registry on the cluster, surviving the loss of a worker node twice.

1. `scripts/cluster.sh up` makes the nodes and runs the lab registry on the manager (Debian's
   docker-registry, TLS with a CA the lab makes); `scripts/cluster.sh push` pushes the
   release 2 images and the edge image there from this host (`make push REGISTRY=...`), and
   `scripts/cluster.sh deploy` deploys the stacks from it (`make deploy NO_IPVS=1
   REGISTRY=...`: --resolve-image always, dnsrr endpoints, the edge on every node's port 80,
   which each node publishes on 127.0.0.1:1808N). Every service runs the registry's image
   pinned by digest, and every node that runs a task pulled that image from the registry.
2. Each service's two replicas run on different nodes (swarm's default spread), and every
   front task reaches every prod and coupon task, on its own node or another, through the
   overlay aliases prod.api and coupon.api.
3. Under two probes (20 requests/s through node1's port, 10/s through node2's), node3 is
   killed (SIGKILL to its container: the node dies without warning). Swarm marks it Down and
   starts its tasks on the other nodes; then node3 is started again and rejoins. Its unused
   images are removed (a wiped disk), and node2 is killed with the probe through node1 only:
   its tasks land on node1 and node3, which pull what they lack from the registry; node2 is
   started again. Every request must succeed: the edge gives each try 1 s and retries on
   another front, the front gives up on a dead upstream and tries another (the README's
   latency budget). Printed per kill: failures (when they were sent, relative to the kill,
   and their kind), p99 in the 10 s after the kill, time to Down, to full replicas, to
   rejoin, and the pulls it took.
4. `scripts/cluster.sh down` removes the cluster and the lab CA it gave the host's engine;
   the images the test built are removed.

This is the whole scenario, and it is what CI runs: about 2.5-3 minutes, plus the node and
registry images when they are not cached (docker/node-image.sh, docker/build-base-image.sh
registry: about 1 minute each) on a 2-core machine. Each step's timings, the probe reports
and the cluster's peak memory are printed as the test runs (`[cluster] step=...` lines).

    CI=true .venv/bin/python -m pytest -m cluster -p no:cacheprovider

The test holds scripts/cluster.sh's lock for the whole scenario: another run on the same
machine waits for it instead of pulling the nodes from under it.

Env: DOCKER (client; default /usr/bin/docker), SHOP_CLUSTER_NAMESPACE (image namespace the
test builds and removes; default shoplab), SHOP_BASE_IMAGE, EDGE_IMAGE,
SHOP_CLUSTER_KEEP=1 (leave the cluster up for a look afterwards; `scripts/cluster.sh down`
removes it), SHOP_CLUSTER_REPORT=FILE (the figures as JSON), SHOP_LAB_PORT_BASE (18080),
SHOP_LAB_HEARTBEAT (swarm's dispatcher heartbeat in the lab; default 5s, swarm's own).
With CI=true a missing Docker fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from shop_tools.probe.blocking import BlockingProbe
from shop_tools.probe.display import summary_text
from shop_tools.probe.report import ProbeReport
from tests.support import steps
from tests.support.steps import missing_docker, timed_step

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "scripts" / "cluster.sh"
NODE_IMAGE_SH = REPO / "docker" / "node-image.sh"
BASE_IMAGE_SH = REPO / "docker" / "build-base-image.sh"
NAMESPACE = os.environ.get("SHOP_CLUSTER_NAMESPACE", "shoplab")
TAG = "2"
SERVICES = ("prod", "coupon", "front")
APPS = tuple(f"{service}_app" for service in SERVICES)
EDGE = "edge_proxy"
REPLICAS = 2
NODES = (1, 2, 3)
LAB = os.environ.get("SHOP_LAB_NAME", "shop-lab")
NODE_PREFIX = os.environ.get("SHOP_LAB_NODE_PREFIX", "shop-node")
PORT_BASE = int(os.environ.get("SHOP_LAB_PORT_BASE", "18080"))
LOCAL_BASE = "shop/python-base:bookworm"
OFFICIAL_BASE = "python:3.12-slim"
LOCAL_EDGE = "shop/edge-haproxy:bookworm"
EDGE_IMAGE = os.environ.get("EDGE_IMAGE", LOCAL_EDGE)
MAIN_RATE = 20.0  # requests/s through node1's port (the manager, never killed)
SIDE_RATE = 10.0  # requests/s through node2's port while node3 is the one killed
# The probes give each request 2 s (a client's patience); the README's latency budget keeps
# every request that enters through a live node inside it, even one that was in flight to a
# task on the node that died. The figures of "the kill window" cover the 10 s after a kill.
KILL_WINDOW = 10.0  # s
PROBE_LIMIT = 420.0  # s: each probe stops by itself after this whatever happens
TIMEOUT = 120.0  # s: the longest any single wait may take
KEEP = os.environ.get("SHOP_CLUSTER_KEEP") == "1"
LOCK_TIMEOUT = 900.0  # s to wait for another cluster run on this machine

# Run inside a front task: resolve the overlay aliases (dnsrr: one address per healthy
# task) and GET /health from every address, to prove each task answers from this node.
REACH_SNIPPET = """
import http.client, json, socket
out = {}
for alias, port in (("prod.api", 3001), ("coupon.api", 3002)):
    seen = []
    for ip in sorted({a[4][0] for a in socket.getaddrinfo(alias, port, proto=socket.IPPROTO_TCP)}):
        try:
            conn = http.client.HTTPConnection(ip, port, timeout=3)
            conn.request("GET", "/health", headers={"Host": alias})
            resp = conn.getresponse()
            resp.read()
            seen.append({"ip": ip, "status": resp.status, "instance": resp.getheader("x-instance")})
        except OSError as exc:
            seen.append({"ip": ip, "status": None, "error": repr(exc)})
    out[alias] = seen
print(json.dumps(out))
"""


def docker_binary() -> str | None:
    if os.environ.get("DOCKER"):
        return os.environ["DOCKER"]
    if Path("/usr/bin/docker").exists():  # Debian's 20.10 client: BuildKit, matches the engine
        return "/usr/bin/docker"
    return shutil.which("docker")


wait_for = functools.partial(steps.wait_for, timeout=TIMEOUT)


def node_port(n: int) -> int:
    return PORT_BASE + n


def shop_url(n: int) -> str:
    return f"http://127.0.0.1:{node_port(n)}/product-detail/2"


def get_detail(n: int) -> httpx.Response | None:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(shop_url(n), timeout=3, headers={"Connection": "close"})
    return None


def answers(n: int) -> bool:
    response = get_detail(n)
    return response is not None and response.status_code == 200


@dataclass
class Task:
    id: str
    service: str
    node: str
    state: str  # "running", "starting", ... (first word of CurrentState, lower case)
    image: str


class MemorySampler:
    """The cluster's memory, sampled every second from cgroups: each node container's own
    cgroup (its dockerd, containerd, shims) plus the subtree its engine made for its
    containers (--cgroup-parent=/<node name>), working set = usage - inactive file cache
    (what `docker stats` shows). `docker stats` on the host alone would miss the second
    part: the nodes' containers live outside the node container's cgroup."""

    def __init__(self, docker: str) -> None:
        self.docker = docker
        self.peak_bytes = 0
        self.peak_at = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-memory", daemon=True)
        self._t0 = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _cgroup_dirs(self) -> list[Path]:
        dirs: list[Path] = []
        v1 = Path("/sys/fs/cgroup/memory")
        for n in NODES:
            name = f"{NODE_PREFIX}{n}"
            result = subprocess.run(
                [self.docker, "inspect", "--format", "{{.State.Pid}}", name],
                capture_output=True, text=True, timeout=30, check=False)
            pid = result.stdout.strip()
            if result.returncode != 0 or pid in ("", "0"):
                continue
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
                    _, controllers, path = line.split(":", 2)
                    if "memory" in controllers.split(",") and v1.is_dir():
                        dirs.append(v1 / path.lstrip("/"))
                    elif controllers == "" and not v1.is_dir():
                        dirs.append(Path("/sys/fs/cgroup") / path.lstrip("/"))
            dirs.append((v1 if v1.is_dir() else Path("/sys/fs/cgroup")) / name)
        return dirs

    @staticmethod
    def _working_set(path: Path) -> int:
        try:
            if (path / "memory.usage_in_bytes").exists():
                usage = int((path / "memory.usage_in_bytes").read_text())
                key = "total_inactive_file"
            else:
                usage = int((path / "memory.current").read_text())
                key = "inactive_file"
            stat = dict(line.split() for line in (path / "memory.stat").read_text().splitlines())
            return max(0, usage - int(stat.get(key, 0)))
        except (OSError, ValueError):
            return 0

    def _run(self) -> None:
        dirs: list[Path] = []
        refresh = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= refresh:  # PIDs change when a node restarts
                dirs = self._cgroup_dirs()
                refresh = now + 5
            total = sum(self._working_set(d) for d in dirs)
            self.samples += 1
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_at = total, now - self._t0
            self._stop.wait(1.0)


@dataclass
class Lab:
    docker_bin: str
    say: Callable[[str], None]
    figures: list[dict[str, Any]] = field(default_factory=list)
    built_images: list[str] = field(default_factory=list)
    sampler: MemorySampler | None = None
    started: float = field(default_factory=time.monotonic)
    state_dir: str = ""  # scripts/cluster.sh's directory of node sockets
    registry: str = ""  # the lab registry's address, host:port

    def expected_image(self, service: str) -> str:
        """The image a service's spec names, without its digest."""
        if service == EDGE:
            return f"{self.registry}/{EDGE_IMAGE}"
        return f"{self.registry}/{NAMESPACE}/{service.removesuffix('_app')}-service:{TAG}"

    # -- commands ---------------------------------------------------------------------
    def docker(self, *args: str, node: int | None = None, check: bool = True,
               timeout: float = 120, env: dict[str, str] | None = None,
               stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """The host's docker client; with `node`, talking to that node's engine."""
        environment = {**os.environ, **(env or {})}
        environment.pop("DOCKER_HOST", None)
        if node is not None:
            environment["DOCKER_HOST"] = f"unix://{self.state_dir}/node{node}/docker.sock"
        result = subprocess.run([self.docker_bin, *args], capture_output=True, text=True,
                                timeout=timeout, env=environment, input=stdin, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def manager(self, *args: str, check: bool = True) -> str:
        return self.docker(*args, node=1, check=check).stdout.strip()

    def script(self, script: Path, *args: str, timeout: float = 600,
               env: dict[str, str] | None = None) -> str:
        environment = {**os.environ, "DOCKER": self.docker_bin, **(env or {})}
        environment.pop("DOCKER_HOST", None)
        result = subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                                timeout=timeout, env=environment, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{script.name} {' '.join(args)} exited {result.returncode}:"
                                 f"\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def cluster(self, *args: str, timeout: float = 600) -> str:
        return self.script(CLUSTER_SH, *args, timeout=timeout, env={
            "SHOP_LAB_LOCK_HELD": "1",  # the lab fixture holds scripts/cluster.sh's lock
            "SHOP_NAMESPACE": NAMESPACE,
            "EDGE_IMAGE": EDGE_IMAGE,
            "RELEASES": TAG,  # the test builds (and pushes) release TAG only
        })

    def image(self, service: str) -> str:
        return f"{NAMESPACE}/{service}-service:{TAG}"

    def has_image(self, name: str) -> bool:
        return self.docker("image", "inspect", name, check=False).returncode == 0

    # -- steps ------------------------------------------------------------------------
    def step(self, name: str, **figures: Any) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """Time a step; what the body adds to the dict is printed and kept as figures."""
        return timed_step("cluster", name, self.say, self.figures, **figures)

    # -- swarm state ------------------------------------------------------------------
    def nodes(self) -> dict[str, str]:
        """hostname -> status (Ready, Down, ...), as the manager sees them."""
        out = self.manager("node", "ls", "--format", "{{.Hostname}}\t{{.Status}}")
        status: dict[str, str] = {}
        for line in out.splitlines():
            host, state = line.split("\t")
            # A node that left and joined again has an old Down entry too: Ready wins.
            if status.get(host) != "Ready":
                status[host] = state
        return status

    def tasks(self) -> list[Task]:
        """Tasks whose desired state is running (the manager's view: a dead node's tasks
        keep their last reported state)."""
        out = self.manager("service", "ps", "--no-trunc", "--filter", "desired-state=running",
                           "--format",
                           "{{.ID}}\t{{.Name}}\t{{.Node}}\t{{.CurrentState}}\t{{.Image}}",
                           *APPS, EDGE)
        tasks = []
        for line in out.splitlines():
            task_id, name, node, state, image = line.split("\t")
            tasks.append(Task(task_id, name.split(".")[0], node, state.split()[0].lower(),
                              image.split("@")[0]))
        return tasks

    def converged(self, live: set[str], tasks: list[Task] | None = None) -> bool:
        """Every app has REPLICAS running tasks and the edge one per node, all on `live`, all
        of the deployed image, and no other task meant to run (e.g. an update under way)."""
        wanted = [t for t in (self.tasks() if tasks is None else tasks) if t.node in live]
        if any(t.image != self.expected_image(t.service) for t in wanted):
            return False
        running = [t for t in wanted if t.state == "running"]
        per_app = {app: sum(t.service == app for t in running) for app in APPS}
        edge_nodes = {t.node for t in running if t.service == EDGE}
        return all(count == REPLICAS for count in per_app.values()) and edge_nodes == live

    def inspect_tasks(self, ids: list[str]) -> list[dict[str, Any]]:
        return json.loads(self.manager("inspect", *ids))

    # -- images -----------------------------------------------------------------------
    def spec_images(self) -> dict[str, str]:
        """service -> the image its spec names (with the digest swarm pinned, if any)."""
        return {name: self.manager("service", "inspect", "--format",
                                   "{{.Spec.TaskTemplate.ContainerSpec.Image}}", name)
                for name in (*APPS, EDGE)}

    def registry_digest(self, image: str) -> str:
        """The digest the lab registry serves for `host:port/repo:tag` (its API, over TLS
        with the lab's CA)."""
        host, _, rest = image.partition("/")
        repo, _, tag = rest.rpartition(":")
        response = httpx.head(
            f"https://{host}/v2/{repo}/manifests/{tag}", timeout=10, trust_env=False,
            verify=ssl.create_default_context(cafile=f"{self.state_dir}/registry/ca.crt"),
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                             "application/vnd.oci.image.manifest.v1+json"})
        assert response.status_code == 200, f"{image}: registry answered {response.status_code}"
        return response.headers["Docker-Content-Digest"]

    def repo_digests(self, node: int, image: str) -> list[str]:
        """The registry references a node holds `image` under; [] for an image it does not
        hold or got without a registry (`docker load` gives none)."""
        result = self.docker("image", "inspect", "--format", "{{json .RepoDigests}}", image,
                             node=node, check=False)
        return json.loads(result.stdout) if result.returncode == 0 else []

    def pulls(self, node: int, since: float, until: float) -> list[tuple[float, str]]:
        """(seconds after `since`, image) of every pull node `node` finished between two
        wall-clock times (the nodes share this host's clock)."""
        out = self.docker("events", "--since", f"{since:.3f}", "--until", f"{until:.3f}",
                          "--filter", "type=image", "--filter", "event=pull",
                          "--format", "{{.TimeNano}} {{.Actor.ID}}", node=node).stdout
        pulls = []
        for line in out.splitlines():
            nanos, image = line.split(" ", 1)
            pulls.append((round(int(nanos) / 1e9 - since, 1), image))
        return pulls

    def pull_figures(self, since: float, nodes: tuple[int, ...] = NODES) -> dict[str, str]:
        """Per node: how many images it pulled since `since`, the last one done after how
        many seconds."""
        now = time.time()
        figures = {}
        for n in nodes:
            done = self.pulls(n, since, now)
            figures[f"pulls_node{n}"] = (f"{len(done)} done by {max(t for t, _ in done)}s"
                                         if done else "0")
        return figures

    def check_images_from_registry(self) -> list[str]:
        """Every service's spec pins the lab registry's image by the digest the registry
        serves, and every node running a task holds that image under that registry
        reference (it pulled it). Returns one line per service for the log."""
        tasks = [t for t in self.tasks() if t.state == "running"]
        lines = []
        for service, image in self.spec_images().items():
            name, at, digest = image.partition("@")
            assert at, f"{service}: image not pinned by digest: {image}"
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{service}: {image}"
            assert name == self.expected_image(service), f"{service}: {image}"
            assert digest == self.registry_digest(name), (
                f"{service}: pinned {digest}, the registry serves {self.registry_digest(name)}")
            reference = f"{name.rpartition(':')[0]}@{digest}"
            nodes = sorted({t.node for t in tasks if t.service == service})
            for node in nodes:
                held = self.repo_digests(int(node.removeprefix("node")), reference)
                assert reference in held, f"{service} on {node}: {reference} not in {held}"
            lines.append(f"{service}: {name}@{digest[:19]}... on {','.join(nodes)}")
        return lines


# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A three-node cluster with the shop deployed (release 2); removed afterwards."""
    binary = docker_binary()
    if binary is None:
        missing_docker("no docker client")
    info = subprocess.run([str(binary), "info", "--format", "{{.ServerVersion}}"],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={k: v for k, v in os.environ.items() if k != "DOCKER_HOST"})
    if info.returncode != 0:
        missing_docker(f"no Docker Engine answering: {info.stderr.strip()[:200]}")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def say(text: str) -> None:
        """Print now, past pytest's capture: CI logs show each step as it ends."""
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(text, flush=True)

    lab = Lab(docker_bin=str(binary), say=say)
    with cluster_lock(say):
        try:
            set_up(lab)
            yield lab
        finally:
            tear_down(lab)


@contextlib.contextmanager
def cluster_lock(say: Callable[[str], None]) -> Iterator[None]:
    """The lock scripts/cluster.sh takes, for the whole scenario: the cluster's names are
    fixed, so a second run at the same time (another pytest, a `cluster.sh down`) would
    pull the nodes from under this one. It waits for the other run, within limits."""
    with CLUSTER_SH.open("rb") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"scripts/cluster.sh stayed locked for {LOCK_TIMEOUT:.0f} s "
                                "(another cluster run on this machine)", pytrace=False)
                if deadline - time.monotonic() > LOCK_TIMEOUT - 1:
                    say("[cluster] another cluster run holds scripts/cluster.sh's lock: waiting")
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def set_up(lab: Lab) -> None:
    with lab.step("node image (docker/node-image.sh)") as row:
        row["image"] = lab.script(NODE_IMAGE_SH, timeout=900).strip()
    with lab.step("service images") as row:
        build_images(lab, row)
    with lab.step("cluster up with its registry (scripts/cluster.sh up)") as row:
        out = lab.cluster("up")
        for line in out.splitlines():
            if line.startswith("export DOCKER_HOST=unix://"):
                lab.state_dir = line.split("unix://", 1)[1].rsplit("/node1/", 1)[0]
            if found := re.search(r"make push REGISTRY=(\S+?);", line):
                lab.registry = found.group(1)
        assert lab.state_dir, f"no DOCKER_HOST line in the output of cluster.sh up:\n{out}"
        assert lab.registry, f"no registry in the output of cluster.sh up:\n{out}"
        row["registry"] = lab.registry
    lab.sampler = MemorySampler(lab.docker_bin)
    lab.sampler.start()
    with lab.step("push to the lab registry (scripts/cluster.sh push)", tag=TAG):
        lab.cluster("push")
    with lab.step("deploy from the registry (scripts/cluster.sh deploy)", tag=TAG) as row:
        since = time.time()
        lab.cluster("deploy", TAG)  # pushes again first: nothing new, the layers are there
        live = {f"node{n}" for n in NODES}
        wait_for("every service at full strength on the three nodes",
                 lambda: lab.converged(live))
        for n in NODES:
            wait_for(f"the shop answering on node{n}'s port {node_port(n)}",
                     lambda n=n: answers(n))
        row.update(lab.pull_figures(since))


def build_images(lab: Lab, row: dict[str, Any]) -> None:
    """Release 2 of the three services from this tree, in a namespace of the test's own."""
    base = os.environ.get("SHOP_BASE_IMAGE") or (
        LOCAL_BASE if lab.has_image(LOCAL_BASE) else OFFICIAL_BASE)
    if EDGE_IMAGE == LOCAL_EDGE and not lab.has_image(LOCAL_EDGE):
        lab.script(BASE_IMAGE_SH, "edge", timeout=900)
    row["base"] = base
    env = {"DOCKER_BUILDKIT": "1"} if lab.docker_bin == "/usr/bin/docker" else {}
    for service in SERVICES:
        tag = lab.image(service)
        lab.built_images.append(tag)
        lab.docker("build", "-q", "-f", str(REPO / "docker/Dockerfile"),
                   "--target", f"{service}-service", "--build-arg", f"BASE_IMAGE={base}",
                   "--build-arg", f"RELEASE={TAG}", "-t", tag, str(REPO),
                   env=env, timeout=900)


def tear_down(lab: Lab) -> None:
    if lab.sampler is not None:
        lab.sampler.stop()
    if KEEP:
        lab.say(f"[cluster] SHOP_CLUSTER_KEEP=1: cluster left up; `scripts/cluster.sh down` "
                f"removes it; images {' '.join(lab.built_images)}")
    else:
        with lab.step("cluster down (scripts/cluster.sh down)") as row:
            lab.cluster("down")
            left = [name for kind, name in
                    [("container", f"{NODE_PREFIX}{n}") for n in NODES]
                    + [("volume", f"{NODE_PREFIX}{n}-data") for n in NODES]
                    + [("network", LAB)]
                    if lab.docker(kind, "inspect", name, check=False).returncode == 0]
            # What the test built, and the registry's names `make push` gave them.
            pushed = ([lab.expected_image(app) for app in (*APPS, EDGE)]
                      if lab.registry else [])
            if lab.built_images:
                lab.docker("rmi", *lab.built_images, *pushed, check=False)
            row["left_behind"] = ",".join(left) or "nothing"
            assert not left, f"cluster.sh down left {left}"
    total = {"step": "total", "seconds": round(time.monotonic() - lab.started, 1)}
    if lab.sampler is not None and lab.sampler.peak_bytes:
        total["peak_memory_mb"] = round(lab.sampler.peak_bytes / 2**20)
        total["peak_at_s"] = round(lab.sampler.peak_at)
    lab.figures.append(total)
    lab.say("[cluster] " + "  ".join(f"{k}={v}" for k, v in total.items()))
    if os.environ.get("SHOP_CLUSTER_REPORT"):
        Path(os.environ["SHOP_CLUSTER_REPORT"]).write_text(json.dumps(lab.figures, indent=2))


# ---------------------------------------------------------------------------------------
def test_tasks_spread_and_fronts_reach_other_nodes(lab: Lab) -> None:
    """Each service's replicas run on different nodes, and every front task reaches every
    prod and coupon task, on its own node or another, through the overlay aliases."""
    with lab.step("spread and cross-node reach") as row:
        running = [t for t in lab.tasks() if t.state == "running"]
        placement = {app: sorted(t.node for t in running if t.service == app) for app in APPS}
        row["placement"] = json.dumps(placement, separators=(",", ":"))
        for app, nodes in placement.items():
            assert len(nodes) == REPLICAS, f"{app}: {nodes}"
            assert len(set(nodes)) == REPLICAS, f"{app}: replicas share a node: {nodes}"
        used = {node for nodes in placement.values() for node in nodes}
        assert len(used) >= 2, f"all tasks on one node: {placement}"

        app_tasks = {t.id: t for t in running if t.service in APPS}
        details = lab.inspect_tasks(list(app_tasks))
        ip_owner: dict[str, Task] = {}
        containers: dict[str, str] = {}
        for task in details:
            mine = app_tasks[task["ID"]]
            containers[task["ID"]] = task["Status"]["ContainerStatus"]["ContainerID"]
            for attachment in task.get("NetworksAttachments", []):
                if attachment["Network"]["Spec"]["Name"] == "backend":
                    for address in attachment["Addresses"]:
                        ip_owner[address.split("/")[0]] = mine
        cross: dict[str, int] = {"prod.api": 0, "coupon.api": 0}
        for task_id, front in app_tasks.items():
            if front.service != "front_app":
                continue
            n = int(front.node.removeprefix("node"))
            out = lab.docker("exec", containers[task_id], "/opt/venv/bin/python", "-c",
                             REACH_SNIPPET, node=n).stdout
            seen = json.loads(out)
            for alias, expected in (("prod.api", "prod_app"), ("coupon.api", "coupon_app")):
                owners = []
                for hit in seen[alias]:
                    owner = ip_owner.get(hit["ip"])
                    assert owner is not None, f"{alias}: {hit['ip']} is no task's: {seen}"
                    assert owner.service == expected, f"{alias}: {hit['ip']} is {owner}"
                    assert hit["status"] == 200, f"{alias} {hit} from {front.node}: {seen}"
                    owners.append(owner.node)
                    if owner.node != front.node:
                        cross[alias] += 1
                assert sorted(owners) == placement[expected], (
                    f"{alias} from {front.node} reached {owners}, tasks are on "
                    f"{placement[expected]}")
                lab.say(f"[cluster] front on {front.node} -> {alias}: "
                        + ", ".join(f"{h['ip']}@{ip_owner[h['ip']].node}={h['status']}"
                                    for h in seen[alias]))
        row.update(cross_node_prod=cross["prod.api"], cross_node_coupon=cross["coupon.api"])
        assert cross["prod.api"] > 0, f"no front reached a prod task on another node: {cross}"
        assert cross["coupon.api"] > 0, f"no front reached a coupon task elsewhere: {cross}"

        # The whole path from every node's port: edge -> front -> prod + coupon.
        for n in NODES:
            response = get_detail(n)
            assert response is not None, f"node{n}: no answer"
            assert response.status_code == 200, f"node{n}: {response.text[:300]}"
            body = response.json()
            assert body["couponsAvailable"] is True, body
            assert body["couponPrice"] == 155200, body


def test_images_pinned_by_digest_from_the_lab_registry(lab: Lab) -> None:
    """Every service (the three apps and the edge) runs the lab registry's image pinned by
    the digest the registry serves, and each node running a task pulled it from there."""
    with lab.step("images from the registry") as row:
        lines = lab.check_images_from_registry()
        for line in lines:
            lab.say(f"[cluster] {line}")
        row["services"] = len(lines)


@dataclass
class Kill:
    """One node loss: when it happened and what the cluster did about it."""

    node: int
    at: float = 0.0  # time.monotonic() of the kill
    wall: float = 0.0  # time.time() of the kill
    row: dict[str, Any] = field(default_factory=dict)


def test_survives_losing_two_workers_in_turn(lab: Lab) -> None:
    """Kill node3 under probes through node1 and node2, start it again, then kill node2 under
    the probe through node1 and start it again: swarm marks each dead node Down and brings
    every replica back on the others (pulling from the registry what a node lacks), the
    dead node rejoins, and not one request through a live node fails."""
    before = [t for t in lab.tasks() if t.state == "running"]
    on_node3 = sorted(t.service for t in before if t.node == "node3" and t.service in APPS)
    lab.say("[cluster] placement: " + ", ".join(sorted(
        f"{t.service}@{t.node}" for t in before if t.service in APPS)))
    assert on_node3, f"no shop task on node3: nothing to reschedule ({before})"

    main = BlockingProbe.start(shop_url(1), rate=MAIN_RATE, duration=PROBE_LIMIT)
    side = BlockingProbe.start(shop_url(2), rate=SIDE_RATE, duration=PROBE_LIMIT)
    reports: dict[str, ProbeReport] = {}
    kills = [Kill(3), Kill(2)]
    try:
        time.sleep(3)  # a baseline with every node up
        lose_and_recover(lab, kills[0], lost=on_node3)
        wipe_unused_images(lab, 3)
        reports[f"node2:{node_port(2)}"] = side.stop_and_wait(timeout=30)
        lose_and_recover(lab, kills[1], lost=None)
        with lab.step("images after the second kill") as row:
            for line in lab.check_images_from_registry():
                lab.say(f"[cluster] {line}")
            row.update(lab.pull_figures(kills[1].wall, nodes=(1, 3)))
    finally:
        if f"node2:{node_port(2)}" not in reports:
            reports[f"node2:{node_port(2)}"] = side.stop_and_wait(timeout=30)
        reports[f"node1:{node_port(1)}"] = main.stop_and_wait(timeout=30)

    with lab.step("probe results") as row:
        for name, report in reports.items():
            row[name] = (f"{report.total} requests, {report.ok} ok, {report.failed} failed, "
                         f"rate={report.total / max(report.elapsed, 0.001):.1f}/s, "
                         f"p99={report.latencies.get('p99')}ms, "
                         f"max={report.latencies.get('max')}ms")
            lab.say(f"[cluster] probe {name}:")
            lab.say(summary_text(report))
            for kill in kills:
                offset = kill.at - report.started_at
                if offset > report.elapsed:
                    continue  # this probe had stopped before this kill
                window = (offset, offset + KILL_WINDOW)
                p99 = report.latency_percentile(0.99, *window)
                # Answers that took a per-try timeout at the edge (1 s) and a retry.
                retried = sum(window[0] <= sent < window[1] and ms >= 900
                              for sent, ms in report.answers)
                failed = [f"{f['sent_at'] - offset:+.2f}s:{f['kind']}"
                          for f in report.failure_samples
                          if offset - 3 <= f["sent_at"] < offset + KILL_WINDOW]
                figure = (f"p99 {_ms(p99)} ms in the {KILL_WINDOW:g} s after the kill, "
                          f"{retried} answers >= 0.9 s, "
                          f"failures {len(failed)} {' '.join(failed)}".rstrip())
                kill.row[f"probe_{name}"] = figure
                lab.say(f"[cluster] kill of node{kill.node}, probe {name}: {figure}")
    for kill in kills:
        lab.figures.append({"step": f"kill of node{kill.node}", **kill.row})
        lab.say(f"[cluster] kill of node{kill.node}: " + "  ".join(
            f"{k}={v}" for k, v in kill.row.items()))

    for name, report in reports.items():
        rate = report.total / max(report.elapsed, 0.001)
        assert rate >= 9.5, f"{name}: the probe could not hold its rate: {rate:.1f}/s"
        assert report.failed == 0, (
            f"{name}: {report.failed} requests through a live node failed: "
            f"{report.failures}; kills at "
            f"{', '.join(f'{k.at - report.started_at:.1f}s' for k in kills)} of the probe; "
            f"{report.failure_samples[:10]}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def lose_and_recover(lab: Lab, kill: Kill, lost: list[str] | None) -> None:
    """SIGKILL a node, wait until it is Down and every replica runs on the others, start it
    again and wait until it is Ready, serves on its port and the services are whole."""
    victim = f"node{kill.node}"
    live = {f"node{n}" for n in NODES} - {victim}
    before = [t for t in lab.tasks() if t.state == "running"]
    lost = lost or sorted(t.service for t in before if t.node == victim and t.service in APPS)
    with lab.step(f"loss of {victim}", lost=",".join(lost)) as row:
        original = {t.id for t in before}
        kill.at, kill.wall = time.monotonic(), time.time()
        lab.cluster("kill", str(kill.node))

        def progress() -> bool:
            now = time.monotonic() - kill.at
            if "down_s" not in row and lab.nodes().get(victim) == "Down":
                row["down_s"] = round(now, 1)
            tasks = lab.tasks()
            fresh = [t for t in tasks if t.id not in original and t.node in live
                     and t.service in APPS]
            if "rescheduled_s" not in row and fresh:
                row["rescheduled_s"] = round(now, 1)
            return "down_s" in row and lab.converged(live, tasks)

        # One `docker node ls` and one `docker service ps` a second: polling must not
        # starve the two CPUs the cluster shares.
        wait_for(f"{victim} Down and every replica back on {sorted(live)}", progress,
                 timeout=180, interval=1.0)
        row["full_replicas_s"] = round(time.monotonic() - kill.at, 1)
        row["placement"] = ",".join(sorted(f"{t.service}@{t.node}" for t in lab.tasks()
                                           if t.state == "running" and t.service in APPS))
        time.sleep(5)  # keep probing the recovered cluster for a moment
    kill.row.update({k: v for k, v in row.items() if k.endswith("_s")})

    with lab.step(f"restart of {victim}") as row:
        start_at = time.monotonic()
        lab.cluster("start", str(kill.node))
        wait_for(f"{victim} Ready", lambda: lab.nodes().get(victim) == "Ready", interval=1.0)
        row["rejoin_s"] = round(time.monotonic() - start_at, 1)
        wait_for(f"the edge running on {victim} again",
                 lambda: any(t.service == EDGE and t.node == victim and t.state == "running"
                             for t in lab.tasks()), interval=1.0)
        wait_for(f"the shop answering on {victim}'s port {node_port(kill.node)}",
                 lambda: answers(kill.node))
        row["usable_s"] = round(time.monotonic() - start_at, 1)
        wait_for("every service at full strength with the node back",
                 lambda: lab.converged({f"node{n}" for n in NODES}), timeout=30,
                 interval=1.0)
        time.sleep(3)
    kill.row.update(rejoin_s=row["rejoin_s"], usable_s=row["usable_s"])


def wipe_unused_images(lab: Lab, n: int) -> None:
    """Remove every image no container on node n uses, as if its disk had been replaced:
    what lands on it next must come from the registry."""
    with lab.step(f"wipe node{n}'s unused images") as row:
        lab.docker("container", "prune", "--force", node=n)
        out = lab.docker("image", "prune", "--all", "--force", node=n).stdout
        row["removed"] = sum(line.startswith("untagged:") for line in out.splitlines())
