from prometheus_client import Gauge


class Lifecycle:
    """Whether this instance is serving normally or draining before it stops."""

    def __init__(self, draining_gauge: Gauge | None = None) -> None:
        self.draining = False
        self.draining_gauge = draining_gauge

    def start_draining(self) -> None:
        self.draining = True
        if self.draining_gauge is not None:
            self.draining_gauge.set(1)
