"""JSON log lines through structlog: one object per line on stdout, written when it happens.

Every line carries `ts`, `level`, `service`, `instance`, `release` and `event` (what happened:
`request`, `upstream`, `startup`, ...); lines written while a request is served also carry its
`request_id`, read from the context variable the request middleware sets. uvicorn's own
messages (stdlib logging) go through the same renderer as `event: "log"` lines.
"""

import logging
import sys
from datetime import UTC, datetime
from typing import Any, BinaryIO, cast

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from shop_common.context import request_id_var

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}

# What every process of the shop logs through: structlog's filtering bound logger (a call
# below the level is a no-op), a bound context per process, and orjson bytes written straight
# to the byte stream, as structlog's performance guide sets it up.
Logger = structlog.typing.FilteringBoundLogger

_FIRST_KEYS = ("service", "instance", "release")


def _shop_line(_: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """when, how bad, who, what, then the rest (readable as raw text too), and the request id
    of the request being served, if any."""
    line: EventDict = {
        "ts": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "level": "warning" if method == "warn" else method,
    }
    for key in _FIRST_KEYS:
        if key in event_dict:
            line[key] = event_dict.pop(key)
    line["event"] = event_dict.pop("event", None)
    request_id = request_id_var.get()
    if request_id is not None and "request_id" not in event_dict:
        line["request_id"] = request_id
    line.update(event_dict)
    return line


class StdoutBytes:
    """The byte stream behind whatever `sys.stdout` is when a line is written.

    structlog's BytesLogger keeps the file it was given; this one looks stdout up per line, so
    a test that captures output sees the lines of an app built before its capture began, and
    an app that outlives a capture does not write into a closed one.
    """

    def write(self, data: bytes) -> int:
        return sys.stdout.buffer.write(data)

    def flush(self) -> None:
        sys.stdout.flush()


def make_log(service: str, instance: str, release: str | None = None, level: str = "info",
             file: BinaryIO | None = None) -> Logger:
    """A process's logger: `log.info("request", status=200, ...)` writes one JSON line to
    `file` (stdout by default) at once, with its own write and flush, so nothing waits in a
    buffer to be lost when the process is killed.

    wrap_logger rather than structlog.configure: the level is each app's own setting, and
    tests build several apps in one process.
    """
    logger: Logger = structlog.wrap_logger(
        # BytesLogger calls only write() and flush() on its file.
        structlog.BytesLoggerFactory(file or cast(BinaryIO, StdoutBytes()))(),
        processors=[_shop_line, structlog.processors.JSONRenderer(serializer=orjson.dumps)],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
    )
    context = {"service": service, "instance": instance}
    if release is not None:
        context["release"] = release
    return logger.bind(**context)


def _render_text(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    # A logging handler writes text: the stdlib path (uvicorn's few messages) decodes.
    return orjson.dumps(event_dict, default=str).decode()


def _as_log_event(static: dict[str, str]) -> Processor:
    def processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        # A stdlib record's text is its message; its event is "log".
        return {**static, "event": "log", **event_dict}
    return processor


def stdlib_formatter(service: str, instance: str, release: str) -> logging.Formatter:
    """Formats stdlib records (uvicorn's own messages) as the service's JSON lines."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.EventRenamer("message"),
            _as_log_event({"service": service, "instance": instance, "release": release}),
            structlog.processors.format_exc_info,
            _shop_line,
            _render_text,
        ],
    )


def uvicorn_log_config(service: str, instance: str, release: str, level: str) -> dict[str, Any]:
    """A logging dict for uvicorn: its messages as JSON lines on stdout, no access log (the
    shop middleware writes one)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": stdlib_formatter, "service": service, "instance": instance,
                     "release": release},
        },
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "json",
                       "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["stdout"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
