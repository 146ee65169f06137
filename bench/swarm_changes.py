"""The swarm changes the zero-loss envelope puts the shop through (bench/envelope.py), on the
single-node swarm of tests/support/swarm_deployment.py: each prepares its clean state, then
makes its change and waits until the swarm has converged again. The three-node lab's node
kills reuse the cluster test's scenario (tests/cluster/test_cluster.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.make import NO_HOST_CONFIG
from tests.support.swarm_deployment import NAMESPACE, REPO, Deployment, free_host_port, wait_for

FRONT = "front_app"
AUTOSCALER_IMAGE = f"{NAMESPACE}/autoscaler:envelope"
PROMETHEUS_IMAGES = ("shop/prometheus:bookworm", "prom/prometheus:v2.53.5")
# The autoscaled scale-out asks for 5 replicas: a target of rate / 4.5 per replica. Then,
# from 2 replicas, `ceil(4.5)` = 5 once the rate is measured (the test's own setting, a
# 15 s rate window and a 5 s interval, makes that within about 20-30 s).
SCALE_OUT_DIVISOR = 4.5
SCALE_OUT_SECONDS = 75.0  # the load runs this long: the scale-out and its tasks' warm-up


@dataclass
class Changes:
    """The shop's changes, each `prepare(rate)` then `run(rate)` -> figures of the change."""

    shop: Deployment
    say: Callable[[str], None]
    prometheus_port: int = field(default_factory=free_host_port)
    autoscaling: bool = False

    # -- rolling updates ----------------------------------------------------------------
    def rolling_update(self, stack: str) -> dict[str, Any]:
        new = "2" if self.shop.tags.get(stack, "1") == "1" else "1"
        started = time.monotonic()
        self.shop.deploy(stack, new)
        self.shop.wait_converged(stack, new)
        self.shop.wait_update(f"{stack}_app", "completed")
        return {"to_release": new, "converged_s": round(time.monotonic() - started, 1)}

    def front_update(self, _: float) -> dict[str, Any]:
        return self.rolling_update("front")

    def prod_update(self, _: float) -> dict[str, Any]:
        return self.rolling_update("prod")

    # -- a killed task ------------------------------------------------------------------
    def task_kill(self, _: float) -> dict[str, Any]:
        """SIGKILL one front container, then one prod container (as `docker kill` does to a
        crashed process); swarm starts replacements."""
        figures: dict[str, Any] = {}
        for stack in ("front", "prod"):
            service = f"{stack}_app"
            image = self.shop.spec_image(service)
            victim = self.shop.containers(service)[0].id
            started = time.monotonic()
            self.shop.docker.run("kill", victim)

            def replaced(service: str = service, image: str = image,
                         victim: str = victim) -> bool:
                return (self.shop.converged(service, image, 2)
                        and victim not in {c.id for c in self.shop.containers(service)})

            wait_for(f"{service} back at 2 healthy tasks", replaced)
            figures[f"{stack}_replaced_s"] = round(time.monotonic() - started, 1)
        return figures

    # -- the autoscaled scale-out -------------------------------------------------------
    def prepare_scale_out(self, rate: float) -> None:
        """The front back at 2 replicas with a target of rate / 4.5 per replica, and a fresh
        autoscaler (no memory of an earlier trial's rates) with its Prometheus."""
        self.remove_autoscaler()
        target = round(rate / SCALE_OUT_DIVISOR, 1)
        self.shop.stack_env.update(AUTOSCALE_MIN="2", AUTOSCALE_MAX="6",
                                   AUTOSCALE_TARGET_RPS=str(target))
        self.shop.deploy("front", replicas=2)
        self.shop.wait_converged("front", self.shop.tags["front"])
        if not self.shop.has_image(AUTOSCALER_IMAGE):
            self.shop.build_target("autoscaler", AUTOSCALER_IMAGE)
        self.make("autoscale", PROMETHEUS_IMAGE=self.prometheus_image(),
                  PROMETHEUS_PORT=str(self.prometheus_port), AUTOSCALER_IMAGE=AUTOSCALER_IMAGE,
                  AUTOSCALE_DOWN_STABILIZATION_S="30", AUTOSCALE_RATE_WINDOW_S="15",
                  AUTOSCALE_INTERVAL_S="5")
        self.autoscaling = True

    def scale_out(self, rate: float) -> dict[str, Any]:
        """The load itself is the change: the autoscaler reads its rate and scales the front
        out to 5; the run lasts SCALE_OUT_SECONDS so the new tasks serve for a while."""
        started = time.monotonic()
        healthy = {"n": 2}

        def scaled() -> bool:
            healthy["n"] = sum(c.healthy for c in self.shop.containers(FRONT))
            return healthy["n"] >= 4

        wait_for(">= 4 healthy fronts", scaled, timeout=SCALE_OUT_SECONDS)
        out_s = round(time.monotonic() - started, 1)
        time.sleep(max(0.0, SCALE_OUT_SECONDS - (time.monotonic() - started)))
        spec = self.shop.inspect(FRONT)["Spec"]["Mode"]["Replicated"]["Replicas"]
        return {"target_rps": round(rate / SCALE_OUT_DIVISOR, 1), "to_4_healthy_s": out_s,
                "replicas_at_end": spec}

    def remove_autoscaler(self) -> None:
        if not self.autoscaling:
            return
        self.shop.docker.run("stack", "rm", "autoscale", check=False)
        wait_for("the autoscale stack's containers gone", lambda: not self.shop.docker.out(
            "ps", "-aq", "--filter", "label=com.docker.stack.namespace=autoscale"), timeout=90)
        self.shop.docker.run("volume", "rm", "autoscale_prometheus-data", check=False)
        self.autoscaling = False

    def reset(self) -> None:
        """Back to the plain deployment: no autoscaler, the front at 2 with default labels."""
        if self.autoscaling or self.shop.stack_env:
            self.remove_autoscaler()
            self.shop.stack_env.clear()
            self.shop.deploy("front", replicas=2)
            self.shop.wait_converged("front", self.shop.tags["front"])

    # -- helpers --------------------------------------------------------------------------
    def make(self, target: str, **variables: str) -> str:
        args = [f"{key}={value}" for key, value in variables.items()]
        result = subprocess.run(
            ["make", "--no-print-directory", target, f"DOCKER={self.shop.docker.binary}",
             *args, *NO_HOST_CONFIG],
            cwd=REPO, capture_output=True, text=True, timeout=300, env=dict(os.environ))
        if result.returncode != 0:
            raise RuntimeError(f"make {target}:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def prometheus_image(self) -> str:
        for image in PROMETHEUS_IMAGES:
            if self.shop.has_image(image):
                return image
        raise RuntimeError("no Prometheus image: docker/build-base-image.sh prometheus")


PREPARE: dict[str, Callable[[Changes, float], None]] = {
    "scale-out": Changes.prepare_scale_out,
}
RUN: dict[str, Callable[[Changes, float], dict[str, Any]]] = {
    "scale-out": Changes.scale_out,
    "front-update": Changes.front_update,
    "prod-update": Changes.prod_update,
    "task-kill": Changes.task_kill,
}
