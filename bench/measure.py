"""What the bench reads besides wrk: the front's own counters (its /metrics, through
prometheus_client's parser), its answer, and the machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.processes import Service, http_get


def metric_samples(prometheus_text: str, name: str) -> dict[str, float]:
    """Each sample named `name` by its labels (`kind=connect,upstream=prod`; "" for none)."""
    return {
        ",".join(f"{key}={value}" for key, value in sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(prometheus_text)
        for sample in family.samples
        if sample.name == name
    }


def metric_sum(prometheus_text: str, name: str) -> float:
    """The sum of every sample named `name`, over all its label sets."""
    return sum(metric_samples(prometheus_text, name).values())


def front_counters(front: Service) -> dict[str, Any]:
    text = http_get(front.url("/metrics"))[2].decode()
    return {
        "degraded": metric_sum(text, "shop_degraded_responses_total"),
        "upstream_errors": metric_sum(text, "shop_upstream_errors_total"),
        "upstream_retries": metric_sum(text, "shop_upstream_retries_total"),
        "upstream_errors_by_kind": metric_samples(text, "shop_upstream_errors_total"),
    }


def check_front_answer(front: Service) -> None:
    status, headers, body = http_get(front.url(front.load_path))
    detail = json.loads(body)
    if status != 200 or "x-degraded" in {k.lower() for k in headers} or not (
            {"prod", "coupons", "couponsAvailable", "couponPrice"} <= detail.keys()):
        raise RuntimeError(f"front answered {status} {headers} {body[:300]!r}")


def count_lines(path: str, needle: bytes) -> int:
    try:
        with open(path, "rb") as log:
            return sum(1 for line in log if needle in line)
    except OSError:
        return 0


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def machine_info(python: str) -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = subprocess.run(
        [python, "-c", "import sys, importlib.metadata as m; print(sys.version.split()[0]); "
         "print(' '.join(f'{p}={m.version(p)}' for p in ('fastapi','starlette','uvicorn',"
         "'httpx','pydantic','orjson','uvloop','httptools')))"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.splitlines()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True,
                                 timeout=10).stdout.splitlines()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": versions[0],
        "packages": versions[1],
        "wrk": " ".join(wrk_version[0].split()[:2]) if wrk_version else "unknown",
        "loadavg_before": loadavg(),
    }
