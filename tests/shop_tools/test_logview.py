import io
import json
import random
import sys
import threading
import time
from collections.abc import Callable

import pytest

from shop_tools.logview import (
    LogPrinter,
    main,
    parse_line,
    pretty_stream,
    record_text,
    split_docker_prefix,
    swarm_command,
)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def log(ts: str, service: str, event: str = "request", **fields: object) -> str:
    """One log line in the shop's format (the contract's common keys first)."""
    record = {
        "ts": f"2026-11-28T04:22:{ts}Z",
        "level": "info",
        "service": service,
        "instance": f"{service}-1",
        "release": "2",
        "event": event,
        **fields,
    }
    return json.dumps(record, ensure_ascii=False)


def request(ts: str, service: str, path: str, request_id: str, status: int = 200) -> str:
    return log(
        ts,
        service,
        method="GET",
        path=path,
        status=status,
        duration_ms=3.2,
        request_id=request_id,
        client="10.0.1.7",
    )


def upstream(ts: str, upstream_name: str, request_id: str, attempt: int, outcome: str) -> str:
    return log(
        ts,
        "front",
        "upstream",
        upstream=upstream_name,
        method="GET",
        url=f"http://{upstream_name}.api/products/2",
        status=200 if outcome == "ok" else None,
        duration_ms=1.5,
        attempt=attempt,
        outcome=outcome,
        request_id=request_id,
    )


# One product-detail call (request id "req-a") through front, prod and coupon, with a
# coupon retry, interleaved with another call ("req-b") and the services' other lines.
PROD = [
    log("58.000", "prod", "startup", message="prod ready on port 3001"),
    request("59.101", "prod", "/products/2", "req-a"),
    request("59.150", "prod", "/products/2", "req-b"),
    "Killed",
]
COUPON = [
    request("59.103", "coupon", "/products/2/coupons", "req-a", status=503),
    '{"ts": "2026-11-28T04:22:59.104Z", "service": "coupon", "event": ',  # cut off
    request("59.109", "coupon", "/products/2/coupons", "req-a"),
]
FRONT = [
    upstream("59.102", "prod", "req-a", 1, "ok"),
    upstream("59.104", "coupon", "req-a", 1, "http_5xx"),
    upstream("59.110", "coupon", "req-a", 2, "ok"),
    request("59.111", "front", "/product-detail/2", "req-a"),
    "[1, 2, 3]",
    "",
]


def shuffled_recording() -> list[tuple[str, str]]:
    """(source, line) pairs of the three services, out of time order but each source in order."""
    return (
        [("front_app", line) for line in FRONT]
        + [("coupon_app", line) for line in COUPON]
        + [("prod_app", line) for line in PROD]
    )


def printed(printer_out: io.StringIO) -> list[str]:
    return printer_out.getvalue().splitlines()


def test_parse_line_reads_json_records():
    """A JSON object line becomes a Record with its data, text, timestamp and request id."""
    line = request("59.101", "prod", "/products/2", "req-a")

    record = parse_line(line + "\n")

    assert record is not None
    assert record.data["path"] == "/products/2"
    assert record.text == line
    assert record.request_id == "req-a"
    assert record.ts is not None
    assert record.ts.isoformat() == "2026-11-28T04:22:59.101000+00:00"
    assert record.task is None


@pytest.mark.parametrize(
    "line",
    ["Killed", "", "   ", "[1, 2, 3]", '"text"', "42", '{"ts": "2026-11-28', "{not json}"],
)
def test_parse_line_rejects_what_is_not_a_json_object(line):
    """Plain text, blank lines, JSON that is not an object and malformed JSON give None."""
    assert parse_line(line) is None


def test_parse_line_strips_docker_service_logs_prefix():
    """`docker service logs --timestamps` prefixes are removed; the task label is kept."""
    body = log("59.000", "front", "startup", message="front ready on port 8080")
    line = f"2026-11-28T04:22:59.000123456Z front_app.2.k3j4h5g6@node-1    | {body}"

    record = parse_line(line)

    assert record is not None
    assert record.text == body
    assert record.task == "front_app.2.k3j4h5g6@node-1"
    assert record.data["message"] == "front ready on port 8080"


