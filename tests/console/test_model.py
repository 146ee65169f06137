"""The console's state model, events in and timeline out: a rolling update read the way the
console reads the swarm (a listing of nodes, services and tasks at a time), a killed task, a
node that goes down, the probe's requests by second, the autoscaler's decisions, and the
bounds that keep a few hundred tasks of history cheap."""

from __future__ import annotations

from dataclasses import replace

import pytest

from console.model import (
    ConsoleState,
    NodeInfo,
    RequestResult,
    ServiceInfo,
    TaskInfo,
    release_of,
    task_phase,
)

NODE = NodeInfo(id="n1", hostname="node1", role="manager", state="ready", availability="active",
                leader=True, updated=10.0)
FRONT = ServiceInfo(id="s-front", name="front_app", image="shop/front-service:1", replicas=2,
                    update_state="", update_started=None, update_completed=None,
                    update_message="", created=10.0)


def task(ident: str, slot: int, image: str = "shop/front-service:1", state: str = "running",
         desired: str = "running", created: float = 40.0, since: float = 50.0,
         updated: float | None = None, **extra: object) -> TaskInfo:
    fields: dict[str, object] = {
        "id": ident, "service_id": "s-front", "slot": slot, "node_id": "n1", "image": image,
        "state": state, "desired": desired, "has_healthcheck": True, "created": created,
        "state_since": since, "updated": since if updated is None else updated, "message": "",
        "error": "", "exit_code": None, "container_id": f"c-{ident}" + "0" * 20,
    }
    fields.update(extra)
    return TaskInfo(**fields)  # type: ignore[arg-type]


@pytest.fixture
def state() -> ConsoleState:
    """A state that has read a swarm of one node with two front tasks of release 1."""
    state = ConsoleState(history_s=600)
    state.apply_swarm(100.0, [NODE], [FRONT], [task("a1", 1), task("a2", 2)])
    return state


def kinds(state: ConsoleState) -> list[tuple[float, str]]:
    return [(m.t, m.kind) for m in state.marks]


@pytest.mark.parametrize(("state", "desired", "healthcheck", "phase"), [
    ("new", "running", True, "starting"),
    ("preparing", "running", True, "starting"),
    ("starting", "running", True, "starting"),
    ("running", "running", True, "healthy"),
    ("running", "running", False, "running"),
    ("running", "shutdown", True, "draining"),
    ("shutdown", "shutdown", True, "shutdown"),
    ("complete", "shutdown", True, "shutdown"),
    ("failed", "shutdown", True, "failed"),
    ("rejected", "shutdown", True, "rejected"),
    ("orphaned", "shutdown", True, "shutdown"),
])
def test_task_phase(state: str, desired: str, healthcheck: bool, phase: str) -> None:
    """Swarm says running only after the healthcheck passed: running is healthy; told to stop
    while running is draining; the pre-running states are starting."""
    assert task_phase(state, desired, healthcheck) == phase


@pytest.mark.parametrize(("image", "release"), [
    ("shop/front-service:2", "2"),
    ("172.28.53.11:5000/shop/front-service:1@sha256:abc", "1"),
    ("localhost:5000/front-service", "latest"),
    ("front-service", "latest"),
])
def test_release_is_the_image_tag(image: str, release: str) -> None:
    """A task's release is its image's tag, without a pinned digest or a registry port."""
    assert release_of(image) == release


def test_first_reading_gives_each_task_its_start(state: ConsoleState) -> None:
    """Tasks running when the console starts show their start-up from creation to healthy,
    and a mark for their start; nothing is marked as created by the console's own start."""
    out = state.changes_since(0, 100.0)
    assert out["full"] is True
    phases = {t["id"]: t["phases"] for t in out["tasks"]}
    assert phases["a1"] == [[40.0, "starting"], [50.0, "healthy"]]
    assert {t["release"] for t in out["tasks"]} == {"1"}
    assert kinds(state) == [(50.0, "task_started"), (50.0, "task_started")]
    assert out["nodes"][0]["hostname"] == "node1"
    assert out["services"][0]["release"] == "1"


