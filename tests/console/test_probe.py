"""The console's probe over real sockets: the real prod app on 127.0.0.1 behind a fault
server (tests/support/upstreams.py), answering or misbehaving on demand."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest

from console import probe
from console.live import Changes
from console.live import probe as probe_source
from console.model import ConsoleState, RequestResult
from console.probe import run_probe
from console.settings import ConsoleSettings
from tests.support.faults import answers, closed_port, never_answers
from tests.support.upstreams import Upstreams


def probe_for(url: str, rate: float, seconds: float, timeout_s: float = 1.0,
              count: int | None = None) -> list[RequestResult]:
    """Run the probe for `seconds` (or until it recorded `count` outcomes, within 10 s), then
    cancel it; what it recorded (requests still in flight then are not)."""
    results: list[RequestResult] = []

    async def run() -> None:
        task = asyncio.create_task(run_probe(url, rate, timeout_s, results.append))
        if count is None:
            await asyncio.sleep(seconds)
        else:
            async with asyncio.timeout(10):
                while len(results) < count:  # noqa: ASYNC110  the probe's own list, polled
                    await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())
    return results


def test_answers_carry_release_instance_and_an_id_each(upstreams: Upstreams) -> None:
    """Every answer is recorded with its status, latency, release and instance, each request
    has an id of its own, and each one used a new connection."""
    results = probe_for(f"{upstreams.prod.url}/products/2", rate=40, seconds=0, count=20)
    assert {(r.status, r.error, r.release, r.instance) for r in results} == {
        (200, "", "2", "prod-1")}
    ids = [r.request_id for r in results]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("console-") for i in ids)
    seen = [req.headers["x-request-id"] for req in upstreams.prod.requests]
    assert set(ids) <= set(seen)
    # No connection carried two requests (one that had connected but not yet sent its
    # request when the probe stopped may count too).
    assert upstreams.prod.connections >= len(seen)
    assert {req.headers["connection"] for req in upstreams.prod.requests} == {"close"}


def test_open_loop_keeps_sending_while_nothing_answers(upstreams: Upstreams) -> None:
    """A shop that hangs does not hold the probe back: the next request goes out without
    waiting for the one before to answer or time out, so they overlap (at 20 a second with
    0.3 s of patience, about six at once), and each one times out on its own.

    Counted as overlap, not as wall-clock gaps between sends: this test shares the machine's
    cores with whatever else runs, and a stall of the test process would read as a gap; it
    cannot make requests that were not in flight at once look as if they were."""
    upstreams.prod.always = never_answers
    results = probe_for(f"{upstreams.prod.url}/products/2", rate=20, seconds=0,
                        timeout_s=0.3, count=10)
    assert len(results) >= 10
    assert {r.error for r in results} == {"timeout"}
    spans = [(r.sent, r.sent + r.latency_ms / 1000) for r in results]
    in_flight = max(sum(start <= t < end for start, end in spans) for t, _ in spans)
    assert in_flight >= 4


@pytest.mark.parametrize(("behaviour", "error", "status"), [
    (answers(503, b'{"error": {}}', b"Content-Type: application/json"), "status_503", 503),
    (answers(200, b"<html>maintenance</html>", b"Content-Type: text/html"), "bad_body", 200),
])
def test_failed_answers(upstreams: Upstreams, behaviour: object, error: str,
                        status: int) -> None:
    """A 5xx fails with its status; a 200 whose body is not JSON (a proxy's page) fails."""
    upstreams.prod.always = behaviour  # type: ignore[assignment]
    results = probe_for(f"{upstreams.prod.url}/products/2", rate=20, seconds=0.3)
    assert results
    assert {(r.error, r.status) for r in results} == {(error, status)}


def test_refused_connections_fail_as_connect() -> None:
    """Nothing listening: each request fails as a connect failure, without a status."""
    results = probe_for(f"{closed_port()}/products/2", rate=20, seconds=0.3)
    assert results
    assert {(r.error, r.status) for r in results} == {("connect", None)}


def test_engine_runs_follow_one_another_without_a_gap(upstreams: Upstreams,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's probe outlives one bounded engine run: the next run starts when the one
    before has sent its last request, not once its last answers are in, so a hanging shop
    leaves no hole in the schedule."""
    monkeypatch.setattr(probe, "RUN_S", 0.5)
    upstreams.prod.always = never_answers
    results = probe_for(f"{upstreams.prod.url}/products/2", rate=20, seconds=1.6,
                        timeout_s=0.3)
    runs = {r.request_id.rsplit("-", 1)[0] for r in results}
    assert len(runs) >= 3
    assert len({r.request_id for r in results}) == len(results)
    assert {r.error for r in results} == {"timeout"}
    # Each run after the first started while the run before still waited for its last
    # answers (overlap, not wall-clock gaps: a stall of the test process would read as one).
    spans: dict[str, list[tuple[float, float]]] = {}
    for r in results:
        spans.setdefault(r.request_id.rsplit("-", 1)[0], []).append(
            (r.sent, r.sent + r.latency_ms / 1000))
    ordered = sorted(spans.values(), key=min)
    for before, after in itertools.pairwise(ordered):
        assert min(start for start, _ in after) < max(end for _, end in before)


def test_a_url_the_probe_refuses_turns_its_source_off() -> None:
    """A probe URL that is not http(s) stops the probe, and the page is told why."""
    state = ConsoleState()
    settings = ConsoleSettings(instance="t", probe_url="ftp://shop/", probe_rate=5)
    asyncio.run(probe_source(settings, state, Changes()))
    assert state.sources["probe"]["state"] == "off"
    assert "not an http(s) URL" in state.sources["probe"]["message"]
    assert not state.requests
