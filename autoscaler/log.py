import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

Log = Callable[..., None]


def json_log(stream: TextIO = sys.stdout) -> Log:
    """A logger writing one JSON object per line: ts, level, service, event, then the fields."""

    def log(event: str, level: str = "info", **fields: Any) -> None:
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": level,
            "service": "autoscaler",
            "event": event,
            **fields,
        }
        stream.write(json.dumps(record, default=str) + "\n")
        stream.flush()

    return log
