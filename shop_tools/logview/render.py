"""A record as one readable line: rich Text with styles, printed on a rich console, which
decides what the output takes (a terminal, NO_COLOR, FORCE_COLOR, TERM=dumb, --color)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

from shop_tools.logview.records import DockerLine, parse_timestamp

_REQUEST_KEYS = {"method", "path", "status", "duration_ms", "client", "upstreams"}
_UPSTREAM_KEYS = {"upstream", "method", "url", "status", "duration_ms", "attempt", "kind",
                  "outcome"}
# A try's outcome that is no failure: it answered, or another try answered first.
_QUIET_OUTCOMES = {"ok": "green", "lost": "dim", "cancelled": "dim"}
_COMMON_KEYS = {"ts", "level", "service", "instance", "release", "event", "request_id", "message"}
_HIDDEN_KEYS = {"logger"}  # which stdlib logger spoke adds nothing for a reader
_BLOCK_KEYS = ("exception", "traceback", "stack")  # multi-line values go below the line
_TIME_WIDTH = 12
_SERVICE_STYLES = {"front": "cyan", "prod": "green", "coupon": "magenta"}


def _clock(ts: datetime | None) -> str:
    if ts is None:
        return " " * _TIME_WIDTH
    return ts.strftime("%H:%M:%S.") + f"{ts.microsecond // 1000:03d}"


def _status_style(status: object) -> str:
    if not isinstance(status, int) or status >= 500:
        return "red"
    return "yellow" if status >= 400 else "green"


def _duration(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.1f}ms"
    return "-ms" if value is None else f"{value}ms"


def _text(value: object, default: str = "-") -> str:
    if value is None or value == "":
        return default
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _extras(record: Mapping[str, Any], known: set[str]) -> str:
    skip = known | _HIDDEN_KEYS | set(_BLOCK_KEYS)
    return " ".join(f"{k}={_text(v)}" for k, v in record.items() if k not in skip)


def _blocks(record: Mapping[str, Any]) -> str:
    texts = [_text(record[key]).rstrip() for key in _BLOCK_KEYS if record.get(key)]
    return "".join("\n" + "\n".join(f"    {row}" for row in text.splitlines()) for text in texts)


def record_text(record: Mapping[str, Any]) -> Text:
    """One readable line for a parsed JSON log record, styled; never fails on odd or missing
    fields."""
    ts = parse_timestamp(record.get("ts"))
    service = _text(record.get("service"), "?")
    release = record.get("release")
    instance = _text(record.get("instance"), "?") + (f" r{_text(release)}" if release else "")
    line = Text.assemble(
        (_clock(ts) if ts else _text(record.get("ts"), "")[:_TIME_WIDTH], "dim"), " ",
        (f"{service:<6}", _SERVICE_STYLES.get(service, "blue")), " ",
        f"{instance:<15}", " ",
        (_text(record.get("request_id")), "dim"), "  ",
    )
    event = record.get("event")
    level = _text(record.get("level"), "info").lower()
    if level in ("error", "critical") and event in ("request", "upstream"):
        line.append(level.upper(), "red").append(" ")
    if event == "request":
        status = record.get("status")
        line.append(f"{_text(record.get('method'))} {_text(record.get('path'))} ")
        line.append(_text(status), _status_style(status))
        line.append(f" {_duration(record.get('duration_ms'))}")
        _append_upstream_calls(line, record.get("upstreams"))
        known = _COMMON_KEYS | _REQUEST_KEYS
    elif event == "upstream":
        status = record.get("status")
        outcome = _text(record.get("outcome"))
        attempt = record.get("attempt")
        retry = isinstance(attempt, int) and attempt > 1
        line.append(f"  -> {_text(record.get('upstream'))} {_text(record.get('method'))} "
                    f"{_text(record.get('url'))} ")
        line.append(_text(status), _status_style(status))
        line.append(f" {_duration(record.get('duration_ms'))} ")
        line.append(f"attempt={_text(attempt)}", "yellow" if retry else "")
        if record.get("kind") not in (None, "first"):
            line.append(f" {_text(record.get('kind'))}", "yellow")
        line.append(" ").append(outcome, _QUIET_OUTCOMES.get(outcome, "red"))
        known = _COMMON_KEYS | _UPSTREAM_KEYS
    else:
        if level != "info":
            line.append(level.upper(), "red" if level in ("error", "critical") else "yellow")
            line.append(" ")
        message = record.get("message")
        line.append(_text(event, "log") + (f": {_text(message)}" if message is not None else ""))
        known = _COMMON_KEYS
    extras = _extras(record, known)
    if extras:
        line.append("  ").append(extras, "dim")
    return line.append(_blocks(record))


def _append_upstream_calls(line: Text, calls: object) -> None:
    """The front's upstream calls as its access line carries them: `prod 200 1.2ms`, with the
    tries and hedges when there was more than one try, and the outcome when it was not ok."""
    if not isinstance(calls, Mapping):
        return
    for name, call in calls.items():
        if not isinstance(call, Mapping):
            continue
        outcome = _text(call.get("outcome"))
        status = call.get("status")
        line.append(f"  {name} ")
        line.append(_text(status), _status_style(status) if outcome == "ok" else "red")
        line.append(f" {_duration(call.get('ms'))}")
        notes = []
        tries, hedges = call.get("tries"), call.get("hedges")
        if isinstance(tries, int) and tries > 1:
            notes.append(f"{tries} tries")
        if isinstance(hedges, int) and hedges:
            notes.append(f"{hedges} hedged")
        if outcome != "ok":
            notes.append(outcome)
        if notes:
            line.append(f" ({', '.join(notes)})", "yellow" if outcome == "ok" else "red")


def plain_line_text(source: str, line: DockerLine) -> Text:
    """A line that is not JSON: kept as it is, behind its time (if docker gave one) and source."""
    return Text.assemble((_clock(line.ts), "dim"), " ", (line.task or source, "blue"),
                         f" | {line.message}")


class LogConsole(Console):
    """A rich console that tells its printer when the reader of the output has gone away
    (`shop-logs | head`) instead of ending the process: several threads write to it."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def log_console(out: TextIO | None = None, color: str = "auto") -> LogConsole:
    """The console the lines are printed on: colours when `color` is "always", none when
    "never", and as rich finds the output ("auto": a terminal, NO_COLOR, FORCE_COLOR...)."""
    options: dict[str, Any] = {"force_terminal": True} if color == "always" else {}
    if color == "never":
        options["color_system"] = None
    return LogConsole(file=out, highlight=False, markup=False, emoji=False, **options)
