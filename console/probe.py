"""The console's probe: the tutorial's curl loop, made visible, on the shop's probe engine.

`run_probe` is the whole interface the console uses. It runs shop_tools.probe.engine: requests
open-loop (request n at start + n / rate, whether or not earlier ones have answered, so a
stalled shop shows up as timeouts, not as a lower rate), each on a new connection (like
separate users: a rolling update cannot hide behind one pinned keep-alive connection), each
call bounded by the timeout as a whole; every outcome goes to `record`.

An engine run is bounded; the console's probe runs for as long as the console does: one run
after another, each started when the one before has sent its last request, so the schedule
goes on without a gap. Cancelling it (the console stopping) ends it; requests still in flight
then are not recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import count

import anyio

from console.model import RequestResult
from shop_tools.probe.engine import Probe, check_probe_args
from shop_tools.probe.report import RequestResult as ProbeResult

Record = Callable[[RequestResult], None]

# One engine run. Its report grows with its requests until it ends (at most 50/s * 600 s).
RUN_S = 600.0


async def run_probe(url: str, rate: float, timeout_s: float, record: Record) -> None:
    """GET `url` `rate` times a second until cancelled; each outcome goes to `record`.
    ValueError at once for a URL or numbers the engine refuses."""
    # The console probes the shop it was deployed with, wherever that is: not only loopback.
    check_probe_args(url, rate, RUN_S, timeout_s, allow_remote=True)

    def finished(result: ProbeResult) -> None:
        # Called as the request ends: its wall-clock send time is now minus its latency.
        record(RequestResult(
            result.request_id, time.time() - (result.ended_at - result.sent_at),
            result.latency_ms, result.status, result.failure or "", result.release or "",
            result.instance or ""))

    start = anyio.current_time()
    async with anyio.create_task_group() as runs:
        for run in count():
            await anyio.sleep_until(start + run * RUN_S)
            runs.start_soon(Probe(url, rate, RUN_S, timeout_s, allow_remote=True,
                                  name="console", on_request=finished).run)
