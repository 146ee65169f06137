"""How many replicas a service should run: the Kubernetes HorizontalPodAutoscaler's algorithm,
as a pure computation (no Docker, no Prometheus, no clock of its own).

    desired = ceil(current x observed / target)

where observed is the request rate per replica (the service's total rate over its current
replica count, so desired is ceil(total / target)). No change while observed / target is
within the tolerance of 1; the result is clamped to [min, max]; a scale-up happens at once
but adds at most max(100 %, 4 replicas) per step; a scale-down goes only as low as the
highest recommendation of the last stabilization window, so a short dip in traffic does not
remove replicas that the next burst needs. Without data, or while the service's own rolling
update or rollback runs, nothing changes.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

# A service mid-update has old and new tasks side by side; scaling it would also write a
# new spec under the updater (and can resume a paused update), so the autoscaler waits.
UPDATE_IN_PROGRESS = frozenset({"updating", "paused", "rollback_started", "rollback_paused"})

SCALE_UP_FACTOR = 2  # at most double per step ...
SCALE_UP_PODS = 4  # ... or add 4, whichever is more (HPA's default scale-up policies)

# Float arithmetic puts exact figures a hair off (1.1 - 1.0 > 0.1; a ceil() argument that
# should be 3 comes out 3.0000000004): comparisons allow this much.
_EPSILON = 1e-9


class Reason(StrEnum):
    """Why a decision is what it is (one value per outcome, used in logs and metrics)."""

    SCALE_UP = "scale_up"
    SCALE_UP_LIMITED = "scale_up_limited"  # the recommendation was above the step limit
    SCALE_DOWN = "scale_down"
    SCALE_DOWN_STABILIZED = "scale_down_stabilized"  # less far down than recommended
    STABILIZED = "stabilized"  # the recommendation is lower, the window holds the count
    WITHIN_TOLERANCE = "within_tolerance"
    STEADY = "steady"  # the recommendation is the current count
    AT_MAX = "at_max"  # wanted more than max
    AT_MIN = "at_min"  # wanted fewer than min
    ABOVE_MAX = "above_max"  # runs more than max: back to max
    BELOW_MIN = "below_min"  # runs fewer than min: up to min
    NO_DATA = "no_data"  # hold: no request rate for the service
    UPDATE_IN_PROGRESS = "update_in_progress"  # hold: its rolling update or rollback runs
    SCALED_TO_ZERO = "scaled_to_zero"  # hold: someone stopped it on purpose

    @property
    def holds(self) -> bool:
        """True for the outcomes that leave the count alone for lack of a safe basis."""
        return self in (Reason.NO_DATA, Reason.UPDATE_IN_PROGRESS, Reason.SCALED_TO_ZERO)


@dataclass(frozen=True)
class Policy:
    """A service's bounds and its target request rate per replica (from its labels)."""

    min_replicas: int
    max_replicas: int
    target_rps: float

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"need 1 <= min <= max, got min {self.min_replicas}, max {self.max_replicas}"
            )
        if not (self.target_rps > 0 and math.isfinite(self.target_rps)):
            raise ValueError(f"target rate must be a positive number, got {self.target_rps}")


@dataclass(frozen=True)
class Decision:
    current: int
    desired: int
    reason: Reason
    recommendation: int | None = None  # before limits and stabilization; None on a hold
    total_rps: float | None = None
    observed_rps: float | None = None  # per replica

    @property
    def changes(self) -> bool:
        return self.desired != self.current


def recommend(current: int, total_rps: float, target_rps: float, tolerance: float) -> int:
    """HPA's raw recommendation: ceil(current x ratio), or current while within tolerance."""
    ratio = total_rps / current / target_rps
    if within_tolerance(ratio, tolerance):
        return current
    return max(0, math.ceil(current * ratio - _EPSILON))


def within_tolerance(ratio: float, tolerance: float) -> bool:
    return abs(ratio - 1.0) <= tolerance + _EPSILON


def scale_up_limit(current: int) -> int:
    return max(current * SCALE_UP_FACTOR, current + SCALE_UP_PODS)


class Recommender:
    """Decides per service; remembers each service's recommendations for the scale-down
    stabilization window (the only state the algorithm has)."""

    def __init__(self, tolerance: float = 0.1, down_stabilization_s: float = 60.0) -> None:
        if tolerance < 0 or down_stabilization_s < 0:
            raise ValueError("tolerance and stabilization window must be >= 0")
        self.tolerance = tolerance
        self.down_stabilization_s = down_stabilization_s
        self._history: dict[str, deque[tuple[float, int]]] = {}

    def decide(
        self,
        service: str,
        policy: Policy,
        current: int,
        total_rps: float | None,
        now: float,
        update_state: str = "",
    ) -> Decision:
        """The replica count `service` should run now, given its total request rate."""
        if update_state in UPDATE_IN_PROGRESS:
            return Decision(current, current, Reason.UPDATE_IN_PROGRESS, total_rps=total_rps)
        if current == 0:
            return Decision(current, current, Reason.SCALED_TO_ZERO, total_rps=total_rps)
        if current > policy.max_replicas:
            return Decision(current, policy.max_replicas, Reason.ABOVE_MAX, total_rps=total_rps)
        if current < policy.min_replicas:
            return Decision(current, policy.min_replicas, Reason.BELOW_MIN, total_rps=total_rps)
        if total_rps is None or not math.isfinite(total_rps) or total_rps < 0:
            return Decision(current, current, Reason.NO_DATA)

        observed = total_rps / current
        raw = recommend(current, total_rps, policy.target_rps, self.tolerance)
        highest = self._remember(service, raw, now)

        if raw > current:
            desired, reason = raw, Reason.SCALE_UP
            if desired > scale_up_limit(current):
                desired, reason = scale_up_limit(current), Reason.SCALE_UP_LIMITED
            if desired > policy.max_replicas:
                desired, reason = policy.max_replicas, Reason.AT_MAX
            if desired == current:  # already at max
                reason = Reason.AT_MAX
        elif raw < current:
            desired = min(current, highest)
            reason = Reason.SCALE_DOWN if desired == raw else Reason.SCALE_DOWN_STABILIZED
            if desired < policy.min_replicas:
                desired, reason = policy.min_replicas, Reason.AT_MIN
            if desired == current:
                reason = Reason.AT_MIN if desired == policy.min_replicas else Reason.STABILIZED
        else:
            desired = current
            steady = within_tolerance(observed / policy.target_rps, self.tolerance)
            reason = Reason.WITHIN_TOLERANCE if steady else Reason.STEADY
        return Decision(current, desired, reason, raw, total_rps, observed)

    def _remember(self, service: str, recommendation: int, now: float) -> int:
        """Record a recommendation; the highest one of the stabilization window."""
        history = self._history.setdefault(service, deque())
        history.append((now, recommendation))
        while history and history[0][0] < now - self.down_stabilization_s:
            history.popleft()
        return max(r for _, r in history)

    def forget(self, keep: set[str]) -> None:
        """Drop the history of services that are gone (or lost their labels)."""
        for service in set(self._history) - keep:
            del self._history[service]
