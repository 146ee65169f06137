"""The request rate of every scraped swarm service, from Prometheus' HTTP API."""

from __future__ import annotations

import math
from typing import Any

import httpx

# The label Prometheus' config gives every target found as tasks.<service> (relabelled from
# __meta_dns_name; see observability/prometheus.yml): the swarm service name, e.g. front_app.
SERVICE_LABEL = "swarm_service"

# /health and /metrics are not counted by the services, so this is their real traffic.
RATE_QUERY = "sum by (" + SERVICE_LABEL + ") (rate(shop_http_requests_total[{window}s]))"


class MetricsUnavailable(Exception):
    """Prometheus did not answer, or answered something other than a vector of rates."""


class PrometheusRates:
    """Reads request rates per swarm service with one instant query."""

    def __init__(self, client: httpx.Client, window_s: int) -> None:
        self._client = client
        self.query = RATE_QUERY.format(window=window_s)

    def request_rates(self) -> dict[str, float]:
        """Requests per second over the window, summed over each service's replicas.

        A service without series (not scraped yet, every replica down) is absent; one whose
        rate is not a number is absent too: the caller treats both as "no data".
        """
        try:
            response = self._client.get("/api/v1/query", params={"query": self.query})
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise MetricsUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return parse_vector(body)


def parse_vector(body: Any) -> dict[str, float]:
    """{service: value} from an instant-query answer; MetricsUnavailable if malformed."""
    try:
        if body["status"] != "success" or body["data"]["resultType"] != "vector":
            raise MetricsUnavailable(f"unexpected answer: {str(body)[:200]}")
        rates: dict[str, float] = {}
        for sample in body["data"]["result"]:
            service = sample["metric"].get(SERVICE_LABEL)
            value = float(sample["value"][1])
            if service and math.isfinite(value) and value >= 0:
                rates[service] = value
        return rates
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise MetricsUnavailable(f"malformed answer ({type(exc).__name__}): {exc}") from exc
