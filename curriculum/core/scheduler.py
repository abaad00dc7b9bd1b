"""Curriculum decisions as pure functions: evaluation metrics in, promote / stay / back off out.

The state is plain data (stage, steps in stage, passing streak, transition history) that goes
into every checkpoint; every rank feeds it the same all-reduced metrics and so takes the same
decision at the same step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum
from typing import Literal, Optional

from pydantic import BaseModel, Field

from curriculum.core.config import BackoffConfig, GateConfig, StageConfig


class Action(str, Enum):
    STAY = "stay"
    PROMOTE = "promote"  # gate passed: next stage
    FINISH = "finish"  # gate of the last stage passed: the curriculum is complete
    BACK_OFF = "back_off"  # gate metric collapsed: previous stage
    STALL = "stall"  # stage max_steps reached without passing: the run ends, reported as stalled


class Transition(BaseModel):
    step: int
    action: Action
    from_stage: int
    to_stage: int
    metric: str
    value: float


class SchedulerState(BaseModel):
    stage: int = 0
    steps_in_stage: int = 0
    streak: int = Field(0, description="Consecutive evaluations that passed the current stage's gate.")
    collapse_streak: int = 0
    status: Literal["running", "finished", "stalled"] = "running"
    transitions: list[Transition] = Field(default_factory=list)
    readings: dict[int, float] = Field(
        default_factory=dict, description="Latest finite held-out gate metric per stage measured (replay reads it)."
    )


def record_readings(
    state: SchedulerState, stages: Sequence[StageConfig], metrics: dict[int, dict[str, float]]
) -> SchedulerState:
    """The state with each measured stage's gate metric (by stage index) as its latest reading."""
    readings = dict(state.readings)
    for stage, means in metrics.items():
        value = means.get(stages[stage].gate.metric, float("nan"))
        if isinstance(value, (int, float)) and math.isfinite(value):
            readings[stage] = float(value)
    return state.model_copy(update={"readings": readings})


def gate_passes(gate: GateConfig, metrics: dict[str, float]) -> bool:
    """The gate metric reaches its threshold and every guard holds (NaN never passes)."""
    value = metrics.get(gate.metric, float("nan"))
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= gate.threshold):
        return False
    for name, limit in (("excess", gate.guard_max_excess), ("cost_ratio", gate.guard_max_cost_ratio)):
        if limit is not None:
            guarded = metrics.get(name, float("nan"))
            if not (math.isfinite(guarded) and guarded <= limit):
                return False
    return True


def count_steps(state: SchedulerState, steps: int = 1) -> SchedulerState:
    """Record training steps taken in the current stage."""
    return state.model_copy(update={"steps_in_stage": state.steps_in_stage + steps})


def decide(
    state: SchedulerState,
    stages: Sequence[StageConfig],
    metrics: dict[str, float],
    step: int,
    backoff: Optional[BackoffConfig] = None,
) -> tuple[Action, SchedulerState]:
    """The decision after an evaluation of the current stage, and the state that follows it."""
    if state.status != "running":
        return Action.STAY, state
    stage = stages[state.stage]
    gate = stage.gate
    value = float(metrics.get(gate.metric, float("nan")))
    streak = state.streak + 1 if gate_passes(gate, metrics) else 0
    collapsed = not (math.isfinite(value) and value >= (backoff.collapse_below if backoff else 0.0))
    collapse_streak = state.collapse_streak + 1 if collapsed else 0
    state = state.model_copy(update={"streak": streak, "collapse_streak": collapse_streak})

    def move(action: Action, to_stage: int, **update) -> tuple[Action, SchedulerState]:
        transition = Transition(
            step=step, action=action, from_stage=state.stage, to_stage=to_stage, metric=gate.metric, value=value
        )
        return action, state.model_copy(
            update={
                "stage": to_stage,
                "steps_in_stage": 0 if to_stage != state.stage else state.steps_in_stage,
                "streak": 0,
                "collapse_streak": 0,
                "transitions": [*state.transitions, transition],
                **update,
            }
        )

    if streak >= gate.patience and state.steps_in_stage >= stage.min_steps:
        if state.stage == len(stages) - 1:
            return move(Action.FINISH, state.stage, status="finished")
        return move(Action.PROMOTE, state.stage + 1)
    if (
        backoff is not None
        and backoff.enabled
        and state.stage > 0
        and collapse_streak >= backoff.patience
        and state.steps_in_stage >= backoff.min_steps
    ):
        return move(Action.BACK_OFF, state.stage - 1)
    if state.steps_in_stage >= stage.max_steps:
        return move(Action.STALL, state.stage, status="stalled")
    return Action.STAY, state


def curriculum_score(state: SchedulerState, num_stages: int, gate_value: float, action: Action) -> float:
    """Progress as one number that only grows with progress: stages completed + the gate metric.

    Before a promotion from stage k the score is k + value (value < 1 unless the gate is 1.0);
    the promotion itself scores k + 1, and a finished curriculum scores ``num_stages``.
    """
    if state.status == "finished":
        return float(num_stages)
    if action != Action.STAY or not math.isfinite(gate_value):
        return float(state.stage)
    return state.stage + min(max(gate_value, 0.0), 1.0)
