import pytest

from bench.run import (
    WrkRun,
    median_run,
    metric_samples,
    metric_sum,
    parse_time_ms,
    parse_vmrss_mib,
    parse_wrk,
)

CLEAN = """\
Running 5s test @ http://127.0.0.1:41003/product-detail/2
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    49.12ms   12.01ms 198.10ms   80.00%
    Req/Sec   652.10     80.20   790.00     71.00%
  Latency Distribution
     50%   47.39ms
     75%   52.00ms
     90%   60.11ms
     99%  105.75ms
  3261 requests in 5.01s, 1.55MB read
Requests/sec:    651.90
Transfer/sec:    317.26KB
"""

WITH_ERRORS = """\
Running 2s test @ http://127.0.0.1:41004/
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.00us  100.00us   1.02s    99.00%
    Req/Sec     1.20k    50.00     1.30k    80.00%
  Latency Distribution
     50%  790.00us
     75%  830.00us
     90%  900.00us
     99%    1.50ms
  2400 requests in 2.00s, 300.00KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   1199.50
Transfer/sec:    150.00KB
"""


@pytest.mark.parametrize(("text", "ms"), [("790.00us", 0.79), ("3.41ms", 3.41), ("1.02s", 1020.0),
                                          ("2.00m", 120_000.0)])
def test_wrk_times_are_read_in_milliseconds(text: str, ms: float) -> None:
    """wrk prints times with their own unit; the bench works in milliseconds."""
    assert parse_time_ms(text) == pytest.approx(ms)


def test_clean_run() -> None:
    """Throughput, percentiles and max come out of a --latency run without errors."""
    run = parse_wrk(CLEAN)
    assert run.rps == pytest.approx(651.9)
    assert run.requests == 3261
    assert run.seconds == pytest.approx(5.01)
    assert (run.p50_ms, run.p90_ms, run.p99_ms) == pytest.approx((47.39, 60.11, 105.75))
    assert run.max_ms == pytest.approx(198.1)
    assert run.errors == 0


def test_errors_are_counted() -> None:
    """Socket errors and non-2xx/3xx answers both count as errors."""
    run = parse_wrk(WITH_ERRORS)
    assert run.non_2xx_3xx == 7
    assert run.socket_errors == {"connect": 0, "read": 2, "write": 0, "timeout": 1}
    assert run.errors == 10
    assert run.p50_ms == pytest.approx(0.79)


def test_output_without_latency_figures_is_refused() -> None:
    """A run without --latency (or a wrk that failed) is an error, not zeros."""
    with pytest.raises(ValueError, match="--latency"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_median_takes_each_figure_on_its_own() -> None:
    """Medians over rounds are per figure; errors and requests are summed."""
    runs = [WrkRun(100, 5, rps, p50, 0, 0, p99, 0, non_2xx_3xx=errors)
            for rps, p50, p99, errors in [(10, 1, 9, 0), (30, 3, 7, 1), (20, 2, 8, 0)]]
    median = median_run(runs)
    assert (median["rps"], median["p50_ms"], median["p99_ms"]) == (20, 2, 8)
    assert median["errors"] == 1
    assert median["requests"] == 300


def test_vmrss() -> None:
    """RSS comes from the VmRSS line of /proc/PID/status, in MiB."""
    status = "Name:\tpython\nVmPeak:\t  200000 kB\nVmRSS:\t   71680 kB\nThreads:\t1\n"
    assert parse_vmrss_mib(status) == 70.0
    with pytest.raises(ValueError, match="VmRSS"):
        parse_vmrss_mib("Name:\tzombie\n")


def test_prometheus_samples() -> None:
    """Counters are summed over their label sets; other metrics with a common prefix are not."""
    text = (
        "# HELP shop_upstream_errors_total Failed upstream attempts\n"
        'shop_upstream_errors_total{upstream="prod",kind="connect"} 2.0\n'
        'shop_upstream_errors_total{upstream="coupon",kind="timeout"} 1.0\n'
        'shop_upstream_errors_created{upstream="prod",kind="connect"} 1.7e+09\n'
        "shop_degraded_responses_total 0.0\n"
    )
    assert metric_sum(text, "shop_upstream_errors_total") == 3.0
    assert metric_sum(text, "shop_degraded_responses_total") == 0.0
    assert metric_samples(text, "shop_upstream_errors_total") == {
        '{upstream="prod",kind="connect"}': 2.0, '{upstream="coupon",kind="timeout"}': 1.0}
