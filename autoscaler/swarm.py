"""The swarm side: which services carry autoscale labels, and setting their replica count.

Only the Docker SDK's public API: `client.services.list()`, each service's `attrs`, `id`,
`name` and `version`, and `client.api.update_service()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import docker

from autoscaler.policy import Policy

LABEL_PREFIX = "io.swarm-shop.autoscale."
MIN_LABEL = LABEL_PREFIX + "min"
MAX_LABEL = LABEL_PREFIX + "max"
TARGET_LABEL = LABEL_PREFIX + "target-rps"
LABELS = (MIN_LABEL, MAX_LABEL, TARGET_LABEL)

# Every part of a service spec that update_service() sends back. A spec with anything else
# is not scaled: that part would be lost in the update.
_SPEC_KEYS = frozenset(
    {"Name", "Labels", "TaskTemplate", "Mode", "UpdateConfig", "RollbackConfig", "EndpointSpec"}
)


class InvalidLabels(ValueError):
    """A service has autoscale labels, but not a usable set of them."""


@dataclass(frozen=True)
class ScalableService:
    id: str
    name: str
    version: int
    current: int  # the replica count in the spec
    update_state: str  # UpdateStatus.State, "" when the service never had an update
    policy: Policy
    spec: dict[str, Any]


def policy_from_labels(labels: dict[str, str] | None) -> Policy | None:
    """The service's policy; None without any autoscale label; InvalidLabels if unusable."""
    labels = labels or {}
    present = [name for name in LABELS if name in labels]
    if not present:
        return None
    missing = [name for name in LABELS if name not in labels]
    if missing:
        raise InvalidLabels(f"missing {', '.join(missing)}")
    try:
        return Policy(
            min_replicas=int(labels[MIN_LABEL]),
            max_replicas=int(labels[MAX_LABEL]),
            target_rps=float(labels[TARGET_LABEL]),
        )
    except ValueError as exc:
        raise InvalidLabels(str(exc)) from exc


class Swarm:
    """Reads and scales the labelled services of the swarm this manager's engine runs."""

    def __init__(self, client: docker.DockerClient) -> None:
        self._client = client

    def autoscaled(self) -> tuple[list[ScalableService], dict[str, str]]:
        """The labelled services, and {service name: problem} for labelled ones it skips."""
        services: list[ScalableService] = []
        skipped: dict[str, str] = {}
        for service in self._client.services.list():
            spec = service.attrs["Spec"]
            try:
                policy = policy_from_labels(spec.get("Labels"))
            except InvalidLabels as exc:
                skipped[service.name] = f"invalid autoscale labels: {exc}"
                continue
            if policy is None:
                continue
            replicated = spec.get("Mode", {}).get("Replicated")
            if replicated is None:
                skipped[service.name] = "not a replicated service"
                continue
            if not set(spec) <= _SPEC_KEYS:
                extra = ", ".join(sorted(set(spec) - _SPEC_KEYS))
                skipped[service.name] = f"spec has parts the update cannot carry: {extra}"
                continue
            services.append(
                ScalableService(
                    id=service.attrs["ID"],
                    name=service.name,
                    version=service.version,
                    current=int(replicated.get("Replicas", 0)),
                    update_state=(service.attrs.get("UpdateStatus") or {}).get("State", ""),
                    policy=policy,
                    spec=spec,
                )
            )
        return services, skipped

    def scale(self, service: ScalableService, replicas: int) -> None:
        """Set the replica count, sending back the spec exactly as read.

        Not `Service.scale()`: it re-reads the spec with the engine's defaults inserted, and
        Engine 20.10 takes those defaults for a changed task template, so every scale would
        restart all tasks as a rolling update. The version read with the spec makes the engine
        refuse the write if anyone changed the service since ("update out of sequence").
        """
        spec = service.spec
        self._client.api.update_service(
            service.id,
            service.version,
            task_template=spec["TaskTemplate"],
            name=spec["Name"],
            labels=spec.get("Labels"),
            mode={"Replicated": {"Replicas": replicas}},
            update_config=spec.get("UpdateConfig"),
            rollback_config=spec.get("RollbackConfig"),
            endpoint_spec=spec.get("EndpointSpec"),
        )
