import shutil
import subprocess

import pytest

from bench.wrk import WrkRun, median_run, run_wrk
from tests.support.steps import IN_CI

DONE = {
    "requests": 3261, "duration_us": 5_010_000, "bytes": 1_625_000,
    "errors": {"connect": 0, "read": 2, "write": 0, "status": 7, "timeout": 1},
    "latency_us": {"p50": 47_390, "p75": 52_000, "p90": 60_110, "p99": 105_750, "max": 198_100},
}


def test_figures_of_the_done_hook_are_read_in_milliseconds() -> None:
    """The JSON of bench/wrk_json.lua (microseconds) becomes a run in ms and requests/s."""
    run = WrkRun.from_done(DONE)

    assert run.requests == 3261
    assert run.seconds == pytest.approx(5.01)
    assert run.rps == pytest.approx(3261 / 5.01)
    assert (run.p50_ms, run.p90_ms, run.p99_ms) == pytest.approx((47.39, 60.11, 105.75))
    assert run.max_ms == pytest.approx(198.1)


def test_errors_are_counted() -> None:
    """Socket errors and non-2xx/3xx answers both count as errors."""
    run = WrkRun.from_done(DONE)

    assert run.non_2xx_3xx == 7
    assert run.socket_errors == {"connect": 0, "read": 2, "write": 0, "timeout": 1}
    assert run.errors == 10


def test_a_run_without_figures_is_an_error() -> None:
    """A wrk that wrote nothing (it failed before its done() hook) is an error, not zeros."""
    def runner(argv: list[str], timeout: float, env: dict[str, str]) -> str:
        return ""

    with pytest.raises(RuntimeError, match="no figures"):
        run_wrk(runner, "http://127.0.0.1:1/", 1, 1)


def test_median_takes_each_figure_on_its_own() -> None:
    """Medians over rounds are per figure; errors and requests are summed."""
    runs = [WrkRun(100, 5, rps, p50, 0, 0, p99, 0, non_2xx_3xx=errors)
            for rps, p50, p99, errors in [(10, 1, 9, 0), (30, 3, 7, 1), (20, 2, 8, 0)]]
    median = median_run(runs)
    assert (median["rps"], median["p50_ms"], median["p99_ms"]) == (20, 2, 8)
    assert median["errors"] == 1
    assert median["requests"] == 300


def test_real_wrk_writes_its_figures_through_the_done_hook(server) -> None:
    """Debian's wrk, for one second against a real server on 127.0.0.1, hands its figures to
    the bench through bench/wrk_json.lua."""
    if shutil.which("wrk") is None:
        if IN_CI:
            pytest.fail("wrk is missing (apt-get install wrk); CI=true fails instead of skipping")
        pytest.skip("needs wrk (apt-get install wrk)")
    base, _ = server

    def runner(argv: list[str], timeout: float, env: dict[str, str]) -> str:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                              check=True).stdout

    run = run_wrk(runner, base + "/", 2, 1)

    assert run.requests > 0
    assert run.errors == 0
    assert 0.5 < run.seconds < 3
    assert 0 < run.p50_ms <= run.p99_ms <= run.max_ms
