import io
import json
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from shop_tools.load import (
    ReplicaWatcher,
    main,
    parse_args,
    progress_line,
    service_replicas,
)
from shop_tools.probe.report import SecondSummary
from tests.support.steps import wait_for


@pytest.fixture
def fake_docker(tmp_path: Path):
    """A `docker` stand-in that prints the given text for any command."""

    def make(output: str, status: int = 0) -> str:
        script = tmp_path / "docker"
        script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\nexit {status}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return str(script)

    return make


def plain_console(out: io.StringIO, **options: Any) -> Console:
    """A console writing to `out`, not a terminal unless forced; the width of a wide one."""
    return Console(file=out, width=160, highlight=False, **options)


def test_load_reports_each_second_with_replicas_and_a_summary(server, fake_docker, tmp_path):
    """A short load on the tiny server: all ok, a plain line per second naming the replicas
    (not a terminal), a summary, the report as JSON with the replicas at the end, exit 0."""
    base, _ = server
    docker = fake_docker("front_app 3/4")
    out = io.StringIO()
    report_file = tmp_path / "load.json"

    status = main(["--url", base + "/", "--rate", "20", "--duration", "1.5", "--docker", docker,
                   "--json", str(report_file)], plain_console(out))

    lines = out.getvalue().splitlines()
    progress = [line for line in lines if line.startswith("[")]
    assert status == 0
    assert len(progress) == 2
    assert "failed 0" in progress[-1]
    assert "(total 30, failed 0)" in progress[-1]
    assert "front_app 3/4 replicas" in progress[-1]
    assert any("30 in 1.5 s at 20/s" in line for line in lines)
    assert lines[-1] == "front_app replicas at the end: 3/4"
    assert "\033[" not in out.getvalue()
    report = json.loads(report_file.read_text())
    assert (report["total"], report["ok"], report["failed"]) == (30, 30, 0)
    assert report["instances"] == {"tiny": 30}
    assert report["replicas_at_end"] == "3/4"


def test_on_a_terminal_the_line_is_rewritten_not_repeated(server, fake_docker):
    """On a terminal the seconds' lines live in the progress display (rewritten in place), so
    they are not printed one after the other; the summary is; colours as the terminal takes."""
    base, _ = server
    out = io.StringIO()

    status = main(["--url", base + "/", "--rate", "20", "--duration", "1.5",
                   "--docker", fake_docker("front_app 2/2")],
                  plain_console(out, force_terminal=True, color_system="standard"))

    text = out.getvalue()
    assert status == 0
    assert not [line for line in text.splitlines() if line.startswith("[   1s]")]
    assert "front_app replicas at the end: 2/2" in text
    assert "\033[" in text  # rich's colours and cursor control, not ours


def test_load_with_failures_exits_1(server, fake_docker):
    """Failed requests show in the progress line and make the exit status 1."""
    base, app = server
    app.status = 500
    out = io.StringIO()

    status = main(["--url", base + "/", "--rate", "10", "--duration", "1",
                   "--docker", fake_docker("")], plain_console(out))

    assert status == 1
    assert "failed 10" in out.getvalue()


@pytest.mark.parametrize(
    "argv",
    [
        ["--url", "http://10.1.2.3/product-detail/2"],
        ["--url", "http://example.com/"],
        ["--duration", "601"],
        ["--duration", "0"],
        ["--rate", "5000"],
    ],
)
def test_load_refuses_remote_targets_and_unbounded_runs(argv, capsys):
    """Only loopback URLs, at most 600 s and the probe's rate limit: else a usage error."""
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_defaults_are_a_30_second_load_on_the_local_entry_point():
    """Without options: 200 req/s for 30 s on 127.0.0.1, watching front_app."""
    args = parse_args([])
    assert args.url == "http://127.0.0.1/product-detail/2"
    assert (args.rate, args.duration, args.service) == (200.0, 30.0, "front_app")


def test_progress_line_reads_one_second():
    """The line shows the second, sent, failed, p99, the replicas and the running totals."""
    second = SecondSummary(second=11, sent=200, completed=200, ok=199, failures={"timeout": 1},
                           p50_ms=3.0, p99_ms=23.456, releases={}, instances={},
                           total=2400, total_failed=3)
    assert progress_line(second, "front_app", "4/6").plain == (
        "[  12s] sent  200/s  failed 1  p99 23.5 ms  front_app 4/6 replicas  "
        "(total 2400, failed 3)"
    )
    assert "p99 - ms" in progress_line(replace(second, p99_ms=None), "front_app", "?").plain


def test_service_replicas_picks_the_exact_name(fake_docker):
    """`docker service ls --filter name=` matches prefixes: only the exact service counts."""
    docker = fake_docker("front_app_canary 1/1\nfront_app 4/6")
    assert service_replicas(docker, "front_app") == "4/6"
    assert service_replicas(docker, "prod_app") == "?"


def test_service_replicas_unknown_without_docker(tmp_path):
    """No docker client: the replicas show as '?', the load goes on."""
    assert service_replicas(str(tmp_path / "no-docker"), "front_app") == "?"


def test_replica_watcher_polls_until_stopped():
    """The watcher keeps the latest reading and stops polling when its block ends."""
    calls: list[float] = []

    def read() -> str:
        calls.append(time.monotonic())
        return f"{len(calls)}/6"

    with ReplicaWatcher(read, interval=0.01) as watcher:
        wait_for("three readings", lambda: len(calls) >= 3, timeout=5, interval=0.01)
        assert watcher.latest.endswith("/6")
    stopped_at = len(calls)
    time.sleep(0.05)
    assert len(calls) == stopped_at >= 3
