from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Latency buckets (seconds) around what a shop request costs: sub-millisecond backends up to
# the front's 0.8 s upstream budget and the edge's per-try timeout (1 s), with room above.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class ServiceMetrics:
    """The request metrics every service exports, in a registry of its own per app.

    Labels are the route template (never the raw path) and the status class, so a flood of
    distinct bad paths cannot grow the series.
    """

    def __init__(self, service: str, release: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "shop_http_requests", "HTTP requests served",
            ["route", "method", "status_class"], registry=self.registry,
        )
        self.latency = Histogram(
            "shop_http_request_duration_seconds", "Time to serve a request",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.in_flight = Gauge(
            "shop_http_requests_in_flight", "Requests being served now", registry=self.registry,
        )
        self.draining = Gauge(
            "shop_draining", "1 while the instance drains before shutdown", registry=self.registry,
        )
        info = Gauge("shop_build_info", "Service and release", ["service", "release"],
                     registry=self.registry)
        info.labels(service=service, release=release).set(1)
        # The labelled children per (route, method, status), looked up once each: `labels`
        # costs more than the update. Bounded like the series: templates, 8 methods, statuses.
        self.children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        if method not in _METHODS:
            method = "other"
        key = (route, method, status)
        children = self.children.get(key)
        if children is None:
            children = self.children[key] = (
                self.requests.labels(route, method, _STATUS_CLASS.get(status // 100, "other")),
                self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_CLASS = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
