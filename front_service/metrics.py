from prometheus_client import CollectorRegistry, Counter, Histogram

from shop_common.metrics import LATENCY_BUCKETS


class FrontMetrics:
    """The front's own metrics: how its upstream calls go, and when it degrades."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "shop_upstream_request_duration_seconds", "Time of one upstream try",
            ["upstream"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.errors = Counter(
            "shop_upstream_errors", "Failed upstream attempts and calls by kind",
            ["upstream", "kind"], registry=registry,
        )
        self.retries = Counter(
            "shop_upstream_retries", "Upstream tries started after a failed one",
            ["upstream"], registry=registry,
        )
        self.hedges = Counter(
            "shop_upstream_hedges", "Upstream tries started beside a slower one",
            ["upstream"], registry=registry,
        )
        self.degraded = Counter(
            "shop_degraded_responses", "Answers served without part of their data",
            ["missing"], registry=registry,
        )
        self._latency_children: dict[str, Histogram] = {}

    def upstream_latency(self, upstream: str) -> Histogram:
        """The latency child of one upstream (two of them), looked up once."""
        child = self._latency_children.get(upstream)
        if child is None:
            child = self._latency_children[upstream] = self.latency.labels(upstream)
        return child
