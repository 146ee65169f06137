import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx

from shop_tools.probe.blocking import BlockingProbe
from shop_tools.probe.cli import main, parse_args
from shop_tools.probe.display import second_line, summary_text
from shop_tools.probe.engine import Probe
from shop_tools.probe.report import ProbeReport, RequestResult, SecondSummary, percentile
from tests.support.steps import wait_for

# Most answers come from respx, which stands in for the network under httpx; a real uvicorn
# serves the tests about connections (one per request) and the refused and reset ones use real
# sockets, since how those surface depends on the socket, not on httpx.
TARGET = "http://127.0.0.1:8080/product-detail/2"


def run_probe(url: str, rate: float, duration: float, **options: Any) -> ProbeReport:
    """The whole schedule through the blocking wrapper, as the tests and the CLIs run it."""
    return BlockingProbe.start(url, rate, duration, **options).wait()


def shop_answer(status: int = 200, release: str = "1", body: bytes = b'{"status":"OK"}',
                content_type: str = "application/json") -> httpx.Response:
    return httpx.Response(status, content=body, headers={
        "content-type": content_type, "x-release": release, "x-instance": "mocked"})


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound once to pick it, then closed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def resetting_port() -> Iterator[int]:
    """A loopback port whose server reads each request and resets the connection unanswered."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            # Reading first makes the reset hit a sent request, not the connect itself.
            conn.settimeout(2)
            conn.recv(65536)
            # Linger 0 makes close() send RST instead of FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


def test_counts_every_scheduled_request_and_reads_release_headers(server):
    """An open-loop run sends exactly rate*duration requests, all ok, each on a new connection."""
    base, app = server
    seconds: list[SecondSummary] = []

    report = run_probe(base + "/", rate=40, duration=0.5, on_second=seconds.append)

    assert report.total == report.ok == 20
    assert report.failures == {}
    assert report.failed == 0
    assert report.releases == {"1": 20}
    assert report.instances == {"tiny": 20}
    assert len(set(app.client_ports)) == 20  # no keep-alive: one connection per request
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


@respx.mock
def test_status_errors_are_failures_by_code():
    """A 500 answer counts as failure kind status_500, with the probe's request id kept."""
    respx.get(TARGET).mock(return_value=shop_answer(500, body=b'{"error": {}}'))

    report = run_probe(TARGET, rate=20, duration=0.25)

    assert report.total == 5
    assert report.ok == 0
    assert report.failures == {"status_500": 5}
    assert report.failed == 5
    assert report.releases == {"1": 5}  # the failed answers still say which release sent them
    assert report.failure_samples[0]["request_id"].startswith("probe-")


@respx.mock
def test_answers_and_failures_carry_when_they_were_sent():
    """Each answered request keeps its send time and latency, so a percentile can be taken
    over any window of the run; failure samples keep when they were sent and ended."""
    respx.get(TARGET).mock(return_value=shop_answer())
    before = time.monotonic()

    report = run_probe(TARGET, rate=20, duration=0.5)

    assert before <= report.started_at <= time.monotonic()
    assert len(report.answers) == report.total == 10
    sent = [at for at, _ in report.answers]
    assert all(0 <= at < 0.6 for at in sent)
    assert report.latency_percentile(0.99, 0, 1) == max(ms for _, ms in report.answers)
    first_half = [ms for at, ms in report.answers if at < 0.25]
    assert report.latency_percentile(1.0, 0, 0.25) == max(first_half)
    assert report.latency_percentile(0.5, 5, 6) is None

    respx.get(TARGET).mock(return_value=shop_answer(500, body=b'{"error": {}}'))
    failed = run_probe(TARGET, rate=20, duration=0.1)
    sample = failed.failure_samples[0]
    assert 0 <= sample["sent_at"] <= sample["ended_at"] < 1


def test_refused_connections_are_connect_failures(closed_port):
    """Nothing listening on the port: every request is a 'connect' failure."""
    report = run_probe(f"http://127.0.0.1:{closed_port}/", rate=20, duration=0.25)

    assert report.total == 5
    assert report.failures == {"connect": 5}
    assert not report.releases
    assert report.latencies["p50"] is None


@respx.mock
def test_slow_answers_are_timeouts():
    """An answer slower than the timeout is a 'timeout' failure and does not stretch the run."""
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(1.0)
        return shop_answer()

    respx.get(TARGET).mock(side_effect=slow)

    report = run_probe(TARGET, rate=10, duration=0.2, timeout=0.2)

    assert report.failures == {"timeout": 2}
    assert report.elapsed < 0.9


@respx.mock
def test_timeouts_raised_by_httpx_are_timeouts():
    """httpx's own timeouts (connect, read) count as 'timeout' too, not as resets."""
    respx.get(TARGET).mock(side_effect=[httpx.ConnectTimeout("connect"),
                                        httpx.ReadTimeout("read")])

    report = run_probe(TARGET, rate=10, duration=0.2)

    assert report.failures == {"timeout": 2}


@pytest.mark.parametrize(("body", "content_type"), [
    (b"<html>502 Bad Gateway</html>", "text/html"),
    (b'{"prod": {"prodNo": 2', "application/json"),
    (b"", "application/json"),
    (b"\xff\xfe", "application/json"),
], ids=["proxy page", "cut off", "empty", "not UTF-8"])
@respx.mock
def test_success_status_with_a_wrong_body_is_a_failure(body: bytes, content_type: str):
    """A 2xx whose body is not JSON (a proxy's page, a cut-off answer) is a 'bad_body'
    failure, not a success."""
    respx.get(TARGET).mock(return_value=shop_answer(200, body=body, content_type=content_type))

    report = run_probe(TARGET, rate=20, duration=0.1)

    assert report.failures == {"bad_body": 2}
    assert report.ok == 0
    assert report.failure_samples[0]["request_id"].startswith("probe-")


def test_reset_connections_are_reset_failures(resetting_port):
    """A server that accepts and resets the connection gives 'reset' failures."""
    report = run_probe(f"http://127.0.0.1:{resetting_port}/", rate=20, duration=0.2)

    assert report.total == 4
    assert report.failures == {"reset": 4}


@respx.mock
def test_background_probe_sees_release_switch_and_stops_early():
    """A BlockingProbe runs while the release changes; stop_and_wait ends it early with both
    seen."""
    release = ["1"]
    respx.get(TARGET).mock(side_effect=lambda request: shop_answer(release=release[0]))
    handle = BlockingProbe.start(TARGET, rate=50, duration=10)
    wait_for("5 answers", lambda: handle.completed >= 5, timeout=5, interval=0.01)
    release[0] = "2"
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
    base, _ = server
    probe = Probe(base + "/", rate=10, duration=10)
    probe.stop()

    report = asyncio.run(probe.run())

    assert report.stopped_early
    assert report.total == 0
    assert report.elapsed < 1


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


@respx.mock
def test_cli_exit_status_and_json_report(tmp_path, capsys):
    """main() exits 0 when all succeed and 1 when any fail, and writes the JSON report."""
    route = respx.get(TARGET).mock(return_value=shop_answer())
    out = tmp_path / "probe.json"

    assert main([TARGET, "--rate", "20", "--duration", "0.2", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["total"] == 4
    assert data["failed"] == 0
    assert data["releases"] == {"1": 4}
    assert data["release_windows"] == [{"start": 0, "end": 5, "releases": {"1": 4}}]

    route.mock(return_value=shop_answer(500))
    assert main([TARGET, "--rate", "20", "--duration", "0.2", "--quiet"]) == 1
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
