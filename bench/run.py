"""The shop benchmark: `python -m bench` (or `python bench/run.py`) from the repo root.

Starts prod, coupon and front as real processes (`python -m <service>`, one uvicorn worker
each, JSON access logging on, stdout to a log file) on free 127.0.0.1 ports, plus the
yardstick (bench/yardstick.py), then drives them with wrk in interleaved rounds and writes
bench/results/latest.json and latest.md. Standard library only, so it runs under any Python;
the services run under --python (default: this interpreter).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
YARDSTICK = REPO / "bench" / "yardstick.py"

# Targets, each checked against figures from the same run.
MIN_FRONT_RATIO = 0.30
AIM_FRONT_RATIO = 0.43  # the classic Node/Express front of this shop, same harness
MAX_P99_RATIO = 3.0
C1_FACTOR, C1_SLACK_MS = 1.3, 1.0
MAX_RSS_MIB = 64.0
MAX_START_SECONDS = 1.5


# ---------------------------------------------------------------------------------------------
# Parsing (pure functions; tests/bench/test_bench_parsing.py covers them)

_TIME = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)$")
_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def parse_time_ms(text: str) -> float:
    """A wrk time ("812.00us", "3.41ms", "1.02s") in milliseconds."""
    match = _TIME.match(text.strip())
    if match is None:
        raise ValueError(f"not a wrk time: {text!r}")
    return float(match.group(1)) * _TO_MS[match.group(2)]


@dataclass
class WrkRun:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx_3xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return self.non_2xx_3xx + sum(self.socket_errors.values())


def parse_wrk(output: str) -> WrkRun:
    """The figures of a `wrk --latency` run; raises ValueError if the output lacks them."""
    percentiles = {
        int(pct): parse_time_ms(value)
        for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.M)
    }
    latency = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in ([0-9.]+\w+),", output, re.M)
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.M)
    if len(percentiles) != 4 or not (latency and total and rps):
        raise ValueError("wrk output without --latency figures:\n" + output)
    socket_errors: dict[str, int] = {}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       output)
    if errors:
        socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                                 map(int, errors.groups()), strict=True))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return WrkRun(
        requests=int(total.group(1)),
        seconds=parse_time_ms(total.group(2)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=percentiles[50], p75_ms=percentiles[75], p90_ms=percentiles[90],
        p99_ms=percentiles[99], max_ms=parse_time_ms(latency.group(3)),
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


def median_run(runs: list[WrkRun]) -> dict[str, float]:
    """Per-figure medians over the rounds (req/s and each percentile on its own)."""
    return {
        name: statistics.median(getattr(run, name) for run in runs)
        for name in ("rps", "p50_ms", "p75_ms", "p90_ms", "p99_ms", "max_ms")
    } | {"errors": sum(run.errors for run in runs), "requests": sum(r.requests for r in runs)}


def parse_vmrss_mib(status_text: str) -> float:
    """VmRSS from the text of /proc/PID/status, in MiB."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", status_text, re.M)
    if match is None:
        raise ValueError("no VmRSS line")
    return int(match.group(1)) / 1024


def metric_sum(prometheus_text: str, name: str) -> float:
    """The sum of every sample of one metric (all label sets) in Prometheus text output."""
    total = 0.0
    for line in prometheus_text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------------------------------------
# Processes: everything this bench starts is recorded here and stopped by PID.

