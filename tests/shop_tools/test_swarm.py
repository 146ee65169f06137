"""shop-swarm's reading of a service: when it has converged, what its progress line and its
part of the closing line say, and which update states fail a step (no engine needed: the
states are what the Engine API reports, written out)."""

from __future__ import annotations

import dataclasses

import pytest

from shop_tools.swarm import ServiceState, image_tag, strip_digest, update_failure

CONVERGED = ServiceState(
    name="front_app", image="shop/front-service:2", release="2", desired=2, running=2,
    starting=0, old=0, draining=0, update="completed", message="update completed", error="",
)


def test_converged_means_all_wanted_tasks_running_on_the_spec_image_and_nothing_else() -> None:
    """Converged: as many running tasks as wanted, none starting, none on the old image, none
    draining, no update or rollback under way."""
    assert CONVERGED.converged
    for change in ({"running": 1, "starting": 1}, {"old": 1}, {"draining": 1},
                   {"update": "updating"}, {"update": "rollback_started"}, {"running": 3}):
        assert not dataclasses.replace(CONVERGED, **change).converged, change
    assert dataclasses.replace(CONVERGED, update="").converged


def test_progress_and_closing_labels() -> None:
    """The closing line names the release and running/desired; the progress line adds what
    is still moving; services that are not the shop's carry no release."""
    assert CONVERGED.label() == "front_app release 2 (2/2)"
    moving = dataclasses.replace(CONVERGED, running=1, starting=1, old=1, draining=1,
                                 update="updating", error="task: non-zero exit (1)")
    assert moving.progress() == (
        "front_app release 2 (1/2), 1 starting, 1 on the previous image, 1 draining, "
        "update updating, last task error: task: non-zero exit (1)"
    )
    edge = dataclasses.replace(CONVERGED, name="edge_proxy", release=None, desired=1, running=1)
    assert edge.label() == "edge_proxy (1/1)"


@pytest.mark.parametrize(
    ("first", "now", "rollback", "fails"),
    [
        ({"update": "updating", "message": "update in progress"},
         {"update": "rollback_completed", "message": "rollback completed",
          "image": "shop/front-service:1"}, False, "rolled it back"),
        ({"update": "updating"}, {"update": "paused", "message": "update paused"}, False,
         "update paused"),
        ({"update": "rollback_started"}, {"update": "rollback_completed"}, True, ""),
        ({"update": "rollback_started"}, {"update": "rollback_paused"}, True, "rollback_paused"),
        # A state left by an earlier step (a scale after a rollback) is not this step's.
        ({"update": "rollback_completed"}, {"update": "rollback_completed"}, False, ""),
        ({"update": ""}, {"update": "completed"}, False, ""),
    ],
    ids=["auto-rollback", "paused", "asked-rollback", "rollback-paused", "earlier-state",
         "completed"],
)
def test_update_failure(first: dict[str, str], now: dict[str, str], rollback: bool,
                        fails: str) -> None:
    """An update that swarm rolled back or paused fails the step (a rollback that was asked
    for ends as one); a state that was there before the step does not."""
    found = update_failure(dataclasses.replace(CONVERGED, **first),
                           dataclasses.replace(CONVERGED, **now), rollback)
    assert (fails in found) if fails else found == ""


def test_image_names() -> None:
    """Digests are dropped for display; the tag is what follows the last colon of the name."""
    pinned = "reg:5000/shop/front-service:2@sha256:ab"
    assert strip_digest(pinned) == "reg:5000/shop/front-service:2"
    assert image_tag("reg:5000/shop/front-service:2@sha256:ab") == "2"
    assert image_tag("reg:5000/shop/front-service") == "latest"
