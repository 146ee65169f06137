"""The console's budgets, measured: prints figures, asserts nothing.

    .venv/bin/python scripts/console_budgets.py model            # no Docker
    .venv/bin/python scripts/console_budgets.py page             # + Debian's chromium
    .venv/bin/python scripts/console_budgets.py live --console http://127.0.0.1:8090 \\
        --load-url http://127.0.0.1:8000/product-detail/2        # a deployed shop + console

model  The state with a few hundred tasks of history (300 tasks, four phases each), 15 min of
       request seconds at 5 req/s and 300 marks: the cost of one reading of the swarm, of a
       page's first event (everything) and of a later one (what changed), and their sizes.
page   The same state drawn by the page in headless chromium: milliseconds per redraw.
live   On a deployed console (`make console`): how long after a task's change the page's
       stream carries it (a `docker service update --force` of the front), CPU of the console
       and of its Docker proxy with the shop idle (only the console's own probe), and the
       console's memory after a load step through the shop (`shop-load`). Run it alone on
       the machine (CPU figures are per container, from the engine's own counters).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import docker
import httpx
import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from console.model import (  # noqa: E402  the repo's packages, run from a checkout
    ConsoleState,
    NodeInfo,
    RequestResult,
    ServiceInfo,
    TaskInfo,
)


def history(tasks: int = 300, now: float = 10_000.0) -> tuple[ConsoleState, list[TaskInfo]]:
    """A state holding `tasks` tasks of history on three nodes, 15 min of probe seconds."""
    state = ConsoleState(history_s=900)
    nodes = [NodeInfo(f"n{i}", f"node{i}", "manager" if i == 1 else "worker", "ready",
                      "active", i == 1, 0.0) for i in (1, 2, 3)]
    services = [ServiceInfo(f"s{i}", name, f"shop/{name}:2", 2, "completed", 100.0, 200.0,
                            "update completed", 0.0)
                for i, name in enumerate(("front_app", "prod_app", "coupon_app"))]
    infos = []
    for n in range(tasks):
        start = now - 900 + n * 2.5
        ended = n < tasks - 6
        infos.append(TaskInfo(
            id=f"task{n:04d}", service_id=f"s{n % 3}", slot=n % 6 + 1, node_id=f"n{n % 3 + 1}",
            image=f"shop/svc:{1 + n % 2}", state="shutdown" if ended else "running",
            desired="shutdown" if ended else "running", has_healthcheck=True, created=start,
            state_since=start + 40 if ended else start + 8, updated=start + 30, message="",
            error="", exit_code=0 if ended else None, container_id=f"{n:064d}"))
    state.apply_swarm(now - 900, nodes, services, [])
    state.apply_swarm(now, nodes, services, infos)
    for n in range(900 * 5):
        sent = now - 900 + n / 5
        state.add_request(RequestResult(f"console-x-{n}", sent, 3.0 + n % 7, 200, "",
                                        str(1 + (n // 2000)), f"{n % 6:012d}"))
    for n in range(300 - len(state.marks)):
        state.add_decision(now - 900 + n * 3, {"action": "none", "swarm_service": "front_app",
                                               "current": 2, "desired": 2, "reason": "steady"})
    return state, infos


def timed(runs: int, call: Any) -> float:
    """Median milliseconds of `call()` over `runs` runs."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def model() -> None:
    state, infos = history()
    nodes = [n.info for n in state.nodes.values()]
    services = [s.info for s in state.services.values()]
    print(f"state: {len(state.tasks)} tasks, {len(state.seconds)} request seconds, "
          f"{len(state.marks)} marks, {len(state.requests)} requests")
    ms = timed(50, lambda: state.apply_swarm(10_000.0, nodes, services, infos))
    print(f"one reading of the swarm applied (nothing changed): {ms:.2f} ms")
    full = orjson.dumps(state.changes_since(0, 10_000.0))
    ms = timed(20, lambda: orjson.dumps(state.changes_since(0, 10_000.0)))
    print(f"a page's first event (everything): {ms:.2f} ms, {len(full) / 1024:.0f} KiB")
    seq = state.seq
    state.add_request(RequestResult("r", 10_000.5, 3.0, 200, "", "2", "x"))
    ms = timed(50, lambda: orjson.dumps(state.changes_since(seq, 10_000.0)))
    patch = orjson.dumps(state.changes_since(seq, 10_000.0))
    print(f"a later event (one request more): {ms:.3f} ms, {len(patch)} bytes")
    ms = timed(20, lambda: state.prune(10_000.0))
    print(f"pruning: {ms:.2f} ms")


