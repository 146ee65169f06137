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

from tests.support.make import NO_HOST_CONFIG
from tests.support.stand_in import stand_in_docker

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "autoscaled-replicas.sh"
LABEL = "io.swarm-shop.autoscale.max"

# Answers `docker service inspect [--format TEMPLATE] NAME` as the engine would for the
# script's template (the replica count when the named label is set, "" when it is not) and for
# the Makefile's (the image, the replica count); exit 1 for an unknown service or (like the
# template) for a service without a replicated mode.
FAKE_DOCKER = """\
import json, re, sys
services = json.load(open(sys.argv[1]))
args = sys.argv[2:]
assert args[:2] == ["service", "inspect"], args
name = args[-1]
if name not in services:
    sys.exit("Error: no such service: " + name)
service = services[name]
template = args[args.index("--format") + 1] if "--format" in args else ""
if "ContainerSpec.Image" in template:
    print(service.get("image", "acme/front-service:7"))
elif template == "{{.Spec.Mode.Replicated.Replicas}}":
    if service.get("replicas") is None:
        sys.exit("template: executing: nil pointer evaluating .Replicated.Replicas")
    print(service["replicas"])
elif template:
    label = re.search(r'index .Spec.Labels "([^"]+)"', template)[1]
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
            ["make", "-n", "--no-print-directory", *args, f"DOCKER={fake}", *NO_HOST_CONFIG],
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


def test_a_deploy_keeps_what_each_service_runs(docker):
    """Without IMG_TAG or REPLICAS a deploy carries the tag and the replica count each service
    runs (no silent downgrade); a service not deployed yet gets the stacks' own defaults
    (latest, 2); what is given wins; `make update` without IMG_TAG goes to latest."""
    fake = docker({"front_app": {"labels": {}, "replicas": 4,
                                 "image": "shop/front-service:2@sha256:0123"},
                   "prod_app": {"labels": {}, "replicas": 3,
                                "image": "reg.example:5000/shop/prod-service:1"}})

    def deploy_env(*args: str) -> dict[str, tuple[str, str]]:
        result = subprocess.run(
            ["make", "-n", "--no-print-directory", *args, f"DOCKER={fake}", *NO_HOST_CONFIG],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        found = {}
        for line in result.stdout.splitlines():
            if " stack deploy " in line and "IMG_TAG=" in line:
                tag = re.search(r"IMG_TAG=(\S+)", line)[1]
                found[line.rsplit(" ", 1)[1]] = (tag, re.search(r"REPLICAS=(\S+)", line)[1])
        return found

    assert deploy_env("deploy", "NO_IPVS=1") == {
        "prod": ("1", "3"), "coupon": ("latest", "2"), "front": ("2", "4")}
    assert deploy_env("deploy", "IMG_TAG=1", "REPLICAS=2") == {
        "prod": ("1", "2"), "coupon": ("1", "2"), "front": ("1", "2")}
    assert deploy_env("scale", "REPLICAS=6") == {"front": ("2", "6")}
    assert deploy_env("update") == {"front": ("latest", "4")}
    assert deploy_env("update", "SERVICE=prod", "IMG_TAG=2") == {"prod": ("2", "3")}


def test_make_defaults_are_the_stacks_defaults():
    """What make deploys when nothing is given and nothing runs is what the stack files say
    without variables: IMG_TAG latest, REPLICAS 2, the same autoscale labels, edge port and
    Prometheus image."""
    stacks = "".join((REPO / "stacks" / name).read_text()
                     for name in ("front.yml", "edge.yml", "autoscale.yml"))
    defaults = dict(re.findall(r"\$\{(\w+):-([^}]*)\}", stacks))
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", "-f", "Makefile", "-f", "-", "show",
         *NO_HOST_CONFIG],
        cwd=REPO, capture_output=True, text=True, timeout=60, input=(
            "show:\n\t@echo STACK_TAG=$(STACK_TAG) STACK_REPLICAS=$(STACK_REPLICAS) "
            "EDGE_PORT=$(EDGE_PORT) PROMETHEUS_IMAGE=$(PROMETHEUS_IMAGE) "
            "AUTOSCALE_MIN=$(AUTOSCALE_MIN) AUTOSCALE_MAX=$(AUTOSCALE_MAX) "
            "AUTOSCALE_TARGET_RPS=$(AUTOSCALE_TARGET_RPS) SHOP_NAMESPACE=$(SHOP_NAMESPACE)\n"
        ),
    )
    assert result.returncode == 0, result.stderr
    made = dict(pair.split("=", 1) for pair in result.stdout.split())
    assert made.pop("STACK_TAG") == defaults["IMG_TAG"] == "latest"
    assert made.pop("STACK_REPLICAS") == defaults["REPLICAS"] == "2"
    for name, value in made.items():
        assert defaults[name] == value, name
