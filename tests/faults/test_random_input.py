"""Property: any config overrides and any task spec are either accepted and runnable, or refused with exit 2 and
one line naming the problem, with nothing created. Never a traceback."""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from curriculum.cli.run import PROG, main
from curriculum.core.config import RunConfig
from curriculum.core.overrides import build_config
from curriculum.core.streams import TaskStream, heldout_tasks
from curriculum.trainer.context import pick_device
from hrm.model import HRM
from hrm.optimizer import AdamATan2
from oracle import load_dataset, verify_paths
from oracle.cli_errors import UsageError, run_cli
from oracle.generate import main as generate_main
from oracle.vocab import PATH
from routing.batch import task_tensors
from routing.training import train_step

# Texts YAML reads as something other than a plain number: strings, lists, mappings, null, parse errors.
ODD_TEXT = ["abc", "[1, 2]", "{a: 1}", "null", "true", "''", "[unclosed", ": :", "1e999", "-.inf", ".nan", "0x1F"]
# Small numbers only: a valid but huge model or batch would be slow to run, not wrong.
NUMBERS = st.one_of(
    st.integers(-2, 12),
    st.floats(-1.0, 12.0).map(lambda x: round(x, 3)),
    st.sampled_from([0.05, 0.5, 0.95, 1.5, 16, 40, 41, 2**63]),
)
VALUES = st.one_of(NUMBERS.map(repr), st.sampled_from(ODD_TEXT), st.text(max_size=6))
ODD_PATHS = [
    "train",
    "train.lr.x",
    "curriculum.stages.7.size",
    "curriculum.stages.x.size",
    "model..hidden_size",
    ".a",
    "x.",
    "curriculum.stages.0",
    "curriculum.stages.0.gate",
    "scaling.num_workers.0",
    "faults.bogus",
]


def in_empty_directory(call: Callable[[], object]) -> tuple[object, bool]:
    """``call()`` in a fresh directory; its result, and whether the directory is still empty afterwards."""
    home = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="prop-") as where:
        os.chdir(where)
        try:
            result = call()
        finally:
            os.chdir(home)
        return result, not any(Path(where).iterdir())


def exit_and_stderr(cli_main: Callable[[list[str]], int], argv: list[str], prog: str) -> tuple[int, str]:
    """Run a CLI's ``main`` as ``python -m`` would: exit status and what it printed on stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            run_cli(lambda: cli_main(argv), prog)
        except SystemExit as ended:
            return ended.code, err.getvalue()
    raise AssertionError("run_cli always exits")


def assert_refused(cli_main, argv: list[str], prog: str) -> None:
    (code, stderr), empty = in_empty_directory(lambda: exit_and_stderr(cli_main, argv, prog))
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), (argv, stderr)
    assert empty, f"{argv}: a refused command created files"


def one_step_per_stage(config: RunConfig) -> None:
    """What a run needs from its config: the model, every stage's task stream (replay included) and held-out
    set, and one training step per stage with a finite loss."""
    model = HRM(config.model)
    optimizer = AdamATan2(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    stages = config.curriculum.stages
    stream = TaskStream(stages, config.train.seed, 0, config.train.batch_size)
    for index, stage in enumerate(stages):
        heldout_tasks(stages, index, config.train.seed, config.train.eval_size)
        batch = task_tensors(stream.batch(index, 0), torch.device("cpu"))
        _, logs, _ = train_step(
            model,
            model.initial_carry(batch),
            batch,
            optimizer,
            stage.penalties,
            config.train.lr,
            None,
            config.train.grad_clip,
        )
        assert math.isfinite(float(logs["total"])), f"stage {index}: non-finite loss"


@settings(max_examples=40, deadline=None, database=None)
@given(data=st.data())
def test_random_config_overrides_run_or_exit_2(accepted_overrides, data):
    # Half the examples use real fields with values each accepts on its own, so accepted configs come up often.
    plausible = data.draw(st.booleans())
    real = st.sampled_from(sorted(accepted_overrides))
    paths = data.draw(
        st.lists(real if plausible else st.one_of(real, st.sampled_from(ODD_PATHS)), min_size=1, max_size=3)
    )
    overrides = []
    for path in paths:
        fits = st.sampled_from(accepted_overrides.get(path) or ["1"])
        overrides.append(f"{path}={data.draw(fits if plausible else st.one_of(fits, VALUES))}")
    argv = ["--preset", "smoke", "--backend", "local", *overrides]
    try:
        config = build_config("smoke", None, overrides)
        pick_device(config.train.device)
    except (UsageError, RuntimeError):
        event("refused")
        assert_refused(main, argv, PROG)
        return
    event("accepted")
    one_step_per_stage(config)


SIZES = st.integers(8, 14)
SPEC_FLAGS = {  # flag: values a spec may well accept (odd ones are drawn too, below)
    "--size": SIZES,
    "--min-distance": st.integers(1, 8),
    "--max-distance": st.integers(1, 26),
    "--traffic-scale": st.floats(0.0, 2.5).map(lambda x: round(x, 2)),
    "--obstacle-density": st.floats(0.0, 0.5).map(lambda x: round(x, 2)),
    "--vehicle-mix": st.lists(st.integers(0, 3), min_size=4, max_size=4).map(lambda xs: ",".join(map(str, xs))),
    "--test-fraction": st.floats(0.0, 0.9).map(lambda x: round(x, 2)),
    "--seed": st.integers(0, 2**63 - 1),
    "--count": st.integers(1, 6),
}


@settings(max_examples=60, deadline=None, database=None)
@given(data=st.data())
def test_random_task_specs_generate_checkable_datasets_or_exit_2(data):
    flags = data.draw(st.sets(st.sampled_from(sorted(set(SPEC_FLAGS) - {"--size", "--count"}))))
    argv = []
    for flag in ["--size", "--count", *sorted(flags)]:
        plausible = SPEC_FLAGS[flag].map(str)
        value = data.draw(
            st.one_of(
                plausible, plausible, plausible, plausible, plausible, NUMBERS.map(repr), st.sampled_from(ODD_TEXT)
            )
        )
        argv += [flag, value]
    prog = "python -m oracle.generate"

    def generate() -> tuple[int, str, object]:
        code, stderr = exit_and_stderr(generate_main, [*argv, "--out", "data"], prog)
        return code, stderr, load_dataset(Path("data")) if code == 0 else None

    (code, stderr, splits), empty = in_empty_directory(generate)
    event("refused" if code else "accepted")
    if code != 0:
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), (argv, stderr)
        assert empty, f"{argv}: a refused command created files"
        return
    for split in splits.values():  # every label is an optimal legal route, checked by the verifier
        if len(split):
            tasks = split.tasks()
            verdict = verify_paths(split.labels == PATH, tasks.costs, tasks.start, tasks.end, tasks.optimal_cost)
            assert verdict.optimal.all(), argv
