"""Where the CPU goes while a benchmark runs: every process's CPU time from /proc, grouped by
what it is (a shop service, the edge, Docker's own processes, the load client), sampled once a
second.

Processes that live less than a second (a healthcheck's interpreter, a `runc exec`, a docker
CLI call) are missed by the sampling; what the whole machine used beyond the sampled
processes is reported as `unattributed`, so the groups always add up to the machine's total.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# A process belongs to the first group whose marker is in its command line (or, after that,
# whose name is its command's name). The client is the benchmark's own process.
COMMAND_GROUPS = (
    ("front_service", "front"), ("prod_service", "prod"), ("coupon_service", "coupon"),
    ("autoscaler", "autoscaler"), ("prometheus", "prometheus"), ("healthcheck", "healthchecks"),
    ("haproxy", "haproxy"),
)
NAME_GROUPS = {"docker-proxy": "docker-proxy", "dockerd": "dockerd", "runc": "docker: runc",
               "containerd": "docker: containerd", "containerd-shim": "docker: containerd"}


def _group(pid: int, name: str, command: str) -> str:
    if pid == os.getpid():
        return "client (this process)"
    for marker, group in COMMAND_GROUPS:
        if marker in command:
            return group
    if name.startswith("containerd-shim"):
        return "docker: containerd"
    return NAME_GROUPS.get(name, "other")


def process_ticks() -> dict[int, tuple[str, int]]:
    """{pid: (group, CPU ticks used so far)} for every process now."""
    found: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue  # it ended while we looked
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        found[int(entry.name)] = (_group(int(entry.name), name, command),
                                  int(fields[11]) + int(fields[12]))
    return found


def machine_ticks() -> int:
    """Busy ticks of the whole machine so far (all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4]


@dataclass
class CpuSampler:
    """Samples once a second in a thread of its own; `cores()` is the mean use per group."""

    interval: float = 1.0
    seconds: list[dict[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CpuSampler:
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        before, machine_before, t_before = process_ticks(), machine_ticks(), time.monotonic()
        while not self._stop.wait(self.interval):
            after, machine_after, t_after = process_ticks(), machine_ticks(), time.monotonic()
            elapsed = (t_after - t_before) * CLOCK_TICKS
            second: dict[str, float] = {}
            for pid, (group, ticks) in after.items():
                if pid in before:  # a process that started since is counted from next time
                    used = ticks - before[pid][1]
                    second[group] = second.get(group, 0.0) + used / elapsed
            total = (machine_after - machine_before) / elapsed
            second["unattributed"] = max(0.0, total - sum(second.values()))
            second["total"] = total
            self.seconds.append(second)
            before, machine_before, t_before = after, machine_after, t_after

    def cores(self) -> dict[str, float]:
        """Mean cores used per group over the samples, biggest first (groups under 0.01 go)."""
        if not self.seconds:
            return {}
        sums: dict[str, float] = {}
        for second in self.seconds:
            for group, used in second.items():
                sums[group] = sums.get(group, 0.0) + used
        means = {group: round(total / len(self.seconds), 2) for group, total in sums.items()}
        return dict(sorted(((g, c) for g, c in means.items() if c >= 0.01),
                           key=lambda item: -item[1]))
