"""python -m bench.envelope: the shop's zero-loss envelope on a swarm, in requests per second.

For each change (an autoscaled scale-out, a rolling update of the front, one of prod, a killed
task; with --lab, two node kills in the three-node lab), at each offered rate (50, 100, 200,
300, 400 req/s by default, in that order), the shop is put in a clean state, a probe sends
the rate through the entry point (a new connection per request, 2 s of patience, every body
checked) for a few seconds, the change is made and waited for, and the probe keeps going a few
seconds more. The envelope of a change is the highest rate at which not one request failed;
a change stops climbing at its first failing rate (--all-rates: it goes on).

Every trial also says where the CPU went (bench/cpu.py: each process's CPU from /proc,
grouped: the shop's services, the edge, Docker's own processes, the probe itself) and how
late the probe sent its requests, so that a rate that fails for lack of CPU, or because the
client fell behind, says so. Bounded: each probe stops by itself, each wait has a timeout.
Traffic goes only to 127.0.0.1 (the entry point's published port) and to containers in the
networks the run creates. Results: bench/results/envelope.json and envelope.md.

Needs what the swarm tests need (Docker Engine in swarm mode, the base images, the
wheelhouse where images cannot reach an index); holds the swarm for tens of minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cpu import CpuSampler
from bench.swarm_changes import PREPARE, RUN, Changes
from shop_tools.probe.blocking import BlockingProbe
from shop_tools.probe.report import ProbeReport

RESULTS = Path(__file__).resolve().parent / "results"
RATES = (50.0, 100.0, 200.0, 300.0, 400.0)
LAB_RATES = (80.0, 160.0, 240.0)
CHANGES = tuple(RUN)
BEFORE_S = 5.0  # steady traffic before the change
AFTER_S = 5.0  # and after it has converged
PROBE_LIMIT = 600.0  # s: a probe stops by itself after this, whatever happens


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cores": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()]}


def trial(url: str, rate: float, change: Callable[[], dict[str, Any]],
          say: Callable[[str], None]) -> dict[str, Any]:
    """The probe at `rate` through `url` around `change`; the trial's figures."""
    load = round(os.getloadavg()[0], 2)
    started = time.monotonic()
    with CpuSampler() as cpu:
        probe = BlockingProbe.start(url, rate=rate, duration=PROBE_LIMIT)
        try:
            time.sleep(BEFORE_S)
            figures = change()
            time.sleep(AFTER_S)
        finally:
            report = probe.stop_and_wait(timeout=60)
    return {**summary(report), "change": figures, "loadavg_at_start": load,
            "seconds": round(time.monotonic() - started, 1), "cpu_cores": cpu.cores()}


def summary(report: ProbeReport) -> dict[str, Any]:
    data = report.to_dict()
    row = {key: data[key] for key in ("total", "failed", "failures", "degraded")}
    row["rate_sent"] = round(report.total / max(report.elapsed, 0.001), 1)
    row.update({f"{k}_ms": v for k, v in data["latencies_ms"].items()})
    for key in ("schedule_lag_ms",):  # how late the client sent, where the probe reports it
        if key in data:
            row[key] = data[key]
    row["failure_samples"] = data["failure_samples"][:10]
    return row


def climb(name: str, rates: tuple[float, ...], run: Callable[[float], dict[str, Any]],
          all_rates: bool, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """The trials of one change, rate after rate, until one fails (unless all_rates)."""
    rows = []
    for rate in rates:
        say(f"[envelope] {name} at {rate:g} req/s ...")
        row = {"change_kind": name, "rate": rate, **run(rate)}
        rows.append(row)
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in list(row["cpu_cores"].items())[:6])
        say(f"[envelope] {name} at {rate:g} req/s: {row['total']} requests, "
            f"{row['failed']} failed {row['failures'] or ''}, p99 {row['p99_ms']} ms, "
            f"max {row['max_ms']} ms, load {row['loadavg_at_start']}; cores: {cpu}")
        if row["failed"] and not all_rates:
            break
    return rows


