import os
import socket
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

ENV_PREFIX = "shop_"


class ServiceSettings(BaseModel):
    """Settings every service has; each service subclasses it with its own port and data.

    A field not passed to the constructor comes from the environment variable SHOP_<FIELD>
    (any case), else its default; every value, defaults included, is validated. Read here
    rather than through pydantic-settings, whose sources (dotenv, CLI, cloud secret stores)
    the shop does not use and which cost the front 1 MiB of memory (bench/README.md).
    """

    model_config = ConfigDict(extra="ignore", validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _from_environment(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        environment = {name.lower(): value for name, value in os.environ.items()
                       if name.lower().startswith(ENV_PREFIX)}
        from_environment = {field: environment[ENV_PREFIX + field] for field in cls.model_fields
                            if ENV_PREFIX + field in environment}
        return {**from_environment, **data}

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
