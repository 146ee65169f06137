"""`make configure`: what this host can do, detected once and kept in host.mk for make.

    python -m shop_tools.configure --output host.mk [--set NAME=VALUE]... [--default NAME=VALUE]...

`--set` carries what the user gave (make's command line or environment): kept as given.
`--default` carries the Makefile's defaults: the starting point of what is detected.
Each choice is printed with its reason:

- DOCKER, DOCKER_BUILDKIT: a client that builds with BuildKit. A client from 23.0 on builds
  with BuildKit through its buildx plugin and, without it, falls back to the legacy builder;
  an older one (Debian's 20.10) builds with BuildKit itself when DOCKER_BUILDKIT=1.
- NO_IPVS (auto): swarm's virtual IPs and routing mesh need the kernel's IPVS; without it the
  services use dnsrr endpoints and the edge proxy is the entry point, on EDGE_PORT.
- BASE_IMAGE, PROMETHEUS_IMAGE, WHEELS_PYTHON: a host that cannot pull the official images
  builds bases from Debian packages (docker/build-base-image.sh), whose containers cannot reach
  a package index either: image builds then install from a wheelhouse (scripts/wheelhouse.sh)
  made with a Python of the base image's minor version.

Exit status 1, and no file written, when something needed is missing (say which).
"""

from __future__ import annotations

import argparse
import errno
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import docker
from docker.errors import DockerException, ImageNotFound
from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
# The names docker/build-base-image.sh gives the images it makes from Debian packages.
DEBIAN_BASE = "shop/python-base:bookworm"
DEBIAN_PROMETHEUS = "shop/prometheus:bookworm"
HOST_VARIABLES = ("DOCKER", "DOCKER_BUILDKIT", "NO_IPVS", "EDGE_PORT", "BASE_IMAGE",
                  "PROMETHEUS_IMAGE", "WHEELS_PYTHON", "SHOP_NAMESPACE")
SPARE_EDGE_PORTS = (8000, 8080, 8888)


class Missing(Exception):
    """Something the shop needs on this host is not there; the message says what to do."""


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **(env or {})})


def client_version(client: str) -> tuple[int, ...] | None:
    try:
        out = run(client, "version", "--format", "{{.Client.Version}}").stdout.strip()
    except OSError:
        return None
    digits = out.split("+")[0].split("-")[0].split(".")
    return tuple(int(d) for d in digits if d.isdigit()) or None


def pick_client(given: str | None, default: str) -> tuple[str, str, str]:
    """(DOCKER, DOCKER_BUILDKIT, why)."""
    if given:
        return given, "", "as given"
    candidates = [default, *(c for c in ("/usr/bin/docker", "docker") if c != default)]
    notes = []
    for client in dict.fromkeys(candidates):
        path = shutil.which(client)
        version = client_version(path) if path else None
        if path is None or version is None:
            continue
        shown = f"{client} ({'.'.join(map(str, version))})"
        if version >= (23,):
            if run(path, "buildx", "version").returncode == 0:
                return client, "", f"{shown} builds with BuildKit (buildx)"
            notes.append(f"{shown} has no buildx and would use the legacy builder")
        else:
            why = f"{shown} builds with BuildKit when DOCKER_BUILDKIT=1"
            return client, "1", "; ".join([*notes, why])
    if not notes:
        raise Missing("no docker client found: install Docker Engine "
                      "(Debian: apt-get install docker.io)")
    return default, "", "; ".join(notes) + " (make clean removes what it leaves behind)"


