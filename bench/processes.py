"""The processes a bench run starts (the services, the yardstick, wrk): every one recorded and
stopped by its PID, and killed with the bench if the bench itself is killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent


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

    def run(self, argv: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
        """Run a command to completion (bounded), its stdout; stopped with the rest if we are."""
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   preexec_fn=_die_with_parent, env=env)
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


def parse_vmrss_mib(status_text: str) -> float:
    """VmRSS from the text of /proc/PID/status (`VmRSS:   71680 kB`), in MiB."""
    for line in status_text.splitlines():
        key, _, value = line.partition(":")
        if key == "VmRSS":
            amount, unit = value.split()
            if unit != "kB":
                raise ValueError(f"VmRSS in {unit!r}")
            return int(amount) / 1024
    raise ValueError("no VmRSS line")


def rss_mib(pid: int) -> float:
    return parse_vmrss_mib(Path(f"/proc/{pid}/status").read_text())


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

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self.process.pid


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
