"""Running the Makefile from tests. A developer's host.mk (written by `make configure`) must
not change what a test of the Makefile sees, and a step must not configure the repo as a side
effect: every test's make command carries NO_HOST_CONFIG, the settings then being the
Makefile's defaults and what the test passes."""

NO_HOST_CONFIG = ("HOST_CONFIG=/dev/null",)
