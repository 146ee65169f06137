"""The console on the real swarm (tests/support/swarm_deployment.py's shop), deployed by
`make console` with its Docker API proxy (stacks/docker-api.yml, the console's allow-list):
the proxy refuses every call the console does not make (writes above all), and the page, in
Debian's chromium, follows a live rolling update of the front: the tasks of both releases,
then the new one alone, the answers switching release, and no failure.
SHOP_CONSOLE_SCREENSHOT=PATH (`make console-screenshot`) saves the page as it looks during the
update.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import chromium, console_errors, read_all
from tests.support.make import NO_HOST_CONFIG
from tests.support.swarm_deployment import (
    EDGE_IMAGE,
    NAMESPACE,
    REPO,
    Deployment,
    free_host_port,
    wait_for,
)

pytestmark = pytest.mark.swarm

CONSOLE_IMAGE = f"{NAMESPACE}/console:test"
FRONT = "front_app"

# Run inside the console's container: the Docker SDK, as the console has it, through the
# console's Docker access. Each call's outcome: "ok" or the HTTP status it was refused with.
ACCESS_CHECK = """
import json, docker
client = docker.DockerClient(base_url="tcp://docker-api:2375", version="1.41", timeout=10)
api = client.api
calls = {
    "GET /tasks": lambda: api.tasks(),
    "GET /services": lambda: api.services(),
    "GET /info": lambda: api.info(),
    "GET /secrets": lambda: api.secrets(),
    "GET /services/front_app (inspect)": lambda: api.inspect_service("front_app"),
    "POST /networks/create": lambda: api.create_network("console-test-network"),
    "POST /services/front_app/update": lambda: api.update_service("front_app", 1),
    "DELETE /services/front_app": lambda: api.remove_service("front_app"),
    "POST /containers/prune": lambda: api.prune_containers(),
}
out = {}
for name, call in calls.items():
    try:
        call()
        out[name] = "ok"
    except docker.errors.APIError as exc:
        out[name] = exc.status_code
print(json.dumps(out))
"""


@dataclass
class Console:
    shop: Deployment
    port: int
    output: str = ""
    observed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def container(self, service: str) -> str:
        ids = [c.id for c in self.shop.containers(service)]
        assert ids, f"no container of {service}"
        return ids[0]


@pytest.fixture(scope="module")
def console(shop: Deployment) -> Iterator[Console]:
    """`make console` on the shop's swarm (image built from this tree); removed after."""
    rig = Console(shop, free_host_port())
    with shop.step("build the console image"):
        shop.build_target("console", CONSOLE_IMAGE)
    try:
        with shop.step("make console", port=rig.port) as row:
            result = subprocess.run(
                ["make", "--no-print-directory", "console", f"DOCKER={shop.docker.binary}",
                 "NO_IPVS=1", f"CONSOLE_IMAGE={CONSOLE_IMAGE}", f"CONSOLE_PORT={rig.port}",
                 f"EDGE_IMAGE={EDGE_IMAGE}", *NO_HOST_CONFIG],
                cwd=REPO, capture_output=True, text=True, timeout=300, env=dict(os.environ))
            rig.output = result.stdout + result.stderr
            assert result.returncode == 0, rig.output
            row["url"] = next(line for line in rig.output.splitlines()
                              if line.startswith("console: "))
        yield rig
    finally:
        with shop.step("remove the console"):
            shop.docker.run("stack", "rm", "console", check=False)
            wait_for("the console stack's containers to stop", lambda: not shop.docker.out(
                "ps", "-aq", "--filter", "label=com.docker.stack.namespace=console"), timeout=90)


def test_make_console_prints_where_it_answers(console: Console) -> None:
    """`make console` waits until the console answers and ends with its URL."""
    assert f"console: http://127.0.0.1:{console.port}/" in console.output
    assert httpx.get(f"{console.url}health", timeout=5).json()["status"] == "OK"


def test_only_the_proxy_has_the_docker_socket(console: Console) -> None:
    """The console's container mounts no Docker socket; its Docker API proxy's does,
    read-only, and runs as HAProxy's user with the socket's group, with a read-only root and
    without capabilities."""
    def inspect(service: str) -> dict[str, Any]:
        cid = console.container(service)
        return json.loads(console.shop.docker.out("inspect", cid))[0]

    app, proxy = inspect("console_app"), inspect("console_docker-api")
    assert not any("docker.sock" in m.get("Source", "") for m in app["Mounts"])
    assert [(m["Destination"], m["RW"]) for m in proxy["Mounts"]
            if "docker.sock" in m["Source"]] == [("/var/run/docker.sock", False)]
    assert proxy["Config"]["User"].startswith("100:")
    for doc in (app, proxy):
        assert doc["HostConfig"]["ReadonlyRootfs"] is True
        assert doc["HostConfig"]["CapDrop"] == ["ALL"]


