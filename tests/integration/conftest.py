import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.processes import Process, wait_healthy


@pytest.fixture
def start_service(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[
        Callable[..., Process]]:
    """Start services as real processes; every one is stopped by its PID afterwards."""
    started: list[Process] = []

    def start(module: str, **env: str) -> Process:
        port = free_port()
        log_path = tmp_path / f"{module}-{port}.log"
        environment = {**os.environ, "SHOP_HOST": "127.0.0.1", "SHOP_PORT": str(port),
                       "PYTHONUNBUFFERED": "1", **env}
        with log_path.open("wb") as log:
            popen = subprocess.Popen([sys.executable, "-m", module], env=environment,
                                     stdout=log, stderr=subprocess.STDOUT)
        process = Process(module.removesuffix("_service"), port, popen, log_path)
        started.append(process)
        wait_healthy(process)
        return process

    yield start
    for process in started:
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGINT)
    for process in started:
        try:
            process.popen.wait(10)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait()