def test_docker_prefix_detection_leaves_json_with_pipes_alone():
    """A JSON line that happens to contain '@' and ' | ' is not mistaken for a docker prefix."""
    line = log("59.000", "prod", "log", message="user@host | whatever")

    assert split_docker_prefix(line).message == line
    assert split_docker_prefix("2026-11-28T04:22:59Z plain words").message == (
        "2026-11-28T04:22:59Z plain words"
    )


def test_record_text_request_line():
    """A request line shows time, service, instance, release, request id, method, path, status."""
    record = json.loads(request("59.101", "prod", "/products/2", "req-a"))

    text = record_text(record).plain

    assert text.startswith("04:22:59.101 prod   prod-1 r2")
    assert "req-a" in text
    assert "GET /products/2 200 3.2ms" in text
    assert "client" not in text
    assert "\033[" not in text


def test_record_text_upstream_line():
    """An upstream line shows the upstream, url, status, attempt and outcome."""
    record = json.loads(upstream("59.104", "coupon", "req-a", 2, "timeout"))

    text = record_text(record).plain

    assert "-> coupon GET http://coupon.api/products/2 - 1.5ms attempt=2 timeout" in text


def test_record_text_shows_the_fronts_upstream_calls_on_its_access_line():
    """The front's access line carries its upstream calls: each shown by name, status and
    time, with the tries and hedges when there was more than one try and the outcome when it
    was not ok; a try that lost the race is not shown as a failure."""
    record = json.loads(request("59.110", "front", "/product-detail/2", "req-b"))
    record["upstreams"] = {
        "prod": {"status": 200, "ms": 61.2, "tries": 2, "hedges": 1, "outcome": "ok"},
        "coupon": {"status": None, "ms": 800.1, "tries": 3, "hedges": 2, "outcome": "timeout"},
    }
    text = record_text(record).plain
    assert "prod 200 61.2ms (2 tries, 1 hedged)" in text
    assert "coupon - 800.1ms (3 tries, 2 hedged, timeout)" in text
    assert "upstreams=" not in text

    lost = json.loads(upstream("59.104", "prod", "req-b", 1, "lost"))
    lost["kind"] = "first"
    hedge = json.loads(upstream("59.105", "prod", "req-b", 2, "ok"))
    hedge["kind"] = "hedge"
    assert record_text(lost).plain.endswith("attempt=1 lost")
    assert record_text(hedge).plain.endswith("attempt=2 hedge ok")
    assert [span.style for span in record_text(lost).spans][-1] == "dim"


def test_record_text_other_events_and_extras():
    """Other events show level (if not info), event and message; unknown keys follow as k=v."""
    record = json.loads(
        log("59.000", "front", "error", level="error", message="boom", request_id="r1", code=7)
    )
    record["exception"] = "Traceback (most recent call last):\n  ValueError: bad"

    text = record_text(record).plain

    first, *rest = text.splitlines()
    assert "ERROR error: boom" in first
    assert first.endswith("code=7")
    assert rest == ["    Traceback (most recent call last):", "      ValueError: bad"]


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"ts": 5, "event": "request", "status": None, "duration_ms": "slow"},
        {"event": "upstream", "attempt": "x", "status": "??", "service": ["odd"]},
        {"ts": "yesterday", "level": None, "message": {"nested": True}},
    ],
)
def test_record_text_never_fails_on_odd_fields(record):
    """Missing or oddly typed fields still give one line of text."""
    assert isinstance(record_text(record).plain, str)


