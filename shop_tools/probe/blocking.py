"""A probe run from synchronous code (tests, command-line tools), on anyio's blocking portal:

    probe = BlockingProbe.start(url, rate=25, duration=300)
    ...                                  # deploy, update, kill a node
    report = probe.stop_and_wait()       # or probe.wait() for the whole schedule

(`with BlockingProbe.start(...) as probe:` stops it when the block ends, whatever happens.)

The probe runs in the portal's event loop thread (asyncio, which the engine's aiohttp client
needs); its hooks are called there.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future

from anyio.from_thread import start_blocking_portal

from shop_tools.probe.engine import DEFAULT_TIMEOUT, Probe, RequestHook, SecondHook
from shop_tools.probe.report import ProbeReport


class BlockingProbe:
    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self._exit_stack = contextlib.ExitStack()
        self._portal = self._exit_stack.enter_context(start_blocking_portal("asyncio"))
        self._future: Future[ProbeReport] = self._portal.start_task_soon(probe.run)

    @classmethod
    def start(
        cls,
        url: str,
        rate: float,
        duration: float,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        allow_remote: bool = False,
        on_request: RequestHook | None = None,
        on_second: SecondHook | None = None,
    ) -> BlockingProbe:
        """Start probing now; ValueError for arguments check_probe_args refuses."""
        return cls(Probe(url, rate, duration, timeout, allow_remote=allow_remote,
                         on_request=on_request, on_second=on_second))

    @property
    def completed(self) -> int:
        """Requests finished so far (answered or failed)."""
        return self.probe.completed

    @property
    def running(self) -> bool:
        return not self._future.done()

    def wait(self, timeout: float | None = None) -> ProbeReport:
        """The report once the schedule has run (TimeoutError if it takes longer)."""
        report = self._future.result(timeout)
        self._close()
        return report

    def stop_and_wait(self, timeout: float | None = None) -> ProbeReport:
        """Stop sending, wait for requests in flight (bounded by the timeout), the report."""
        if self.running:
            self._portal.call(self.probe.stop)
        return self.wait(timeout)

    def __enter__(self) -> BlockingProbe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Leaving the block stops the probe: no probe outlives the code that started it."""
        self.stop_and_wait()

    def _close(self) -> None:
        self._exit_stack.close()  # the portal's thread ends with it
