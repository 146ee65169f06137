import logging
import math
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

# The formatted whole second of the last timestamp: every log line needs one, and formatting a
# datetime costs more than the rest of the line; within a second only the milliseconds change.
_last_second: tuple[int, str] = (-1, "")


def utc_timestamp(now: float | None = None) -> str:
    """ISO-8601 UTC with milliseconds and Z, exactly as datetime.isoformat would give it."""
    global _last_second
    if now is None:
        now = time.time()
    second = math.floor(now)
    micros = round((now - second) * 1_000_000)  # datetime rounds to microseconds the same way
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    cached_second, text = _last_second
    if second != cached_second:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (second, text)
    return f"{text}.{micros // 1000:03d}Z"


class JsonLog:
    """One JSON object per line on stdout, with the keys every shop log line carries.

    Request and upstream lines are written directly rather than through `logging`: they are
    on the hot path and the stdlib machinery costs several times the serialisation.
    """

    def __init__(self, service: str, instance: str, release: str) -> None:
        self.service = service
        self.instance = instance
        self.release = release
        self.pending: list[str] = []

    def event(self, event: str, level: str = "info", *, flush: bool = True,
              **fields: Any) -> None:
        """Write one line; with `flush=False` it waits for the next flushed line or `flush()`.

        The front's upstream lines wait for their request's access line: one write for the
        three lines of a product-detail request (each write is a system call).
        """
        record = {
            "ts": utc_timestamp(),
            "level": level,
            "service": self.service,
            "instance": self.instance,
            "release": self.release,
            "event": event,
            **fields,
        }
        self.pending.append(
            orjson.dumps(record, default=str, option=orjson.OPT_APPEND_NEWLINE).decode())
        if flush:
            self.flush()

    def flush(self) -> None:
        """Write the lines that wait, in one write."""
        if self.pending:
            text = "".join(self.pending)
            self.pending.clear()
            out = sys.stdout  # looked up per write: tests capture it by replacing it
            out.write(text)
            out.flush()


class JsonFormatter(logging.Formatter):
    """Formats stdlib records (uvicorn's own messages) in the shop's line format."""

    def __init__(self, service: str = "", instance: str = "", release: str = "") -> None:
        super().__init__()
        self.static = {"service": service, "instance": instance, "release": release}

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": utc_timestamp(record.created),
            "level": record.levelname.lower(),
            **self.static,
            "event": "log",
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def uvicorn_log_config(service: str, instance: str, release: str, level: str) -> dict[str, Any]:
    """A logging dict for uvicorn: its messages as JSON lines on stdout, no access log."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": JsonFormatter,
                "service": service,
                "instance": instance,
                "release": release,
            }
        },
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
        },
        "loggers": {
            "uvicorn": {"handlers": ["stdout"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
