from pydantic import Field

from shop_common.settings import ServiceSettings


class FrontSettings(ServiceSettings):
    port: int = Field(default=8080, ge=1, le=65535)
    prod_api_url: str = Field(default="http://prod.api:3001", pattern=r"^https?://[^/]+$")
    coupon_api_url: str = Field(default="http://coupon.api:3002", pattern=r"^https?://[^/]+$")
    # Whole budget for one upstream call, retries included: the front never hangs longer.
    upstream_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    upstream_connect_timeout_seconds: float = Field(default=0.5, gt=0, le=30)
    # Extra attempts on failures that mean "that replica went away" (refused, reset, closed).
    upstream_retries: int = Field(default=2, ge=0, le=5)
    # Idle pooled connections are closed after this, so new replicas soon get traffic; it is
    # below the backends' server keep-alive (5 s) so the front closes first.
    keepalive_expiry_seconds: float = Field(default=2.0, ge=0, le=60)
    # Pool bound: at most this many connections per upstream, whatever the failures.
    upstream_max_connections: int = Field(default=64, ge=1, le=1000)
    max_upstream_body_bytes: int = Field(default=1024 * 1024, ge=1024)
