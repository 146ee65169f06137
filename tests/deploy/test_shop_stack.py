"""The whole shop as one stack, on a real single-node swarm, through its make targets:
`make shop-deploy` (here stacks/shop.no-ipvs.yml: no IPVS, the edge inside the stack), then
`make shop-update SERVICE=front IMG_TAG=2` under a probe, which must replace the front's tasks
and no other, with no failed request, then `make shop-down`, which must leave nothing of the
stack.

It runs beside the per-service deployment of tests/support/swarm_deployment.py and uses its
images and helpers, but shares nothing with it on the swarm: the one stack has its own
networks (shop_backend, shop_frontend; the aliases prod.api, coupon.api and front.api live on
those), its own service names (shop_prod, ...) and its own edge port, so neither sees the
other's tasks (checked below), and the per-service deployment stays up for the tests after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.swarm_deployment import (
    EDGE_IMAGE,
    NAMESPACE,
    REPO,
    Deployment,
    free_host_port,
    wait_for,
)

pytestmark = pytest.mark.swarm

STACK = "shop"
SERVICES = {name: f"{STACK}_{name}" for name in ("prod", "coupon", "front")}
EDGE = f"{STACK}_edge"


@dataclass
class OneStack:
    shop: Deployment  # the per-service deployment: the images, the docker client, the steps
    entry: Deployment  # the same helpers, pointed at this stack's edge

    def make(self, target: str, **variables: str) -> str:
        """Run a make target of the repo for this stack; its output (commands included)."""
        args = [f"{key}={value}" for key, value in {
            "NO_IPVS": "1", "SHOP_NAMESPACE": NAMESPACE, "SHOP_STACK": STACK,
            "EDGE_PORT": str(self.entry.edge_port), "EDGE_IMAGE": EDGE_IMAGE,
            "DOCKER": self.shop.docker.binary, **variables}.items()]
        result = subprocess.run(
            ["make", "--no-print-directory", target, *args],
            cwd=REPO, capture_output=True, text=True, timeout=300, env=dict(os.environ),
        )
        assert result.returncode == 0, f"make {target}:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    def answers(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return self.entry.get().status_code == 200
        return False

    def containers(self) -> dict[str, set[str]]:
        """The running containers of each service of the stack, by id."""
        return {service: {c.id for c in self.shop.containers(service)}
                for service in (*SERVICES.values(), EDGE)}

    def converged(self, tags: dict[str, str]) -> bool:
        return all(self.shop.converged(SERVICES[name], self.shop.image(name, tag), 2)
                   for name, tag in tags.items()) and len(self.shop.containers(EDGE)) == 1

    def leftovers(self) -> list[str]:
        """Whatever of the stack is still on the engine: services, networks, configs,
        containers (any state)."""
        label = f"label=com.docker.stack.namespace={STACK}"
        found = []
        for kind in (("service", "ls", "-q"), ("network", "ls", "-q"), ("config", "ls", "-q"),
                     ("ps", "-aq")):
            found += self.shop.docker.out(*kind, "--filter", label).split()
        return found


@pytest.fixture(scope="module")
def one_stack(shop: Deployment) -> Iterator[OneStack]:
    """The shop deployed as one stack `shop` by `make shop-deploy` at release 1 next to the
    per-service deployment; removed at the end whatever happened."""
    taken = shop.docker.out("stack", "ls", "--format", "{{.Name}}").split()
    if STACK in taken:
        pytest.fail(f"a stack {STACK!r} is already deployed here: make shop-down", pytrace=False)
    # The per-service deployment's helpers, pointed at this stack's own edge port.
    rig = OneStack(shop, dataclasses.replace(shop, edge_port=free_host_port()))
    try:
        with shop.step("one stack: make shop-deploy (release 1)",
                       edge_port=rig.entry.edge_port) as row:
            row["printed"] = rig.make("shop-deploy", IMG_TAG="1").count("stack deploy")
            wait_for("the one stack's services healthy at release 1",
                     lambda: rig.converged({name: "1" for name in SERVICES}))
            wait_for("the one stack's edge to serve the front", rig.answers)
        yield rig
    finally:
        if rig.leftovers():
            rig.make("shop-down")
            wait_for("the one stack gone", lambda: not rig.leftovers(), timeout=120)


def test_one_stack_serves_on_its_own(one_stack: OneStack) -> None:
    """The stack owns its networks and services; its edge answers release 1, only from the
    stack's own fronts, while the per-service deployment keeps answering from its fronts."""
    docker = one_stack.shop.docker
    networks = docker.out("network", "ls", "--filter", f"label=com.docker.stack.namespace={STACK}",
                          "--format", "{{.Name}}").split()
    assert sorted(networks) == [f"{STACK}_backend", f"{STACK}_frontend"]
    services = docker.out("stack", "services", STACK, "--format", "{{.Name}}").split()
    assert sorted(services) == sorted([*SERVICES.values(), EDGE])

    ours = {c.id for c in one_stack.shop.containers(SERVICES["front"])}
    theirs = {c.id for c in one_stack.shop.containers("front_app")}
    seen, seen_theirs = set(), set()
    for _ in range(20):
        response = one_stack.entry.get()
        assert response.status_code == 200
        assert response.headers["X-Release"] == "1"
        assert "couponPrice" not in response.json()
        seen.add(response.headers["X-Instance"])
        seen_theirs.add(one_stack.shop.get().headers["X-Instance"])
    # X-Instance is the container's host name: its short id.
    assert {i for i in seen if any(c.startswith(i) for c in ours)} == seen
    assert {i for i in seen_theirs if any(c.startswith(i) for c in theirs)} == seen_theirs


