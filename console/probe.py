"""The console's own probe: the tutorial's curl loop, made visible.

`run_probe` is the whole interface the console uses: it sends requests open-loop (request n
at start + n / rate, whether or not earlier ones have answered, so a stalled shop shows up
as timeouts, not as a lower rate), each on a new connection (like separate users: a rolling
update cannot hide behind one pinned keep-alive connection), and hands every outcome to
`record`. It runs until cancelled. When the shop's tools offer an async probe engine usable
from any event loop, this module is where the console switches to it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable

import httpx

from console.model import RequestResult

Record = Callable[[RequestResult], None]


def _outcome(response: httpx.Response) -> str:
    if not response.is_success:
        return f"status_{response.status_code}"
    try:
        response.json()  # every shop answer is JSON: anything else (a proxy's page) failed
    except ValueError:
        return "bad_body"
    return ""


async def run_probe(url: str, rate: float, timeout_s: float, record: Record) -> None:
    """GET `url` `rate` times a second until cancelled; each outcome goes to `record`."""
    loop = asyncio.get_running_loop()
    run_id = secrets.token_hex(3)
    in_flight: set[asyncio.Task[None]] = set()

    async def one(client: httpx.AsyncClient, n: int) -> None:
        # An id per request: clicking it on the page finds its lines in the services' logs.
        request_id = f"console-{run_id}-{n}"
        sent, started = time.time(), loop.time()
        status: int | None = None
        release = instance = ""
        try:
            async with asyncio.timeout(timeout_s):  # the whole call, not each phase
                response = await client.get(url, headers={"X-Request-ID": request_id})
            status = response.status_code
            release = response.headers.get("x-release", "")
            instance = response.headers.get("x-instance", "")
            error = _outcome(response)
        except (TimeoutError, httpx.TimeoutException):
            error = "timeout"
        except httpx.ConnectError:
            error = "connect"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        record(RequestResult(request_id, sent, (loop.time() - started) * 1000, status, error,
                             release, instance))

    client = httpx.AsyncClient(
        # No pooled connections: every request connects anew.
        limits=httpx.Limits(max_keepalive_connections=0),
        headers={"User-Agent": "shop-console", "Connection": "close"},
        follow_redirects=False,
        trust_env=False,  # never through a proxy from the environment
    )
    async with client:
        t0 = loop.time()
        n = 0
        try:
            while True:
                await asyncio.sleep(max(0.0, t0 + n / rate - loop.time()))
                task = asyncio.create_task(one(client, n))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                n += 1
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
