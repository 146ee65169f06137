"""The shop deployed on a real single-node Docker Swarm, shared by the swarm tests of
tests/deploy (end to end, autoscaling): the images built from this tree under a namespace of
their own, the three stacks with the override for hosts without IPVS and the edge proxy as
the entry point (published on a loopback-reachable host port), a probe to run through any
change, timed steps that print their figures, and a clean-up that removes the stacks, the
networks and the images it created and leaves a swarm it did not create as it found it.

Needs a Docker Engine (Debian's 20.10 is enough) and, where images cannot be pulled, the base
images of docker/build-base-image.sh plus a wheelhouse (scripts/wheelhouse.sh). With CI=true
a missing Docker fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
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
from tests.support.steps import timed_step

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "shope2e"  # image namespace of its own: the test removes exactly what it built
SERVICES = ("prod", "coupon", "front")
STACKS = ("prod", "coupon", "front", "edge")
STACK_NAMES = (*STACKS, "autoscale", "shop", "console")  # every stack name a swarm test deploys
NETWORKS = ("backend", "frontend")
OFFICIAL_BASE = "python:3.12-slim"
LOCAL_BASE = "shop/python-base:bookworm"
EDGE_IMAGE = os.environ.get("EDGE_IMAGE", "shop/edge-haproxy:bookworm")
PROBE_RATE = 25.0  # requests/s: a steady trickle, enough to see any gap of 40 ms or more
PROBE_LIMIT = 300.0  # s: every probe stops by itself after this, whatever happens
TIMEOUT = 180.0  # s: the longest any single wait may take


def _docker_binary() -> str | None:
    # Debian's 20.10 client matches the engine and builds with BuildKit; the newer client
    # first on PATH on these machines has no buildx and falls back to the legacy builder.
    if os.environ.get("DOCKER"):
        return os.environ["DOCKER"]
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    return shutil.which("docker")


def free_host_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # the edge publishes on all addresses
        return int(sock.getsockname()[1])


wait_for = functools.partial(steps.wait_for, timeout=TIMEOUT)


@dataclass
class Docker:
    binary: str

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 120,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            input=stdin,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def out(self, *args: str) -> str:
        return self.run(*args).stdout.strip()


@dataclass
class Container:
    id: str
    image: str
    status: str

    @property
    def healthy(self) -> bool:
        return "(healthy)" in self.status


@dataclass
class Deployment:
    docker: Docker
    say: Callable[[str], None]
    figures: list[dict[str, Any]]
    edge_port: int = field(default_factory=free_host_port)
    base_image: str = ""
    created_swarm: bool = False
    created_networks: list[str] = field(default_factory=list)
    built_images: list[str] = field(default_factory=list)
    deployed_stacks: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # stack -> IMG_TAG last deployed
    # Added to every stack deploy's environment (e.g. AUTOSCALE_* for the front's labels).
    stack_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}/product-detail/2"

    def image(self, service: str, tag: str) -> str:
        return f"{NAMESPACE}/{service}-service:{tag}"

    # -- steps ------------------------------------------------------------------------
    def step(self, name: str, **figures: Any) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """Time a step; what the body adds to the dict is printed and kept as figures."""
        return timed_step("e2e", name, self.say, self.figures, **figures)

    @contextlib.contextmanager
    def probing(self, row: dict[str, Any]) -> Iterator[Callable[[], ProbeReport]]:
        """Probe the entry point while the body runs; the report lands in `row`."""
        handle = BlockingProbe.start(self.url, rate=PROBE_RATE, duration=PROBE_LIMIT)
        reports: list[ProbeReport] = []

        def finish() -> ProbeReport:
            if not reports:
                reports.append(handle.stop_and_wait(timeout=30))
            return reports[0]

        try:
            yield finish
        finally:
            report = finish()
            row.update(
                requests=report.total,
                failed=report.failed,
                degraded=report.degraded,
                rate=round(report.total / max(report.elapsed, 0.001), 1),
                p99_ms=report.latencies.get("p99"),
                max_ms=report.latencies.get("max"),
            )
            self.say(summary_text(report))

    # -- swarm state ------------------------------------------------------------------
    def containers(self, service: str) -> list[Container]:
        lines = self.docker.out(
            "ps",
            "--filter",
            f"label=com.docker.swarm.service.name={service}",
            "--format",
            "{{.ID}}\t{{.Image}}\t{{.Status}}",
        )
        return [Container(*line.split("\t")) for line in lines.splitlines() if line]

    def inspect(self, service: str) -> dict[str, Any]:
        return json.loads(self.docker.out("service", "inspect", service))[0]

    def spec_image(self, service: str) -> str:
        return self.inspect(service)["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]

    def update_state(self, service: str) -> str:
        return (self.inspect(service).get("UpdateStatus") or {}).get("State", "")

    def converged(self, service: str, image: str, replicas: int) -> bool:
        """Exactly `replicas` containers running, all healthy, all on `image`."""
        running = self.containers(service)
        return len(running) == replicas and all(c.healthy and c.image == image for c in running)

    def wait_converged(self, stack: str, tag: str, replicas: int = 2) -> None:
        image = self.image(stack, tag)
        wait_for(
            f"{stack}_app: {replicas} healthy tasks of {image}",
            lambda: self.converged(f"{stack}_app", image, replicas),
        )

    def wait_update(self, service: str, done: str, seen: list[str] | None = None) -> str:
        """Wait for UpdateStatus.State `done`; other end states fail at once."""
        ends = {"completed", "paused", "rollback_completed", "rollback_paused"}

        def check() -> str:
            state = self.update_state(service)
            if seen is not None and state and (not seen or seen[-1] != state):
                seen.append(state)
            if state in ends - {done}:
                pytest.fail(
                    f"{service}: update ended {state!r}, expected {done!r}: "
                    f"{self.inspect(service).get('UpdateStatus')}",
                    pytrace=False,
                )
            return state if state == done else ""

        return str(wait_for(f"{service} update state {done}", check))

    # -- actions ----------------------------------------------------------------------
    def deploy(self, stack: str, tag: str | None = None, replicas: int = 2) -> None:
        files = {
            "prod": ["stacks/prod.yml", "stacks/no-ipvs.yml"],
            "coupon": ["stacks/coupon.yml", "stacks/no-ipvs.yml"],
            "front": ["stacks/front.no-ipvs.yml"],
            "edge": ["stacks/edge.yml"],
        }[stack]
        if tag is not None:
            self.tags[stack] = tag
        args = ["stack", "deploy", "--resolve-image", "never"]
        for name in files:
            args += ["-c", str(REPO / name)]
        env = {
            "SHOP_NAMESPACE": NAMESPACE,
            "IMG_TAG": self.tags.get(stack, "1"),
            "REPLICAS": str(replicas),
            "EDGE_PORT": str(self.edge_port),
            "EDGE_IMAGE": EDGE_IMAGE,
            **self.stack_env,
        }
        if stack not in self.deployed_stacks:
            self.deployed_stacks.append(stack)
        self.docker.run(*args, stack, env=env)

    def get(self) -> httpx.Response:
        return httpx.get(self.url, timeout=5, headers={"Connection": "close"})

    # -- set-up and tear-down -----------------------------------------------------------
    def set_up(self) -> None:
        taken = set(self.docker.out("stack", "ls", "--format", "{{.Name}}").split())
        if taken & set(STACK_NAMES):
            pytest.fail(
                f"stacks {sorted(taken & set(STACK_NAMES))} already deployed here; the "
                "test deploys under these names: remove them first (make down)",
                pytrace=False,
            )
        self.base_image = os.environ.get("SHOP_BASE_IMAGE") or (
            LOCAL_BASE if self.has_image(LOCAL_BASE) else OFFICIAL_BASE
        )
        if not self.has_image(EDGE_IMAGE):
            pytest.fail(
                f"edge image {EDGE_IMAGE} missing: docker/build-base-image.sh edge", pytrace=False
            )
        with self.step("build images", base=self.base_image):
            self.build_images()
        with self.step("create networks") as row:
            for net in NETWORKS:
                if self.docker.run("network", "inspect", net, check=False).returncode != 0:
                    self.docker.run("network", "create", "--driver", "overlay", "--attachable", net)
                    self.created_networks.append(net)
            row["created"] = ",".join(self.created_networks) or "none"
        with self.step("deploy stacks (release 1)", edge_port=self.edge_port):
            for stack in STACKS:
                self.deploy(stack, "1")
            for stack in SERVICES:
                self.wait_converged(stack, "1")
            wait_for("the edge to serve the front", self._get_ok)

    def _get_ok(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return self.get().status_code == 200
        return False

    def has_image(self, name: str) -> bool:
        return self.docker.run("image", "inspect", name, check=False).returncode == 0

    @property
    def build_env(self) -> dict[str, str]:
        return {"DOCKER_BUILDKIT": "1"} if self.docker.binary == "/usr/bin/docker" else {}

    def build_target(self, target: str, tag: str, *build_args: str) -> None:
        """Build a target of docker/Dockerfile on the chosen base; removed at tear-down."""
        self.built_images.append(tag)
        args = ["--build-arg", f"BASE_IMAGE={self.base_image}"]
        for arg in build_args:
            args += ["--build-arg", arg]
        self.docker.run(
            "build", "-q", "-f", str(REPO / "docker/Dockerfile"), "--target", target, *args,
            "-t", tag, str(REPO), env=self.build_env, timeout=900,
        )

    def build_images(self) -> None:
        env = self.build_env
        for service in SERVICES:
            for release in ("1", "2"):
                # As the Makefile builds them: release 1 without couponPrice.
                features = ["COUPON_PRICE=false"] if release == "1" else []
                self.build_target(
                    f"{service}-service", self.image(service, release), f"RELEASE={release}",
                    *features,
                )
        # A release that starts but never gets healthy: nothing answers on its port, so
        # the healthcheck fails every time. It still stops promptly on SIGTERM.
        broken = self.image("front", "broken")
        self.built_images.append(broken)
        self.docker.run(
            "build",
            "-q",
            "-t",
            broken,
            "-",
            env=env,
            stdin=(
                f"FROM {self.image('front', '2')}\n"
                'CMD ["/opt/venv/bin/python", "-c", "import signal, sys, time; '
                'signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); time.sleep(3600)"]\n'
            ),
        )

    def tear_down(self) -> None:
        with self.step("clean up") as row:
            for stack in reversed(self.deployed_stacks):
                self.docker.run("stack", "rm", stack, check=False)
            # Networks and images can go once the stacks' containers are gone.
            wait_for(
                "the stacks' containers to stop",
                lambda: (
                    not any(
                        self.docker.out(
                            "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}"
                        )
                        for stack in self.deployed_stacks
                    )
                ),
                timeout=90,
            )
            for net in self.created_networks:
                wait_for(
                    f"network {net} removed",
                    lambda net=net: (
                        self.docker.run("network", "rm", net, check=False).returncode == 0
                    ),
                    timeout=60,
                )
            if self.built_images:
                self.docker.run("rmi", *self.built_images, check=False)
                # Untagged build stages the legacy builder leaves behind (BuildKit leaves none).
                self.docker.run(
                    "image",
                    "prune",
                    "--force",
                    "--filter",
                    "label=io.swarm-shop.stage=build",
                    check=False,
                )
            if self.created_swarm:
                self.docker.run("swarm", "leave", "--force", check=False)
            row.update(
                stacks=len(self.deployed_stacks),
                networks=len(self.created_networks),
                images=len(self.built_images),
                left_swarm=self.created_swarm,
            )


@contextlib.contextmanager
def deployed_shop(
    request: pytest.FixtureRequest,
    figures: list[dict[str, Any]],
    missing_docker: Callable[[str], None],
) -> Iterator[Deployment]:
    """The three stacks and the edge, deployed at release 1 on a swarm; all removed after."""
    binary = _docker_binary()
    if binary is None:
        missing_docker("no docker client")
    docker = Docker(str(binary))
    info = docker.run("info", "--format", "{{json .Swarm}}", check=False)
    if info.returncode != 0:
        missing_docker(f"no Docker Engine answering: {info.stderr.strip()[:200]}")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def say(text: str) -> None:
        for line in text.splitlines():
            if reporter is not None:
                reporter.write_line(line)
            else:
                print(line)

    shop = Deployment(docker=docker, say=say, figures=figures)
    try:
        state = json.loads(info.stdout)
        if state["LocalNodeState"] == "inactive":
            docker.run("swarm", "init", "--advertise-addr", "127.0.0.1")
            shop.created_swarm = True
        elif not (state["LocalNodeState"] == "active" and state["ControlAvailable"]):
            pytest.fail(f"this engine is in a swarm but not a manager: {state}", pytrace=False)
        shop.set_up()
        yield shop
    finally:
        shop.tear_down()
