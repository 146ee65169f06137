"""How shop-probe and shop-load show a run, through rich: each second's line (on a terminal
under a progress bar, elsewhere one plain line per second) and the summary as tables.

rich decides what the output can take (a terminal or not, NO_COLOR, FORCE_COLOR, TERM=dumb).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from shop_tools.probe.report import RELEASE_WINDOW_SECONDS, ProbeReport, SecondSummary

SHOWN_FAILURE_SAMPLES = 5


def counts(values: dict[str, int]) -> str:
    return " ".join(f"{key}={value}" for key, value in sorted(values.items()))


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def failed_text(failed: int, failures: dict[str, int] | None = None) -> Text:
    kinds = f" ({counts(failures)})" if failed and failures else ""
    return Text(f"failed {failed}{kinds}", style="red" if failed else "green")


def second_line(second: SecondSummary) -> Text:
    """shop-probe's line for one second: sent, done, failed, p50, p99, releases, totals."""
    return Text.assemble(
        f"[{second.second + 1:>4}s] sent {second.sent:>4}  done {second.completed:>4}  ",
        failed_text(second.failed, second.failures),
        f"  p50 {ms(second.p50_ms)} ms  p99 {ms(second.p99_ms)} ms  "
        f"releases {counts(second.releases) or '-'}  "
        f"(total {second.total}, failed {second.total_failed})",
    )


def report_tables(report: ProbeReport, title: str = "shop-probe") -> RenderableType:
    """The run's summary: its figures, releases per window, the first failure samples."""
    figures = Table(title=f"{title} {report.url}", show_header=False, title_justify="left")
    figures.add_column(style="bold")
    figures.add_column()
    figures.add_row(
        "requests",
        f"{report.total} in {report.elapsed:.1f} s at {report.rate:g}/s"
        + (" (stopped early)" if report.stopped_early else ""),
    )
    figures.add_row("ok", Text(str(report.ok), style="green"))
    figures.add_row("failed", Text.assemble(
        (str(report.failed), "red" if report.failed else "green"),
        f"  {counts(report.failures)}" if report.failures else ""))
    figures.add_row("latency ms", "  ".join(
        f"{key} {ms(report.latencies.get(key))}" for key in ("p50", "p90", "p99", "max")))
    figures.add_row("schedule lag ms", "  ".join(
        f"{key} {ms(report.schedule_lag.get(key))}" for key in ("p99", "max")))
    if report.degraded:
        figures.add_row("degraded (X-Degraded)", Text(str(report.degraded), style="yellow"))
    figures.add_row("releases", "  ".join(
        f"{release}={span['count']} (seen {span['first_second']}s-{span['last_second']}s)"
        for release, span in sorted(report.release_spans().items())) or "none seen")
    if report.instances:
        figures.add_row("instances", counts(report.instances))
    parts: list[RenderableType] = [figures]
    windows = report.release_windows()
    if windows:
        per_window = Table(title=f"releases per {RELEASE_WINDOW_SECONDS} s",
                           title_justify="left")
        per_window.add_column("seconds", justify="right")
        per_window.add_column("releases")
        for window in windows:
            per_window.add_row(f"{window['start']}-{window['end']}",
                               counts(window["releases"]) or "-")
        parts.append(per_window)
    if report.failure_samples:
        samples = Table(title="failures (first samples)", title_justify="left")
        for column in ("second", "kind", "request id", "detail"):
            samples.add_column(column)
        for sample in report.failure_samples[:SHOWN_FAILURE_SAMPLES]:
            samples.add_row(str(sample["second"]), Text(sample["kind"], style="red"),
                            sample["request_id"], sample["detail"])
        parts.append(samples)
    return Group(*parts)


def summary_text(report: ProbeReport, title: str = "shop-probe", width: int = 110) -> str:
    """The summary tables as plain text (for logs, e.g. a test's output)."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, highlight=False).print(
        report_tables(report, title))
    return buffer.getvalue()


class RunDisplay:
    """Shows a run as it goes. On a terminal: a progress bar of the requests sent, with the
    latest second's line in it, and (keep_lines) every second's line printed above it; on
    anything else: one plain line per second."""

    def __init__(self, console: Console, planned: int, *, keep_lines: bool,
                 description: str = "requests") -> None:
        self.console = console
        self.keep_lines = keep_lines
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[line]}", markup=False),
            console=console, transient=True,
        )
        self._task = self._progress.add_task(description, total=planned, line="")

    def __enter__(self) -> RunDisplay:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._progress.stop()

    def show(self, line: Text, sent: int) -> None:
        """One finished second: its line, and how many requests have been sent in all."""
        live = self.console.is_terminal and not self.console.is_dumb_terminal
        in_place = live and not self.keep_lines
        self._progress.update(self._task, completed=sent, line=line if in_place else "")
        if not in_place:
            self._progress.console.print(line, soft_wrap=True)


def second_hook(display: RunDisplay, line: Callable[[SecondSummary], Text]
                ) -> Callable[[SecondSummary], None]:
    """An on_second hook that shows each second on `display` (from the probe's thread)."""
    sent = 0

    def show(second: SecondSummary) -> None:
        nonlocal sent
        sent += second.sent
        display.show(line(second), sent)

    return show
