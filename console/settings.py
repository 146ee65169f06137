from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shop_common.settings import ServiceSettings

ENV_PREFIX = "CONSOLE_"


class ConsoleSettings(ServiceSettings):
    """The console's settings: CONSOLE_<FIELD> (any case), else the default.

    The fields every shop app has (host, port, instance, log level...) come from
    ServiceSettings, read with this prefix too. Empty strings switch a source off.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore",
                                      validate_default=True)

    port: int = Field(default=8090, ge=1, le=65535)
    # One task, no replica to hand over to: nothing to drain.
    drain_seconds: float = Field(default=0.0, ge=0, le=60)
    # The Docker Engine API, DOCKER_HOST style. In the stack: the filtering proxy.
    docker_host: str = "unix:///var/run/docker.sock"
    # Per call (list calls; streams have their own bounds).
    docker_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # Swarm has no task events: tasks are listed again this often while the swarm changes
    # (an update runs, a task starts or drains, an event came in the last few seconds) ...
    refresh_s: float = Field(default=0.5, gt=0, le=10)
    # ... and this often when it is quiet (a task that fails on another node without any
    # event the manager sees is noticed within this).
    idle_refresh_s: float = Field(default=5.0, gt=0, le=60)
    # The probe: requests per second through the shop's entry point; 0 stops it.
    probe_url: str = "http://127.0.0.1:8080/product-detail/2"
    probe_rate: float = Field(default=5.0, ge=0, le=50)
    probe_timeout_s: float = Field(default=2.0, gt=0, le=30)
    # Prometheus' HTTP API (the one `make autoscale` deploys); empty: not asked.
    prometheus_url: str = "http://prometheus:9090"
    prometheus_interval_s: float = Field(default=5.0, ge=1, le=300)
    rate_window_s: int = Field(default=20, ge=5, le=600)
    # The autoscaler's service, whose "decision" log lines become marks.
    autoscaler_service: str = "autoscale_scaler"
    # A request's story: the services whose logs are searched for its request id, and how
    # long a read may take before the page gets what has arrived.
    story_services: Annotated[list[str], NoDecode] = Field(
        default=["front_app", "prod_app", "coupon_app"])
    story_timeout_s: float = Field(default=3.0, gt=0, le=30)
    # How long the page keeps what happened (tasks that ended, marks, request seconds).
    history_s: float = Field(default=900.0, ge=60, le=86_400)
    max_tasks: int = Field(default=1000, ge=10, le=100_000)

    @field_validator("story_services", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value


def env_name(field: str) -> str:
    """The environment variable behind a settings field."""
    return f"{ENV_PREFIX}{field.upper()}"
