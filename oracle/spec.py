"""``TaskSpec``: a validated description of a distribution of routing tasks; ``grid_side``."""

from __future__ import annotations

import math
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

MIN_SIZE, MAX_SIZE = 8, 64


def grid_side(cells: int) -> int:
    """N of a row-major N×N grid of ``cells`` cells; ValueError if ``cells`` is not a square."""
    n = math.isqrt(cells)
    if n * n != cells:
        raise ValueError(f"rows of {cells} cells are not a square grid")
    return n


class TaskSpec(BaseModel):
    """A distribution of city-routing tasks on an N×N grid.

    Fields left as ``None`` take defaults that scale with ``size`` (see the ``resolved_*``
    properties), so ``TaskSpec(size=10)`` is a sensible small city and ``TaskSpec(size=40)`` a
    large one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(ge=MIN_SIZE, le=MAX_SIZE, description=f"Grid side N ({MIN_SIZE} to {MAX_SIZE}).")
    min_distance: Optional[int] = Field(
        default=None, ge=1, description="Smallest Manhattan distance between start and end (default N // 2)."
    )
    max_distance: Optional[int] = Field(
        default=None, ge=1, description="Largest Manhattan distance between start and end (default 2·(N−1))."
    )
    traffic_scale: float = Field(
        default=1.0,
        ge=0.0,
        le=2.5,
        description="Multiplies the hourly jam and closure probabilities (0 = empty streets, 1 = the documented city).",
    )
    vehicle_mix: tuple[float, float, float, float] = Field(
        default=(1.0, 1.0, 1.0, 1.0),
        description="Relative weights of bike, car, van, truck (non-negative, not all zero).",
    )
    obstacle_density: float = Field(
        default=0.08,
        ge=0.0,
        le=0.5,
        description="Share of the city's area covered by parks laid over the street plan.",
    )
    avenue_share: float = Field(
        default=0.4,
        ge=0.0,
        le=1.0,
        description="Probability that a major line is a 2-wide avenue rather than a street.",
    )
    side_street_share: float = Field(
        default=0.6, ge=0.0, le=1.0, description="Probability that a block segment gets a small side street."
    )

    @model_validator(mode="after")
    def _check(self) -> TaskSpec:
        if any(w < 0 for w in self.vehicle_mix) or sum(self.vehicle_mix) <= 0:
            raise ValueError(f"vehicle_mix must be non-negative weights, not all zero (got {list(self.vehicle_mix)})")
        largest = 2 * (self.size - 1)
        lo, hi = self.resolved_min_distance, self.resolved_max_distance
        if lo > largest:
            raise ValueError(f"min_distance {lo} is impossible on a {self.size}x{self.size} grid (at most {largest})")
        if lo > hi:
            raise ValueError(f"distance range is empty: min_distance {lo} > max_distance {hi}")
        return self

    @property
    def resolved_min_distance(self) -> int:
        return self.min_distance if self.min_distance is not None else max(1, self.size // 2)

    @property
    def resolved_max_distance(self) -> int:
        largest = 2 * (self.size - 1)
        return min(self.max_distance, largest) if self.max_distance is not None else largest

    @property
    def block_gap(self) -> tuple[int, int]:
        """Range of obstacle rows/columns between major lines: city blocks grow with N."""
        return max(2, self.size // 8), max(3, self.size // 4)

    @property
    def park_side(self) -> tuple[int, int]:
        """Range of a park's side length."""
        return max(2, self.size // 8), max(3, self.size // 4)
