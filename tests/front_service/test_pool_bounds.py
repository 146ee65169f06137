"""The front's connection pool stays within SHOP_UPSTREAM_MAX_CONNECTIONS per upstream, through
a burst of failures and a burst of successes, and gives its connections back afterwards.

The front's own aiohttp session against TCP servers on 127.0.0.1, which count the connections
open to them. That count is exact as long as the server, not the front, ends connections (the
front's slot is free only once it has seen the server's reset or answer); the budgets here are
long enough that no try is cut short by the front.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import orjson
import pytest
from fastapi import FastAPI

from front_service.app import create_app
from front_service.settings import FrontSettings
from front_service.upstream import pool_bounds
from tests.support.faults import RawServer, holds_then_resets, http_reply, keeps_answering

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
        upstream_timeout_seconds=budget, upstream_attempt_timeout_seconds=budget,
        upstream_connect_timeout_seconds=0.5, keepalive_expiry_seconds=KEEPALIVE,
        # The bound under test is the pool's: no hedge (a hedge that loses its race closes its
        # connection mid-answer, and the counts here are of connections), no warm-up
        # connection before the burst.
        upstream_hedge_delay_seconds=0, upstream_warmup_seconds=0)
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


@pytest.mark.anyio
async def test_burst_of_failures_stays_within_the_pool_bound() -> None:
    """200 concurrent requests while the product service resets every connection after
    10 ms: the pool fills to its bound and no further, every answer is a 502/503/504 JSON
    error (no 500), no connection is left open afterwards, and the next request after the
    recovery is a 200."""
    async with RawServer(holds_then_resets(0.01)) as prod, \
            RawServer(keeps_answering(NO_COUPONS)) as coupon, \
            front_for(prod, coupon, budget=10.0) as (_, client):
        responses = await burst(client, 200)
        assert {response.status_code for response in responses} <= {502, 503, 504}
        assert {response.json()["error"]["code"] for response in responses} <= {
            "bad_upstream_response", "upstream_unavailable", "upstream_timeout"}
        # First tries and retries fill both shares of the bound, never beyond.
        assert prod.max_open == MAX_CONNECTIONS
        assert coupon.max_open <= MAX_CONNECTIONS
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
        async with front_for(prod, coupon, budget=15.0) as (_, client):
            responses = await burst(client, 200)
            assert {response.status_code for response in responses} == {200}
            for server in (prod, coupon):
                # The bound is per upstream; with no hedge and no failure, only first tries
                # run, on the kept-alive share of it.
                assert server.max_open == pool_bounds(MAX_CONNECTIONS)[0]
                assert server.accepted <= 2 * MAX_CONNECTIONS  # reused, not one per request
            await wait_until(lambda: prod.open == 0 and coupon.open == 0)
            assert (await client.get("/product-detail/2")).status_code == 200
            await wait_until(lambda: prod.open == 1)
        await wait_until(lambda: prod.open == 0, seconds=1)  # closed with the lifespan
