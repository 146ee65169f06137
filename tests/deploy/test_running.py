"""scripts/running.sh: what a service runs now (its image tag, its replica count), read so
that `make shop-update SERVICE=...` redeploys the one stack with every other service as it
is. Here against a stand-in `docker` that answers `service inspect` from a table; the swarm
test (tests/deploy/test_shop_stack.py) runs the same on a real swarm."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.make import NO_HOST_CONFIG
from tests.support.stand_in import stand_in_docker

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "running.sh"

# Answers `docker service inspect --format TEMPLATE NAME` for the two templates of the script:
# the image or the replica count (empty for a service that is not replicated); exit 1 for
# an unknown service, as the engine does.
FAKE_DOCKER = """\
import json, sys
services = json.load(open(sys.argv[1]))
args = sys.argv[2:]
assert args[:3] == ["service", "inspect", "--format"], args
template, name = args[3], args[4]
if name not in services:
    sys.exit("Error: no such service: " + name)
if "Image" in template:
    print(services[name]["image"])
else:
    print(services[name].get("replicas") or "")
"""


@pytest.fixture
def docker(tmp_path: Path) -> Callable[[dict[str, dict[str, object]]], str]:
    """A function that writes a stand-in docker for the given services; returns its path."""

    def make(services: dict[str, dict[str, object]]) -> str:
        return stand_in_docker(tmp_path, FAKE_DOCKER, services)

    return make


def running(docker: str, service: str, what: str, default: str) -> str:
    result = subprocess.run(
        [str(SCRIPT), service, what, default], capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "DOCKER": docker},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("shop/front-service:2", "2"),
        ("reg.example:5000/shop/front-service:1@sha256:" + "a" * 64, "1"),  # pinned digest
        ("reg.example:5000/shop/front-service", "latest"),  # a registry port is not a tag
        ("shop/front-service", "latest"),
    ],
)
def test_tag_of_the_running_image(docker, image: str, tag: str) -> None:
    """The tag of the image in the service's spec, whatever registry or digest it carries."""
    fake = docker({"shop_front": {"image": image, "replicas": 3}})
    assert running(fake, "shop_front", "tag", "9") == tag
    assert running(fake, "shop_front", "replicas", "9") == "3"


def test_defaults_when_not_running(docker, tmp_path: Path) -> None:
    """An unknown service, a service that is not replicated, or no docker at all: DEFAULT."""
    fake = docker({"shop_edge": {"image": "shop/edge-haproxy:bookworm", "replicas": None}})
    assert running(fake, "shop_front", "tag", "7") == "7"
    assert running(fake, "shop_edge", "replicas", "2") == "2"
    assert running(str(tmp_path / "missing-docker"), "shop_front", "tag", "7") == "7"


def test_make_shop_update_keeps_the_other_services_as_they_run(docker) -> None:
    """`make shop-update SERVICE=front` deploys the front at IMG_TAG (latest, release 2, by
    default, as `make update`) and prod and coupon at the tags they run, every service at its
    current replica count."""
    fake = docker({
        "shop_prod": {"image": "shop/prod-service:1", "replicas": 3},
        "shop_coupon": {"image": "shop/coupon-service:2", "replicas": 2},
        "shop_front": {"image": "shop/front-service:1", "replicas": 5},
    })
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "shop-update", "SERVICE=front", f"DOCKER={fake}",
         *NO_HOST_CONFIG],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in result.stdout.splitlines() if "stack deploy" in x]
    values = dict(re.findall(r"\b([A-Z_]+)=(\S+)", line))
    assert {k: values[k] for k in ("PROD_TAG", "COUPON_TAG", "FRONT_TAG", "PROD_REPLICAS",
                                   "COUPON_REPLICAS", "FRONT_REPLICAS")} == {
        "PROD_TAG": "1", "COUPON_TAG": "2", "FRONT_TAG": "latest",
        "PROD_REPLICAS": "3", "COUPON_REPLICAS": "2", "FRONT_REPLICAS": "5",
    }
