import io
import json

import pytest
from rich.console import Console

from bench.probe_client import main


def test_the_clients_own_figures_as_data(server) -> None:
    """A short run against a real server on 127.0.0.1: every request counted, the client's CPU
    per request and share of a core, its schedule lag and the answers' latencies, as JSON."""
    base, app = server
    out = io.StringIO()

    assert main([base + "/", "--rate", "20", "--duration", "0.5", "--json"],
                Console(file=out, width=200)) == 0

    figures = json.loads(out.getvalue())
    assert figures["requests"] == len(app.requests) == 10
    assert figures["failed"] == 0
    assert figures["cpu_ms_per_request"] > 0
    assert figures["cpu_share_of_a_core"] > 0
    assert 0 <= figures["schedule_lag_ms"]["p99"] <= figures["schedule_lag_ms"]["max"]
    assert figures["latencies_ms"]["p99"] is not None


@pytest.mark.parametrize("argv", [
    ["http://10.0.0.1/"],
    ["http://127.0.0.1/", "--duration", "121"],
], ids=["not loopback", "too long"])
def test_only_bounded_runs_to_this_machine(argv, capsys) -> None:
    """Targets other than loopback and runs over two minutes are usage errors (exit 2)."""
    with pytest.raises(SystemExit) as exc_info:
        main(argv)

    assert exc_info.value.code == 2
    assert "error" in capsys.readouterr().err
