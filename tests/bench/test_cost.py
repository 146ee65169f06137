import pytest

from bench.cost import cachegrind_total

# The shape of cachegrind's output file (`--cachegrind-out-file`) with --cache-sim=no.
OUT_FILE = """\
version: 2
creator: cachegrind-3.19.0
pid: 13421
cmd: /bin/true
events: Ir
fl=???
fn=0x0000000000001090
0 12
summary: 127679
"""


def test_the_instruction_count_comes_from_the_summary_line() -> None:
    """The count is the summary line of cachegrind's output file, not its human report."""
    assert cachegrind_total(OUT_FILE) == 127_679
    with pytest.raises(ValueError, match="summary"):
        cachegrind_total("events: Ir\n")
