"""The README's swarm walk, run as written: the commands of the block marked
`<!-- walk: ... -->` in README.md, from `make configure` to `make clean`, typed into a shell in
a fresh copy of this tree (its own host.mk, images under the namespace `shopwalk`), each
step's closing line checked.

It deploys under the shop's own stack and network names (prod, coupon, front, edge, autoscale;
backend, frontend), as every user does, so it must not run while the shared deployment of the
other swarm tests (tests/deploy/conftest.py, `shop`) is up: tests/deploy/conftest.py runs it
before them, and it fails at once if any of those stacks is deployed. It leaves nothing:
`make down` and `make clean` are the walk's last steps, and its clean-up runs them again (and
removes the copy) when a step failed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.steps import wait_for
from tests.support.swarm_deployment import NETWORKS, REPO, STACK_NAMES

pytestmark = pytest.mark.swarm

NAMESPACE = "shopwalk"  # given to `make configure` only: host.mk must carry it to every step
MARKER = "<!-- walk: "
URL = "http://127.0.0.1/product-detail/2"
STEP_TIMEOUT = 900  # s: `make build` from nothing is the longest step
# Variables that describe a host: the walk must not get them from the test's environment.
HOST_VARIABLES = ("DOCKER", "DOCKER_BUILDKIT", "NO_IPVS", "EDGE_PORT", "BASE_IMAGE",
                  "PROMETHEUS_IMAGE", "WHEELS_PYTHON", "SHOP_NAMESPACE", "HOST_CONFIG",
                  "IMG_TAG", "REPLICAS", "PYTHON")


def walk_commands(readme: str) -> list[str]:
    """The commands of the fenced block after the walk marker, comments dropped."""
    after = readme.split(MARKER, 1)[1]
    block = after.split("```", 2)[1]
    commands = []
    for line in block.splitlines()[1:]:
        command = re.split(r"\s+#", line, maxsplit=1)[0].strip()
        if command:
            commands.append(command)
    return commands


def shop_line(front: str, autoscale: bool = False) -> str:
    services = ["prod_app release 1 (2/2)", "coupon_app release 1 (2/2)", front,
                "edge_proxy (1/1)"]
    if autoscale:
        services += ["autoscale_docker-api (1/1)", "autoscale_prometheus (1/1)",
                     "autoscale_scaler (1/1)"]
    return f"now: {', '.join(services)} at {URL}"


def product_of_release_1(output: str) -> None:
    body = json.loads(output)
    assert body["prod"]["prodNo"] == 2
    assert "couponPrice" not in body


# What each step of the walk must end with (its last line), or a check of its whole output.
CLOSING: dict[str, str | Callable[[str], None]] = {
    "make configure": "wrote host.mk: every make step reads it",
    "make build": (f"built: {NAMESPACE}/{{prod,coupon,front}}-service:{{1,2,latest}} "
                   f"{NAMESPACE}/autoscaler:latest and {NAMESPACE}/console:latest, on "
                   "shop/python-base:bookworm"),
    "make deploy IMG_TAG=1": shop_line("front_app release 1 (2/2)"),
    f"curl -s {URL}": product_of_release_1,
    "make update": shop_line("front_app release 2 (2/2)"),
    "make scale REPLICAS=4": shop_line("front_app release 2 (4/4)"),
    "make rollback": shop_line("front_app release 2 (2/2)"),
    "make status": f"entry point: {URL} (200 from release 2)",
    "make autoscale": shop_line("front_app release 2 (2/2)", autoscale=True),
    "make down": ("nothing of the shop runs: stacks prod, coupon, front, edge, autoscale, "
                  "console; "
                  "networks backend, frontend; volumes autoscale_prometheus-data removed"),
    "make clean": "removed 11 images of the shop and the builds' leftovers",
}


def copy_tree(scratch: Path) -> None:
    """This tree's files as a fresh clone has them (no wheelhouse, no host.mk), plus the
    README's quick-start venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, scratch / name)
    (scratch / ".venv").symlink_to(REPO / ".venv")


def port_80_free() -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", 80))
        except OSError:
            return False
    return True


