import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest


@dataclass
class Process:
    """A shop service running as a real `python -m <service>` process on 127.0.0.1."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()


def wait_healthy(process: Process, timeout: float = 15.0) -> float:
    """Poll /health until 200; seconds from process start. Fails if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            pytest.fail(f"{process.name} exited with {process.popen.returncode}:\n"
                        + "\n".join(process.log_lines()[-20:]))
        try:
            if httpx.get(f"{process.url}/health", timeout=0.5).status_code == 200:
                return time.monotonic() - process.started_at
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"{process.name} not healthy within {timeout} s")
