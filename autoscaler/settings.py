from pydantic import AnyHttpUrl, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AutoscalerSettings(BaseSettings):
    """The autoscaler's own settings, from AUTOSCALE_* environment variables (any case).

    The per-service bounds and targets are not here: they are labels on each service.
    """

    model_config = SettingsConfigDict(env_prefix="AUTOSCALE_", case_sensitive=False)

    prometheus_url: AnyHttpUrl = AnyHttpUrl("http://prometheus:9090")
    interval_s: float = Field(default=5.0, gt=0, le=300)
    down_stabilization_s: float = Field(default=60.0, ge=0, le=3600)
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    # The rate() window: at least 3 scrapes (5 s apart in the shop's Prometheus config), so
    # one late scrape still leaves two samples; longer windows smooth more and react later.
    rate_window_s: int = Field(default=20, ge=10, le=600)
    query_timeout_s: float = Field(default=2.0, gt=0, le=30)
    metrics_port: int = Field(default=9464, ge=1, le=65535)
    metrics_host: str = "0.0.0.0"
