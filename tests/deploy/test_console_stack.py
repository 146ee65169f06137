"""stacks/console.yml renders with `docker stack config` (no engine needed) and keeps the
console's promises: only the proxy has the Docker socket, both containers hardened, one task
each on a manager, the page's port in host mode."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

STACKS = Path(__file__).resolve().parents[2] / "stacks"

@pytest.fixture(scope="module")
def console_stack(stack_config_client: str) -> dict[str, Any]:
    """The console stack as `docker stack deploy` reads it, with the variables make passes."""
    env = {"PATH": "/usr/bin:/bin", "CONSOLE_PORT": "18123", "DOCKER_GID": "999",
           "CONSOLE_IMAGE": "acme/console:7", "CONSOLE_PROBE_RATE": "2"}
    result = subprocess.run([stack_config_client, "stack", "config", "-c",
                             str(STACKS / "console.yml")],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.docker
def test_only_the_proxy_mounts_the_docker_socket(console_stack: dict[str, Any]) -> None:
    """The console reaches Docker through its proxy, on a network of their own (internal);
    the proxy mounts the socket and joins nothing else."""
    app, proxy = console_stack["services"]["app"], console_stack["services"]["docker-proxy"]
    assert app["environment"]["CONSOLE_DOCKER_HOST"] == "tcp://docker-proxy:2375"
    assert not any("docker.sock" in str(v) for v in app.get("volumes", []))
    assert [v["source"] for v in proxy["volumes"] if v["type"] == "bind"] == [
        "/var/run/docker.sock"]
    assert set(proxy["networks"]) == {"docker-api"}
    assert console_stack["networks"]["docker-api"]["internal"] is True
    assert proxy["user"] == "100:999"
    assert proxy["configs"][0]["target"] == "/usr/local/etc/haproxy/haproxy.cfg"


@pytest.mark.docker
def test_both_are_hardened_and_on_a_manager(console_stack: dict[str, Any]) -> None:
    """Read-only root, no capabilities, a numbered non-root user, a memory limit, one task
    on a manager; the console has a healthcheck without curl."""
    for name, spec in console_stack["services"].items():
        assert spec["read_only"] is True, name
        assert spec["cap_drop"] == ["ALL"], name
        assert not spec["user"].startswith("0:"), name
        assert spec["deploy"]["resources"]["limits"]["memory"], name
        assert spec["deploy"]["replicas"] == 1, name
        assert spec["deploy"]["placement"]["constraints"] == ["node.role == manager"], name
    app = console_stack["services"]["app"]
    assert app["user"] == "10001:10001"
    assert app["image"] == "acme/console:7"
    assert app["healthcheck"]["test"] == ["CMD", "/opt/venv/bin/python", "-m",
                                          "console.healthcheck"]
    assert app["environment"]["CONSOLE_PROBE_RATE"] == "2"


@pytest.mark.docker
def test_the_page_port_is_published_in_host_mode(console_stack: dict[str, Any]) -> None:
    """Host mode works without IPVS; the host port is CONSOLE_PORT."""
    (port,) = console_stack["services"]["app"]["ports"]
    assert (port["mode"], port["target"], port["published"]) == ("host", 8090, 18123)


def make_dry(target: str, *args: str) -> str:
    result = subprocess.run(["make", "-n", "--no-print-directory", target, *args],
                            cwd=STACKS.parent, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(("no_ipvs", "probe"), [
    ("0", "http://front_app:8080/product-detail/2"),
    ("1", "http://tasks.edge_proxy:8080/product-detail/2"),
])
def test_make_console(no_ipvs: str, probe: str) -> None:
    """`make -n console`: the console stack with the entry point of each kind of host, then
    the wait for its URL; `make build` builds its image, `make down` removes it."""
    out = make_dry("console", f"NO_IPVS={no_ipvs}", "CONSOLE_PORT=18123")
    assert "-c stacks/console.yml console" in out
    assert f"CONSOLE_PROBE_URL={probe}" in out
    assert "scripts/console-url.sh 18123" in out
    assert "--target console -t shop/console:latest" in make_dry("build")
    assert re.search(r"stack rm .*\bconsole\b", make_dry("down"))
