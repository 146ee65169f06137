"""shop-probe's engine, report, blocking wrapper and CLI, over real sockets on 127.0.0.1: the
tiny uvicorn app (the server fixture) answers as each test tells it, and the refused, reset,
stalled and never-connecting cases are real sockets too (tests/support/faults.py), since how
those surface depends on the socket, not on the client.

One module for the package's modules: most tests run the engine through the blocking
wrapper and read the report, the way the tools use them.
"""

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal

from shop_tools.probe.blocking import BlockingProbe
from shop_tools.probe.cli import main, parse_args
from shop_tools.probe.display import second_line, summary_text
from shop_tools.probe.engine import Probe
from shop_tools.probe.report import ProbeReport, RequestResult, SecondSummary, percentile
from tests.support.faults import (
    Behaviour,
    RawServer,
    black_hole,
    closed_port,
    resets_after_request,
    stalls_mid_body,
)
from tests.support.steps import wait_for


def run_probe(url: str, rate: float, duration: float, **options: Any) -> ProbeReport:
    """The whole schedule through the blocking wrapper, as the tests and the CLIs run it."""
    return BlockingProbe.start(url, rate, duration, **options).wait()


@contextlib.contextmanager
def raw_server(behaviour: Behaviour) -> Iterator[str]:
    """The URL of a RawServer running `behaviour` on every connection, in a loop of its own."""
    with start_blocking_portal("asyncio") as portal, \
            portal.wrap_async_context_manager(RawServer(behaviour)) as raw:
        yield raw.url


def test_counts_every_scheduled_request_and_reads_release_headers(server):
    """An open-loop run sends exactly rate*duration requests, all ok, each on a new connection
    (asking the server to close it) with its own X-Request-ID and User-Agent shop-probe."""
    base, app = server
    seconds: list[SecondSummary] = []
    results: list[RequestResult] = []

    report = run_probe(base + "/", rate=40, duration=0.5, on_second=seconds.append,
                       on_request=results.append)

    assert report.total == report.ok == 20
    assert report.failures == {}
    assert report.failed == 0
    assert report.releases == {"1": 20}
    assert report.instances == {"tiny": 20}
    assert len(set(app.client_ports)) == 20  # no keep-alive: one connection per request
    assert {r["connection"] for r in app.requests} == {"close"}
    assert {r["user-agent"] for r in app.requests} == {"shop-probe"}
    assert sorted(r["x-request-id"] for r in app.requests) == sorted(
        r.request_id for r in results)
    assert not any("cookie" in r for r in app.requests)
    assert report.latencies["p50"] is not None
    assert report.latencies["p50"] <= report.latencies["p99"] <= report.latencies["max"]
    assert seconds
    assert "releases 1=" in second_line(seconds[-1]).plain


def test_run_is_bounded_and_reports_each_second_once(server):
    """Requests stay within rate*duration (+1), the run ends near its duration, each second
    is reported once."""
    base, _ = server
    seconds: list[SecondSummary] = []

    report = run_probe(base + "/", rate=25, duration=1.2, timeout=1.0, on_second=seconds.append)

    assert report.total <= 25 * 1.2 + 1
    assert report.elapsed < 1.2 + 1.0 + 0.5
    assert [s.timeline_entry() for s in seconds] == report.timeline
    assert len(report.timeline) == 2
    assert [entry["second"] for entry in report.timeline] == [0, 1]
    assert sum(entry["sent"] for entry in report.timeline) == report.total
    assert sum(entry["completed"] for entry in report.timeline) == report.total


def test_status_errors_are_failures_by_code(server):
    """A 500 answer counts as failure kind status_500, with the probe's request id and the
    first 200 characters of the answer kept."""
    base, app = server
    app.status, app.body = 500, b'{"error": {"message": "' + b"x" * 300 + b'"}}'

    report = run_probe(base + "/", rate=20, duration=0.25)

    assert report.total == 5
    assert report.ok == 0
    assert report.failures == {"status_500": 5}
    assert report.failed == 5
    assert report.releases == {"1": 5}  # the failed answers still say which release sent them
    sample = report.failure_samples[0]
    assert sample["request_id"].startswith("probe-")
    assert sample["kind"] == "status_500"
    assert sample["detail"] == app.body.decode()[:200]


