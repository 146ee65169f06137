"""Scale follows traffic, on a real single-node swarm: the shop (tests/support/swarm_deployment.py)
with Prometheus and the autoscaler deployed by `make autoscale`, the front autoscaled between
2 and 6 replicas at a small target (15 req/s per replica, so the load stays small on a
2-core machine) with a 30 s scale-down window.

A load step through the edge must bring the front to >= 4 running, healthy replicas within
45 s, all answering; once the load stops it must return to 2 within the window + 30 s. A
25 req/s probe runs throughout and, like the load itself, must see no failed request,
scale-in included. Prometheus must scrape every replica. `make scale REPLICAS=2` at the peak
must not lower the count (the rule between the stack file and the autoscaler).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.make import NO_HOST_CONFIG
from tests.support.swarm_deployment import NAMESPACE, REPO, Deployment, free_host_port, wait_for

pytestmark = pytest.mark.swarm

# A small target keeps the load small: on a 2-core runner every extra request per second
# is CPU that a starting container also needs, and a starved front misses its 0.8 s budget.
TARGET_RPS = 15
LABELS_ENV = {"AUTOSCALE_MIN": "2", "AUTOSCALE_MAX": "6", "AUTOSCALE_TARGET_RPS": str(TARGET_RPS)}
STABILIZATION_S = 30
# The rate() window: three 5 s scrapes. After the load stops, the rate must fall from 70 to
# 30 req/s (2 x 15) before the recommendations do; a shorter window makes that sooner.
RATE_WINDOW_S = 15
# With the probe's 25 req/s, 45 more make 70 req/s: ceil(70 / 15) = 5 replicas wanted, and
# >= 4 needs only more than 45 req/s measured. Afterwards the probe alone: ceil(25 / 15) = 2.
LOAD_RATE = 45.0
LOAD_SECONDS = 60  # `make load`'s bound; it stops by itself
SCALE_OUT_LIMIT = 45.0
SCALE_IN_LIMIT = STABILIZATION_S + 30.0
AUTOSCALER_IMAGE = f"{NAMESPACE}/autoscaler:test"
# The Debian-made image where no registry is reachable (docker/build-base-image.sh
# prometheus), else the official one if it is already here.
PROMETHEUS_IMAGES = ("shop/prometheus:bookworm", "prom/prometheus:v2.53.5")
FRONT = "front_app"


def _loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


@dataclass
class Autoscaling:
    shop: Deployment
    prometheus_port: int

    def make(self, target: str, **variables: str) -> str:
        """Run a make target of the repo against this deployment; its output."""
        args = [f"{key}={value}" for key, value in variables.items()]
        result = subprocess.run(
            ["make", "--no-print-directory", target, f"DOCKER={self.shop.docker.binary}", *args,
             *NO_HOST_CONFIG],
            cwd=REPO, capture_output=True, text=True, timeout=300, env=dict(os.environ),
        )
        assert result.returncode == 0, f"make {target}:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    def prometheus(self, path: str, **params: str) -> Any:
        response = httpx.get(
            f"http://127.0.0.1:{self.prometheus_port}{path}", params=params, timeout=5
        )
        response.raise_for_status()
        return response.json()["data"]

    def up_targets(self, swarm_service: str) -> set[str]:
        """Addresses of the service's targets that Prometheus scrapes successfully."""
        with contextlib.suppress(httpx.HTTPError):
            targets = self.prometheus("/api/v1/targets", state="active")["activeTargets"]
            return {
                t["labels"]["instance"].rpartition(":")[0]
                for t in targets
                if t["labels"].get("swarm_service") == swarm_service and t["health"] == "up"
            }
        return set()

    def healthy(self, service: str) -> list[str]:
        return [c.id for c in self.shop.containers(service) if c.healthy]

    def backend_addresses(self, service: str) -> set[str]:
        ids = self.healthy(service)
        if not ids:
            return set()
        template = '{{with index .NetworkSettings.Networks "backend"}}{{.IPAddress}}{{end}}'
        return set(self.shop.docker.out("inspect", "-f", template, *ids).split())

    def scrapes_every_replica(self, service: str) -> bool:
        tasks = self.backend_addresses(service)
        return bool(tasks) and self.up_targets(service) == tasks

    def replicas(self, service: str) -> int:
        spec = self.shop.inspect(service)["Spec"]
        return int(spec["Mode"]["Replicated"]["Replicas"])

    def start_load(self, rate: float, seconds: int, report: Path) -> subprocess.Popen[str]:
        """`make load` on the edge, as a user runs it, writing its report as JSON to `report`;
        it ends by itself after `seconds`."""
        return subprocess.Popen(
            ["make", "--no-print-directory", "load", f"RATE={rate:g}", f"SECONDS={seconds}",
             f"EDGE_PORT={self.shop.edge_port}", f"DOCKER={self.shop.docker.binary}",
             f"PYTHON={sys.executable}", f"LOAD_JSON={report}", *NO_HOST_CONFIG],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def report(self) -> None:
        """Print the front's task history and the autoscaler's decisions (the figures' why)."""
        self.shop.say(self.shop.docker.out(
            "service", "ps", FRONT, "--format",
            "{{.Name}} {{.DesiredState}} {{.CurrentState}} {{.Error}}",
        ))
        for d in self.decisions():
            if d["event"] != "decision" or d["swarm_service"] != FRONT:
                continue
            self.shop.say(
                f"[autoscaler] {d['ts']} {d['action']} {d['current']}->{d['desired']} "
                f"{d['reason']} total_rps={d['total_rps']} observed_rps={d['observed_rps']}"
            )

    def decisions(self) -> list[dict[str, Any]]:
        """The autoscaler's JSON log lines."""
        logs = self.shop.docker.run("service", "logs", "--raw", "autoscale_scaler").stdout
        return [json.loads(line) for line in logs.splitlines() if line.startswith("{")]


def pick_prometheus_image(shop: Deployment) -> str:
    if os.environ.get("PROMETHEUS_IMAGE"):
        return os.environ["PROMETHEUS_IMAGE"]
    for image in PROMETHEUS_IMAGES:
        if shop.has_image(image):
            return image
    pytest.fail(
        f"no Prometheus image ({' or '.join(PROMETHEUS_IMAGES)}): "
        "docker/build-base-image.sh prometheus",
        pytrace=False,
    )
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def autoscaling(shop: Deployment) -> Iterator[Autoscaling]:
    """The front labelled for the test, Prometheus and the autoscaler deployed by
    `make autoscale`; removed after, the front back at 2 replicas with its default labels."""
    rig = Autoscaling(shop, free_host_port())
    prometheus_image = pick_prometheus_image(shop)
    with shop.step("build the autoscaler image"):
        shop.build_target("autoscaler", AUTOSCALER_IMAGE)
    try:
        with shop.step("deploy the autoscaler", prometheus=prometheus_image,
                       prometheus_port=rig.prometheus_port) as row:
            shop.stack_env.update(LABELS_ENV)
            shop.deploy("front")
            shop.wait_converged("front", shop.tags["front"])
            rig.make(
                "autoscale",
                PROMETHEUS_IMAGE=prometheus_image,
                PROMETHEUS_PORT=str(rig.prometheus_port),
                AUTOSCALER_IMAGE=AUTOSCALER_IMAGE,
                AUTOSCALE_DOWN_STABILIZATION_S=str(STABILIZATION_S),
                AUTOSCALE_RATE_WINDOW_S=str(RATE_WINDOW_S),
                AUTOSCALE_INTERVAL_S="5",
            )
            wait_for("the autoscaler to be healthy", lambda: rig.healthy("autoscale_scaler"))
            wait_for("Prometheus to scrape the front", lambda: rig.scrapes_every_replica(FRONT))
            row["autoscaler_user"] = shop.docker.out(
                "inspect", "-f", "{{.Config.User}}", rig.healthy("autoscale_scaler")[0]
            )
        yield rig
    finally:
        with shop.step("remove the autoscaler"):
            shop.docker.run("stack", "rm", "autoscale", check=False)
            wait_for(
                "the autoscale stack's containers to stop",
                lambda: not shop.docker.out(
                    "ps", "-aq", "--filter", "label=com.docker.stack.namespace=autoscale"
                ),
                timeout=90,
            )
            shop.docker.run("volume", "rm", "autoscale_prometheus-data", check=False)
            shop.stack_env.clear()
            shop.deploy("front", replicas=2)
            shop.wait_converged("front", shop.tags["front"])


def test_prometheus_scrapes_every_replica(autoscaling: Autoscaling) -> None:
    """/api/v1/targets lists each task of prod, coupon and front, up, by its own address, and
    the autoscaler's own metrics (current and desired replicas) are scraped too."""
    for service in ("prod_app", "coupon_app", FRONT):
        wait_for(f"every {service} task scraped",
                 lambda s=service: autoscaling.scrapes_every_replica(s))
        assert len(autoscaling.up_targets(service)) == 2
    wait_for("the autoscaler's own metrics scraped",
             lambda: autoscaling.up_targets("autoscale_scaler"))

    def autoscaler_series() -> dict[str, float]:
        result = autoscaling.prometheus(
            "/api/v1/query", query='{__name__=~"autoscaler_(current|desired)_replicas"}'
        )["result"]
        return {
            r["metric"]["__name__"]: float(r["value"][1])
            for r in result
            if r["metric"].get("service") == FRONT
        }

    series = wait_for("the autoscaler's metrics in Prometheus", autoscaler_series)
    assert series == {"autoscaler_current_replicas": 2, "autoscaler_desired_replicas": 2}


def test_load_step_scales_the_front_out_and_back_without_a_failed_request(
    autoscaling: Autoscaling, tmp_path: Path,
) -> None:
    """Under `make load` the front reaches >= 4 healthy replicas within 45 s, its first tasks
    untouched, and >= 4 of them answer; `make scale REPLICAS=2` at the peak keeps the count;
    after the load it is back at 2 within the window + 30 s; probe and load see no failure."""
    shop = autoscaling.shop
    first_tasks = set(autoscaling.healthy(FRONT))
    with shop.step("autoscale: load step", target_rps=TARGET_RPS, load_rate=LOAD_RATE,
                   window_s=STABILIZATION_S, rate_window_s=RATE_WINDOW_S,
                   loadavg=_loadavg()) as row, \
            shop.probing(row):
        assert autoscaling.replicas(FRONT) == 2
        load_report = tmp_path / "load.json"
        load = autoscaling.start_load(LOAD_RATE, LOAD_SECONDS, load_report)
        started = time.monotonic()
        try:
            wait_for(">= 4 healthy front replicas", lambda: len(autoscaling.healthy(FRONT)) >= 4,
                     timeout=SCALE_OUT_LIMIT + 15)
            row["scale_out_s"] = round(time.monotonic() - started, 1)
            wait_for("Prometheus to scrape every front replica",
                     lambda: autoscaling.scrapes_every_replica(FRONT), timeout=30)
            row["scraped_replicas"] = len(autoscaling.up_targets(FRONT))
            row["peak"] = autoscaling.replicas(FRONT)
            printed = autoscaling.make(
                "scale", NO_IPVS="1", SHOP_NAMESPACE=NAMESPACE, IMG_TAG=shop.tags["front"],
                REPLICAS="2", **LABELS_ENV,
            )
            row["after_make_scale"] = autoscaling.replicas(FRONT)
            row["first_tasks_running"] = len(first_tasks & set(autoscaling.healthy(FRONT)))
        finally:
            output, _ = load.communicate(timeout=LOAD_SECONDS + 60)  # it stops by itself
        stopped = time.monotonic()
        wait_for(
            "the front back at 2 replicas, the others drained and gone",
            lambda: autoscaling.replicas(FRONT) == 2 and len(shop.containers(FRONT)) == 2
            and len(autoscaling.healthy(FRONT)) == 2,
            timeout=SCALE_IN_LIMIT + 30,
        )
        row["scale_in_s"] = round(time.monotonic() - stopped, 1)
        assert load_report.exists(), output[-3000:]
        load_run = json.loads(load_report.read_text())
        row.update(load_requests=load_run["total"], load_failed=load_run["failed"],
                   load_instances=len(load_run["instances"]),
                   load_p99_ms=load_run["latencies_ms"]["p99"], loadavg_end=_loadavg())
    shop.say("\n".join(line for line in output.splitlines() if not line.startswith("[")))
    autoscaling.report()

    assert load.returncode == 0, output[-3000:]
    assert row["scale_out_s"] <= SCALE_OUT_LIMIT
    assert row["scale_in_s"] <= SCALE_IN_LIMIT
    assert load_run["failed"] == 0
    assert row["failed"] == 0  # the probe, through scale-out and scale-in
    assert load_run["total"] >= LOAD_RATE * LOAD_SECONDS * 0.95
    assert len(load_run["instances"]) >= 4  # the new replicas answered
    assert row["scraped_replicas"] >= 4
    assert row["first_tasks_running"] == 2  # scaling restarted no task
    (deployed_with,) = re.findall(r"REPLICAS=(\d+) .*stack deploy .* front$", printed, re.M)
    assert int(deployed_with) >= row["peak"] >= 4
    assert row["after_make_scale"] >= row["peak"]

    decisions = [d for d in autoscaling.decisions()
                 if d["event"] == "decision" and d["swarm_service"] == FRONT]
    ups = [d for d in decisions if d["action"] == "scale_up"]
    downs = [d for d in decisions if d["action"] == "scale_down"]
    assert ups
    assert downs
    assert downs[-1]["desired"] == 2
    for decision in ups + downs:
        assert {"total_rps", "observed_rps", "current", "desired", "reason",
                "target_rps"} <= set(decision)
        assert decision["target_rps"] == TARGET_RPS
    assert ups[0]["total_rps"] > 2 * TARGET_RPS * 1.1  # it scaled on the load, not on nothing


def test_only_the_proxy_mounts_the_docker_socket(autoscaling: Autoscaling) -> None:
    """While the shop autoscales, no container of its stacks mounts the engine's socket but
    the autoscaler's proxy (read-only); the autoscaler reaches the engine through it, and the
    proxy refused none of its calls (it logs refusals, and nothing else)."""
    docker = autoscaling.shop.docker
    ids = docker.out("ps", "-q", "--filter", "label=com.docker.stack.namespace").split()
    template = ('{{index .Config.Labels "com.docker.swarm.service.name"}} '
                '{{range .Mounts}}{{if eq .Source "/var/run/docker.sock"}}socket:{{.RW}}{{end}}'
                '{{end}}')
    lines = docker.out("inspect", "-f", template, *ids).splitlines()
    services = {line.partition(" ")[0] for line in lines}
    with_socket = {(line.partition(" ")[0], line.partition(" ")[2])
                   for line in lines if line.partition(" ")[2]}
    assert with_socket == {("autoscale_docker-api", "socket:false")}
    assert {"autoscale_scaler", "front_app", "edge_proxy"} <= services
    (proxy,) = [c.id for c in autoscaling.shop.containers("autoscale_docker-api")]
    # The container's own log: `docker service logs` can hang on Engine 20.10.
    logs = docker.run("logs", proxy)
    assert " 403 " not in logs.stdout + logs.stderr
