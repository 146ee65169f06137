"""The shop benchmark: `python -m bench` from the repo root, in the project's venv.

Starts prod, coupon and front as real processes (`python -m <service>`, one uvicorn worker
each, JSON access logging on, stdout to a log file) on free 127.0.0.1 ports, plus the
yardstick (bench/yardstick.py), then drives them with wrk in interleaved rounds and writes
bench/results/latest.json and latest.md. The services run under --python (default: this
interpreter; the bench itself runs in the project's dev venv, for rich and prometheus_client).

bench/processes.py starts and stops what it runs, bench/wrk.py runs wrk and reads its figures,
bench/measure.py reads the front's counters and the machine, bench/report.py makes the report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.measure import (
    check_front_answer,
    count_lines,
    front_counters,
    loadavg,
    machine_info,
)
from bench.processes import HOST, REPO, Fleet, Service, free_port, rss_mib, start_and_time
from bench.report import markdown, print_tables, ratios, targets
from bench.wrk import WrkRun, median_run, run_wrk

RESULTS_DIR = REPO / "bench" / "results"
YARDSTICK = REPO / "bench" / "yardstick.py"


def build_services(python: str, log_dir: str, devnull_logs: bool,
                   source: Path) -> dict[str, Service]:
    ports = {name: free_port() for name in ("prod", "coupon", "front", "yardstick")}
    base = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "SHOP_HOST": HOST, "SHOP_RELEASE": "2", "SHOP_ACCESS_LOG": "true",
            "SHOP_LOG_LEVEL": "info"}
    services = {
        "prod": Service("prod", [python, "-m", "prod_service"], ports["prod"], "/health",
                        "/products/2"),
        "coupon": Service("coupon", [python, "-m", "coupon_service"], ports["coupon"],
                          "/health", "/products/2/coupons"),
        "front": Service("front", [python, "-m", "front_service"], ports["front"], "/health",
                         "/product-detail/2"),
        "yardstick": Service("yardstick", [python, str(YARDSTICK), str(ports["yardstick"])],
                             ports["yardstick"], "/", "/"),
    }
    for service in services.values():
        service.env = {**base, "SHOP_PORT": str(service.port),
                       "SHOP_INSTANCE": f"bench-{service.name}"}
        if service.name != "yardstick":
            service.cwd = source  # `python -m` imports the packages found there first
        service.log_path = os.devnull if devnull_logs else os.path.join(
            log_dir, f"{service.name}.log")
    services["front"].env |= {"SHOP_PROD_API_URL": f"http://{HOST}:{ports['prod']}",
                              "SHOP_COUPON_API_URL": f"http://{HOST}:{ports['coupon']}"}
    return services


def run_bench(args: argparse.Namespace, fleet: Fleet, log_dir: str) -> dict[str, Any]:
    began = time.monotonic()

    def check_budget() -> None:
        if time.monotonic() - began > args.max_seconds:
            raise RuntimeError(f"bench over its {args.max_seconds:g} s budget; stopping")

    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(args.python),
        "config": {
            "rounds": args.rounds, "duration_s": args.duration, "connections": args.connections,
            "c1_duration_s": args.c1_duration, "warmup_s": args.warmup,
            "source": str(args.source),
            "logs": "/dev/null" if args.logs_to_devnull else "one file per service "
                    "(stdout of the process, as a container's log driver would take it)",
        },
    }
    services = build_services(args.python, log_dir, args.logs_to_devnull, args.source)
    # One at a time, so each start-up is timed without the others competing for the CPU.
    for service in services.values():
        start_and_time(fleet, service)
        log(f"{service.name:9} healthy after {service.start_to_healthy_s:.2f} s "
            f"on port {service.port}")
    time.sleep(0.5)
    for service in services.values():
        service.rss_idle_mib = rss_mib(service.pid)
    front = services["front"]
    check_front_answer(front)
    counters_before = front_counters(front)

    order = ["yardstick", "front", "prod", "coupon"]
    for name in order:
        log(f"warm-up {name} ({args.warmup:g} s)")
        run_wrk(fleet.run, services[name].url(services[name].load_path), args.connections,
                args.warmup)

    c32: dict[str, list[WrkRun]] = {name: [] for name in order}
    for round_no in range(1, args.rounds + 1):
        for name in order:
            check_budget()
            run = run_wrk(fleet.run, services[name].url(services[name].load_path),
                          args.connections, args.duration)
            c32[name].append(run)
            log(f"round {round_no} c={args.connections} {name:9} {run.rps:9.0f} req/s  "
                f"p50 {run.p50_ms:6.2f}  p99 {run.p99_ms:6.2f} ms  errors {run.errors}")

    c1: dict[str, list[WrkRun]] = {name: [] for name in ("front", "prod", "coupon")}
    for round_no in range(1, args.rounds + 1):
        for name in c1:
            check_budget()
            run = run_wrk(fleet.run, services[name].url(services[name].load_path), 1,
                          args.c1_duration)
            c1[name].append(run)
            log(f"round {round_no} c=1  {name:9} p50 {run.p50_ms:6.3f} ms  errors {run.errors}")

    for service in services.values():
        service.rss_after_mib = rss_mib(service.pid)
    counters_after = front_counters(front)
    check_front_answer(front)
    for service in services.values():
        assert service.process is not None
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} died during the bench")

    result["c32"] = {name: {"median": median_run(runs), "runs": [asdict(r) for r in runs]}
                     for name, runs in c32.items()}
    result["c1"] = {name: {"median": median_run(runs), "runs": [asdict(r) for r in runs]}
                    for name, runs in c1.items()}
    result["front_checks"] = {
        "wrk_errors_c32": sum(r.errors for r in c32["front"]),
        "wrk_errors_c1": sum(r.errors for r in c1["front"]),
        **{f"{key}_during_load": counters_after[key] - counters_before[key]
           for key in ("degraded", "upstream_errors", "upstream_retries")},
        "upstream_errors_by_kind_during_load": {
            labels: value - counters_before["upstream_errors_by_kind"].get(labels, 0)
            for labels, value in counters_after["upstream_errors_by_kind"].items()
            if value != counters_before["upstream_errors_by_kind"].get(labels, 0)},
    }
    result["services"] = {
        name: {
            "start_to_healthy_s": round(s.start_to_healthy_s or 0, 3),
            "rss_idle_mib": round(s.rss_idle_mib or 0, 1),
            "rss_after_mib": round(s.rss_after_mib or 0, 1),
            "request_log_lines": None if args.logs_to_devnull or name == "yardstick"
            else count_lines(s.log_path, b'"event":"request"'),
        }
        for name, s in services.items()
    }
    result["machine"]["loadavg_after"] = loadavg()
    result["ratios"] = ratios(result)
    result["targets"] = targets(result)
    result["elapsed_s"] = round(time.monotonic() - began, 1)
    return result


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per c=32 run (5)")
    parser.add_argument("--c1-duration", type=float, default=3,
                        help="seconds per concurrency-1 run (3)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per target")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter the services run under (default: this one)")
    parser.add_argument("--logs-to-devnull", action="store_true",
                        help="send service logs to /dev/null instead of files")
    parser.add_argument("--keep-logs", metavar="DIR", help="write the service logs here and "
                        "keep them (default: a temporary directory, removed at the end)")
    parser.add_argument("--max-seconds", type=float, default=600,
                        help="abort (and clean up) when the bench runs longer than this")
    parser.add_argument("--source", type=Path, default=REPO,
                        help="directory holding the service packages to run (default: this "
                             "repo; e.g. a git worktree of another commit, to compare)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                        help="directory for latest.json and latest.md")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.source = args.source.resolve()
    if shutil.which("wrk") is None:
        log("wrk not found (apt-get install wrk)")
        return 2

    def on_signal(signum: int, _frame: object) -> None:
        log(f"{signal.Signals(signum).name}: stopping the processes this bench started")
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)  # unwinds through the finally below

    # Set explicitly: a shell starts background jobs with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    fleet = Fleet()
    log_dir = args.keep_logs or tempfile.mkdtemp(prefix="shop-bench-")
    os.makedirs(log_dir, exist_ok=True)
    try:
        result = run_bench(args, fleet, log_dir)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
        log(f"failed: {exc} (service logs in {log_dir})")
        args.keep_logs = log_dir
        return 1
    finally:
        fleet.stop_all()
        if not args.keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "latest.md").write_text(markdown(result))
    print_tables(result, Console(highlight=False))
    log(f"wrote {args.out / 'latest.json'} and latest.md in {result['elapsed_s']:g} s")
    return 0 if result["targets"][1]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
