"""python -m autoscaler.healthcheck: exit 0 while the loop is alive, 1 otherwise.

Alive means its own /metrics answers and the last pass ended within a few intervals; a loop
stuck on a hung call turns the container unhealthy and swarm replaces it.
"""

from __future__ import annotations

import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from autoscaler.metrics import LAST_LOOP_METRIC
from autoscaler.settings import AutoscalerSettings

STALE_AFTER_INTERVALS = 3
MIN_STALE_S = 30.0  # a pass also waits on Prometheus and Docker timeouts


def last_loop(metrics_text: str) -> float | None:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == LAST_LOOP_METRIC:
                return sample.value
    return None


def main() -> int:
    settings = AutoscalerSettings()
    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            finished = last_loop(response.read().decode())
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}")
        return 1
    limit = max(MIN_STALE_S, STALE_AFTER_INTERVALS * settings.interval_s)
    # The gauge is 0 until the first pass ends: the start period covers that.
    if finished is None or time.time() - finished > limit:
        print(f"unhealthy: no loop finished in the last {limit:.0f} s")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
