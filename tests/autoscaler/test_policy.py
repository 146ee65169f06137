"""The scaling algorithm, table by table: Kubernetes HPA's formula, tolerance, bounds, the
scale-up step limit, the scale-down stabilization window, and when it must hold."""

import math
from dataclasses import dataclass

import pytest

from autoscaler.policy import (
    Policy,
    Reason,
    Recommender,
    recommend,
    scale_up_limit,
)

WIDE = Policy(min_replicas=1, max_replicas=50, target_rps=100)
SHOP = Policy(min_replicas=2, max_replicas=6, target_rps=100)


def decide_once(policy: Policy, current: int, total: float | None, update_state: str = ""):
    return Recommender(tolerance=0.1, down_stabilization_s=60).decide(
        "front_app", policy, current, total, now=1000.0, update_state=update_state
    )


@pytest.mark.parametrize(
    ("current", "per_replica", "desired", "reason"),
    [
        # The HPA documentation's examples: 200 against a target of 100 doubles the replicas,
        # 50 against 100 halves them.
        (2, 200, 4, Reason.SCALE_UP),
        (3, 200, 6, Reason.SCALE_UP),
        (4, 50, 2, Reason.SCALE_DOWN),
        (10, 50, 5, Reason.SCALE_DOWN),
        # desired = ceil(current x ratio)
        (3, 150, 5, Reason.SCALE_UP),  # 4.5 -> 5
        (4, 74, 3, Reason.SCALE_DOWN),  # 2.96 -> 3
        (5, 10, 1, Reason.SCALE_DOWN),  # 0.5 -> 1
    ],
)
def test_hpa_formula(current, per_replica, desired, reason):
    """desired = ceil(current x observed / target), from the HPA documentation's examples."""
    decision = decide_once(WIDE, current, current * per_replica)
    assert (decision.desired, decision.reason) == (desired, reason)
    assert decision.observed_rps == pytest.approx(per_replica)


@pytest.mark.parametrize(
    ("per_replica", "desired", "reason"),
    [
        (100, 4, Reason.WITHIN_TOLERANCE),
        (105, 4, Reason.WITHIN_TOLERANCE),
        (110, 4, Reason.WITHIN_TOLERANCE),  # exactly at the tolerance: no change
        (90, 4, Reason.WITHIN_TOLERANCE),
        (111, 5, Reason.SCALE_UP),  # just outside: 4.44 -> 5
        (89, 4, Reason.STEADY),  # outside, but ceil(3.56) is still 4
        (85, 4, Reason.STEADY),
        (75, 3, Reason.SCALE_DOWN),  # ceil(3.0) is 3, not 4
    ],
)
def test_tolerance(per_replica, desired, reason):
    """Within 10 % of the target nothing changes; just outside, the formula applies."""
    decision = decide_once(WIDE, 4, 4 * per_replica)
    assert (decision.desired, decision.reason) == (desired, reason)


@pytest.mark.parametrize(
    ("current", "total", "desired", "reason"),
    [
        (4, 1200, 6, Reason.AT_MAX),  # wants 12, max is 6
        (6, 1000, 6, Reason.AT_MAX),  # already at max
        (3, 0, 2, Reason.AT_MIN),  # idle: down to min, not to 0
        (2, 0, 2, Reason.AT_MIN),  # already at min
        (2, 100, 2, Reason.AT_MIN),  # wants 1, min is 2
        (8, 100, 6, Reason.ABOVE_MAX),  # runs more than max: back to max at once
        (8, 5000, 6, Reason.ABOVE_MAX),
        (1, 5000, 2, Reason.BELOW_MIN),  # runs fewer than min: up to min
        (1, None, 2, Reason.BELOW_MIN),  # ... even without data
    ],
)
def test_clamped_to_min_and_max(current, total, desired, reason):
    """The result always lies in [min, max]; a count outside is brought back at once."""
    decision = decide_once(SHOP, current, total)
    assert (decision.desired, decision.reason) == (desired, reason)