def printed_500(monkeypatch: pytest.MonkeyPatch, color: str = "auto", *, tty: bool = False,
                **env: str) -> str:
    """What a printer writes for a request answered 500, under the given environment."""
    for name in ("NO_COLOR", "FORCE_COLOR", "TERM", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty() if tty else io.StringIO()
    printer = LogPrinter(out, color=color, reorder_seconds=0)
    printer.feed("prod", request("59.101", "prod", "/products/2", "req-a", status=500))
    return out.getvalue()


def test_colour_as_rich_finds_the_output(monkeypatch):
    """Colours on a terminal; none in a file or pipe, with NO_COLOR (which keeps dim text, as
    no-color.org allows) or TERM=dumb; FORCE_COLOR and --color always force them, --color
    never drops every style."""
    red = "\033[31m500"

    assert red in printed_500(monkeypatch, tty=True, TERM="xterm")
    assert "\033[" not in printed_500(monkeypatch)
    no_color = printed_500(monkeypatch, tty=True, TERM="xterm", NO_COLOR="1")
    assert "\033[31m" not in no_color
    assert "GET /products/2 500" in no_color
    assert "\033[" not in printed_500(monkeypatch, tty=True, TERM="dumb")
    assert red in printed_500(monkeypatch, FORCE_COLOR="1")
    assert red in printed_500(monkeypatch, "always")
    assert "\033[" not in printed_500(monkeypatch, "never", tty=True, TERM="xterm")
    assert "GET /products/2 500" in printed_500(monkeypatch, "never")


def test_recorded_lines_print_in_time_order_with_plain_lines_kept():
    """Three services' lines come out sorted by ts; non-JSON lines stay, shown with their source."""
    out = io.StringIO()
    with LogPrinter(out, reorder_seconds=float("inf")) as printer:
        for source, line in shuffled_recording():
            printer.feed(source, line)

    lines = printed(out)
    stamps = [line[:12] for line in lines if line[:2] == "04"]
    assert stamps == sorted(stamps)
    assert len(stamps) == 9
    assert lines[0].startswith("04:22:58.000 prod ")
    assert lines[-1].endswith("prod_app | Killed")  # after prod's last line, not lost
    cut = next(i for i, line in enumerate(lines) if "coupon_app | " in line)
    assert lines[cut].endswith('"event": ')
    assert "59.103" in lines[cut - 1]  # the malformed line stays after coupon's previous line
    assert any(line.endswith("front_app | [1, 2, 3]") for line in lines)
    assert len(lines) == 12  # every line but the blank one


def test_request_id_filter_follows_one_call_through_three_services():
    """--request-id keeps just that call's lines from front, prod and coupon, in time order."""
    out = io.StringIO()
    with LogPrinter(out, request_id="req-a", reorder_seconds=float("inf")) as printer:
        for source, line in shuffled_recording():
            printer.feed(source, line)

    lines = printed(out)
    assert [line[:12] for line in lines] == [
        "04:22:59.101",
        "04:22:59.102",
        "04:22:59.103",
        "04:22:59.104",
        "04:22:59.109",
        "04:22:59.110",
        "04:22:59.111",
    ]
    assert all("req-a" in line for line in lines)
    assert {line.split()[1] for line in lines} == {"front", "prod", "coupon"}
    assert "attempt=2 ok" in lines[5]


def test_raw_mode_passes_json_through_merged_and_filtered():
    """--raw prints the JSON text unchanged (docker prefix removed), filtered and in order."""
    body = request("59.101", "prod", "/products/2", "req-a")
    lines = [
        request("59.111", "front", "/product-detail/2", "req-a"),
        f"2026-11-28T04:22:59.101Z prod_app.1.abc@node-1    | {body}",
        request("59.150", "prod", "/products/2", "req-b"),
    ]
    out = io.StringIO()

    count = pretty_stream(lines, out=out, raw=True, request_id="req-a")

    assert count == 2
    assert printed(out) == [body, lines[0]]
    assert all(json.loads(line)["request_id"] == "req-a" for line in printed(out))


def test_raw_mode_keeps_plain_lines_as_received():
    """In --raw mode a line that is not JSON is printed as it came, docker prefix included."""
    plain = "2026-11-28T04:22:59.300Z prod_app.1.abc@node-1    | Killed"
    out = io.StringIO()

    pretty_stream([plain + "\n", "not json either"], source="prod_app", out=out, raw=True)

    assert printed(out) == [plain, "not json either"]  # the undated line follows its source


def test_reorder_buffer_holds_lines_for_the_window_then_sorts():
    """Live lines wait up to the window so an earlier ts from another source goes first."""
    now = [0.0]
    out = io.StringIO()
    printer = LogPrinter(out, reorder_seconds=0.5, clock=lambda: now[0])

    printer.feed("front", request("59.200", "front", "/product-detail/2", "b"))
    now[0] = 0.2
    printer.feed("prod", request("59.100", "prod", "/products/2", "a"))
    now[0] = 0.4
    printer.flush()
    assert printed(out) == []  # neither line has waited 0.5 s yet

    now[0] = 0.5
    printer.flush()
    assert [line[:12] for line in printed(out)] == ["04:22:59.100", "04:22:59.200"]

    # A line that arrives after later ones were printed is still printed, never dropped.
    printer.feed("coupon", request("59.150", "coupon", "/products/2/coupons", "a"))
    now[0] = 1.0
    printer.flush()
    assert len(printed(out)) == 3


def test_reorder_buffer_emits_only_what_is_due():
    """Lines still inside the window stay held while older ones go out."""
    now = [0.0]
    out = io.StringIO()
    printer = LogPrinter(out, reorder_seconds=0.5, clock=lambda: now[0])

    printer.feed("prod", request("59.100", "prod", "/products/2", "a"))
    now[0] = 0.4
    printer.feed("prod", request("59.500", "prod", "/products/2", "b"))
    now[0] = 0.6
    printer.flush()
    assert [line[:12] for line in printed(out)] == ["04:22:59.100"]

    printer.close()
    assert [line[:12] for line in printed(out)] == ["04:22:59.100", "04:22:59.500"]


def test_zero_window_prints_immediately():
    """reorder_seconds=0 prints each line as it is fed."""
    out = io.StringIO()
    printer = LogPrinter(out, reorder_seconds=0)

    printer.feed("prod", request("59.100", "prod", "/products/2", "a"))

    assert len(printed(out)) == 1


def test_closed_output_stops_the_printer_quietly():
    """When the reader of the output goes away (`| head`), feeding stops without an exception."""

    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError

    printer = LogPrinter(ClosedPipe(), reorder_seconds=0)
    lines = [request("59.100", "prod", "/products/2", str(i)) for i in range(5)]

    assert pretty_stream(lines, source="prod", printer=printer) == 1
    assert printer.broken
    assert printer.printed == 0


def test_lines_fed_after_close_are_printed_at_once():
    """A reader thread that delivers a last line after close() still gets it printed."""
    out = io.StringIO()
    printer = LogPrinter(out, reorder_seconds=0.5)
    printer.close()

    printer.feed("front", log("59.900", "front", "shutdown", message="front stopped"))

    assert printed(out)[0].endswith("shutdown: front stopped")


def test_background_flush_and_concurrent_feeders():
    """Reader threads may feed one printer at once; the flusher prints held lines while idle."""
    out = io.StringIO()
    sources = {
        name: [request(f"{59 + i / 1000:06.3f}", name, "/x", f"{name}-{i}") for i in range(200)]
        for name in ("prod", "coupon", "front")
    }
    with LogPrinter(out, reorder_seconds=0.05) as printer:
        threads = [
            threading.Thread(
                target=pretty_stream, args=(lines,), kwargs={"source": name, "printer": printer}
            )
            for name, lines in sources.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # The flusher thread, not close(), must print the held lines.
        wait_until(lambda: printer.printed == 600)

    assert len(printed(out)) == 600


def test_main_reads_a_recorded_file_sorted(tmp_path, capsys):
    """shop-logs --file prints the whole file in time order and exits 0."""
    recorded = tmp_path / "shop.log"
    lines = [line for _, line in shuffled_recording()]
    random.Random(3).shuffle(lines)  # noqa: S311 - a fixed shuffle, nothing secret
    recorded.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert main(["--file", str(recorded), "--color", "never"]) == 0

    out = capsys.readouterr().out.splitlines()
    stamps = [line[:12] for line in out if line[:2] == "04"]
    assert stamps == sorted(stamps)
    assert len(stamps) == 9


def test_main_reads_stdin_with_request_id_filter(monkeypatch, capsys):
    """Lines piped on stdin are merged and filtered by request id like any other source."""
    lines = [line for _, line in shuffled_recording()]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))

    assert main(["--request-id", "req-b", "--color", "never"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert "GET /products/2 200" in out[0]


def test_swarm_command_follows_with_timestamps():
    """One `docker service logs` per service, with timestamps, following, from a tail."""
    assert swarm_command("front_app") == [
        "docker",
        "service",
        "logs",
        "--timestamps",
        "--no-trunc",
        "--follow",
        "--tail",
        "50",
        "front_app",
    ]
    assert swarm_command("prod_app", follow=False, tail=None, since="10m")[-3:] == [
        "--since",
        "10m",
        "prod_app",
    ]


@pytest.fixture
def fake_docker(tmp_path):
    """An executable standing in for `docker service logs`: a few prefixed lines per service."""
    recorded = {
        "prod_app": [
            "2026-11-28T04:22:59.101Z prod_app.1.aaa@node-1    | "
            + request("59.101", "prod", "/products/2", "req-a"),
            "2026-11-28T04:22:59.300Z prod_app.1.aaa@node-1    | Killed",
        ],
        "front_app": [
            "2026-11-28T04:22:59.111Z front_app.1.bbb@node-1    | "
            + request("59.111", "front", "/product-detail/2", "req-a"),
            "2026-11-28T04:22:59.102Z front_app.1.bbb@node-1    | "
            + upstream("59.102", "prod", "req-a", 1, "ok"),
        ],
    }
    script = tmp_path / "docker"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"recorded = json.loads({json.dumps(json.dumps(recorded))})\n"
        "service = sys.argv[-1]\n"
        "if service not in recorded:\n"
        "    print(f'Error: no such service: {service}')\n"
        "    sys.exit(1)\n"
        "print('\\n'.join(recorded[service]))\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def test_main_swarm_merges_one_stream_per_service(fake_docker, capsys):
    """--swarm runs one docker client per service and merges their lines by time."""
    argv = ["--swarm", "--docker", str(fake_docker), "--services", "prod_app,front_app"]

    assert main([*argv, "--no-follow", "--color", "never"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert [line[:12] for line in out] == [
        "04:22:59.101",
        "04:22:59.102",
        "04:22:59.111",
        "04:22:59.300",
    ]
    assert out[-1].endswith("prod_app.1.aaa@node-1 | Killed")


def test_main_swarm_reports_a_failing_service(fake_docker, capsys):
    """A service docker cannot show is reported in the stream and makes the exit status 1."""
    argv = ["--swarm", "--docker", str(fake_docker), "--services", "prod_app,nope_app"]

    assert main([*argv, "--reorder-seconds", "0.01", "--color", "never"]) == 1

    out = capsys.readouterr().out
    assert "nope_app | Error: no such service: nope_app" in out
    assert "GET /products/2 200" in out


def test_main_usage_errors_exit_2(capsys):
    """--swarm and --file together, or a negative window, are usage errors."""
    for argv in (["--swarm", "--file", "x"], ["--reorder-seconds", "-1"]):
        with pytest.raises(SystemExit) as exc_info:
            main(argv)
        assert exc_info.value.code == 2
    assert "shop-logs: error" in capsys.readouterr().err
