"""How the front races the tries of an upstream call: hedges after the hedge delay within a
budget, a backstop hedge after the try timeout, the slow try kept running, retries after
failures, all under one deadline; over real sockets to the real prod app behind fault servers.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from front_service.upstream import HEDGE_BURST, HEDGE_EVERY, HedgeBudget
from tests.support.faults import (
    RawServer,
    after,
    answers,
    http_reply,
    never_answers,
    read_request,
    until_client_leaves,
)
from tests.support.front import Front, running_front
from tests.support.upstreams import Upstreams, front_settings_for

PRODUCT = {"prodNo": 2, "name": "LG 19인치 모니터", "category": "PC 주변기기",
           "desc": "LG 모니터 너무 좋아요.", "price": 160_000}


@pytest.fixture
def anyio_backend() -> str:
    """The front runs on asyncio in production; so do these tests."""
    return "asyncio"


def hedged(upstreams: Upstreams, **changes: Any) -> dict[str, Any]:
    """Settings with hedging on: a hedge after 50 ms, the backstop after 0.3 s, 0.8 s in all."""
    return {"upstream_hedge_delay_seconds": 0.05, "upstream_attempt_timeout_seconds": 0.3,
            "upstream_timeout_seconds": 0.8, **changes}


@pytest.fixture
async def front(upstreams: Upstreams) -> AsyncIterator[Front]:
    """The front with hedging on, in front of the test upstreams."""
    async with running_front(front_settings_for(upstreams, **hedged(upstreams))) as running:
        yield running


def lines(output: str, event: str) -> list[dict[str, Any]]:
    return [line for line in map(json.loads, output.splitlines()) if line["event"] == event]


@pytest.mark.anyio
async def test_a_slow_try_gets_a_hedge_after_the_delay(
        front: Front, upstreams: Upstreams, capsys: pytest.CaptureFixture[str]) -> None:
    """A replica that takes 5 s: after 50 ms a hedge starts on another connection and its
    answer is the call's (within the 0.8 s budget); the slow try is cancelled ("lost") and
    not counted as an error."""
    upstreams.prod.faults = [after(5.0, answers(200, orjson.dumps(PRODUCT)))]
    capsys.readouterr()
    response = await front.get()
    assert response.status_code == 200
    assert front.counter("shop_upstream_hedges_total", upstream="prod") == 1
    assert front.counter("shop_upstream_errors_total", upstream="prod", kind="timeout") == 0
    tries = [(line["attempt"], line["kind"], line["outcome"])
             for line in lines(capsys.readouterr().out, "upstream")]
    assert sorted(tries) == [(1, "first", "lost"), (2, "hedge", "ok")]


@pytest.mark.anyio
async def test_the_slow_try_is_not_abandoned(upstreams: Upstreams) -> None:
    """On a node short of CPU the first try may be the only one to answer: tries that are
    merely slow keep running while hedges start beside them, and the first answer wins, even
    when it comes after the try timeout."""
    upstreams.prod.faults = [after(0.5, answers(200, orjson.dumps(PRODUCT)))]
    upstreams.prod.always = never_answers  # every hedge hangs
    settings = front_settings_for(upstreams, **hedged(
        upstreams, upstream_hedge_delay_seconds=0, upstream_attempt_timeout_seconds=0.1,
        upstream_timeout_seconds=2.0))
    async with running_front(settings) as front:
        response = await front.get()
        assert response.status_code == 200
        assert 0.5 <= front.elapsed[-1] < 2.0
        assert front.counter("shop_upstream_hedges_total", upstream="prod") == 2
    assert upstreams.prod.connections == 3


class DyingReplica:
    """A prod replica whose node dies: connections opened before `die()` answer (kept
    alive) until then and go silent after it, no FIN and no RST, as connections to a node
    that vanished do; connections opened after it answer, as another replica would."""

    def __init__(self) -> None:
        self.dead = False
        self.answer = http_reply(200, orjson.dumps(PRODUCT), keep_alive=True)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened_alive = not self.dead
        while True:
            await read_request(reader)
            if opened_alive and self.dead:
                await until_client_leaves(reader)
                return
            writer.write(self.answer)
            await writer.drain()


@pytest.mark.anyio
async def test_hedges_do_not_follow_the_first_try_to_a_dead_replica(
        upstreams: Upstreams) -> None:
    """Kept-alive connections to a replica whose node died look healthy in the pool: every
    try taken from it would hang. The first try does; its hedges go out on new connections,
    which reach a live replica, and the answer comes in one hedge delay, not at the
    deadline (504)."""
    replica = DyingReplica()
    async with RawServer(replica) as prod:
        settings = front_settings_for(upstreams, **hedged(upstreams), prod_api_url=prod.url)
        async with running_front(settings) as front:
            # Five concurrent calls leave five kept-alive connections in the pool.
            warm = await asyncio.gather(*(front.get() for _ in range(5)))
            assert {response.status_code for response in warm} == {200}
            assert prod.accepted == 5
            replica.dead = True
            for _ in range(5):
                response = await front.get()
                assert response.status_code == 200, response.text
            assert max(front.elapsed[-5:]) < 0.5, front.elapsed[-5:]
            # One hedge each, nothing counted as failed: the silent tries lost the race.
            assert front.counter("shop_upstream_hedges_total", upstream="prod") == 5
            assert front.counter("shop_upstream_errors_total", upstream="prod",
                                 kind="timeout") == 0


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": True})])
@pytest.mark.anyio
async def test_answers_that_came_during_a_stall_are_taken(upstreams: Upstreams) -> None:
    """The front's process stalls for longer than the whole budget (a node so short of CPU
    that nothing of it runs) after its upstream calls were sent; the answers arrive meanwhile.
    When it runs again, uvloop fires the deadline's timer before it reads the sockets: the
    last look reads them, and the answers that came in time are the call's, not a 504."""
    settings = front_settings_for(upstreams)  # a 0.5 s budget, no hedge
    async with running_front(settings) as front:
        assert (await front.get()).status_code == 200  # connections open, first-call costs paid
        upstreams.reset()
        call = asyncio.create_task(front.get())
        # Both calls have reached their upstreams (counted on the upstreams' own thread).
        while len(upstreams.requests) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        time.sleep(0.8)  # noqa: ASYNC251 - the stall: this loop, and the front on it, stop
        response = await call
        assert response.status_code == 200, response.text
        assert "x-degraded" not in response.headers
        assert front.counter("shop_upstream_errors_total", upstream="prod", kind="timeout") == 0