def envelope(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per change: the highest rate of the climb with 0 failed (None if even the first
    failed), with its figures."""
    best: dict[str, Any] = {}
    for row in rows:
        name = row["change_kind"]
        best.setdefault(name, None)
        if row["failed"] == 0 and (best[name] is None or row["rate"] > best[name]["rate"]):
            best[name] = {k: row[k] for k in ("rate", "total", "failed", "p99_ms", "max_ms")}
    return best


@contextlib.contextmanager
def single_node(say: Callable[[str], None]) -> Iterator[Changes]:
    from tests.support.swarm_deployment import Deployment, Docker, _docker_binary

    binary = _docker_binary()
    if binary is None:
        raise SystemExit("no docker client")
    shop = Deployment(docker=Docker(binary), say=say, figures=[])
    state = json.loads(shop.docker.out("info", "--format", "{{json .Swarm}}"))
    if state["LocalNodeState"] != "active":
        raise SystemExit("this engine is not in a swarm: docker swarm init first")
    changes = Changes(shop, say)
    try:
        shop.set_up()
        yield changes
    finally:
        with contextlib.suppress(Exception):
            changes.reset()
        shop.tear_down()


def lab_trials(rates: tuple[float, ...], all_rates: bool,
               say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Two node kills in the three-node lab, under a probe through node1 (the manager):
    node3, then node2, each brought back before the next (the cluster test's scenario)."""
    from tests.cluster import test_cluster as cluster

    binary = cluster.docker_binary()
    if binary is None:
        raise SystemExit("no docker client")
    lab = cluster.Lab(docker_bin=binary, say=say)

    def run(rate: float) -> dict[str, Any]:
        def kills() -> dict[str, Any]:
            for node in (3, 2):
                cluster.lose_and_recover(lab, cluster.Kill(node), lost=None)
            return {}
        return trial(cluster.shop_url(1), rate, kills, say)

    with cluster.cluster_lock(say):
        try:
            cluster.set_up(lab)
            return climb("two node kills (lab)", rates, run, all_rates, say)
        finally:
            cluster.tear_down(lab)


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Run {result['when']} on {m['cores']} x {m['cpu']} (kernel {m['kernel']}), load "
        f"average at the start {' '.join(map(str, m['loadavg_start']))}.",
        "",
        "| change | rate req/s | requests | failed | p99 ms | max ms | load at start | "
        "CPU cores used (biggest) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["trials"]:
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in list(row["cpu_cores"].items())[:5])
        lines.append(f"| {row['change_kind']} | {row['rate']:g} | {row['total']:,} | "
                     f"{row['failed']} | {row['p99_ms']} | {row['max_ms']} | "
                     f"{row['loadavg_at_start']} | {cpu} |")
    lines += ["", "| change | zero-loss envelope | requests | p99 ms | max ms |",
              "|---|---:|---:|---:|---:|"]
    for name, best in result["envelope"].items():
        lines.append(f"| {name} | none |  |  |  |" if best is None else
                     f"| {name} | {best['rate']:g} req/s | {best['total']:,} | "
                     f"{best['p99_ms']} | {best['max_ms']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.envelope",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--changes", default=",".join(CHANGES),
                        help=f"comma-separated, of {', '.join(CHANGES)}")
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES))
    parser.add_argument("--all-rates", action="store_true",
                        help="go on past a change's first failing rate")
    parser.add_argument("--lab", action="store_true",
                        help="also two node kills in the three-node lab (a few minutes more)")
    parser.add_argument("--lab-rates", default=",".join(f"{r:g}" for r in LAB_RATES))
    parser.add_argument("--lab-only", action="store_true", help="only the lab's node kills")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    changes = [c for c in args.changes.split(",") if c]
    unknown = set(changes) - set(CHANGES)
    if unknown:
        parser.error(f"unknown changes: {', '.join(sorted(unknown))}")
    rates = tuple(float(r) for r in args.rates.split(","))

    def say(text: str) -> None:
        print(text, flush=True)

    result: dict[str, Any] = {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "machine": machine(), "trials": []}
    if not args.lab_only:
        with single_node(say) as shop_changes:
            for name in changes:
                def run(rate: float, name: str = name) -> dict[str, Any]:
                    prepare = PREPARE.get(name)
                    if prepare is not None:
                        prepare(shop_changes, rate)
                    return trial(shop_changes.shop.url, rate,
                                 lambda: RUN[name](shop_changes, rate), say)
                result["trials"] += climb(name, rates, run, args.all_rates, say)
                shop_changes.reset()
    if args.lab or args.lab_only:
        lab_rates = tuple(float(r) for r in args.lab_rates.split(","))
        result["trials"] += lab_trials(lab_rates, args.all_rates, say)
    result["envelope"] = envelope(result["trials"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "envelope.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "envelope.md").write_text(markdown(result))
    say(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
