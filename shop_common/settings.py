import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "SHOP_"


class ServiceSettings(BaseSettings):
    """Settings every service has; each service subclasses it with its own port and data.

    A field not passed to the constructor comes from the environment variable SHOP_<FIELD>
    (any case), else its default; every value, defaults included, is validated.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore",
                                      validate_default=True)

    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    release: str = Field(default="2", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")
    instance: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128)
    # The drain budget: SIGTERM -> /health 503 for drain_seconds (routers notice and stop
    # sending) -> stop accepting, wait up to graceful_timeout_seconds for in-flight requests
    # -> exit 0. The stack's stop_grace_period must exceed the sum (see README).
    drain_seconds: float = Field(default=5.0, ge=0, le=60)
    graceful_timeout_seconds: int = Field(default=5, ge=0, le=60)
    access_log: bool = True
    # Demo and test aid: every API answer (not /health) waits this long first, so draining and
    # timeouts can be watched with requests in flight. 0 in production.
    simulated_latency_ms: int = Field(default=0, ge=0, le=60_000)
    log_level: str = Field(default="info", pattern=r"^(debug|info|warning|error)$")


def env_name(field: str) -> str:
    """The environment variable behind a settings field."""
    return f"{ENV_PREFIX}{field.upper()}"
