"""The Docker side through a fake of the SDK's public surface: `services.list()`, a service's
`id`/`name`/`version`/`attrs`, and `api.update_service()`."""

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from autoscaler.policy import Policy
from autoscaler.swarm import InvalidLabels, Swarm, policy_from_labels

LABELS = {
    "io.swarm-shop.autoscale.min": "2",
    "io.swarm-shop.autoscale.max": "6",
    "io.swarm-shop.autoscale.target-rps": "250",
}


def spec(name: str, labels: dict[str, str] | None = None, replicas: int | None = 2) -> dict:
    """A service spec as `docker stack deploy` leaves it (trimmed)."""
    return {
        "Name": name,
        "Labels": {"com.docker.stack.namespace": name.split("_")[0], **(labels or {})},
        "TaskTemplate": {
            "ContainerSpec": {"Image": "shop/front-service:1", "StopGracePeriod": 15_000_000_000},
            "Networks": [{"Target": "backend-id", "Aliases": ["app"]}],
            "ForceUpdate": 0,
        },
        "Mode": {"Global": {}} if replicas is None else {"Replicated": {"Replicas": replicas}},
        "UpdateConfig": {"Parallelism": 1, "Order": "start-first", "FailureAction": "rollback"},
        "RollbackConfig": {"Parallelism": 1, "Order": "start-first"},
        "EndpointSpec": {"Mode": "dnsrr"},
    }


@dataclass
class FakeService:
    id: str
    name: str
    version: int
    attrs: dict[str, Any]


@dataclass
class FakeApi:
    updates: list[dict[str, Any]] = field(default_factory=list)

    def update_service(self, service: str, version: int, **kwargs: Any) -> dict[str, Any]:
        self.updates.append({"service": service, "version": version, **kwargs})
        return {"Warnings": None}


@dataclass
class FakeServices:
    items: list[FakeService]

    def list(self, **kwargs: Any) -> list[FakeService]:
        assert not kwargs  # every service is read; the labels are checked here
        return list(self.items)


class FakeDocker:
    def __init__(self, *services: FakeService) -> None:
        self.services = FakeServices(list(services))
        self.api = FakeApi()


def service(name: str, attrs_spec: dict, version: int = 7, update_state: str | None = None):
    attrs: dict[str, Any] = {"ID": f"id-{name}", "Spec": attrs_spec}
    if update_state is not None:
        attrs["UpdateStatus"] = {"State": update_state}
    return FakeService(f"id-{name}", name, version, attrs)


def test_only_labelled_services_are_autoscaled():
    """Services without autoscale labels (the edge, prod, coupon) are not listed at all."""
    docker = FakeDocker(
        service("front_app", spec("front_app", LABELS), update_state="completed"),
        service("prod_app", spec("prod_app")),
        service("edge_proxy", spec("edge_proxy", replicas=None)),
    )

    services, skipped = Swarm(docker).autoscaled()

    assert [s.name for s in services] == ["front_app"]
    assert skipped == {}
    (front,) = services
    assert front.policy == Policy(2, 6, 250.0)
    assert (front.id, front.version, front.current) == ("id-front_app", 7, 2)
    assert front.update_state == "completed"


def test_update_state_is_empty_without_an_update_status():
    """A service never updated has no UpdateStatus: its state reads as ''."""
    docker = FakeDocker(service("front_app", spec("front_app", LABELS)))
    (front,), _ = Swarm(docker).autoscaled()
    assert front.update_state == ""


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ({"io.swarm-shop.autoscale.min": "2"}, "missing"),
        ({**LABELS, "io.swarm-shop.autoscale.min": "two"}, "invalid"),
        ({**LABELS, "io.swarm-shop.autoscale.min": "7"}, "min <= max"),
        ({**LABELS, "io.swarm-shop.autoscale.target-rps": "0"}, "target"),
    ],
)
def test_unusable_labels_skip_the_service_with_a_reason(labels, problem):
    """Half a set of labels, or values that do not make a policy: reported, never scaled."""
    docker = FakeDocker(service("front_app", spec("front_app", labels)))
    services, skipped = Swarm(docker).autoscaled()
    assert services == []
    assert problem in skipped["front_app"]


def test_global_services_are_skipped():
    """A labelled global service has no replica count to set."""
    docker = FakeDocker(service("edge_proxy", spec("edge_proxy", LABELS, replicas=None)))
    services, skipped = Swarm(docker).autoscaled()
    assert services == []
    assert skipped == {"edge_proxy": "not a replicated service"}


def test_spec_parts_the_update_cannot_carry_skip_the_service():
    """A spec with a part update_service() would not send back is not scaled (it would be lost)."""
    odd = {**spec("front_app", LABELS), "Networks": [{"Target": "old-style"}]}
    services, skipped = Swarm(FakeDocker(service("front_app", odd))).autoscaled()
    assert services == []
    assert "Networks" in skipped["front_app"]


def test_scale_sends_the_spec_as_read_with_only_the_count_changed():
    """The update carries the version read and the whole spec; only Mode differs."""
    original = spec("front_app", LABELS)
    docker = FakeDocker(service("front_app", copy.deepcopy(original), version=42))
    swarm = Swarm(docker)
    (front,), _ = swarm.autoscaled()

    swarm.scale(front, 5)

    (update,) = docker.api.updates
    assert (update["service"], update["version"]) == ("id-front_app", 42)
    assert update["mode"] == {"Replicated": {"Replicas": 5}}
    sent = {
        "Name": update["name"],
        "Labels": update["labels"],
        "TaskTemplate": update["task_template"],
        "Mode": {"Replicated": {"Replicas": 2}},
        "UpdateConfig": update["update_config"],
        "RollbackConfig": update["rollback_config"],
        "EndpointSpec": update["endpoint_spec"],
    }
    assert sent == original
    assert "fetch_current_spec" not in update  # no re-read with the engine's defaults


def test_policy_from_labels():
    """No autoscale label: None; all three: a policy; anything else: InvalidLabels."""
    assert policy_from_labels(None) is None
    assert policy_from_labels({"com.docker.stack.namespace": "front"}) is None
    assert policy_from_labels(LABELS) == Policy(2, 6, 250.0)
    assert policy_from_labels({**LABELS, "io.swarm-shop.autoscale.target-rps": "12.5"}) == Policy(
        2, 6, 12.5
    )
    with pytest.raises(InvalidLabels, match=r"missing io\.swarm-shop\.autoscale\.max"):
        policy_from_labels({"io.swarm-shop.autoscale.min": "2",
                            "io.swarm-shop.autoscale.target-rps": "1"})
