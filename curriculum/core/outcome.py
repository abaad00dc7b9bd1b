"""How a run ends: the loop's outcome and the tracking status it maps to, as closed types."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

Outcome = Literal["finished", "stalled", "budget", "killed"]
"""finished: the last gate passed; stalled: a stage hit its max_steps; budget: train.max_steps or
train.max_minutes ran out; killed: a stop was requested (Ctrl-C, SIGTERM, the driver gone)."""

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]
"""The terminal status of a tracked (MLflow) run."""

OUTCOMES: tuple[str, ...] = get_args(Outcome)
TERMINAL_STATUSES: tuple[str, ...] = get_args(RunStatus)


@dataclass(frozen=True)
class RunOutcome:
    """What a finished (or stopped) loop reports."""

    outcome: Outcome
    step: int
    stage: int
    transitions: list[dict]
    final_metrics: dict[str, float]
    stage_seconds: list[float] = field(default_factory=list)
    stage_steps: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {self.outcome!r}")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RunOutcome:
        """The outcome a worker reported (``to_json``); a KeyError or ValueError if it is not one."""
        return cls(
            outcome=data["outcome"],
            step=int(data["step"]),
            stage=int(data["stage"]),
            transitions=list(data["transitions"]),
            final_metrics=dict(data["final_metrics"]),
            stage_seconds=list(data["stage_seconds"]),
            stage_steps=list(data["stage_steps"]),
        )

    @property
    def status(self) -> RunStatus:
        """The tracking status of a run that ended this way (an error ends FAILED, never here)."""
        return "KILLED" if self.outcome == "killed" else "FINISHED"