@pytest.mark.parametrize(
    ("current", "total", "desired", "reason"),
    [
        (2, 2000, 6, Reason.SCALE_UP_LIMITED),  # wants 20; +4 beats doubling
        (1, 2000, 5, Reason.SCALE_UP_LIMITED),  # wants 20; 1 + 4
        (10, 4000, 20, Reason.SCALE_UP_LIMITED),  # wants 40; doubling beats +4
        (4, 800, 8, Reason.SCALE_UP),  # exactly the limit (max(8, 8)) is allowed
        (10, 1500, 15, Reason.SCALE_UP),
    ],
)
def test_scale_up_step_limit(current, total, desired, reason):
    """A scale-up adds at most max(100 %, 4 replicas) per step (HPA's default policies)."""
    decision = decide_once(WIDE, current, total)
    assert (decision.desired, decision.reason) == (desired, reason)
    assert decision.recommendation == math.ceil(total / 100)


def test_scale_up_limit_values():
    """max(2 x current, current + 4)."""
    assert [scale_up_limit(n) for n in (1, 2, 3, 4, 5, 10)] == [5, 6, 7, 8, 10, 20]


@pytest.mark.parametrize("total", [None, math.nan, math.inf, -1.0])
def test_missing_data_holds(total):
    """No rate (or not a number) for the service: keep the count, guess nothing."""
    decision = decide_once(SHOP, 4, total)
    assert (decision.desired, decision.reason) == (4, Reason.NO_DATA)
    assert decision.reason.holds
    assert not decision.changes


@pytest.mark.parametrize("state", ["updating", "paused", "rollback_started", "rollback_paused"])
def test_service_mid_update_holds(state):
    """During the service's rolling update or rollback (or while one is paused) nothing changes,
    however far the rate is from the target."""
    for total in (5000, 0):
        decision = decide_once(SHOP, 3, total, update_state=state)
        assert (decision.desired, decision.reason) == (3, Reason.UPDATE_IN_PROGRESS)


@pytest.mark.parametrize("state", ["", "completed", "rollback_completed"])
def test_service_after_update_scales(state):
    """Once its update or rollback has ended, the service scales again."""
    assert decide_once(SHOP, 3, 500, update_state=state).desired == 5


def test_service_scaled_to_zero_is_left_alone():
    """Zero replicas means someone stopped the service on purpose: no scaling from there."""
    decision = decide_once(SHOP, 0, 5000)
    assert (decision.desired, decision.reason) == (0, Reason.SCALED_TO_ZERO)


@dataclass
class Step:
    at: float  # seconds
    total: float  # requests/s over the whole service
    desired: int
    reason: Reason


def run_steps(policy: Policy, start: int, steps: list[Step], window: float) -> None:
    """Feed the steps in order; each step's desired count becomes the next step's current."""
    recommender = Recommender(tolerance=0.1, down_stabilization_s=window)
    current = start
    for step in steps:
        decision = recommender.decide("front_app", policy, current, step.total, step.at)
        assert (step.at, decision.desired, decision.reason) == (step.at, step.desired, step.reason)
        current = decision.desired


def test_scale_down_waits_for_the_highest_recommendation_of_the_window():
    """A scale-down goes only as low as the highest recommendation of the last 60 s."""
    run_steps(WIDE, 5, [
        Step(0, 500, 5, Reason.WITHIN_TOLERANCE),  # recommends 5
        Step(15, 200, 5, Reason.STABILIZED),  # recommends 2; 5 is in the window
        Step(30, 300, 5, Reason.STABILIZED),  # recommends 3
        Step(61, 300, 3, Reason.SCALE_DOWN),  # the 5 (t=0) left the window; 3 is the highest
        Step(76, 100, 3, Reason.STABILIZED),  # recommends 1; 3s are in the window
        Step(91, 100, 3, Reason.STABILIZED),
        Step(122, 100, 1, Reason.SCALE_DOWN),  # only 1s left in the window
    ], window=60)