def test_answers_and_failures_carry_when_they_were_sent(server):
    """Each answered request keeps its send time and latency, so a percentile can be taken
    over any window of the run; failure samples keep when they were sent and ended."""
    base, app = server
    before = time.monotonic()

    report = run_probe(base + "/", rate=20, duration=0.5)

    assert before <= report.started_at <= time.monotonic()
    assert len(report.answers) == report.total == 10
    sent = [at for at, _ in report.answers]
    assert all(0 <= at < 0.6 for at in sent)
    assert report.latency_percentile(0.99, 0, 1) == max(ms for _, ms in report.answers)
    first_half = [ms for at, ms in report.answers if at < 0.25]
    assert report.latency_percentile(1.0, 0, 0.25) == max(first_half)
    assert report.latency_percentile(0.5, 5, 6) is None

    app.status = 500
    failed = run_probe(base + "/", rate=20, duration=0.1)
    sample = failed.failure_samples[0]
    assert 0 <= sample["sent_at"] <= sample["ended_at"] < 1


def test_refused_connections_are_connect_failures():
    """Nothing listening on the port: every request is a 'connect' failure."""
    report = run_probe(closed_port() + "/", rate=20, duration=0.25)

    assert report.total == 5
    assert report.failures == {"connect": 5}
    assert not report.releases
    assert report.latencies["p50"] is None


def test_slow_answers_are_timeouts(server):
    """An answer slower than the timeout is a 'timeout' failure when the timeout has passed,
    not later (not rounded up to a whole second), and does not stretch the run."""
    base, app = server
    app.delay = 2.0
    results: list[RequestResult] = []

    # Ten requests 0.1 s apart: a timeout rounded up to the next whole second would keep at
    # least one of them waiting 0.9 s or more.
    report = run_probe(base + "/", rate=10, duration=1.0, timeout=0.2, on_request=results.append)

    assert report.failures == {"timeout": 10}
    assert all(0.2 <= r.ended_at - r.sent_at < 0.7 for r in results)
    assert report.elapsed < 1.0 + 0.7


def test_a_connect_that_never_completes_is_a_timeout():
    """A host that answers no SYN (a dead node) gives 'timeout' failures within the timeout,
    not 'connect' ones: the timeout covers the connect too."""
    with black_hole() as url:
        report = run_probe(url + "/", rate=10, duration=0.2, timeout=0.3)

    assert report.failures == {"timeout": 2}
    assert report.elapsed < 1.0


def test_an_answer_that_stalls_mid_body_is_a_timeout():
    """A 200 whose body stops coming is a 'timeout' once the timeout has passed: it covers the
    whole call, the body included, not just the wait for the answer's head."""
    with raw_server(stalls_mid_body) as url:
        report = run_probe(url + "/", rate=10, duration=0.2, timeout=0.3)

    assert report.failures == {"timeout": 2}
    assert report.elapsed < 1.0


@pytest.mark.parametrize(("body", "content_type"), [
    (b"<html>502 Bad Gateway</html>", "text/html"),
    (b'{"prod": {"prodNo": 2', "application/json"),
    (b"", "application/json"),
    (b"\xff\xfe", "application/json"),
], ids=["proxy page", "cut off", "empty", "not UTF-8"])
def test_success_status_with_a_wrong_body_is_a_failure(server, body: bytes, content_type: str):
    """A 2xx whose body is not JSON (a proxy's page, a cut-off answer) is a 'bad_body'
    failure, not a success."""
    base, app = server
    app.body, app.content_type = body, content_type

    report = run_probe(base + "/", rate=20, duration=0.1)

    assert report.failures == {"bad_body": 2}
    assert report.ok == 0
    assert report.failure_samples[0]["request_id"].startswith("probe-")


def test_degraded_answers_are_successes_counted_apart(server):
    """A 2xx flagged X-Degraded (the front served without coupons) succeeded, and is counted
    as degraded."""
    base, app = server
    app.degraded = True

    report = run_probe(base + "/", rate=20, duration=0.2)

    assert report.ok == report.degraded == 4
    assert report.failed == 0


def test_reset_connections_are_reset_failures():
    """A server that reads each request and resets the connection gives 'reset' failures."""
    with raw_server(resets_after_request) as url:
        report = run_probe(url + "/", rate=20, duration=0.2)

    assert report.total == 4
    assert report.failures == {"reset": 4}


