"""The shop's JSON log lines read as records, with what `docker service logs` put in front
of them (its timestamp and task) taken off."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# `docker service logs [--timestamps]` prefixes each line with "[TS ]task.slot.id@node   | ".
# The task part must not start with "{" so a JSON line containing "@" and " | " is left alone.
_DOCKER_PREFIX = re.compile(
    r"^(?:(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) )?"
    r"(?:(?P<task>[\w.-]+@[\w.-]+) *\| ?)?"
)


def parse_timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    # Docker's RFC3339Nano has up to 9 fractional digits; datetime keeps 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class DockerLine:
    """A line split into what `docker service logs` put in front of it and the message."""

    message: str
    ts: datetime | None = None
    task: str | None = None


def split_docker_prefix(line: str) -> DockerLine:
    line = line.rstrip("\r\n")
    match = _DOCKER_PREFIX.match(line)
    if match is None or match.end() == 0:
        return DockerLine(line)
    if match["task"] is None and not line[match.end() :].lstrip().startswith("{"):
        # A bare leading timestamp is only docker's when JSON follows; otherwise keep the line.
        return DockerLine(line)
    return DockerLine(line[match.end() :], parse_timestamp(match["ts"]), match["task"])


@dataclass(frozen=True, slots=True)
class Record:
    """One JSON log line of a shop service."""

    data: dict[str, Any]
    text: str  # the JSON text as the service wrote it (docker's prefix removed)
    ts: datetime | None  # the record's "ts", else docker's timestamp, else None
    task: str | None = None  # docker's task label when the line came from `docker service logs`

    @property
    def request_id(self) -> str | None:
        value = self.data.get("request_id")
        return value if isinstance(value, str) else None


def parse_line(line: str) -> Record | None:
    """The Record of a JSON log line (with or without docker's prefix); None for anything else."""
    split = split_docker_prefix(line)
    text = split.message.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return Record(data, text, parse_timestamp(data.get("ts")) or split.ts, split.task)