def detect_ipvs(engine_kernel: str) -> tuple[str, str]:
    """(NO_IPVS, why), looking at this machine's kernel when it is the engine's."""
    if engine_kernel != platform.release():
        return "0", (f"the engine runs another kernel ({engine_kernel}) than this machine: "
                     "assuming it has IPVS (make configure NO_IPVS=1 if it has not)")
    signs = [Path("/proc/net/ip_vs"), Path("/sys/module/ip_vs"),
             Path(f"/lib/modules/{engine_kernel}/kernel/net/netfilter/ipvs")]
    found = [str(p) for p in signs if p.exists()]
    if found:
        return "0", f"IPVS is there ({found[0]}): virtual IPs and the routing mesh work"
    return "1", ("no IPVS in this kernel (none of " + ", ".join(map(str, signs)) + "): "
                 "the services use dnsrr endpoints and the edge proxy is the entry point")


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))  # the edge publishes on every address
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def pick_edge_port(given: str | None, default: str, no_ipvs: str,
                   client: docker.DockerClient) -> tuple[str, str]:
    if given:
        return given, "as given"
    if no_ipvs != "1":
        return default, "the front publishes port 80 through the routing mesh"
    if not port_taken(int(default)):
        return default, f"the edge proxy's port; {default} is free"
    if client.services.list(filters={"name": "edge_proxy"}):
        return default, "the shop's edge proxy already holds it"
    for port in SPARE_EDGE_PORTS:
        if not port_taken(port):
            return str(port), f"port {default} is taken on this machine; {port} is free"
    raise Missing(f"ports {default} and {SPARE_EDGE_PORTS} are taken: make configure EDGE_PORT=N")


def pull_error(client: docker.DockerClient, image: str) -> str:
    """"" when the image is here or can be pulled; else the engine's reason, shortened."""
    try:
        client.images.get(image)
        return ""
    except ImageNotFound:
        pass
    name, _, tag = image.partition(":")
    try:
        client.images.pull(name, tag=tag or "latest")
    except DockerException as error:
        reason = str(getattr(error, "explanation", "") or error)
        return reason.rpartition("dial tcp: ")[2][-160:]
    return ""


def image_python(client: docker.DockerClient, image: str) -> str:
    out = client.containers.run(
        image, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        remove=True, entrypoint=[], network_mode="none",
    )
    return bytes(out).decode().strip()


def python_with_pip(minor: str, preferred: str) -> tuple[str, str] | None:
    """(path, version) of a Python `minor` that has pip: the project's first, then PATH's."""
    for candidate in dict.fromkeys((preferred, f"python{minor}", f"/usr/bin/python{minor}")):
        path = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if path is None:
            continue
        probe = run(path, "-c", "import sys, pip; print('%d.%d.%d' % sys.version_info[:3])")
        if probe.returncode == 0 and probe.stdout.strip().rsplit(".", 1)[0] == minor:
            return candidate, probe.stdout.strip()
    return None


def configure(given: dict[str, str], defaults: dict[str, str], say: Console) -> dict[str, str]:
    """The host's settings, each printed with its reason."""
    chosen: dict[str, str] = {}

    def choose(name: str, value: str, why: str) -> None:
        chosen[name] = value
        say.print(f"{name}={value or '(empty)'}: {why}")

    docker_client, buildkit, why = pick_client(given.get("DOCKER"),
                                               defaults.get("DOCKER", "docker"))
    choose("DOCKER", docker_client, why)
    if buildkit or "DOCKER_BUILDKIT" in given:
        choose("DOCKER_BUILDKIT", given.get("DOCKER_BUILDKIT", buildkit),
               "as given" if "DOCKER_BUILDKIT" in given else "BuildKit with this client")
    client = docker.from_env()
    info = client.info()
    if info.get("Swarm", {}).get("LocalNodeState") != "active":
        say.print("note: this engine is not in a swarm yet: docker swarm init")
    if "NO_IPVS" in given and given["NO_IPVS"] != "auto":
        choose("NO_IPVS", given["NO_IPVS"], "as given")
    else:
        choose("NO_IPVS", *detect_ipvs(info.get("KernelVersion", "")))
    choose("EDGE_PORT", *pick_edge_port(given.get("EDGE_PORT"), defaults.get("EDGE_PORT", "80"),
                                        chosen["NO_IPVS"], client))
    choose("SHOP_NAMESPACE", given.get("SHOP_NAMESPACE", defaults.get("SHOP_NAMESPACE", "shop")),
           "as given" if "SHOP_NAMESPACE" in given else "the images' namespace (the default)")
    choose_bases(client, {**given, "DOCKER": docker_client}, defaults, choose, say)
    return chosen