class Walk:
    def __init__(self, scratch: Path, say: Callable[[str], None]) -> None:
        """`say` prints a line in pytest's output, as the swarm tests' steps do."""
        self.scratch = scratch
        self.say = say
        self.env = {k: v for k, v in os.environ.items() if k not in HOST_VARIABLES}
        self.env["PATH"] = f"{REPO / '.venv' / 'bin'}:{self.env.get('PATH', '')}"

    def run(self, command: str, **extra: str) -> str:
        """One command as a user types it; its output (stdout and stderr, in order)."""
        result = subprocess.run(
            ["bash", "-c", command], cwd=self.scratch, env={**self.env, **extra},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=STEP_TIMEOUT,
        )
        assert result.returncode == 0, f"{command}: {result.returncode}\n{result.stdout[-5000:]}"
        return result.stdout

    def docker(self, *args: str) -> str:
        return subprocess.run(["docker", *args], capture_output=True, text=True,
                              timeout=120, check=False).stdout


@pytest.fixture(scope="module")
def walk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         missing_docker: Callable[[str], None]) -> Iterator[Walk]:
    """A copy of this tree to walk in; afterwards nothing of the walk is left."""
    if shutil.which("docker") is None or subprocess.run(
        ["docker", "info"], capture_output=True, timeout=60, check=False
    ).returncode != 0:
        missing_docker("no Docker Engine answering")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    scratch = tmp_path_factory.mktemp("walk")
    copy_tree(scratch)
    rig = Walk(scratch, lambda text: reporter.write_line(text) if reporter else print(text))
    taken = set(rig.docker("stack", "ls", "--format", "{{.Name}}").split()) & set(STACK_NAMES)
    if taken:
        pytest.fail(f"stacks {sorted(taken)} are deployed: the walk deploys under these names",
                    pytrace=False)
    if not port_80_free():
        pytest.fail("port 80 is taken on this machine: the walk's curl goes there", pytrace=False)
    try:
        yield rig
    finally:
        if (scratch / "host.mk").exists():
            for step in ("make down", "make clean"):
                subprocess.run(["bash", "-c", step], cwd=scratch, env=rig.env, timeout=600,
                               capture_output=True, check=False)
        shutil.rmtree(scratch)
        left = set(rig.docker("stack", "ls", "--format", "{{.Name}}").split()) & set(STACK_NAMES)
        images = rig.docker("image", "ls", "-q", "--filter", f"reference={NAMESPACE}/*")
        assert not left, f"stacks left behind: {left}"
        assert not images.strip(), f"images left behind: {images}"


def test_the_readme_walk_works_as_written(walk: Walk) -> None:
    """Every command of the README's walk succeeds when typed as written, on this host (no
    internet, no IPVS) with only `make configure` told anything (the image namespace), each
    step ends with the line the README promises (what runs, on which release, at which URL),
    no Docker notice about --detach is shown, and afterwards no stack, network, image or
    host.mk of the walk is left."""
    readme = (REPO / "README.md").read_text()
    commands = walk_commands(readme)
    assert commands[0] == "make configure"
    assert set(commands) == set(CLOSING), "a step of the walk without a check here, or gone"
    for command in commands:
        extra = {"SHOP_NAMESPACE": NAMESPACE} if command == "make configure" else {}
        started = time.monotonic()
        output = walk.run(command, **extra)
        lines = [line for line in output.splitlines() if line.strip()]
        walk.say(f"[walk] $ {command}  ({time.monotonic() - started:.1f} s)\n"
                 f"[walk]   {lines[-1] if lines else '(no output)'}")
        expected = CLOSING[command]
        if callable(expected):
            expected(output)
        else:
            assert lines[-1] == expected, output[-3000:]
        assert "--detach=false" not in output
        assert "verify: Waiting" not in output
        if command == "make configure":
            assert f"SHOP_NAMESPACE ?= {NAMESPACE}" in (walk.scratch / "host.mk").read_text()
        if command == "make rollback":
            # The last change of the front's spec was the scale: that is what it undoes.
            assert ("front_app goes back to its previous spec: release 2 "
                    f"({NAMESPACE}/front-service:latest), 2 replicas") in output
    for net in NETWORKS:
        wait_for(f"network {net} gone", lambda n=net: not walk.docker(
            "network", "ls", "-q", "--filter", f"name=^{n}$").strip(), timeout=30)
