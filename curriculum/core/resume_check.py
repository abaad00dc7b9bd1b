"""Does a (possibly edited) config still describe the run a checkpoint was taken from? Asked before a
resume starts anything, so a deleted or resized stage is one line, not a failed run."""

from __future__ import annotations

from curriculum.core.config import RunConfig
from curriculum.core.scheduler import SchedulerState


def resume_mismatch(saved: RunConfig, resumed: RunConfig, state: SchedulerState) -> str | None:
    """Why ``resumed`` cannot continue the run whose checkpoint holds ``state`` (taken under ``saved``),
    or None. The ladder up to the checkpoint's stage is history: its sizes must stay; later stages,
    gates, penalties and budgets may change."""
    old = [stage.size for stage in saved.curriculum.stages]
    new = [stage.size for stage in resumed.curriculum.stages]
    if state.stage >= len(new):
        return (
            f"the checkpoint is in stage {state.stage} ({old[state.stage]}x{old[state.stage]}), but the config has "
            f"{len(new)} stage{'s' if len(new) != 1 else ''} ({', '.join(map(str, new))}); keep the stages trained"
        )
    for index in range(state.stage + 1):
        if new[index] != old[index]:
            return (
                f"curriculum.stages.{index}.size is {new[index]}, but the run trained that stage at "
                f"{old[index]}x{old[index]}; stages up to the checkpoint's ({state.stage}) cannot change"
            )
    return None