Choose = Callable[[str, str, str], None]


def choose_bases(client: docker.DockerClient, given: dict[str, str], defaults: dict[str, str],
                 choose: Choose, say: Console) -> None:
    """BASE_IMAGE, PROMETHEUS_IMAGE and WHEELS_PYTHON."""
    official = defaults.get("BASE_IMAGE", "python:3.12-slim")
    if "BASE_IMAGE" in given:
        base, why = given["BASE_IMAGE"], "as given"
        offline = base == DEBIAN_BASE
    else:
        error = pull_error(client, official)
        offline = bool(error)
        base = DEBIAN_BASE if offline else official
        why = (f"{official} cannot be pulled here ({error}): make build makes the bases from "
               "Debian packages (docker/build-base-image.sh)" if offline
               else f"{official} is here or can be pulled")
    choose("BASE_IMAGE", base, why)
    prometheus = given.get("PROMETHEUS_IMAGE") or (
        DEBIAN_PROMETHEUS if offline else defaults.get("PROMETHEUS_IMAGE", "prom/prometheus"))
    choose("PROMETHEUS_IMAGE", prometheus,
           "as given" if "PROMETHEUS_IMAGE" in given else
           "made from Debian packages too" if offline else "pulled by the swarm when needed")
    if not offline and "WHEELS_PYTHON" not in given:
        choose("WHEELS_PYTHON", "", "image builds install from the package index")
        return
    if base == DEBIAN_BASE and not _has_image(client, base):
        say.print(f"{base} is not here yet: making it first (docker/build-base-image.sh python)")
        made = subprocess.run([str(REPO / "docker/build-base-image.sh"), "python"],
                              env={**os.environ, "DOCKER": given.get("DOCKER", "docker")},
                              check=False, timeout=900)
        if made.returncode != 0:
            raise Missing(f"docker/build-base-image.sh python failed: {base} is needed")
    minor = image_python(client, base)
    if "WHEELS_PYTHON" in given:
        choose("WHEELS_PYTHON", given["WHEELS_PYTHON"], "as given")
        return
    found = python_with_pip(minor, defaults.get("PYTHON", ".venv/bin/python"))
    if found is None:
        raise Missing(
            f"{base} has Python {minor}, and the wheelhouse its builds install from must be "
            f"made by a Python {minor} with pip: none here (tried the project's .venv, "
            f"python{minor}). Install one (Debian: apt-get install python{minor} python3-pip)"
        )
    choose("WHEELS_PYTHON", found[0],
           f"builds on {base} install from a wheelhouse (scripts/wheelhouse.sh; this host "
           f"pulls nothing), made by a Python of its version, {minor}: {found[0]} ({found[1]})")


def _has_image(client: docker.DockerClient, image: str) -> bool:
    try:
        client.images.get(image)
    except ImageNotFound:
        return False
    return True


def host_file(chosen: dict[str, str]) -> str:
    lines = [
        "# This host's settings for the shop's Makefile, written by `make configure` (run it",
        "# again to detect them anew). NAME=value on make's command line overrides a line here.",
    ]
    lines += [f"{name} ?= {value}" for name, value in chosen.items()]
    return "\n".join(lines) + "\n"


def _pairs(values: Iterable[str]) -> dict[str, str]:
    return dict(v.split("=", 1) for v in values if "=" in v)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shop_tools.configure",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="host.mk")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--default", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    say = Console(highlight=False, soft_wrap=True, markup=False)
    given = {k: v for k, v in _pairs(args.set).items() if k in (*HOST_VARIABLES, "PYTHON")}
    try:
        chosen = configure(given, _pairs(args.default), say)
    except Missing as missing:
        say.print(f"make configure: {missing}")
        return 1
    except DockerException as error:
        say.print(f"make configure: the Docker Engine did not answer ({error}): "
                  "is dockerd running?")
        return 1
    Path(args.output).write_text(host_file(chosen))
    say.print(f"wrote {args.output}: every make step reads it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
