from pydantic import Field, model_validator

from shop_common.settings import ServiceSettings


class FrontSettings(ServiceSettings):
    port: int = Field(default=8080, ge=1, le=65535)
    prod_api_url: str = Field(default="http://prod.api:3001", pattern=r"^https?://[^/]+$")
    coupon_api_url: str = Field(default="http://coupon.api:3002", pattern=r"^https?://[^/]+$")
    # Whether answers carry couponPrice, the price after the best coupon. The feature that
    # release 2 added: release 1 images are built with it off (docker/Dockerfile, COUPON_PRICE),
    # and the release string stays a label.
    coupon_price: bool = True
    # The latency budget (README, "Latency budget"). A try that has not answered after
    # upstream_hedge_delay_seconds gets a hedge beside it (another connection, most likely
    # another replica), within a budget of hedges (front_service.upstream.HedgeBudget); when
    # the budget is spent, the hedge waits until upstream_attempt_timeout_seconds. The slow try
    # keeps running either way: the first good answer wins. The backends answer in about a
    # millisecond, so a try this slow met a replica that is gone, hung or short of CPU.
    upstream_hedge_delay_seconds: float = Field(default=0.05, ge=0, le=30)
    upstream_attempt_timeout_seconds: float = Field(default=0.25, gt=0, le=30)
    # Whole budget for one upstream call, retries included: the front never waits longer.
    # The edge's per-try timeout (stacks/edge/haproxy.cfg) sits above it.
    upstream_timeout_seconds: float = Field(default=0.8, gt=0, le=30)
    # Connecting to one address; a dead node's address stays in DNS until swarm notices, and
    # a connection to it never completes: the next address is tried after this.
    upstream_connect_timeout_seconds: float = Field(default=0.2, gt=0, le=30)
    # Tries beyond the first, hedges included: after a failure that means "that replica went
    # away" (refused, reset, closed) a new try starts at once; a 5xx is tried again at most
    # once, a 4xx never.
    upstream_retries: int = Field(default=2, ge=0, le=5)
    # Idle pooled connections are closed after this, so new replicas soon get traffic; it is
    # below the backends' server keep-alive (5 s) so the front closes first.
    keepalive_expiry_seconds: float = Field(default=2.0, gt=0, le=60)
    # How old the addresses of prod.api / coupon.api may get before a refresh starts (beside
    # the requests, which are answered from memory meanwhile): replicas come and go, and new
    # connections should find them within a second or so.
    upstream_dns_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    # At start-up, before it listens (so before its healthcheck can pass), the front looks up
    # its upstreams and opens a connection to each, for at most this long: its first requests
    # then do not wait for DNS while dockerd is busy starting it.
    upstream_warmup_seconds: float = Field(default=2.0, ge=0, le=30)
    # Pool bound: at most this many connections per upstream, whatever the failures (some
    # kept alive, some for hedges and retries: front_service.upstream.pool_bounds).
    upstream_max_connections: int = Field(default=64, ge=2, le=1000)
    max_upstream_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _attempt_fits_the_budget(self) -> "FrontSettings":
        if self.upstream_attempt_timeout_seconds > self.upstream_timeout_seconds:
            raise ValueError("upstream_attempt_timeout_seconds must not exceed "
                             "upstream_timeout_seconds")
        return self
