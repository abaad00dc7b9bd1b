"""Deliberate faults, off by default: how the reliability tests make a real run meet a bad step.

A non-finite loss cannot be produced on demand by honest hyper-parameters (AdamATan2's updates are
bounded, so even the largest allowed learning rate does not diverge reliably). ``faults`` lets a run
name the optimizer steps whose loss is replaced by NaN; from there the run takes exactly the path a
real NaN takes: the step is skipped and counted, and too many in a row stop the run. Being part of
the config, an injected fault is recorded with the run (``config.json``, MLflow params), never
hidden in the environment.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_FAULTY_STEPS = 10_000


class FaultConfig(BaseModel):
    """Faults to inject into a run (for reliability tests); empty means none."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    nonfinite_loss_steps: list[int] = Field(
        default_factory=list,
        description="Optimizer steps (1-based, as logged) whose loss is replaced by NaN. Empty = none.",
    )

    @field_validator("nonfinite_loss_steps")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        if len(value) > MAX_FAULTY_STEPS:
            raise ValueError(f"at most {MAX_FAULTY_STEPS} steps, got {len(value)}")
        bad = [step for step in value if step < 1]
        if bad:
            raise ValueError(f"steps count from 1, got {bad[0]}")
        return sorted(set(value))