def test_stabilization_lets_the_count_step_down_part_way():
    """Between a high and a low recommendation, the count goes down to the window's highest."""
    run_steps(WIDE, 8, [
        Step(0, 800, 8, Reason.WITHIN_TOLERANCE),
        Step(20, 500, 8, Reason.STABILIZED),  # recommends 5
        Step(40, 100, 8, Reason.STABILIZED),  # recommends 1
        Step(61, 100, 5, Reason.SCALE_DOWN_STABILIZED),  # 8 left; 5 still in: 5, not 1
        Step(81, 100, 1, Reason.SCALE_DOWN),  # 5 left; from 5, 1 recommends ceil(5 x 0.2) = 1
    ], window=60)


def test_scale_up_is_immediate_inside_the_window():
    """A burst right after a dip scales up at once: stabilization only delays scale-downs."""
    run_steps(WIDE, 4, [
        Step(0, 400, 4, Reason.WITHIN_TOLERANCE),
        Step(5, 100, 4, Reason.STABILIZED),
        Step(10, 1200, 8, Reason.SCALE_UP_LIMITED),  # wants 12; 4 -> 8 in one step
        Step(15, 1200, 12, Reason.SCALE_UP),
    ], window=60)


def test_without_a_window_scale_down_is_immediate():
    """With a 0 s stabilization window a lower recommendation applies at once."""
    run_steps(WIDE, 6, [
        Step(0, 600, 6, Reason.WITHIN_TOLERANCE),
        Step(5, 200, 2, Reason.SCALE_DOWN),
    ], window=0)


def test_the_shops_load_step():
    """The live scenario: min 2, max 6, 15 req/s per replica, a 30 s window, a decision every
    5 s; a 25 req/s probe, then +45 req/s of load for 30 s: out to 5 at once, back to 2 once
    the load's recommendations have left the window."""
    policy = Policy(min_replicas=2, max_replicas=6, target_rps=15)
    steps = [Step(0, 25, 2, Reason.STEADY)]  # 12.5 per replica, but ceil(2 x 0.833) is 2
    steps += [Step(5, 70, 5, Reason.SCALE_UP)]  # ceil(70 / 15)
    steps += [Step(t, 70, 5, Reason.WITHIN_TOLERANCE) for t in range(10, 35, 5)]  # 14 each
    steps += [Step(t, 25, 5, Reason.STABILIZED) for t in range(35, 65, 5)]  # 5s in the window
    steps += [Step(65, 25, 2, Reason.SCALE_DOWN)]  # 30 s after the last 5
    run_steps(policy, 2, steps, window=30)


def test_forget_drops_a_services_history():
    """A service that lost its labels starts afresh: its old recommendations no longer hold."""
    recommender = Recommender(down_stabilization_s=60)
    recommender.decide("front_app", WIDE, 6, 600, now=0)
    assert recommender.decide("front_app", WIDE, 6, 100, now=1).desired == 6
    recommender.forget(keep={"prod_app"})
    assert recommender.decide("front_app", WIDE, 6, 100, now=2).desired == 1


def test_histories_are_per_service():
    """One service's high recommendation does not hold another's scale-down."""
    recommender = Recommender(down_stabilization_s=60)
    recommender.decide("front_app", WIDE, 6, 600, now=0)
    assert recommender.decide("prod_app", WIDE, 6, 100, now=1).desired == 1


def test_recommend_is_current_within_tolerance_else_ceil():
    """The raw recommendation: current within tolerance, else ceil(current x ratio)."""
    assert recommend(4, 420, 100, 0.1) == 4
    assert recommend(4, 460, 100, 0.1) == 5
    assert recommend(4, 460, 100, 0.2) == 4
    assert recommend(3, 0, 100, 0.1) == 0


@pytest.mark.parametrize(
    ("minimum", "maximum", "target"),
    [(0, 6, 100), (3, 2, 100), (2, 6, 0), (2, 6, -5), (2, 6, math.nan), (2, 6, math.inf)],
)
def test_unusable_policies_are_refused(minimum, maximum, target):
    """min >= 1, min <= max and a positive finite target, or no policy at all."""
    with pytest.raises(ValueError, match=r"need|target"):
        Policy(minimum, maximum, target)
