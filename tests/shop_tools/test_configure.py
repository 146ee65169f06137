"""`make configure`'s pieces that need no engine: the file it writes, its IPVS rule for an
engine on another kernel, the Python it finds for the wheelhouse, and which variables make
passes it as given."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from shop_tools.configure import detect_ipvs, host_file, python_with_pip

REPO = Path(__file__).resolve().parents[2]


def test_host_file_is_a_makefile_that_the_command_line_overrides(tmp_path: Path) -> None:
    """host.mk sets each variable with ?= (so make's command line and environment win) and
    make reads it back."""
    text = host_file({"NO_IPVS": "1", "EDGE_PORT": "8000"})
    assert "NO_IPVS ?= 1\nEDGE_PORT ?= 8000\n" in text
    config = tmp_path / "host.mk"
    config.write_text(text)
    show = "show:\n\t@echo $(NO_IPVS) $(EDGE_PORT)\n"
    for extra, expected in (([], "1 8000"), (["EDGE_PORT=9000"], "1 9000")):
        result = subprocess.run(["make", "-s", "-f", str(config), "-f", "-", "show", *extra],
                                input=show, capture_output=True, text=True, check=True)
        assert result.stdout.strip() == expected


def test_an_engine_on_another_kernel_is_assumed_to_have_ipvs() -> None:
    """This machine's kernel files say nothing about another machine's: IPVS is assumed and
    the reason says how to say otherwise."""
    value, why = detect_ipvs("0.0.0-elsewhere")
    assert value == "0"
    assert "NO_IPVS=1" in why


def test_wheelhouse_python_of_the_wanted_minor_version() -> None:
    """The running interpreter (which has pip) is found for its own minor version; a version
    nobody has is not found."""
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found = python_with_pip(minor, sys.executable)
    assert found is not None
    assert found[0] == sys.executable
    assert python_with_pip("2.1", sys.executable) is None


def test_make_configure_passes_what_was_given_and_the_defaults() -> None:
    """`make configure NO_IPVS=1` hands NO_IPVS over as given, the rest as defaults to start
    detecting from; host.mk's own values are not read back as if given."""
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "configure", "NO_IPVS=1", "HOST_CONFIG=/dev/null"],
        cwd=REPO, capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    line = result.stdout.strip()
    assert "--set 'NO_IPVS=1'" in line
    assert "--set 'EDGE_PORT" not in line
    assert "--default 'EDGE_PORT=80'" in line
    assert "--default 'BASE_IMAGE=python:3.12-slim'" in line
