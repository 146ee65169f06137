"""The front's connection pool stays within SHOP_UPSTREAM_MAX_CONNECTIONS per upstream, through
a burst of failures and a burst of successes, and gives its connections back afterwards.

These use the real transport (front_service/http1.py) against TCP servers on 127.0.0.1. Two
views of the pool: the transport's own count of connections open or being opened per upstream,
sampled on every turn of the event loop, and the servers' count of connections open to them.
The servers' count is exact only without churn: when the front drops a connection (a reset, a
cancelled attempt) its slot is free at once, while the server notices the FIN a loop turn
later, so for a moment it can count a few more than the pool holds.
"""

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import orjson
import pytest
from fastapi import FastAPI
from faults import RawServer, holds_then_resets, http_reply, keeps_answering

from front_service.app import create_app
from front_service.http1 import Http1Transport
from front_service.settings import FrontSettings

MAX_CONNECTIONS = 8
# The requests, the front and both servers share one event loop here, and a burst advances
# in lockstep: each request's time is mostly its turns on the loop. The budgets are sized for
# that (a loaded 2-CPU runner included); the bound under test is the pool's, not latency's.
KEEPALIVE = 1.0
PRODUCT = {"prodNo": 2, "name": "LG 19인치 모니터", "category": "PC 주변기기",
           "desc": "LG 모니터 너무 좋아요.", "price": 160_000}
GOOD_PRODUCT = http_reply(200, orjson.dumps(PRODUCT), keep_alive=True)
NO_COUPONS = http_reply(200, b"[]", keep_alive=True)


@pytest.fixture
def anyio_backend() -> str:
    """The front runs on asyncio in production; so do these tests."""
    return "asyncio"


@asynccontextmanager
async def front_for(prod: RawServer, coupon: RawServer, budget: float,
                    ) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = FrontSettings(
        instance="front-pool", access_log=False, prod_api_url=prod.url,
        coupon_api_url=coupon.url, upstream_max_connections=MAX_CONNECTIONS,
        upstream_timeout_seconds=budget, upstream_connect_timeout_seconds=0.5,
        keepalive_expiry_seconds=KEEPALIVE)
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://front.test",
            timeout=60) as client:
        yield app, client


async def burst(client: httpx.AsyncClient, size: int) -> list[httpx.Response]:
    return await asyncio.gather(*(client.get("/product-detail/2") for _ in range(size)))


async def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def transport(app: FastAPI) -> Http1Transport:
    found = app.state.front.prod_api.upstream.client._transport
    assert isinstance(found, Http1Transport)
    return found


@asynccontextmanager
async def pool_peaks(app: FastAPI) -> AsyncIterator[Counter[str]]:
    """The most connections the transport held at once (open, idle or being opened), per
    "host:port" and in "all", sampled on every loop turn while the block runs."""
    pool = transport(app)
    peaks: Counter[str] = Counter()
    running = True

    async def sample() -> None:
        while running:
            held = pool.connections()
            for name, count in held.items():
                peaks[name] = max(peaks[name], count)
            peaks["all"] = max(peaks["all"], sum(held.values()))
            await asyncio.sleep(0)

    sampler = asyncio.create_task(sample())
    try:
        yield peaks
    finally:
        running = False
        await sampler


def host(server: RawServer) -> str:
    return server.url.removeprefix("http://")


@pytest.mark.anyio
async def test_burst_of_failures_stays_within_the_pool_bound() -> None:
    """500 concurrent requests while the product service resets every connection after
    20 ms: the pool fills to its bound and no further, every answer is a 502/503/504 JSON
    error (no 500), no connection is left open afterwards, and the next request after the
    recovery is a 200."""
    async with RawServer(holds_then_resets(0.02)) as prod, \
            RawServer(keeps_answering(NO_COUPONS)) as coupon, \
            front_for(prod, coupon, budget=1.0) as (app, client):
        assert (await client.get("/product-detail/2")).status_code in {502, 504}  # session up
        async with pool_peaks(app) as peaks:
            responses = await burst(client, 500)
        assert {response.status_code for response in responses} <= {502, 503, 504}
        assert {response.json()["error"]["code"] for response in responses} <= {
            "bad_upstream_response", "upstream_unavailable", "upstream_timeout"}
        assert peaks[host(prod)] == MAX_CONNECTIONS  # filled to the bound, never beyond
        assert peaks[host(coupon)] <= MAX_CONNECTIONS
        assert peaks["all"] <= 2 * MAX_CONNECTIONS
        assert prod.accepted > MAX_CONNECTIONS
        # Failed connections are closed, idle ones expire after keepalive_expiry_seconds.
        await wait_until(lambda: prod.open == 0 and coupon.open == 0)
        prod.behaviour = keeps_answering(GOOD_PRODUCT)
        assert (await client.get("/product-detail/2")).status_code == 200


@pytest.mark.anyio
async def test_burst_of_successes_reuses_a_bounded_pool() -> None:
    """200 concurrent requests to healthy upstreams: all 200, at most the bound open per
    upstream, connections reused rather than opened per request, all closed once idle for
    the keep-alive expiry and at shutdown."""
    async with RawServer(keeps_answering(GOOD_PRODUCT, hold=0.001)) as prod, \
            RawServer(keeps_answering(NO_COUPONS, hold=0.001)) as coupon:
        async with front_for(prod, coupon, budget=15.0) as (app, client):
            assert (await client.get("/product-detail/2")).status_code == 200  # session opened
            async with pool_peaks(app) as peaks:
                responses = await burst(client, 200)
            assert {response.status_code for response in responses} == {200}
            for server in (prod, coupon):
                assert peaks[host(server)] <= MAX_CONNECTIONS
                assert server.max_open <= MAX_CONNECTIONS  # exact here: nothing is dropped
                assert server.accepted <= 2 * MAX_CONNECTIONS  # reused, not one per request
            assert transport(app).max_connections == MAX_CONNECTIONS  # per upstream
            await wait_until(lambda: prod.open == 0 and coupon.open == 0)
            assert (await client.get("/product-detail/2")).status_code == 200
            await wait_until(lambda: prod.open == 1)
        await wait_until(lambda: prod.open == 0, seconds=1)  # closed with the lifespan
