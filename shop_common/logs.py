"""JSON log lines through structlog: one object per line on stdout, written when it happens.

Every line carries `ts`, `level`, `service`, `instance`, `release` and `event` (what happened:
`request`, `upstream`, `startup`, ...); lines written while a request is served also carry its
`request_id`, read from the context variable the request middleware sets. uvicorn's own
messages (stdlib logging) go through the same renderer as `event: "log"` lines.
"""

import logging
import sys
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from shop_common.context import request_id_var

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}

Log = structlog.typing.FilteringBoundLogger


class StdoutLogger:
    """The sink: each rendered line to whatever `sys.stdout` is when the line is written.

    structlog's PrintLogger keeps the stream it was given; looking it up per line lets a test
    capture the lines of an app built before the capture started.
    """

    def msg(self, message: str) -> None:
        out = sys.stdout
        out.write(message + "\n")
        out.flush()  # a line that waits in a buffer is lost when the process is killed

    debug = info = warning = error = critical = exception = msg


def _add_request_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    request_id = request_id_var.get()
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    return event_dict


_FIRST_KEYS = ("ts", "level", "service", "instance", "release", "event")


def _common_keys_first(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # Readable as raw text too: when, how bad, who, what, then the rest.
    first = {key: event_dict.pop(key) for key in _FIRST_KEYS if key in event_dict}
    return {**first, **event_dict}


def _render(_: WrappedLogger, __: str, event_dict: EventDict) -> str:
    return orjson.dumps(event_dict, default=str).decode()


_COMMON: list[Processor] = [
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
    _add_request_id,
]


def make_log(service: str, instance: str, release: str, level: str = "info") -> Log:
    """The service's logger: `log.info("request", status=200, ...)` writes one JSON line."""
    logger: Log = structlog.wrap_logger(
        StdoutLogger(),
        processors=[*_COMMON, structlog.processors.format_exc_info, _common_keys_first,
                    _render],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
    )
    return logger.bind(service=service, instance=instance, release=release)


def _as_log_event(static: dict[str, str]) -> Processor:
    def processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        # A stdlib record's text is its message; its event is "log".
        return {**static, "event": "log", **event_dict}
    return processor


def stdlib_formatter(service: str, instance: str, release: str) -> logging.Formatter:
    """Formats stdlib records (uvicorn's own messages) as the service's JSON lines."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_COMMON, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.EventRenamer("message"),
            _as_log_event({"service": service, "instance": instance, "release": release}),
            structlog.processors.format_exc_info,
            _common_keys_first,
            _render,
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
