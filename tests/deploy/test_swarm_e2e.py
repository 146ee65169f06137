"""End to end on a real single-node Docker Swarm (tests/support/swarm_deployment.py deploys the
shop at release 1), then the tutorial's promises: release 1 served, scale out and back, a
zero-failure rolling update to release 2, rolling updates of the APIs, an automatic rollback
of a release that never gets healthy, and a killed task replaced. A probe runs through every
change; each step prints its timings. The tests run in file order on one deployment.
"""

from __future__ import annotations

import time

import pytest

from tests.support.swarm_deployment import SERVICES, Deployment, wait_for

pytestmark = pytest.mark.swarm


def test_deploy_serves_release_1(shop: Deployment) -> None:
    """After the deploy every task is healthy and the entry point answers with the
    aggregated product of release 1 (no couponPrice)."""
    for stack in SERVICES:
        assert shop.converged(f"{stack}_app", shop.image(stack, "1"), 2)
    response = shop.get()
    assert response.status_code == 200
    assert response.headers["X-Release"] == "1"
    body = response.json()
    assert body["prod"]["prodNo"] == 2
    assert body["prod"]["price"] == 160000
    assert {c["id"] for c in body["coupons"]} == {1, 2}
    assert body["couponsAvailable"] is True
    assert "couponPrice" not in body


def test_scale_front_out_and_back(shop: Deployment) -> None:
    """REPLICAS=4 gives four healthy fronts that all answer; back to 2 without a failure."""
    instances: set[str] = set()
    with shop.step("scale front 2 -> 4 -> 2") as row, shop.probing(row):
        start = time.monotonic()
        shop.deploy("front", replicas=4)
        shop.wait_converged("front", "1", replicas=4)
        row["scale_out_s"] = round(time.monotonic() - start, 1)

        def all_instances_seen() -> bool:
            instances.add(shop.get().headers["X-Instance"])
            return len(instances) >= 4

        wait_for("responses from 4 instances", all_instances_seen, timeout=30)
        row["instances_seen"] = len(instances)
        start = time.monotonic()
        shop.deploy("front", replicas=2)
        shop.wait_converged("front", "1", replicas=2)
        row["scale_in_s"] = round(time.monotonic() - start, 1)
    assert len(instances) == 4
    assert row["failed"] == 0


def test_front_rolling_update_to_release_2(shop: Deployment) -> None:
    """IMG_TAG=2 rolls the front over under >= 20 req/s with zero failures; the release
    header switches from 1 to 2 and release 2 answers with couponPrice."""
    with shop.step("rolling update front 1 -> 2") as row, shop.probing(row) as finish:
        start = time.monotonic()
        shop.deploy("front", "2")
        shop.wait_converged("front", "2")
        row["rolled_out_s"] = round(time.monotonic() - start, 1)
        shop.wait_update("front_app", "completed")
        row["update_completed_s"] = round(time.monotonic() - start, 1)
        report = finish()
    assert report.failed == 0, report.failure_samples
    assert report.total / report.elapsed >= 20
    spans = report.release_spans()
    assert set(spans) == {"1", "2"}
    assert spans["1"]["first_second"] <= spans["2"]["first_second"]
    assert spans["2"]["last_second"] >= spans["1"]["last_second"]
    # The update's monitor window ran under the probe: release 2 alone at the end.
    last_seconds = [entry["releases"] for entry in report.timeline if entry["releases"]][-5:]
    assert all(set(releases) == {"2"} for releases in last_seconds)
    response = shop.get()
    assert response.headers["X-Release"] == "2"
    assert response.json()["couponPrice"] == 155200


def test_api_rolling_updates(shop: Deployment) -> None:
    """prod and coupon roll over to IMG_TAG=2 (at the same time) with zero failed front
    requests and no degraded answers."""
    with shop.step("rolling update prod + coupon 1 -> 2") as row, shop.probing(row) as finish:
        start = time.monotonic()
        shop.deploy("prod", "2")
        shop.deploy("coupon", "2")
        for stack in ("prod", "coupon"):
            shop.wait_converged(stack, "2")
        row["rolled_out_s"] = round(time.monotonic() - start, 1)
        for stack in ("prod", "coupon"):
            shop.wait_update(f"{stack}_app", "completed")
        row["update_completed_s"] = round(time.monotonic() - start, 1)
        report = finish()
    assert report.failed == 0, report.failure_samples
    assert report.degraded == 0
    assert report.total / report.elapsed >= 20


def test_broken_release_rolls_back(shop: Deployment) -> None:
    """A release whose healthcheck never passes is rolled back by swarm itself: the
    service keeps its previous image and the probe sees no failure."""
    before = shop.spec_image("front_app")
    states: list[str] = []
    with shop.step("broken front release -> automatic rollback") as row, shop.probing(row):
        start = time.monotonic()
        shop.deploy("front", "broken")
        shop.wait_update("front_app", "rollback_completed", seen=states)
        row["rolled_back_s"] = round(time.monotonic() - start, 1)
        shop.wait_converged("front", before.rpartition(":")[2])
        row["states"] = ">".join(states)
    status = shop.inspect("front_app")["UpdateStatus"]
    assert status["State"] == "rollback_completed"
    assert "rollback_started" in states
    assert shop.spec_image("front_app") == before
    assert {c.image for c in shop.containers("front_app")} == {before}
    assert row["failed"] == 0
    shop.tags["front"] = before.rpartition(":")[2]  # the stack file's tag, for later steps


def test_killed_tasks_are_replaced(shop: Deployment) -> None:
    """Killing a running front task's container and then a prod one: swarm starts
    replacements and the replica counts recover; the probe counts failed requests."""
    with shop.step("kill a front task and a prod task") as row, shop.probing(row):
        for stack in ("front", "prod"):
            service = f"{stack}_app"
            image = shop.spec_image(service)
            victim = shop.containers(service)[0].id
            start = time.monotonic()
            shop.docker.run("kill", victim)
            wait_for(
                f"{service} back to 2 healthy tasks",
                lambda s=service, i=image, v=victim: (
                    shop.converged(s, i, 2) and v not in {c.id for c in shop.containers(s)}
                ),
            )
            row[f"{stack}_recovered_s"] = round(time.monotonic() - start, 1)
    assert row["failed"] == 0