def _die_with_parent() -> None:
    """In the child before exec: SIGKILL if the bench itself is killed (Linux prctl)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Fleet:
    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: list[str], env: dict[str, str], log_path: str,
              cwd: Path = REPO) -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C reaches only us; we stop them in order
                preexec_fn=_die_with_parent,  # safe: the bench runs no threads
            )
        self.processes.append(process)
        return process

    def run(self, argv: list[str], timeout: float) -> str:
        """Run a command to completion (bounded), its stdout; stopped with the rest if we are."""
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_die_with_parent)
        self.processes.append(process)
        try:
            out, err = process.communicate(timeout=timeout)
        finally:
            self.stop(process)
        if process.returncode != 0:
            raise RuntimeError(f"{argv[0]} exited {process.returncode}: {err.decode()[-500:]}")
        return out.decode()

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
        if process.poll() is None:
            try:
                os.kill(process.pid, signal.SIGINT)  # the services' "stop now" (no drain)
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in list(reversed(self.processes)):
            self.stop(process)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def rss_mib(pid: int) -> float:
    return parse_vmrss_mib(Path(f"/proc/{pid}/status").read_text())


# ---------------------------------------------------------------------------------------------

@dataclass
class Service:
    name: str
    argv: list[str]
    port: int
    health_path: str
    load_path: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    start_to_healthy_s: float | None = None
    rss_idle_mib: float | None = None
    rss_after_mib: float | None = None
    log_path: str = ""
    cwd: Path = REPO

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"


def start_and_time(fleet: Fleet, service: Service, timeout: float = 15.0) -> None:
    """Start one service and time it from spawn to the first 200 on its health path."""
    started = time.perf_counter()
    service.process = fleet.spawn(service.argv, service.env, service.log_path, service.cwd)
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(f"{service.name} exited with {service.process.returncode}; "
                               f"see {service.log_path}")
        try:
            if http_get(service.url(service.health_path), timeout=0.5)[0] == 200:
                service.start_to_healthy_s = time.perf_counter() - started
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{service.name} not healthy within {timeout:g} s")


def wrk(fleet: Fleet, url: str, connections: int, seconds: float) -> WrkRun:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "2s",
            url]
    return parse_wrk(fleet.run(argv, timeout=seconds + 20))


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
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
    }


def check_front_answer(front: Service) -> None:
    status, headers, body = http_get(front.url(front.load_path))
    detail = json.loads(body)
    if status != 200 or "x-degraded" in {k.lower() for k in headers} or not (
            {"prod", "coupons", "couponsAvailable", "couponPrice"} <= detail.keys()):
        raise RuntimeError(f"front answered {status} {headers} {body[:300]!r}")


def metric_samples(prometheus_text: str, name: str) -> dict[str, float]:
    """Each sample of one metric by its label set, e.g. {'{upstream="prod"}': 3.0}."""
    samples = {}
    for line in prometheus_text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            labels, value = line[len(name):].rsplit(" ", 1)
            samples[labels.strip()] = float(value)
    return samples


def front_counters(front: Service) -> dict[str, Any]:
    text = http_get(front.url("/metrics"))[2].decode()
    return {
        "degraded": metric_sum(text, "shop_degraded_responses_total"),
        "upstream_errors": metric_sum(text, "shop_upstream_errors_total"),
        "upstream_retries": metric_sum(text, "shop_upstream_retries_total"),
        "upstream_errors_by_kind": metric_samples(text, "shop_upstream_errors_total"),
    }


def count_lines(path: str, needle: bytes) -> int:
    try:
        with open(path, "rb") as log:
            return sum(1 for line in log if needle in line)
    except OSError:
        return 0


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
        assert service.process is not None
        service.rss_idle_mib = rss_mib(service.process.pid)
    front = services["front"]
    check_front_answer(front)
    counters_before = front_counters(front)

    order = ["yardstick", "front", "prod", "coupon"]
    for name in order:
        log(f"warm-up {name} ({args.warmup:g} s)")
        wrk(fleet, services[name].url(services[name].load_path), args.connections, args.warmup)

    c32: dict[str, list[WrkRun]] = {name: [] for name in order}
    for round_no in range(1, args.rounds + 1):
        for name in order:
            check_budget()
            run = wrk(fleet, services[name].url(services[name].load_path), args.connections,
                      args.duration)
            c32[name].append(run)
            log(f"round {round_no} c={args.connections} {name:9} {run.rps:9.0f} req/s  "
                f"p50 {run.p50_ms:6.2f}  p99 {run.p99_ms:6.2f} ms  errors {run.errors}")

    c1: dict[str, list[WrkRun]] = {name: [] for name in ("front", "prod", "coupon")}
    for round_no in range(1, args.rounds + 1):
        for name in c1:
            check_budget()
            run = wrk(fleet, services[name].url(services[name].load_path), 1, args.c1_duration)
            c1[name].append(run)
            log(f"round {round_no} c=1  {name:9} p50 {run.p50_ms:6.3f} ms  errors {run.errors}")

    for service in services.values():
        assert service.process is not None
        service.rss_after_mib = rss_mib(service.process.pid)
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
    result["machine"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    result["ratios"] = ratios(result)
    result["targets"] = targets(result)
    result["elapsed_s"] = round(time.monotonic() - began, 1)
    return result


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    c32, c1 = result["c32"], result["c1"]
    front, yard = c32["front"]["median"], c32["yardstick"]["median"]
    per_round = [f["rps"] / y["rps"] for f, y in
                 zip(c32["front"]["runs"], c32["yardstick"]["runs"], strict=True)]
    slower = max(c1["prod"]["median"]["p50_ms"], c1["coupon"]["median"]["p50_ms"])
    return {
        "front_over_yardstick_rps": round(front["rps"] / yard["rps"], 3),
        "front_over_yardstick_rps_per_round": [round(r, 3) for r in per_round],
        "front_over_yardstick_p99": round(front["p99_ms"] / yard["p99_ms"], 2),
        "c1_front_p50_ms": c1["front"]["median"]["p50_ms"],
        "c1_slower_upstream_p50_ms": slower,
        "c1_front_limit_ms": round(C1_FACTOR * slower + C1_SLACK_MS, 3),
        "c1_front_over_slower_upstream": round(c1["front"]["median"]["p50_ms"] / slower, 2),
    }


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    r, services = result["ratios"], result["services"]
    shop = [name for name in services if name != "yardstick"]
    checks = result["front_checks"]
    front_errors = (checks["wrk_errors_c32"] + checks["wrk_errors_c1"]
                    + checks["degraded_during_load"] + checks["upstream_errors_during_load"])
    worst_rss = max(services[name]["rss_after_mib"] for name in shop)
    worst_start = max(services[name]["start_to_healthy_s"] for name in shop)
    return [
        {"target": f"front req/s >= {MIN_FRONT_RATIO} x yardstick (aim {AIM_FRONT_RATIO})",
         "value": r["front_over_yardstick_rps"],
         "met": r["front_over_yardstick_rps"] >= MIN_FRONT_RATIO},
        {"target": "front: zero errors, non-2xx, degraded answers or upstream errors",
         "value": front_errors, "met": front_errors == 0},
        {"target": f"front p99 <= {MAX_P99_RATIO:g} x yardstick p99",
         "value": r["front_over_yardstick_p99"],
         "met": r["front_over_yardstick_p99"] <= MAX_P99_RATIO},
        {"target": f"c=1 front p50 <= {C1_FACTOR} x slower upstream p50 + {C1_SLACK_MS:g} ms",
         "value": f"{r['c1_front_p50_ms']:.3f} ms (limit {r['c1_front_limit_ms']:.3f})",
         "met": r["c1_front_p50_ms"] <= r["c1_front_limit_ms"]},
        {"target": f"RSS after load <= {MAX_RSS_MIB:g} MiB per service",
         "value": f"{worst_rss:.1f} MiB", "met": worst_rss <= MAX_RSS_MIB},
        {"target": f"start to healthy <= {MAX_START_SECONDS} s per service",
         "value": f"{worst_start:.2f} s", "met": worst_start <= MAX_START_SECONDS},
    ]


def markdown(result: dict[str, Any]) -> str:
    m, cfg = result["machine"], result["config"]
    lines = [
        f"Run {result['when']} on {m['nproc']} x {m['cpu_model']}, Python {m['python']}, "
        f"{m['wrk']}; load average before/after "
        f"{' '.join(m['loadavg_before'])} / {' '.join(m.get('loadavg_after', []))}.",
        f"wrk -t1 -c{cfg['connections']} -d{cfg['duration_s']:g}s, median of "
        f"{cfg['rounds']} interleaved rounds; service logs: {cfg['logs']}.",
        "",
        f"| c={cfg['connections']} | req/s | p50 ms | p90 ms | p99 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, data in result["c32"].items():
        med = data["median"]
        lines.append(f"| {name} | {med['rps']:,.0f} | {med['p50_ms']:.2f} | {med['p90_ms']:.2f} "
                     f"| {med['p99_ms']:.2f} | {med['max_ms']:.1f} | {med['errors']} |")
    r = result["ratios"]
    lines += [
        "",
        f"front / yardstick req/s: **{r['front_over_yardstick_rps']:.2f}** (per round "
        f"{', '.join(f'{x:.2f}' for x in r['front_over_yardstick_rps_per_round'])}); "
        f"p99 ratio {r['front_over_yardstick_p99']:.2f}.",
        "",
        "| c=1 | p50 ms | p90 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for name, data in result["c1"].items():
        med = data["median"]
        lines.append(f"| {name} | {med['p50_ms']:.3f} | {med['p90_ms']:.3f} "
                     f"| {med['p99_ms']:.3f} |")
    lines += [
        "",
        f"c=1 front p50 / slower upstream p50: {r['c1_front_over_slower_upstream']:.2f}.",
        "",
        "| service | start to healthy s | RSS idle MiB | RSS after load MiB | request log lines |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in result["services"].items():
        lines.append(f"| {name} | {s['start_to_healthy_s']:.2f} | {s['rss_idle_mib']:.1f} | "
                     f"{s['rss_after_mib']:.1f} | {s['request_log_lines'] or '-'} |")
    checks = result["front_checks"]
    lines += [
        "",
        f"Front during load: wrk errors {checks['wrk_errors_c32'] + checks['wrk_errors_c1']}, "
        f"degraded answers {checks['degraded_during_load']:g}, upstream errors "
        f"{checks['upstream_errors_during_load']:g}, retries "
        f"{checks['upstream_retries_during_load']:g}.",
        "",
        "| target | value | met |",
        "|---|---|---|",
    ]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


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
    table = markdown(result)
    (args.out / "latest.md").write_text(table)
    print(table)
    log(f"wrote {args.out / 'latest.json'} and latest.md in {result['elapsed_s']:g} s")
    return 0 if result["targets"][1]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