@pytest.mark.anyio
async def test_a_fast_answer_starts_no_hedge(upstreams: Upstreams) -> None:
    """The common case: both upstreams answer within the hedge delay, and nothing else is
    sent. (The delay here is far above what a busy test runner's loop can stall for: the test
    is about the rule, not about the runner.)"""
    settings = front_settings_for(upstreams, **hedged(
        upstreams, upstream_hedge_delay_seconds=0.5, upstream_attempt_timeout_seconds=0.6))
    async with running_front(settings) as front:
        for _ in range(20):
            assert (await front.get()).status_code == 200
        assert front.counter("shop_upstream_hedges_total", upstream="prod") == 0
    assert [r.path for r in upstreams.prod.requests] == ["/products/2"] * 20


@pytest.mark.anyio
async def test_hedges_stay_within_their_budget(upstreams: Upstreams) -> None:
    """When every try is slow, early hedges stop once the budget is spent (a burst, then one
    per HEDGE_EVERY calls). The backstop is set at the whole budget here, so every hedge
    counted is an early one, however slow a busy runner makes the slow answers."""
    upstreams.prod.always = after(0.12, answers(200, orjson.dumps(PRODUCT)))
    settings = front_settings_for(upstreams, **hedged(
        upstreams, upstream_attempt_timeout_seconds=0.8))
    calls = 40
    async with running_front(settings) as front:
        for _ in range(calls):
            assert (await front.get()).status_code == 200
        hedges = front.counter("shop_upstream_hedges_total", upstream="prod")
    assert HEDGE_BURST <= hedges <= HEDGE_BURST + calls / HEDGE_EVERY, hedges


def test_budget_earns_a_share_and_spends_whole_hedges() -> None:
    """The budget starts full (HEDGE_BURST hedges), then a hedge needs HEDGE_EVERY calls."""
    budget = HedgeBudget()
    assert sum(budget.spend() for _ in range(HEDGE_BURST + 5)) == HEDGE_BURST
    for _ in range(HEDGE_EVERY - 1):
        budget.earn()
    assert not budget.spend()
    budget.earn()
    assert budget.spend()


@pytest.mark.anyio
async def test_a_failed_try_is_retried_at_once_not_after_the_delay(upstreams: Upstreams) -> None:
    """A failed try (a 503 here) starts the next try at once, a retry, long before the hedge
    delay (0.5 s here) would have started a hedge."""
    upstreams.prod.faults = [answers(503, b"{}")]
    settings = front_settings_for(upstreams, **hedged(
        upstreams, upstream_hedge_delay_seconds=0.5, upstream_attempt_timeout_seconds=0.6))
    async with running_front(settings) as front:
        response = await front.get()
        assert response.status_code == 200
        assert front.elapsed[-1] < 0.5
        assert front.counter("shop_upstream_retries_total", upstream="prod") == 1
        assert front.counter("shop_upstream_hedges_total", upstream="prod") == 0


@pytest.mark.anyio
async def test_every_try_hung_ends_at_the_deadline(front: Front, upstreams: Upstreams,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Three tries (one first, two hedges), all hung: the deadline cuts all three, each logged
    as a timeout, and the front answers 504 once."""
    upstreams.prod.always = never_answers
    capsys.readouterr()
    response = await front.get()
    assert response.status_code == 504
    assert 0.8 <= front.elapsed[-1] < 1.1
    outcomes = [line["outcome"] for line in lines(capsys.readouterr().out, "upstream")]
    assert outcomes == ["timeout"] * 3
    assert front.counter("shop_upstream_errors_total", upstream="prod", kind="timeout") == 3


@pytest.mark.anyio
async def test_hedges_race_on_the_test_loop_without_leaks(upstreams: Upstreams) -> None:
    """Fifty concurrent calls with slow first tries: every one answers, and no try is left
    running once they have (the losers were cancelled)."""
    upstreams.prod.faults = [after(0.3, answers(200, orjson.dumps(PRODUCT)))] * 10
    settings = front_settings_for(upstreams, **hedged(upstreams, upstream_timeout_seconds=2.0))
    def leftover() -> list[asyncio.Task[object]]:
        return [task for task in asyncio.all_tasks()
                if "_get_once" in repr(task.get_coro()) and not task.done()]

    async with running_front(settings) as front:
        responses = await asyncio.gather(*(front.get() for _ in range(50)))
        assert {response.status_code for response in responses} == {200}
        for _ in range(100):  # a cancelled try ends on one of the loop's next turns
            if not leftover():
                break
            await asyncio.sleep(0.01)
        assert leftover() == []
