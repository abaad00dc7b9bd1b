"""The search space of the penalty tuner, declared in one place, and how a sample becomes a run.

Weights are searched as log10 exponents: a sample below ``off_below`` means weight 0 (the term
switched off), so "log-uniform, 0 allowed" works for random search and Optuna alike.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curriculum.core.config import GateMetric, RunConfig
from oracle.spec import MAX_SIZE, MIN_SIZE
from routing.penalties import PENALTY_TERMS

LADDERS = {
    "smoke": ["8-10", "8-9-10", "10"],
    "tiny": ["10-20-30-40", "10-15-20-25-30-35-40", "10-40"],
    "gpu": ["10-20-30-40", "10-15-20-25-30-35-40", "10-40"],
}
# The metric a trial's stages gate on, where not the base's first gate: `tiny` leaves 10x10 only on
# optimal routes (cost_ratio <= 1.05), a bar the sampled thresholds put out of reach of a trial's budget.
GATE_METRICS: dict[str, GateMetric] = {"tiny": "valid_route", "gpu": "valid_route"}


class SearchSpace(BaseModel):
    """What the tuner varies. Override any field with ``space.<field>=<value>`` on the command line."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    penalty_exponents: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {name: (-3.0, 1.0) for name in PENALTY_TERMS},
        description="log10 range searched per penalty weight (path_class, sparsity, budget, coverage, connectivity).",
    )
    off_below: float = Field(-2.5, description="A sampled exponent below this switches the term off (weight 0).")
    gate_threshold: tuple[float, float] = Field((0.6, 0.95), description="Range of every stage's gate threshold.")
    gate_patience: tuple[int, int] = Field((1, 3), description="Range (inclusive) of every stage's gate patience.")
    gate_metric: Optional[GateMetric] = Field(
        None,
        description="Metric every stage of a trial gates on, with the base's first gate's excess guard and no "
        "cost_ratio guard; None keeps the base's first gate whole (metric and guards).",
    )
    ladders: list[str] = Field(description="Grid ladders to choose from, e.g. '10-20-30-40'.")
    replay: tuple[float, float] = Field((0.0, 0.3), description="Range of the replay share of later stages.")

    @field_validator("penalty_exponents")
    @classmethod
    def _known_terms(cls, value: dict) -> dict:
        unknown = sorted(set(value) - set(PENALTY_TERMS))
        if unknown:
            raise ValueError(f"unknown penalty {unknown[0]!r}; known: {', '.join(PENALTY_TERMS)}")
        for name, (lo, hi) in value.items():
            if not lo <= hi:
                raise ValueError(f"{name}: empty range ({lo}, {hi})")
        return value

    @field_validator("ladders")
    @classmethod
    def _valid_ladders(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one ladder is needed")
        for ladder in value:
            sizes = parse_ladder(ladder)
            if sizes != sorted(sizes):
                raise ValueError(f"ladder {ladder!r} shrinks")
        return value

    @model_validator(mode="after")
    def _ranges(self) -> SearchSpace:
        for name in ("gate_threshold", "gate_patience", "replay"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: empty range ({lo}, {hi})")
        if not (0 < self.gate_threshold[0] and self.gate_threshold[1] <= 1):
            raise ValueError("gate_threshold must lie in (0, 1]")
        if self.gate_patience[0] < 1:
            raise ValueError("gate_patience must be at least 1")
        if not (0 <= self.replay[0] and self.replay[1] < 1):
            raise ValueError("replay must lie in [0, 1)")
        return self


def parse_ladder(text: str) -> list[int]:
    """'10-20-30' -> [10, 20, 30]; ValueError for anything else."""
    try:
        sizes = [int(part) for part in str(text).split("-")]
    except ValueError:
        raise ValueError(f"ladder {text!r} is not sizes joined by '-' like 10-20-30-40") from None
    if any(not MIN_SIZE <= s <= MAX_SIZE for s in sizes):
        raise ValueError(f"ladder {text!r}: sizes must be in {MIN_SIZE}..{MAX_SIZE}")
    return sizes


def default_space(preset: str) -> SearchSpace:
    return SearchSpace(ladders=LADDERS.get(preset, LADDERS["tiny"]), gate_metric=GATE_METRICS.get(preset))


def param_space(space: SearchSpace) -> dict[str, Any]:
    """The space as Ray Tune distributions (nested dict)."""
    from ray import tune

    return {
        "penalties": {name: tune.uniform(lo, hi) for name, (lo, hi) in space.penalty_exponents.items()},
        "gate_threshold": tune.uniform(*space.gate_threshold),
        "gate_patience": tune.randint(space.gate_patience[0], space.gate_patience[1] + 1),
        "ladder": tune.choice(space.ladders),
        "replay": tune.uniform(*space.replay),
    }


def weight_from_exponent(exponent: float, off_below: float) -> float:
    return 0.0 if exponent < off_below else float(10.0**exponent)


def apply_point(base: dict, point: dict, space: SearchSpace, budget_steps: int) -> RunConfig:
    """The run config of one trial: ``base`` (a RunConfig dict) with the sampled ``point`` applied.

    Every stage of the sampled ladder copies the base's first stage (task knobs, step limits, gate) with
    its own size; gate threshold, patience, penalty weights and replay share are the sampled ones, and
    ``space.gate_metric`` (where set) replaces the gate's metric and drops its cost_ratio guard.
    """
    raw = copy.deepcopy(base)
    template = raw["curriculum"]["stages"][0]
    penalties = {
        name: weight_from_exponent(float(exp), space.off_below) for name, exp in point.get("penalties", {}).items()
    }
    gate = template.get("gate", {})
    if space.gate_metric is not None:
        excess = {"guard_max_excess": gate["guard_max_excess"]} if "guard_max_excess" in gate else {}
        gate = {"metric": space.gate_metric, **excess}
    gate = {**gate, "threshold": float(point["gate_threshold"]), "patience": int(point["gate_patience"])}
    stages = []
    for i, size in enumerate(parse_ladder(point["ladder"])):
        stage = copy.deepcopy(template)
        stage["size"] = size
        stage["gate"] = dict(gate)
        stage["penalties"] = {**stage.get("penalties", {}), **penalties}
        stage["replay"] = 0.0 if i == 0 else float(point["replay"])
        stages.append(stage)
    raw["curriculum"]["stages"] = stages
    raw["train"]["max_steps"] = budget_steps
    return RunConfig.model_validate(raw)
