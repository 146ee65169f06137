"""python -m autoscaler: scale the labelled swarm services with their request rate.

Runs on a manager node with the engine's socket (DOCKER_HOST, default
unix:///var/run/docker.sock), reads rates from Prometheus, serves its own metrics on
AUTOSCALE_METRICS_PORT. SIGTERM or SIGINT ends the loop after the current pass.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading

import docker
import httpx
from prometheus_client import start_http_server
from pydantic import ValidationError

from autoscaler.metrics import AutoscalerMetrics
from autoscaler.policy import Recommender
from autoscaler.prometheus import PrometheusRates
from autoscaler.scaler import DOCKER_ERRORS, Autoscaler
from autoscaler.settings import AutoscalerSettings
from autoscaler.swarm import Swarm
from shop_common.logs import make_log


def main() -> int:
    log = make_log("autoscaler", socket.gethostname())
    try:
        settings = AutoscalerSettings()
    except ValidationError as exc:
        log.error("startup_failed", error=str(exc))
        return 2
    try:
        client = docker.from_env()
        client.ping()
    except DOCKER_ERRORS as exc:
        log.error("startup_failed", error=f"no Docker engine: {exc}")
        return 1

    metrics = AutoscalerMetrics()
    server, _ = start_http_server(
        settings.metrics_port, settings.metrics_host, registry=metrics.registry
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    prometheus = httpx.Client(
        base_url=str(settings.prometheus_url),
        timeout=settings.query_timeout_s,
        trust_env=False,  # never through a proxy from the environment
    )
    autoscaler = Autoscaler(
        PrometheusRates(prometheus, settings.rate_window_s),
        Swarm(client),
        Recommender(settings.tolerance, settings.down_stabilization_s),
        metrics,
        log,
    )
    log.info("startup", settings=settings.model_dump(mode="json"))
    try:
        autoscaler.run(settings.interval_s, stop)
    finally:
        prometheus.close()
        client.close()
        server.shutdown()
        log.info("shutdown")
    return 0


if __name__ == "__main__":
    sys.exit(main())