def page() -> None:
    import uvicorn

    from console.app import create_app
    from console.settings import ConsoleSettings
    from tests.support.browser import chromium

    app = create_app(ConsoleSettings(instance="bench", docker_host="", probe_rate=0,
                                     prometheus_url="", access_log=False, port=18099,
                                     history_s=900))
    state, _ = history(now=time.time())
    app.state.console.state = state
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=18099,
                                           log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with chromium() as driver:
            for window in ("300", "900"):
                driver.get("http://127.0.0.1:18099/")
                driver.execute_script(
                    f"document.querySelector('[data-window=\"{window}\"]').click()")
                samples = []
                for _ in range(12):
                    time.sleep(1.05)  # the page redraws once a second
                    samples.append(float(driver.find_element("id", "chart")
                                         .get_attribute("data-render-ms")))
                tasks = len(driver.find_elements("css selector", "g[data-kind=task]"))
                print(f"page, {int(window) // 60} min window: {tasks} task bars drawn, redraw "
                      f"median {statistics.median(samples):.1f} ms, max {max(samples):.1f} ms")
    finally:
        server.should_exit = True
        thread.join(10)


def cpu_seconds(container: Any) -> float:
    stats = container.stats(stream=False)
    return float(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9


def memory_mib(container: Any) -> float:
    stats = container.stats(stream=False)
    return float(stats["memory_stats"]["usage"]) / 2**20


def live(console_url: str, load_url: str, idle_s: float, load_rate: float,
         load_s: float) -> None:
    client = docker.from_env()
    app = client.containers.list(filters={"label": "com.docker.swarm.service.name=console_app"})
    proxy = client.containers.list(
        filters={"label": "com.docker.swarm.service.name=console_docker-api"})
    if not app or not proxy:
        sys.exit("no console running here: make console")
    print(f"console {console_url}: container {app[0].short_id}, proxy {proxy[0].short_id}")

    # CPU with the shop idle: only the console's own probe (5 req/s by default) and its reads.
    first = (cpu_seconds(app[0]), cpu_seconds(proxy[0]), time.monotonic())
    time.sleep(idle_s)
    last = (cpu_seconds(app[0]), cpu_seconds(proxy[0]), time.monotonic())
    wall = last[2] - first[2]
    print(f"idle {wall:.0f} s: console {100 * (last[0] - first[0]) / wall:.2f} % of one core, "
          f"its Docker proxy {100 * (last[1] - first[1]) / wall:.2f} %; "
          f"console memory {memory_mib(app[0]):.1f} MiB")

    # Lag: a rolling restart of the front, read from the page's stream.
    lags = asyncio.run(stream_lags(console_url, client))
    if lags:
        print(f"page behind the swarm (task changes in its stream during a rolling restart of "
              f"the front): {len(lags)} changes, median {statistics.median(lags):.2f} s, "
              f"max {max(lags):.2f} s")

    # Memory under load: a load step through the shop while the page's stream is read.
    subprocess.run([sys.executable, "-m", "shop_tools.load", "--rate", f"{load_rate:g}",
                    "--duration", f"{load_s:g}", "--url", load_url], check=False,
                   stdout=subprocess.DEVNULL, cwd=REPO)
    print(f"after {load_s:g} s of load at {load_rate:g} req/s: console memory "
          f"{memory_mib(app[0]):.1f} MiB (limit {app[0].attrs['HostConfig']['Memory'] / 2**20:.0f}"
          f" MiB)")


async def stream_lags(console_url: str, client: docker.DockerClient) -> list[float]:
    """Restart the front's tasks one by one and collect, for every task change the stream
    carries, how long after the engine's timestamp of that change the console sent it."""
    lags: list[float] = []
    seen: dict[str, str] = {}
    update = asyncio.create_task(asyncio.to_thread(
        subprocess.run, ["docker", "service", "update", "--detach", "--force", "front_app"],
        check=True, capture_output=True))
    # The stream sends at least every 5 s: a read that waits 30 s has lost it.
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as http, \
            http.stream("GET", f"{console_url}/api/events") as response:
        deadline = time.monotonic() + 120
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            patch = orjson.loads(line[6:])
            for task in patch["tasks"]:
                since, phase = task["phases"][-1]
                if task["service"] == "front_app" and seen.get(task["id"]) not in (
                        None, phase) and patch["now"] - since < 30:
                    lags.append(patch["now"] - since)
                seen[task["id"]] = phase
            state = client.api.inspect_service("front_app").get("UpdateStatus", {})
            if state.get("State") == "completed" or time.monotonic() > deadline:
                break
    with contextlib.suppress(Exception):
        await update
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["model", "page", "live"])
    parser.add_argument("--console", default="http://127.0.0.1:8090")
    parser.add_argument("--load-url", default="http://127.0.0.1:8000/product-detail/2")
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--load-rate", type=float, default=150)
    parser.add_argument("--load-seconds", type=float, default=60)
    args = parser.parse_args()
    if args.what == "model":
        model()
    elif args.what == "page":
        page()
    else:
        live(args.console.rstrip("/"), args.load_url, args.idle_seconds, args.load_rate,
             args.load_seconds)


if __name__ == "__main__":
    main()
