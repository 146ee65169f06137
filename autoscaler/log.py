import sys
from collections.abc import Callable
from typing import Any, TextIO

import structlog

Log = Callable[..., None]


def json_log(stream: TextIO | None = None) -> Log:
    """A logger writing one JSON object per line through structlog: ts, level, service, event,
    then the fields. `log("decision", level="warning", desired=4)`."""
    logger = structlog.wrap_logger(
        structlog.WriteLogger(stream or sys.stdout),  # one write and a flush per line
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.JSONRenderer(default=str),
        ],
    ).bind(service="autoscaler")

    def log(event: str, level: str = "info", **fields: Any) -> None:
        getattr(logger, level)(event, **fields)

    return log