def test_rolling_update_reads_as_old_tasks_giving_way(state: ConsoleState) -> None:
    """Start-first, one at a time: the new task starts, turns healthy, then the old one
    drains and shuts down; the update's start and end are marks at the engine's times."""
    updating = replace(FRONT, image="shop/front-service:2", update_state="updating",
                       update_started=200.0, update_message="update in progress")
    b1 = task("b1", 1, image="shop/front-service:2", state="starting", created=200.0,
              since=201.0)
    state.apply_swarm(202.0, [NODE], [updating], [task("a1", 1), task("a2", 2), b1])
    seen = state.seq
    state.apply_swarm(210.0, [NODE], [updating], [
        task("a1", 1, desired="shutdown", updated=208.5), task("a2", 2),
        replace(b1, state="running", state_since=208.0)])
    changed = state.changes_since(seen, 210.0)
    assert {t["id"] for t in changed["tasks"]} == {"a1", "b1"}
    assert changed["services"] == []
    state.apply_swarm(216.0, [NODE], [updating], [
        task("a1", 1, state="shutdown", desired="shutdown", since=215.0), task("a2", 2),
        replace(b1, state="running", state_since=208.0)])
    done = replace(updating, update_state="completed", update_completed=260.0,
                   update_message="update completed")
    state.apply_swarm(261.0, [NODE], [done], [
        task("a1", 1, state="shutdown", desired="shutdown", since=215.0), task("a2", 2),
        replace(b1, state="running", state_since=208.0)])

    a1 = state.tasks["a1"]
    assert a1.phases == [(40.0, "starting"), (50.0, "healthy"), (208.5, "draining"),
                         (215.0, "shutdown")]
    assert state.tasks["b1"].phases == [(200.0, "starting"), (208.0, "healthy")]
    assert state.tasks["b1"].release == "2"
    assert (200.0, "update_started") in kinds(state)
    assert (208.0, "task_started") in kinds(state)
    assert (260.0, "update_completed") in kinds(state)
    assert not state.settling


def test_a_service_first_seen_mid_history_gets_both_update_marks() -> None:
    """A console started after an update completed still marks its start and its end."""
    state = ConsoleState()
    done = replace(FRONT, update_state="completed", update_started=200.0,
                   update_completed=250.0)
    state.apply_swarm(300.0, [NODE], [done], [])
    assert kinds(state) == [(200.0, "update_started"), (250.0, "update_completed")]


def test_rollback_marks(state: ConsoleState) -> None:
    """An update that fails and rolls back leaves started, rollback started and completed."""
    for when, status in ((200.0, "updating"), (230.0, "rollback_started"),
                         (260.0, "rollback_completed")):
        service = replace(FRONT, update_state=status, update_started=when - 0.5,
                          update_completed=when if status == "rollback_completed" else None)
        state.apply_swarm(when, [NODE], [service], [task("a1", 1), task("a2", 2)])
    assert [k for _, k in kinds(state) if "update" in k or "rollback" in k] == [
        "update_started", "rollback_started", "rollback_completed"]


def test_a_killed_task_is_marked_killed_with_its_error(state: ConsoleState) -> None:
    """A task that failed with exit code 137 (SIGKILL) is marked killed, with swarm's error."""
    state.apply_swarm(300.0, [NODE], [FRONT], [
        task("a1", 1, state="failed", desired="shutdown", since=299.0, exit_code=137,
             error="task: non-zero exit (137)"), task("a2", 2)])
    mark = state.marks[-1]
    assert (mark.t, mark.kind) == (299.0, "task_killed")
    assert mark.text == "front_app.1 killed: task: non-zero exit (137)"
    assert mark.node == "node1"
    assert state.tasks["a1"].ended == 299.0


def test_a_failed_task_is_marked_failed(state: ConsoleState) -> None:
    """Any other failure is a failed mark, and a rejected task a rejected one."""
    state.apply_swarm(300.0, [NODE], [FRONT], [
        task("a1", 1, state="failed", desired="shutdown", since=299.0, exit_code=1,
             error="task: non-zero exit (1)"),
        task("a2", 2, state="rejected", desired="shutdown", since=299.5,
             error="No such image: shop/front-service:9")])
    assert kinds(state)[-2:] == [(299.0, "task_failed"), (299.5, "task_rejected")]


def test_node_down_and_up(state: ConsoleState) -> None:
    """A node's state leaving ready and coming back are two marks, at the engine's times."""
    down = replace(NODE, state="down", updated=400.0)
    state.apply_swarm(401.0, [down], [FRONT], [task("a1", 1), task("a2", 2)])
    state.apply_swarm(420.0, [replace(NODE, updated=419.0)], [FRONT],
                      [task("a1", 1), task("a2", 2)])
    assert kinds(state)[-2:] == [(400.0, "node_down"), (419.0, "node_up")]


def test_scaling_and_removal_are_marked(state: ConsoleState) -> None:
    """A replica count that changes is a mark with both counts; a service that goes is one."""
    state.apply_swarm(300.0, [NODE], [replace(FRONT, replicas=4)], [task("a1", 1),
                                                                    task("a2", 2)])
    assert state.marks[-1].text == "front_app replicas 2 -> 4"
    state.apply_swarm(310.0, [NODE], [], [])
    assert state.marks[-1].kind == "service_removed"


def test_tasks_that_swarm_forgets_are_kept_as_history(state: ConsoleState) -> None:
    """Swarm keeps few old tasks per slot; a task no longer listed stays on the page, ended
    (a visualiser that drops it loses the update's history)."""
    state.apply_swarm(300.0, [NODE], [FRONT], [task("a2", 2)])
    assert state.tasks["a1"].phases[-1] == (300.0, "shutdown")
    assert state.tasks["a1"].message == "no longer listed by the swarm"