def test_update_of_one_service_leaves_the_others_untouched(one_stack: OneStack) -> None:
    """`make shop-update SERVICE=front IMG_TAG=2` deploys the front at release 2 and prod
    and coupon at the release they run, read from the swarm: the front's tasks are replaced
    under a probe with no failed request, and not one task of prod, coupon or the edge
    restarts."""
    before = one_stack.containers()
    shop = one_stack.shop
    with shop.step("one stack: make shop-update SERVICE=front IMG_TAG=2") as row, \
            one_stack.entry.probing(row):
        printed = one_stack.make("shop-update", SERVICE="front", IMG_TAG="2")
        wait_for("the front at release 2, prod and coupon at 1",
                 lambda: one_stack.converged({"prod": "1", "coupon": "1", "front": "2"}))
        wait_for("the edge to serve release 2",
                 lambda: one_stack.entry.get().headers["X-Release"] == "2")
    after = one_stack.containers()
    (deploy,) = [line for line in printed.splitlines() if "stack deploy" in line]
    values = dict(re.findall(r"\b([A-Z_]+)=(\S+)", deploy))
    assert (values["PROD_TAG"], values["COUPON_TAG"], values["FRONT_TAG"]) == ("1", "1", "2")
    for service in (SERVICES["prod"], SERVICES["coupon"], EDGE):
        assert after[service] == before[service], service
    assert not after[SERVICES["front"]] & before[SERVICES["front"]]
    assert row["failed"] == 0
    assert row["requests"] > 0
    assert one_stack.entry.get().json()["couponPrice"] == 155200


def test_removed_as_one_unit(one_stack: OneStack) -> None:
    """`make shop-down` removes the stack's services, networks, config and containers, and
    nothing of the per-service deployment."""
    shop = one_stack.shop
    with shop.step("one stack: make shop-down"):
        one_stack.make("shop-down")
        wait_for("nothing left of the one stack", lambda: not one_stack.leftovers(), timeout=60)
    assert shop.converged("front_app", shop.spec_image("front_app"), 2)
    assert shop.get().status_code == 200
