"""The bench's figures as a report: ratios against the yardstick, the targets, the markdown
of bench/results/latest.md, and the same as rich tables on the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# Targets, each checked against figures from the same run.
MIN_FRONT_RATIO = 0.30
AIM_FRONT_RATIO = 0.43  # the classic Node/Express front of this shop, same harness
MAX_P99_RATIO = 3.0
C1_FACTOR, C1_SLACK_MS = 1.3, 1.0
MAX_RSS_MIB = 64.0
MAX_START_SECONDS = 1.5


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


def print_tables(result: dict[str, Any], console: Console) -> None:
    """The run's main figures and its targets, as tables."""
    c32 = Table(title=f"wrk -c{result['config']['connections']}, median of "
                      f"{result['config']['rounds']} rounds", title_justify="left")
    for column in ("target", "req/s", "p50 ms", "p99 ms", "errors"):
        c32.add_column(column, justify="left" if column == "target" else "right")
    for name, data in result["c32"].items():
        med = data["median"]
        c32.add_row(name, f"{med['rps']:,.0f}", f"{med['p50_ms']:.2f}", f"{med['p99_ms']:.2f}",
                    str(med["errors"]))
    services = Table(title="services", title_justify="left")
    for column in ("service", "start to healthy s", "RSS idle MiB", "RSS after MiB"):
        services.add_column(column, justify="left" if column == "service" else "right")
    for name, figures in result["services"].items():
        services.add_row(name, f"{figures['start_to_healthy_s']:.2f}",
                         f"{figures['rss_idle_mib']:.1f}", f"{figures['rss_after_mib']:.1f}")
    checks = Table(title="targets", title_justify="left")
    for column in ("target", "value", "met"):
        checks.add_column(column)
    for target in result["targets"]:
        checks.add_row(target["target"], str(target["value"]),
                       Text("yes", "green") if target["met"] else Text("no", "bold red"))
    for table in (c32, services, checks):
        console.print(table)
