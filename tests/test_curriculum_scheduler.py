"""Promotion rules of the curriculum scheduler (pure logic, no cluster)."""

import math

import pytest

from curriculum.core.config import BackoffConfig, GateConfig, StageConfig
from curriculum.core.scheduler import Action, SchedulerState, count_steps, decide, gate_passes


def stage(size, threshold=0.8, patience=2, min_steps=0, max_steps=1000, metric="valid_route", guard=1.5):
    return StageConfig(
        size=size,
        gate=GateConfig(metric=metric, threshold=threshold, patience=patience, guard_max_excess=guard),
        min_steps=min_steps,
        max_steps=max_steps,
    )


LADDER = [stage(10), stage(20), stage(30)]
GOOD = {"valid_route": 0.9, "connectivity": 0.95, "excess": 1.1}
BAD = {"valid_route": 0.2, "connectivity": 0.3, "excess": 1.2}


def run(metrics_seq, stages=LADDER, steps_between=100, backoff=None, state=None):
    state = state or SchedulerState()
    actions = []
    for i, metrics in enumerate(metrics_seq):
        state = count_steps(state, steps_between)
        action, state = decide(state, stages, metrics, step=(i + 1) * steps_between, backoff=backoff)
        actions.append(action)
    return actions, state


def test_promotes_after_patience_consecutive_passes():
    actions, state = run([GOOD, GOOD])
    assert actions == [Action.STAY, Action.PROMOTE]
    assert state.stage == 1 and state.steps_in_stage == 0 and state.streak == 0
    t = state.transitions[-1]
    assert (t.step, t.from_stage, t.to_stage, t.action) == (200, 0, 1, Action.PROMOTE)


def test_a_failing_evaluation_resets_the_streak():
    actions, state = run([GOOD, BAD, GOOD, GOOD])
    assert actions == [Action.STAY, Action.STAY, Action.STAY, Action.PROMOTE]


def test_mark_everything_cheat_never_promotes():
    # Marking every cell (or every road) connects start and end but has a huge excess.
    cheat = {"valid_route": 0.0, "connectivity": 1.0, "excess": 25.0, "valid": 1.0}
    actions, state = run([cheat] * 20, stages=[stage(10, metric="connectivity", max_steps=10_000)])
    assert set(actions) == {Action.STAY} and state.stage == 0
    assert not gate_passes(stage(10, metric="connectivity").gate, cheat)


def test_guard_can_be_switched_off():
    cheat = {"connectivity": 1.0, "excess": 25.0}
    assert gate_passes(stage(10, metric="connectivity", guard=None).gate, cheat)


def test_min_steps_holds_the_promotion_back():
    stages = [stage(10, patience=1, min_steps=250), stage(20)]
    actions, state = run([GOOD, GOOD, GOOD], stages=stages)
    assert actions == [Action.STAY, Action.STAY, Action.PROMOTE]


def test_last_stage_gate_finishes_the_curriculum():
    actions, state = run([GOOD] * 6)
    assert actions[-1] == Action.FINISH and state.status == "finished" and state.stage == 2
    assert [t.action for t in state.transitions] == [Action.PROMOTE, Action.PROMOTE, Action.FINISH]
    assert decide(state, LADDER, GOOD, step=999)[0] == Action.STAY  # nothing happens after the end


def test_max_steps_stalls_and_is_reported():
    stages = [stage(10, max_steps=300)]
    actions, state = run([BAD] * 5, stages=stages)
    assert actions == [Action.STAY, Action.STAY, Action.STALL, Action.STAY, Action.STAY]
    assert state.status == "stalled" and state.transitions[-1].action == Action.STALL


def test_nan_metric_never_passes():
    actions, _ = run([{"valid_route": math.nan, "excess": 1.0}] * 3)
    assert set(actions) == {Action.STAY}


def test_back_off_after_a_collapse():
    backoff = BackoffConfig(enabled=True, collapse_below=0.3, patience=2)
    collapse = {"valid_route": 0.05, "excess": 1.0}
    actions, state = run([GOOD, GOOD, collapse, collapse], backoff=backoff)
    assert actions == [Action.STAY, Action.PROMOTE, Action.STAY, Action.BACK_OFF]
    assert state.stage == 0 and state.transitions[-1].action == Action.BACK_OFF


def test_no_back_off_when_disabled_or_on_the_first_stage():
    collapse = {"valid_route": 0.0, "excess": 1.0}
    actions, state = run([collapse] * 4, backoff=BackoffConfig(enabled=True, collapse_below=0.3, patience=1))
    assert state.stage == 0 and set(actions) == {Action.STAY}
    actions, state = run([GOOD, GOOD, collapse, collapse, collapse], backoff=BackoffConfig(enabled=False))
    assert state.stage == 1


def test_state_round_trips_through_json():
    _, state = run([GOOD, GOOD, GOOD])
    again = SchedulerState.model_validate_json(state.model_dump_json())
    assert again == state
    a1, s1 = decide(state, LADDER, GOOD, step=400)
    a2, s2 = decide(again, LADDER, GOOD, step=400)
    assert a1 == a2 and s1 == s2


@pytest.mark.parametrize("metric", ["valid_route", "optimal", "connectivity"])
def test_gate_uses_the_configured_metric(metric):
    metrics = {"valid_route": 0.1, "optimal": 0.1, "connectivity": 0.1, "excess": 1.0, metric: 0.95}
    assert gate_passes(stage(10, metric=metric).gate, metrics)
    others = [m for m in ("valid_route", "optimal", "connectivity") if m != metric]
    assert not gate_passes(stage(10, metric=others[0]).gate, metrics)


def test_curriculum_score_only_grows_through_promotions():
    from curriculum.core.scheduler import curriculum_score

    state = SchedulerState()
    scores = []
    for metrics in [BAD, GOOD, GOOD, BAD, GOOD, GOOD, GOOD, GOOD]:
        state = count_steps(state, 100)
        action, state = decide(state, LADDER, metrics, step=0)
        scores.append(curriculum_score(state, len(LADDER), metrics["valid_route"], action))
    assert scores == [0.2, 0.9, 1.0, 1.2, 1.9, 2.0, 2.9, 3.0]
    assert state.status == "finished"


def test_a_cost_ratio_guard_asks_for_cheap_routes_not_only_connected_ones():
    gate = GateConfig(metric="optimal", threshold=0.5, guard_max_cost_ratio=1.05)
    cheap = {"optimal": 0.6, "excess": 1.0, "cost_ratio": 1.02}
    assert gate_passes(gate, cheap)
    assert not gate_passes(gate, {**cheap, "cost_ratio": 1.2})
    assert not gate_passes(gate, {**cheap, "cost_ratio": float("nan")})  # nothing connected
    assert not gate_passes(gate, {**cheap, "excess": 1.6})  # the excess guard still holds
    assert gate_passes(GateConfig(metric="optimal", threshold=0.5), {**cheap, "cost_ratio": 1.2})
