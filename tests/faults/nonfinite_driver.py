"""``python -m curriculum.run`` with NaN losses at chosen steps: how the tests make a real run meet a bad step.

    python tests/faults/nonfinite_driver.py STEPS [curriculum.run arguments ...]

STEPS lists 1-based optimizer steps, as logged ("3,4,5,25-60"). A NaN loss cannot be produced on demand
by honest hyper-parameters (AdamATan2's updates are bounded, so even the largest allowed learning rate
does not diverge reliably). At those steps the model's logits are multiplied by NaN on their way out of
the forward pass, so the NaN flows through the real loss, and the run takes exactly the path a real NaN
takes: the step is skipped on every rank and counted, and too many in a row stop the run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch

from curriculum.cli.run import PROG, main
from curriculum.trainer import loop
from oracle.cli_errors import run_cli


def parse_steps(text: str) -> set[int]:
    steps: set[int] = set()
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        steps.update(range(int(first), int(last or first) + 1))
    return steps


def _nan_logits(module: torch.nn.Module, args: tuple, output: tuple) -> tuple:
    carry, outputs = output
    return carry, {**outputs, "logits": outputs["logits"] * float("nan")}


def with_nan_steps(train_step: Callable, steps: set[int]) -> Callable:
    """``train_step`` with NaN logits at the 1-based optimizer ``steps``."""

    def faulty(learner, batch, step, stage, agree, task_stage=None):
        if step + 1 not in steps:
            return train_step(learner, batch, step, stage, agree, task_stage)
        hook = learner.model.register_forward_hook(_nan_logits)
        try:
            return train_step(learner, batch, step, stage, agree, task_stage)
        finally:
            hook.remove()

    return faulty


if __name__ == "__main__":
    loop.train_step = with_nan_steps(loop.train_step, parse_steps(sys.argv[1]))
    run_cli(lambda: main(sys.argv[2:]), PROG)
