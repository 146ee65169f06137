import pytest

from bench.measure import metric_samples, metric_sum
from bench.processes import parse_vmrss_mib

METRICS = (
    "# HELP shop_upstream_errors_total Failed upstream attempts\n"
    "# TYPE shop_upstream_errors_total counter\n"
    'shop_upstream_errors_total{upstream="prod",kind="connect"} 2.0\n'
    'shop_upstream_errors_total{upstream="coupon",kind="timeout"} 1.0\n'
    'shop_upstream_errors_created{upstream="prod",kind="connect"} 1.7e+09\n'
    "# HELP shop_degraded_responses_total Answers without coupons\n"
    "# TYPE shop_degraded_responses_total counter\n"
    "shop_degraded_responses_total 0.0\n"
)


def test_prometheus_samples() -> None:
    """Counters are summed over their label sets; the _created samples are not counted."""
    assert metric_sum(METRICS, "shop_upstream_errors_total") == 3.0
    assert metric_sum(METRICS, "shop_degraded_responses_total") == 0.0
    assert metric_samples(METRICS, "shop_upstream_errors_total") == {
        "kind=connect,upstream=prod": 2.0, "kind=timeout,upstream=coupon": 1.0}


def test_vmrss() -> None:
    """RSS comes from the VmRSS line of /proc/PID/status, in MiB."""
    status = "Name:\tpython\nVmPeak:\t  200000 kB\nVmRSS:\t   71680 kB\nThreads:\t1\n"
    assert parse_vmrss_mib(status) == 70.0
    with pytest.raises(ValueError, match="VmRSS"):
        parse_vmrss_mib("Name:\tzombie\n")