def test_the_console_docker_access_refuses_what_it_does_not_use(console: Console) -> None:
    """Through the console's Docker access (from inside its container, with the Docker SDK):
    the reads the console makes pass; a POST or a DELETE, and reads it does not make (the
    engine's info, secrets, a service's inspect), are refused with a 403."""
    result = console.shop.docker.run(
        "exec", console.container("console_app"), "/opt/venv/bin/python", "-c", ACCESS_CHECK)
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    console.shop.say(f"[console] docker access: {outcomes}")
    assert outcomes == {
        "GET /tasks": "ok", "GET /services": "ok", "GET /info": 403, "GET /secrets": 403,
        "GET /services/front_app (inspect)": 403, "POST /networks/create": 403,
        "POST /services/front_app/update": 403, "DELETE /services/front_app": 403,
        "POST /containers/prune": 403,
    }
    # Nothing changed: the front as it was, and no network made.
    assert console.shop.inspect(FRONT)["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
    assert console.shop.docker.run("network", "inspect", "console-test-network",
                                   check=False).returncode != 0


def front_tasks(driver: Any) -> list[dict[str, str]]:
    return read_all(driver, f"g[data-kind=task][data-service={FRONT}]")


def live(tasks: list[dict[str, str]], release: str) -> list[dict[str, str]]:
    return [t for t in tasks if t["data-release"] == release
            and t["data-phase"] in ("starting", "healthy", "draining")]


def show_a_story(driver: Any, release: str) -> str:
    """Click the latest full second answered by `release`, then its first request; returns
    that request's id once its story is on the page."""
    bars = read_all(driver, f"rect[data-kind=second][data-release='{release}']")
    second = sorted(int(bar["data-t"]) for bar in bars)[-2]
    # Clicked in the page's own script: the chart is redrawn several times a second.
    driver.execute_script("""
        const bar = document.querySelector(`rect[data-kind=second][data-t='${arguments[0]}']`);
        const box = bar.getBoundingClientRect();
        document.querySelector("rect[data-kind=seconds]").dispatchEvent(new MouseEvent("click", {
          clientX: box.left + box.width / 2, clientY: box.top + 1}));""", second)
    rows = wait_for("the second's requests", lambda: read_all(driver, "#requests tbody tr"),
                    timeout=15)
    request_id = rows[0]["data-request"]
    driver.execute_script(
        "document.querySelector(`#requests tr[data-request='${arguments[0]}']`).click()",
        request_id)
    wait_for("the story", lambda: read_all(driver, "#story tbody tr"), timeout=15)
    return str(request_id)


def test_the_page_follows_a_rolling_update(console: Console) -> None:
    """During `IMG_TAG=<new>` of the front, the page shows tasks of both releases at once,
    then the new release's alone; the answers, release by release, switch from the old one
    to the new one; the update's start and end are marked; no request failed. A request of
    the new release tells its story: its lines in the front's, prod's and coupon's logs."""
    shop = console.shop
    old = shop.tags.get("front", "1")
    new = "2" if old == "1" else "1"
    screenshot = os.environ.get("SHOP_CONSOLE_SCREENSHOT")
    with shop.step("console: rolling update of the front", old=old, new=new) as row, \
            chromium(1400, 1500) as driver:
        driver.get(console.url)
        driver.find_element("css selector", "[data-window='60']").click()
        wait_for("the page to show the front's tasks", lambda: len(
            live(front_tasks(driver), old)) == 2 and not live(front_tasks(driver), new),
            timeout=60)
        wait_for("answers from the old release", lambda: driver.find_element(
            "id", "answering").get_attribute("data-releases") == old, timeout=60)
        answering: list[str] = []
        both: list[int] = []

        def look() -> dict[str, Any]:
            tasks = front_tasks(driver)
            releases = driver.find_element("id", "answering").get_attribute("data-releases")
            if not answering or answering[-1] != releases:
                answering.append(releases)
            if live(tasks, old) and live(tasks, new):
                both.append(len(tasks))
            return {"old": len(live(tasks, old)), "new": len(live(tasks, new)),
                    "releases": releases}

        shop.deploy("front", new)
        wait_for("the page to show the new release alone", lambda: look() == {
            "old": 0, "new": 2, "releases": new}, timeout=180)
        # The update is still in its monitor window: the story of a request of the new
        # release, and the picture of the page, during the update.
        request_id = show_a_story(driver, new)
        story_services = {cell["text"] for cell in read_all(
            driver, "#story tbody tr td:nth-child(2)")}
        story_title = driver.find_element("id", "story-id").text
        if screenshot:
            driver.save_screenshot(str(Path(screenshot).resolve()))
        shop.wait_update(FRONT, "completed")
        wait_for("the update's end marked", lambda: "update_completed" in {
            m.get("data-mark") for m in read_all(driver, "#marks li")}, timeout=30)
        marks = [m for m in read_all(driver, "#marks li") if FRONT in m["text"]]
        failed = driver.find_element("id", "total-failed").text
        total = int(driver.find_element("id", "total-requests").text)
        lag = driver.find_element("id", "lag").get_attribute("data-max-lag")
        red = read_all(driver, "rect[data-kind=failed-second]")
        row.update(requests=total, failed=failed, max_lag_s=lag, answering=">".join(answering),
                   render_ms=driver.find_element("id", "chart").get_attribute("data-render-ms"),
                   memory=shop.docker.out("stats", "--no-stream", "--format", "{{.MemUsage}}",
                                          console.container("console_app")))
        errors = console_errors(driver)
    shop.tags["front"] = new
    restore(shop, old)

    assert both, "never saw tasks of both releases at once"
    assert answering[0] == old
    assert answering[-1] == new
    assert {m["data-mark"] for m in marks} >= {"update_started", "update_completed",
                                              "task_started"}
    assert failed == "0"
    assert total > 50
    # Each service writes its request line (the front its upstream calls too).
    assert story_services == {"front", "prod", "coupon"}, story_title
    assert story_title.startswith(f"{request_id}: 200")
    assert red == []
    assert errors == []


def restore(shop: Deployment, tag: str) -> None:
    """Back to the release the deployment had, for the tests that follow."""
    with shop.step("console: front back to its release", tag=tag):
        shop.deploy("front", tag)
        shop.wait_converged("front", tag)
        shop.wait_update(FRONT, "completed")
