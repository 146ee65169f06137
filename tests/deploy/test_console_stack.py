"""stacks/console.yml renders with `docker stack config` (no engine needed), with
stacks/docker-api.yml as `make console` deploys it, and keeps the console's promises: only the
Docker API proxy has the socket, with the console's allow-list, both containers hardened, one
task each on a manager, the page's port in host mode."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.make import NO_HOST_CONFIG

STACKS = Path(__file__).resolve().parents[2] / "stacks"


@pytest.fixture(scope="module")
def console_stack(stack_config_client: str) -> dict[str, Any]:
    """The console stack as `docker stack deploy` reads it, with the variables make passes."""
    env = {"PATH": "/usr/bin:/bin", "CONSOLE_PORT": "18123", "DOCKER_GID": "999",
           "CONSOLE_IMAGE": "acme/console:7", "CONSOLE_PROBE_RATE": "2",
           "DOCKER_API_CONSUMER": "console", "DOCKER_API_CONFIG_VERSION": "abc",
           "EDGE_IMAGE": "acme/edge:7"}
    result = subprocess.run([stack_config_client, "stack", "config",
                             "-c", str(STACKS / "console.yml"),
                             "-c", str(STACKS / "docker-api.yml")],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.docker
def test_only_the_proxy_mounts_the_docker_socket(console_stack: dict[str, Any]) -> None:
    """The console reaches Docker through the Docker API proxy, on their internal network
    `docker-api`; the proxy mounts the socket read-only, joins nothing else, and applies the
    shared haproxy.cfg with the console's allow-list, as configs named after the console."""
    app, proxy = console_stack["services"]["app"], console_stack["services"]["docker-api"]
    assert set(console_stack["services"]) == {"app", "docker-api"}
    assert app["environment"]["CONSOLE_DOCKER_HOST"] == "tcp://docker-api:2375"
    assert "docker-api" in app["networks"]
    assert not any("docker.sock" in str(v) for v in app.get("volumes", []))
    (socket,) = [v for v in proxy["volumes"] if v["type"] == "bind"]
    assert (socket["source"], socket["read_only"]) == ("/var/run/docker.sock", True)
    assert set(proxy["networks"]) == {"docker-api"}
    assert console_stack["networks"]["docker-api"] == {"driver": "overlay", "internal": True}
    assert proxy["user"] == "100:999"
    assert proxy["image"] == "acme/edge:7"
    configs = {c["target"]: console_stack["configs"][c["source"]] for c in proxy["configs"]}
    assert configs == {
        "/usr/local/etc/haproxy/haproxy.cfg": {
            "name": "console_docker_api_cfg_abc", "file": str(STACKS / "docker-api/haproxy.cfg")},
        "/usr/local/etc/haproxy/allow.lst": {
            "name": "console_docker_api_allow_abc", "file": str(STACKS / "docker-api/console.lst")},
    }


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
    result = subprocess.run(["make", "-n", "--no-print-directory", target, *args,
                             *NO_HOST_CONFIG],
                            cwd=STACKS.parent, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(("no_ipvs", "probe"), [
    ("0", "http://front_app:8080/product-detail/2"),
    ("1", "http://tasks.edge_proxy:8080/product-detail/2"),
])
def test_make_console(no_ipvs: str, probe: str) -> None:
    """`make -n console`: the console stack with its Docker API proxy (the console's
    allow-list, configs named after a digest of the proxy's files) and the entry point of
    each kind of host, then the wait for its URL; `make build` builds its image, `make down`
    removes it."""
    out = make_dry("console", f"NO_IPVS={no_ipvs}", "CONSOLE_PORT=18123")
    assert "-c stacks/console.yml -c stacks/docker-api.yml console" in out
    assert "DOCKER_API_CONSUMER=console " in out
    assert re.search(r"DOCKER_API_CONFIG_VERSION=[0-9a-f]{12} ", out)
    assert f"CONSOLE_PROBE_URL={probe}" in out
    assert "scripts/console-url.sh 18123" in out
    assert "--target console -t shop/console:latest" in make_dry("build")
    assert re.search(r"stack rm .*\bconsole\b", make_dry("down"))
