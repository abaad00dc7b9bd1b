"""The route penalties' weights, a pydantic model with no torch behind it: run configs validate them
without importing the losses (``routing.losses`` computes the terms)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PENALTY_TERMS = ("path_class", "sparsity", "budget", "coverage", "connectivity")
DENSE_TERMS = ("detour", "optimal_set", "cost_to_go")  # read the oracle's dense fields
HEAD_TERMS = ("optimal_set", "cost_to_go")  # train the model's route head
CONNECTIVITY_CAP = 50.0  # nats per label route cell
COST_TO_GO_CAP = 4.0  # cost to the end, in optimal costs: far cells all read as "far"


RouteTarget = Literal["label", "any_optimal", "preferred_optimal"]
PathClassCells = Literal["label", "near_optimal"]


class PenaltyWeights(BaseModel):
    """Weights of the route penalties; 0 switches a term off exactly."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    path_class: float = Field(
        1.0,
        ge=0.0,
        description="Extra cross-entropy on cells labelled PATH (mean over those cells): "
        "route cells are ~3% of a grid, so plain CE barely sees them.",
    )
    sparsity: float = Field(0.5, ge=0.0, description="Mean predicted path probability on cells not on the label route.")
    budget: float = Field(
        0.1,
        ge=0.0,
        description="Squared relative error between the expected number of path cells and the label route's length.",
    )
    coverage: float = Field(
        0.5,
        ge=0.0,
        description="Expected number of predicted path cells the vehicle may not enter, per label route cell.",
    )
    connectivity: float = Field(
        0.05,
        ge=0.0,
        description="-log of the most probable legal start->end chain of path cells, per label route cell "
        f"(capped at {CONNECTIVITY_CAP:g}).",
    )

    detour: float = Field(
        0.0,
        ge=0.0,
        description="Path probability times the least extra cost (relative to the optimal cost, at most 1) of "
        "any route through the cell, per label route cell: zero on every optimal route, so the cheaper of two "
        "connected routes wins.",
    )
    optimal_set: float = Field(
        0.0,
        ge=0.0,
        description="BCE of the route head's first output against 'the cell lies on some optimal route' "
        "(needs model.route_head).",
    )
    cost_to_go: float = Field(
        0.0,
        ge=0.0,
        description="Smooth-L1 of the route head's second output against the cell's cost to the end / the "
        f"optimal cost (capped at {COST_TO_GO_CAP:g}), on cells that reach the end (needs model.route_head).",
    )
    path_class_cells: PathClassCells = Field(
        "label",
        description="Which cells the path_class cross-entropy averages over. label: the label route's. Those "
        "then weigh about N²/L times a plain cell, and a model trained so marks every cell with more than a "
        "1/(1 + that weight) chance of lying on the route. near_optimal: the route's cells and every legal "
        "cell whose cheapest route through it costs at most near_slack more than the optimal cost: route "
        "cells and their close rivals weigh alike, so the argmax decides those at even odds.",
    )
    near_slack: float = Field(
        0.25,
        gt=0.0,
        le=1.0,
        description="With path_class_cells=near_optimal: the largest relative detour (cost of the cheapest "
        "route through a cell / optimal cost - 1) of a cell the path_class term also weighs.",
    )
    q_head: float = Field(
        0.5,
        ge=0.0,
        description="Weight of the ACT Q-head's binary cross-entropies (q_halt, and q_continue where the model "
        "has it), HRM's 0.5. They train the halting decision through the same trunk as the route.",
    )
    route_target: RouteTarget = Field(
        "label",
        description="Which route the token loss teaches when a task has several optimal ones. label: the "
        "canonical label (its documented tie-break). any_optimal: on cells of another optimal route the "
        "cross-entropy accepts PATH or the input token, and sparsity skips them. preferred_optimal: the "
        "optimal route the model itself finds most probable (a search on the oracle's shortest-path DAG "
        "under the model's path probabilities) replaces the label.",
    )

    @property
    def needs_route_head(self) -> bool:
        return any(getattr(self, name) > 0 for name in HEAD_TERMS)

    @classmethod
    def off(cls) -> PenaltyWeights:
        """All penalties off: the HRM paper's loss."""
        return cls(**{name: 0.0 for name in PENALTY_TERMS})
