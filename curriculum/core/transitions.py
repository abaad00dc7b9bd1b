"""A stage transition as one line of text: what the console prints and the run's MLflow tags hold.

``describe_transition`` writes it and ``parse_transition`` reads it back (``curriculum.compare`` takes
promotion steps from the tags), so the format lives in one place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple, Optional

VERBS = {"promote": "promoted", "finish": "finished the curriculum", "back_off": "backed off", "stall": "stalled"}
TAG_PREFIX = "curriculum.transition."
_LINE = re.compile(r"^step (\d+): ([a-z ]+), stage (\d+) \(\d+x\d+\)(?: -> stage (\d+) \(\d+x\d+\))?")


class StageChange(NamedTuple):
    step: int
    from_stage: int
    to_stage: int


def describe_transition(transition: dict, sizes: Sequence[int]) -> str:
    """``step 80: promoted, stage 0 (8x8) -> stage 1 (10x10), connectivity=0.412`` for a transition dict
    (``curriculum.core.scheduler.Transition`` dumped as JSON); ``sizes`` are the ladder's grid sides."""
    a, b = transition["from_stage"], transition["to_stage"]
    where = f"stage {a} ({sizes[a]}x{sizes[a]})"
    if a != b:
        where += f" -> stage {b} ({sizes[b]}x{sizes[b]})"
    return (
        f"step {transition['step']}: {VERBS[transition['action']]}, {where}, "
        f"{transition['metric']}={transition['value']:.3f}"
    )


def parse_transition(text: str) -> Optional[StageChange]:
    """The step and stages of a ``describe_transition`` line (None for any other text)."""
    m = _LINE.match(text)
    if m is None or m.group(2) not in VERBS.values():
        return None
    start = int(m.group(3))
    return StageChange(int(m.group(1)), start, int(m.group(4)) if m.group(4) is not None else start)


def stage_changes(tags: dict[str, str]) -> list[StageChange]:
    """The stage changes recorded in a run's tags, in step order (finish and stall lines change nothing)."""
    found = [parse_transition(text) for key, text in tags.items() if key.startswith(TAG_PREFIX)]
    return sorted(c for c in found if c is not None and c.from_stage != c.to_stage)
