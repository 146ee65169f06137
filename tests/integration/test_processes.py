import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.processes import Process

pytestmark = pytest.mark.integration

StartService = Callable[..., Process]


def start_shop(start_service: StartService, front_env: dict[str, str] | None = None,
               **prod_env: str) -> tuple[Process, Process, Process]:
    prod = start_service("prod_service", **prod_env)
    coupon = start_service("coupon_service")
    front = start_service("front_service", SHOP_PROD_API_URL=prod.url,
                          SHOP_COUPON_API_URL=coupon.url, **(front_env or {}))
    return prod, coupon, front


def lines_of(process: Process, request_id: str) -> list[dict[str, object]]:
    """The process's JSON lines that carry `request_id`, once its request line is written."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in process.log_lines() if line.startswith("{")]
        mine = [line for line in lines if line.get("request_id") == request_id]
        if any(line["event"] == "request" for line in mine):
            return mine
        time.sleep(0.05)
    pytest.fail(f"no request line with the request id in the {process.name} log")


def test_product_detail_end_to_end(start_service: StartService) -> None:
    """Three real uvicorn processes: the front aggregates prod and coupon over HTTP, and the
    call is three log lines in all, one per service, each with the request id; the front's
    says what each upstream call did."""
    prod, coupon, front = start_shop(start_service)
    response = httpx.get(f"{front.url}/product-detail/2", headers={"X-Request-ID": "e2e-1"})
    assert response.status_code == 200
    assert response.json()["couponPrice"] == 155200
    assert response.headers["x-request-id"] == "e2e-1"
    lines = {process.name: lines_of(process, "e2e-1") for process in (prod, coupon, front)}
    assert {name: [line["event"] for line in mine] for name, mine in lines.items()} == {
        "prod": ["request"], "coupon": ["request"], "front": ["request"]}
    upstreams = lines["front"][0]["upstreams"]
    assert isinstance(upstreams, dict)
    assert {name: (call["status"], call["tries"], call["outcome"])
            for name, call in upstreams.items()} == {
        "prod": (200, 1, "ok"), "coupon": (200, 1, "ok")}


def test_coupon_service_down_degrades_for_real(start_service: StartService) -> None:
    """With the coupon process gone, the front still answers 200 with the plain price."""
    _, coupon, front = start_shop(start_service)
    coupon.popen.send_signal(signal.SIGINT)
    assert coupon.popen.wait(10) == 0
    response = httpx.get(f"{front.url}/product-detail/2")
    assert response.status_code == 200
    assert response.json()["couponsAvailable"] is False
    assert response.json()["couponPrice"] == 160000


async def _stream(url: str, rate: float, until: float) -> list[tuple[float, int | str]]:
    """GET `url` at `rate` per second until the monotonic time `until`; (sent_at, outcome)."""
    results: list[tuple[float, int | str]] = []

    async def one(client: httpx.AsyncClient) -> None:
        sent = time.monotonic()
        try:
            response = await client.get(url)
            results.append((sent, response.status_code))
        except httpx.HTTPError as exc:
            results.append((sent, type(exc).__name__))

    async with httpx.AsyncClient(timeout=10) as client:
        tasks = []
        next_at = time.monotonic()
        while next_at < until and len(tasks) < 500:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            tasks.append(asyncio.create_task(one(client)))
            next_at += 1 / rate
        await asyncio.gather(*tasks)
    return results


def test_sigterm_drains_then_exits_0(start_service: StartService) -> None:
    """SIGTERM to prod: /health turns 503, requests before and during the drain all succeed,
    slow ones in flight finish, and the process exits 0 soon after the drain period."""
    drain, latency = 2.0, 0.4
    # A product service this slow would be a hung replica to the front's default per-try
    # timeout: the front waits for it here, so that the drain is what is tested.
    patient_front = {"SHOP_UPSTREAM_ATTEMPT_TIMEOUT_SECONDS": "2",
                     "SHOP_UPSTREAM_TIMEOUT_SECONDS": "2"}
    prod, _, front = start_shop(start_service, patient_front, SHOP_DRAIN_SECONDS=str(drain),
                                SHOP_GRACEFUL_TIMEOUT_SECONDS="5",
                                SHOP_SIMULATED_LATENCY_MS=str(int(latency * 1000)))

    async def scenario() -> tuple[list[tuple[float, int | str]], list[int], float]:
        began = time.monotonic()
        sigterm_at = began + 1.0
        # Stop sending just before the drain ends: later requests find no prod at all.
        stream = asyncio.create_task(
            _stream(f"{front.url}/product-detail/2", rate=20, until=sigterm_at + drain - 0.2))
        await asyncio.sleep(sigterm_at - time.monotonic())
        prod.popen.send_signal(signal.SIGTERM)
        health: list[int] = []
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < sigterm_at + drain - 0.3:
                health.append((await client.get(f"{prod.url}/health")).status_code)
                await asyncio.sleep(0.2)
        results = await stream
        return results, health, sigterm_at

    results, health, _ = asyncio.run(scenario())
    exit_started = time.monotonic()
    code = prod.popen.wait(drain + 5 + 5)
    failures = [outcome for _, outcome in results if outcome != 200]
    assert len(results) >= 50
    assert failures == []
    assert len(health) >= 3
    assert set(health[1:]) == {503}
    assert code == 0
    # Exits once the drain is over and the last slow request (0.4 s) is done.
    assert time.monotonic() - exit_started < latency + 2.0
    events = [json.loads(line).get("event") for line in prod.log_lines() if line.startswith("{")]
    assert "draining" in events
    assert events[-1] in {"log", "shutdown"}


def test_bad_catalogue_file_stops_the_process(tmp_path: Path) -> None:
    """A malformed catalogue stops `python -m prod_service` at start-up, naming the file."""
    bad = tmp_path / "products.json"
    bad.write_text('[{"prodNo": "one"}]')
    result = subprocess.run(
        [sys.executable, "-m", "prod_service"], capture_output=True, text=True, timeout=30,
        env={**os.environ, "SHOP_CATALOGUE_FILE": str(bad), "SHOP_HOST": "127.0.0.1",
             "SHOP_PORT": "1"},
    )
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "prodNo" in result.stderr