def test_background_probe_sees_release_switch_and_stops_early(server):
    """A BlockingProbe runs while the release changes; stop_and_wait ends it early with both
    seen."""
    base, app = server
    handle = BlockingProbe.start(base + "/", rate=50, duration=10)
    wait_for("5 answers", lambda: handle.completed >= 5, timeout=5, interval=0.01)
    app.release = "2"
    switched_at = handle.completed
    wait_for("5 more", lambda: handle.completed >= switched_at + 5, timeout=5, interval=0.01)

    report = handle.stop_and_wait()

    assert report.stopped_early
    assert report.elapsed < 5
    assert report.failed == 0
    assert set(report.releases) == {"1", "2"}
    spans = report.release_spans()
    assert spans["1"]["first_second"] <= spans["2"]["first_second"]
    assert sum(span["count"] for span in spans.values()) == report.total
    assert not handle.running


def test_a_probe_stopped_before_it_runs_sends_nothing(server):
    """stop() before run(): the run ends at once, stopped early, nothing sent."""
    base, app = server
    probe = Probe(base + "/", rate=10, duration=10)
    probe.stop()

    report = asyncio.run(probe.run())

    assert report.stopped_early
    assert report.total == 0
    assert report.elapsed < 1
    assert not app.requests


def test_a_probe_that_sent_its_whole_schedule_was_not_stopped_early(server):
    """stop() once every request has been sent, while the last ones are still in flight, is
    not an early stop: the report says the schedule ran to its end."""
    base, app = server
    app.delay = 0.5
    handle = BlockingProbe.start(base + "/", rate=20, duration=0.1)
    wait_for("both requests at the server", lambda: len(app.requests) == 2, timeout=5,
             interval=0.01)

    report = handle.stop_and_wait()

    assert not report.stopped_early
    assert report.total == report.ok == 2


def test_the_engine_runs_in_a_callers_event_loop_and_reports_each_request(server):
    """Probe.run() in an event loop the caller owns (as in an app's lifespan): each finished
    request reaches on_request with its status, latency, headers and id, and stop() from
    that loop ends the run early."""
    base, _ = server
    results: list[RequestResult] = []

    reports: list[ProbeReport] = []

    async def owner() -> None:
        four_done = anyio.Event()

        def finished(result: RequestResult) -> None:
            results.append(result)
            if len(results) >= 4:
                four_done.set()

        probe = Probe(base + "/", rate=20, duration=30, on_request=finished)

        async def run() -> None:
            reports.append(await probe.run())

        async with anyio.create_task_group() as group:
            group.start_soon(run)
            with anyio.fail_after(5):
                await four_done.wait()
            probe.stop()

    asyncio.run(owner())

    (report,) = reports
    assert report.stopped_early
    assert report.total == len(results) >= 4
    assert report.total < 20 * 30
    first = results[0]
    assert first.ok
    assert (first.status, first.release, first.instance) == (200, "1", "tiny")
    assert first.request_id.startswith("probe-")
    assert 0 < first.latency_ms < 2000
    assert len({r.request_id for r in results}) == len(results)


def test_a_named_probe_says_who_asks(server):
    """A probe named for its user (the console) sends request ids and a User-Agent with that
    name instead of the probe's."""
    base, app = server
    results: list[RequestResult] = []

    run_probe(base + "/", rate=20, duration=0.1, on_request=results.append)
    asyncio.run(Probe(base + "/", rate=20, duration=0.1, name="console",
                      on_request=results.append).run())

    assert [r.request_id.split("-")[0] for r in results] == ["probe"] * 2 + ["console"] * 2
    assert [r["user-agent"] for r in app.requests] == ["shop-probe"] * 2 + ["shop-console"] * 2


def test_a_client_that_falls_behind_shows_as_schedule_lag(server):
    """The report's schedule lag is how late requests left against start + n/rate: a client
    whose loop is held up for 0.3 s sends the requests due meanwhile at least 0.25 s late, and
    the lag says so while every request still succeeds."""
    base, _ = server
    held: list[bool] = []

    def hold_the_loop_once(result: RequestResult) -> None:
        if not held:
            held.append(True)
            time.sleep(0.3)  # a client short of CPU: nothing else runs in its loop meanwhile

    # Requests 25 ms apart: the first one due after the hold began waits at least 0.275 s.
    report = run_probe(base + "/", rate=40, duration=1.5, on_request=hold_the_loop_once)

    assert report.failed == 0
    assert report.schedule_lag["max"] >= 250
    assert 0 <= report.schedule_lag["p99"] <= report.schedule_lag["max"]
    assert report.to_dict()["schedule_lag_ms"] == report.schedule_lag
    assert "schedule lag ms" in summary_text(report)


