"""The rule between the stack file's REPLICAS and the autoscaler: while the autoscaler runs, a
redeploy (make deploy / update / scale) never lowers an autoscaled service's replica count.
Here against a stand-in `docker` that answers `service inspect` from a table; the swarm test
(tests/deploy/test_autoscale.py) checks the same on a real swarm under load."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.stand_in import stand_in_docker

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "autoscaled-replicas.sh"
LABEL = "io.swarm-shop.autoscale.max"

# Answers `docker service inspect [--format TEMPLATE] NAME` as the engine would for the
# script's template: the replica count when the named label is set, "" when it is not; exit 1
# for an unknown service or (like the template) for a service without a replicated mode.
FAKE_DOCKER = """\
import json, re, sys
services = json.load(open(sys.argv[1]))
args = sys.argv[2:]
assert args[:2] == ["service", "inspect"], args
name = args[-1]
if name not in services:
    sys.exit("Error: no such service: " + name)
service = services[name]
if "--format" in args:
    label = re.search(r'index .Spec.Labels "([^"]+)"', args[args.index("--format") + 1])[1]
    if label in service["labels"]:
        if service.get("replicas") is None:
            sys.exit("template: executing: nil pointer evaluating .Replicated.Replicas")
        print(service["replicas"])
    else:
        print()
else:
    print(json.dumps([{"Spec": {"Name": name}}]))
"""


@pytest.fixture
def docker(tmp_path: Path):
    """A function that writes a stand-in docker for the given services and returns its path."""

    def make(services: dict[str, dict[str, Any]]) -> str:
        return stand_in_docker(tmp_path, FAKE_DOCKER, services)

    return make


def replicas_for(docker: str, service: str, requested: int) -> tuple[int, str]:
    result = subprocess.run(
        [str(SCRIPT), service, str(requested)], capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "DOCKER": docker},
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout), result.stderr


AUTOSCALER = {"autoscale_scaler": {"labels": {}, "replicas": 1}}
FRONT_AT_5 = {"front_app": {"labels": {LABEL: "6"}, "replicas": 5}}


@pytest.mark.parametrize(
    ("services", "requested", "expected"),
    [
        ({**AUTOSCALER, **FRONT_AT_5}, 2, 5),  # the autoscaler's 5 stay
        ({**AUTOSCALER, **FRONT_AT_5}, 8, 8),  # more than it runs: scaling up by hand is fine
        ({**AUTOSCALER, **FRONT_AT_5}, 5, 5),
        (FRONT_AT_5, 2, 2),  # no autoscaler: the stack file is the truth
        ({**AUTOSCALER, "front_app": {"labels": {}, "replicas": 5}}, 2, 2),  # not labelled
        (AUTOSCALER, 2, 2),  # first deploy: the service does not exist yet
        ({**AUTOSCALER, "front_app": {"labels": {LABEL: "6"}, "replicas": None}}, 2, 2),
    ],
    ids=["keeps-current", "scale-up", "equal", "no-autoscaler", "no-labels", "first-deploy",
         "global"],
)
def test_redeploy_never_lowers_an_autoscaled_service(docker, services, requested, expected):
    """max(REPLICAS, current) only when the autoscaler runs and the service is labelled."""
    count, note = replicas_for(docker(services), "front_app", requested)
    assert count == expected
    if count != requested:
        assert "front_app is autoscaled" in note


def test_no_engine_means_the_requested_count(tmp_path):
    """Without a docker client (or engine) the stack file's REPLICAS stands."""
    assert replicas_for(str(tmp_path / "missing-docker"), "front_app", 3) == (3, "")


def test_make_scale_and_update_print_the_kept_count(docker):
    """`make scale REPLICAS=2` and `make update` on an autoscaled front at 5 replicas deploy
    REPLICAS=5; prod (not labelled) keeps the REPLICAS given."""
    fake = docker({**AUTOSCALER, **FRONT_AT_5, "prod_app": {"labels": {}, "replicas": 4}})

    def dry(*args: str) -> str:
        result = subprocess.run(
            ["make", "-n", "--no-print-directory", *args, f"DOCKER={fake}"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def replicas(output: str, stack: str) -> str:
        (line,) = [line for line in output.splitlines() if line.endswith(f" {stack}")]
        return re.search(r"REPLICAS=(\S+)", line)[1]

    assert replicas(dry("scale", "REPLICAS=2"), "front") == "5"
    assert replicas(dry("update", "NO_IPVS=1"), "front") == "5"
    deploy = dry("deploy", "NO_IPVS=1", "REPLICAS=3")
    assert replicas(deploy, "front") == "5"
    assert replicas(deploy, "prod") == "3"
