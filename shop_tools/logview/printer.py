"""LogPrinter: lines from several sources merged into one time-ordered stream."""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TextIO

from rich.text import Text

from shop_tools.logview.records import parse_line, split_docker_prefix
from shop_tools.logview.render import log_console, plain_line_text, record_text

DEFAULT_REORDER_SECONDS = 0.5


@dataclass(order=True, slots=True)
class _Pending:
    key: float
    seq: int
    arrived: float
    text: Text
    emitted: bool = False


class LogPrinter:
    """Merges lines from several sources into one time-ordered, readable (or raw) stream.

    feed() is thread-safe. A line is held for up to `reorder_seconds` after it arrives so
    lines of other sources with an earlier "ts" can overtake it; use it as a context
    manager (or call start() and close()) so held lines also come out while input is idle.
    `reorder_seconds=math.inf` holds everything until close() and then prints it sorted
    (recorded files); 0 prints each line as it comes.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        raw: bool = False,
        request_id: str | None = None,
        color: str = "auto",
        reorder_seconds: float = DEFAULT_REORDER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = log_console(out, color)
        self.raw = raw
        self.request_id = request_id
        self.reorder_seconds = reorder_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._heap: list[_Pending] = []
        self._arrivals: deque[_Pending] = deque()
        self._seq = itertools.count()
        self._last_key: dict[str, float] = {}
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        self.printed = 0
        self.broken = False  # the output pipe was closed by its reader

    def __enter__(self) -> LogPrinter:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Flush held lines in the background, so they appear even when no new line arrives."""
        if self._flusher is None and 0 < self.reorder_seconds < math.inf:
            self._flusher = threading.Thread(target=self._flush_loop, name="shop-logs", daemon=True)
            self._flusher.start()

    def _flush_loop(self) -> None:
        interval = min(0.1, self.reorder_seconds / 2)
        while not self._closed.wait(interval):
            self.flush()

    def render(self, source: str, line: str) -> tuple[float | None, Text | None]:
        """(sort key, output text) for one line; text None when the filter drops it."""
        record = parse_line(line)
        if record is None:
            if self.request_id is not None or not line.strip():
                return None, None
            split = split_docker_prefix(line)
            key = split.ts.timestamp() if split.ts else None
            text = Text(line.rstrip("\r\n")) if self.raw else plain_line_text(source, split)
            return key, text
        if self.request_id is not None and record.request_id != self.request_id:
            return None, None
        key = record.ts.timestamp() if record.ts else None
        text = Text(record.text) if self.raw else record_text(record.data)
        return key, text

    def feed(self, source: str, line: str) -> None:
        key, text = self.render(source, line)
        if text is None or self.broken:
            return
        now = self._clock()
        with self._lock:
            if key is None:
                # Keep an undated line next to what its source printed just before it.
                first = time.time() if self.reorder_seconds < math.inf else 0.0
                key = self._last_key.get(source, first)
            self._last_key[source] = key
            # After close() nothing would flush a held line: late lines go straight out.
            if self.reorder_seconds <= 0 or self._closed.is_set():
                self._write([text])
                return
            pending = _Pending(key, next(self._seq), now, text)
            heapq.heappush(self._heap, pending)
            self._arrivals.append(pending)
        self.flush()

    def flush(self, *, everything: bool = False) -> None:
        """Print the held lines that are due (or all of them), oldest "ts" first."""
        with self._lock:
            if everything:
                due = [heapq.heappop(self._heap) for _ in range(len(self._heap))]
                self._arrivals.clear()
            else:
                # Everything that waited long enough goes, and with it every held line
                # whose "ts" is not later than the latest of those.
                deadline = self._clock() - self.reorder_seconds
                cutoff = -math.inf
                while self._arrivals and self._arrivals[0].arrived <= deadline:
                    pending = self._arrivals.popleft()
                    if not pending.emitted:
                        cutoff = max(cutoff, pending.key)
                due = []
                while self._heap and self._heap[0].key <= cutoff:
                    pending = heapq.heappop(self._heap)
                    pending.emitted = True
                    due.append(pending)
            self._write([p.text for p in due])

    def _write(self, texts: list[Text]) -> None:
        if not texts or self.broken:
            return
        try:
            for text in texts:
                # soft_wrap: a line is written whole, never wrapped or cut at the width.
                self.console.print(text, soft_wrap=True)
            self.console.file.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): writes happen on reader and flusher threads,
            # so the printer stops quietly and callers check `broken`.
            self.broken = True
            return
        self.printed += len(texts)

    def close(self) -> None:
        self._closed.set()
        if self._flusher is not None:
            self._flusher.join()
            self._flusher = None
        self.flush(everything=True)


def pretty_stream(
    lines: Iterable[str],
    *,
    source: str = "-",
    printer: LogPrinter | None = None,
    out: TextIO | None = None,
    raw: bool = False,
    request_id: str | None = None,
    color: str = "auto",
) -> int:
    """Print `lines` readably; returns how many lines were printed (or fed).

    With `printer`, the lines are fed to it as they come (call this from one reader thread
    per source; the printer merges them). Without, the lines are read to the end and
    printed sorted by time: the right thing for a recorded file.
    """
    if printer is not None:
        count = 0
        for line in lines:
            if printer.broken:
                break
            printer.feed(source, line)
            count += 1
        return count
    own = LogPrinter(out, raw=raw, request_id=request_id, color=color, reorder_seconds=math.inf)
    for line in lines:
        own.feed(source, line)
    own.close()
    return own.printed