def test_cli_exit_status_and_json_report(server, tmp_path, capsys):
    """main() exits 0 when all succeed and 1 when any fail, and writes the JSON report."""
    base, app = server
    out = tmp_path / "probe.json"

    assert main([base + "/", "--rate", "20", "--duration", "0.2", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["total"] == 4
    assert data["failed"] == 0
    assert data["releases"] == {"1": 4}
    assert data["release_windows"] == [{"start": 0, "end": 5, "releases": {"1": 4}}]
    assert set(data["schedule_lag_ms"]) == {"p99", "max"}

    app.status = 500
    assert main([base + "/", "--rate", "20", "--duration", "0.2", "--quiet"]) == 1
    assert "4  status_500=4" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["http://example.com/"],
        ["http://10.0.0.1:8080/"],
        ["ftp://127.0.0.1/"],
        ["http://127.0.0.1/", "--rate", "0"],
        ["http://127.0.0.1/", "--duration", "-1"],
        ["http://127.0.0.1/", "--rate", "fast"],
    ],
)
def test_cli_usage_errors_exit_2(argv, capsys):
    """Remote targets without --allow-remote and bad numbers are usage errors (exit 2)."""
    with pytest.raises(SystemExit) as exc_info:
        main(argv)

    assert exc_info.value.code == 2
    assert "shop-probe: error" in capsys.readouterr().err


def test_allow_remote_lifts_the_loopback_rule():
    """--allow-remote accepts a remote target (checked at parse time only; nothing is sent)."""
    args = parse_args(["http://shop.example.com/product-detail/2", "--allow-remote"])

    assert args.allow_remote
    with pytest.raises(ValueError, match="refusing"):
        run_probe("http://shop.example.com/", rate=1, duration=1)


def test_percentile_is_nearest_rank():
    """p50/p90/p99 use the nearest-rank method; no samples gives None."""
    values = [float(v) for v in range(1, 101)]

    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.9) == 90.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


def test_release_counts_over_time_and_summary():
    """Release spans and 5 s windows come from the per-second timeline and appear in the summary."""
    report = ProbeReport(url="http://127.0.0.1/", rate=2, duration=7)
    report.timeline = [
        {"second": s, "releases": releases}
        for s, releases in enumerate(
            [{"1": 2}, {"1": 2}, {"1": 2}, {"1": 1, "2": 1}, {"2": 2}, {"2": 2}, {"2": 2}]
        )
    ]
    report.total = report.ok = 14
    report.releases.update({"1": 7, "2": 7})
    report.elapsed = 7.0

    assert report.release_spans() == {
        "1": {"first_second": 0, "last_second": 3, "count": 7},
        "2": {"first_second": 3, "last_second": 6, "count": 7},
    }
    assert report.release_windows() == [
        {"start": 0, "end": 5, "releases": {"1": 7, "2": 3}},
        {"start": 5, "end": 10, "releases": {"2": 4}},
    ]
    summary = summary_text(report)
    assert "1=7 (seen 0s-3s)" in summary
    assert "14 in 7.0 s at 2/s" in summary
    assert "\033[" not in summary


def test_second_hook_gets_each_second_with_running_totals(server):
    """on_second is called once per second with that second's figures and the totals so far."""
    base, _ = server
    entries: list[SecondSummary] = []

    report = run_probe(base + "/", rate=20, duration=1.5, on_second=entries.append)

    assert [entry.second for entry in entries] == [0, 1]
    assert sum(entry.sent for entry in entries) == report.total == 30
    assert entries[-1].total == report.total
    assert entries[-1].total_failed == 0
    assert entries[0].p99_ms is not None
    assert entries[0].total <= entries[-1].total


def test_a_blocking_probe_stops_when_its_block_ends(server):
    """`with BlockingProbe.start(...)`: leaving the block stops the probe early, and the report
    can still be had afterwards."""
    base, _ = server

    with BlockingProbe.start(base + "/", rate=20, duration=30) as probe:
        wait_for("2 answers", lambda: probe.completed >= 2, timeout=5, interval=0.01)

    assert not probe.running
    report = probe.stop_and_wait()
    assert report.stopped_early
    assert 2 <= report.total < 20 * 30