def test_an_old_task_first_seen_ended_shows_what_the_console_did_not_see() -> None:
    """A task that had already drained before the console started: its life until then is
    `earlier`, not a start-up that lasted for ever."""
    state = ConsoleState()
    state.apply_swarm(300.0, [NODE], [FRONT], [
        task("old", 1, state="shutdown", desired="shutdown", since=250.0)])
    assert state.tasks["old"].phases == [(40.0, "earlier"), (250.0, "shutdown")]


def test_requests_by_second_release_instance_and_failure() -> None:
    """Each second counts answers by release and by instance, failures by status apart with
    their request ids, and p50/p99 of what was answered."""
    state = ConsoleState()
    for n in range(10):
        state.add_request(RequestResult(f"r{n}", 1000.1 + n / 20, 2.0 + n, 200, "", "1",
                                        "abc123456789"))
    state.add_request(RequestResult("bad", 1000.9, 1.0, 503, "status_503", "2", "def"))
    state.add_request(RequestResult("lost", 1000.95, 2000.0, None, "timeout", "", ""))
    second = state.changes_since(0, 1002.0)["seconds"][0]
    assert second["t"] == 1000
    assert (second["ok"], second["failed"]) == (10, 2)
    assert second["releases"] == {"1": 10}
    assert second["instances"] == {"abc123456789": {"n": 10, "release": "1"},
                                   "def": {"n": 1, "release": "2"}}
    assert second["failures"] == {"503": 1, "timeout": 1}
    assert second["failed_ids"] == ["bad", "lost"]
    assert second["p50_ms"] == 6.0  # 11 answered (the 503 too): 1, 2..11 ms
    assert second["p99_ms"] == 11.0
    assert state.totals == {"requests": 12, "failed": 2}
    assert [r.request_id for r in state.requests_between(1000.9, 1001.0)] == ["bad", "lost"]
    assert state.request("bad") is not None


def test_autoscaler_decisions_are_marks_once() -> None:
    """A decision line read twice (a log stream opened again) is one mark, with its figures."""
    state = ConsoleState()
    line = {"event": "decision", "action": "scale_up", "swarm_service": "front_app",
            "current": 2, "desired": 5, "reason": "scale_up", "total_rps": 70.2,
            "observed_rps": 35.1, "target_rps": 15.0}
    state.add_decision(500.0, line)
    state.add_decision(500.0, dict(line))
    assert len(state.marks) == 1
    mark = state.marks[0]
    assert mark.text == "autoscaler scale_up front_app: 2 -> 5 (scale_up)"
    assert mark.detail["observed_rps"] == 35.1


def test_changes_since_sends_only_what_changed(state: ConsoleState) -> None:
    """A page that has seen sequence N gets only newer items; with nothing new, nothing."""
    seen = state.seq
    assert state.changes_since(seen, 101.0)["tasks"] == []
    state.add_request(RequestResult("r", 101.5, 3.0, 200, "", "1", "x"))
    out = state.changes_since(seen, 102.0)
    assert (out["full"], len(out["seconds"]), out["tasks"]) == (False, 1, [])
    assert out["totals"] == {"requests": 1, "failed": 0}
    assert "sources" not in out


def test_history_is_pruned_and_pages_are_told(state: ConsoleState) -> None:
    """What ended before the history window goes; a page that was up to date is told what to
    drop; one that fell behind the removals it can be told gets everything again."""
    state.apply_swarm(110.0, [NODE], [FRONT], [
        task("a1", 1, state="shutdown", desired="shutdown", since=105.0), task("a2", 2)])
    state.add_request(RequestResult("r", 100.0, 3.0, 200, "", "1", "x"))
    seen = state.seq
    state.prune(800.0)  # history 600 s: ended before 200 goes
    assert "a1" not in state.tasks
    assert "a2" in state.tasks
    out = state.changes_since(seen, 800.0)
    assert {(r["kind"], r["id"]) for r in out["removed"]} >= {("task", "a1"), ("second", "100")}
    assert all(m.t >= 200.0 for m in state.marks)


def test_a_few_hundred_tasks_stay_bounded() -> None:
    """The number of tasks kept is bounded: the oldest ended ones go first."""
    state = ConsoleState(history_s=3600, max_tasks=100)
    tasks = [task(f"t{n}", n, state="shutdown", desired="shutdown", created=float(n),
                  since=float(n) + 1) for n in range(300)]
    state.apply_swarm(400.0, [NODE], [FRONT], tasks)
    state.prune(400.0)
    assert len(state.tasks) == 100
    assert min(int(t[1:]) for t in state.tasks) == 200


def test_a_task_listed_before_its_service_waits_for_it() -> None:
    """Services and tasks are two calls: a task of a service created between them is taken
    at the next reading, with its service's name (never named by an id)."""
    state = ConsoleState()
    state.apply_swarm(100.0, [NODE], [], [task("a1", 1)])
    assert state.tasks == {}
    state.apply_swarm(101.0, [NODE], [FRONT], [task("a1", 1)])
    assert state.tasks["a1"].name == "front_app.1"
    assert state.marks[-1].text == "front_app.1 healthy (release 1)"
