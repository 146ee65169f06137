import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge

LAST_LOOP_METRIC = "autoscaler_last_loop_timestamp_seconds"


class AutoscalerMetrics:
    """What the autoscaler sees and does, in a registry of its own (served on /metrics)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.current = Gauge(
            "autoscaler_current_replicas", "Replica count in the service spec",
            ["service"], registry=self.registry,
        )
        self.desired = Gauge(
            "autoscaler_desired_replicas", "Replica count the last decision asked for",
            ["service"], registry=self.registry,
        )
        self.observed = Gauge(
            "autoscaler_observed_rps", "Request rate per replica the last decision used",
            ["service"], registry=self.registry,
        )
        self.target = Gauge(
            "autoscaler_target_rps", "Target request rate per replica (from the labels)",
            ["service"], registry=self.registry,
        )
        self.decisions = Counter(
            "autoscaler_decisions", "Decisions, by outcome", ["service", "reason"],
            registry=self.registry,
        )
        self.scalings = Counter(
            "autoscaler_scalings", "Replica count changes made", ["service", "direction"],
            registry=self.registry,
        )
        self.errors = Counter(
            "autoscaler_errors", "Failed calls and unusable services, by kind", ["kind"],
            registry=self.registry,
        )
        self.prometheus_up = Gauge(
            "autoscaler_prometheus_up", "1 if the last rate query answered",
            registry=self.registry,
        )
        self.last_loop = Gauge(
            LAST_LOOP_METRIC, "Unix time the last loop finished", registry=self.registry,
        )

    def forget(self, service: str) -> None:
        """Remove a service's gauges once it is no longer autoscaled."""
        for gauge in (self.current, self.desired, self.observed, self.target):
            with contextlib.suppress(KeyError):  # never set for this service
                gauge.remove(service)
