"""``curriculum.evaluate`` on grids larger than the run trained on, with more ACT segments than it trained with."""

from __future__ import annotations

import pytest

from curriculum.adapters.checkpoint import latest_checkpoint
from curriculum.adapters.tracking import NullTracker
from curriculum.cli import evaluate as evaluate_cli
from curriculum.core.overrides import build_config
from curriculum.trainer.context import WorkerContext
from curriculum.trainer.loop import run_curriculum
from oracle.cli_errors import UsageError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    config = build_config("smoke", None, ["train.max_steps=10", "train.eval_every=10", "tracking.images_per_eval=0"])
    run_curriculum(config, WorkerContext(say=lambda line: None), NullTracker(), run_dir)
    return run_dir


def test_a_model_trained_on_small_grids_is_evaluated_at_64x64_with_more_segments(trained, capsys, tmp_path):
    code = evaluate_cli.main(
        [str(trained), "--sizes", "8,64", "--count", "6", "--segments", "1,3", "--pictures", str(tmp_path)]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "1 ACT segments per task" in out and "3 ACT segments per task" in out
    rows = [line for line in out.splitlines() if line.strip().startswith(("8x8", "64x64"))]
    assert len(rows) == 4
    assert "decoded_optimal" in out and "fewest_cells_optimal" in out
    # The cost-blind reference reads the tasks alone: the same per size whatever the segments.
    fewest = [float(row.split("|")[-1]) for row in rows]
    assert fewest[0] == fewest[2] and fewest[1] == fewest[3]
    # act_steps is the number of segments each task ran
    act = [float(row.split("|")[10]) for row in rows]  # after grid, tasks, tasks from and 7 metrics
    assert act == [1.0, 1.0, 3.0, 3.0]
    assert (tmp_path / "evaluate-64x64-seg3.png").is_file()


def test_segment_counts_are_checked(trained):
    with pytest.raises(UsageError, match="--segments"):
        evaluate_cli.main([str(trained), "--segments", "0"])
    with pytest.raises(UsageError, match="--sizes"):
        evaluate_cli.main([str(trained), "--sizes", "65"])
    assert latest_checkpoint(trained / "checkpoints") is not None


def test_errors_break_the_argmax_wrong_cells_down_by_kind(trained, capsys, tmp_path):
    results = evaluate_cli.evaluate_checkpoint(
        latest_checkpoint(trained / "checkpoints"), [8, 10], 24, picture_dir=None, errors=True
    )
    for means in results.values():
        # The same argmax as the metrics: the breakdown's optimal is the table's optimal.
        assert means["errors/optimal"] == pytest.approx(means["optimal"])
        # Every wrong cell is a missing label cell or an extra cell, on another optimal route or on none.
        parts = means["errors/missing"] + means["errors/extra_other_optimal"] + means["errors/extra_off_optimal"]
        assert means["errors/wrong_cells"] == pytest.approx(parts)
        histogram = [means[f"errors/wrong_{b}"] for b in ("0", "1", "2", "3-5", "6_or_more")]
        assert sum(histogram) == pytest.approx(1.0)
        assert 0.0 <= means["errors/several_optimal"] <= 1.0
    assert (
        evaluate_cli.main([str(trained), "--sizes", "8", "--count", "6", "--errors", "--pictures", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "argmax errors" in out and "extra off opt" in out
    assert sum(line.strip().startswith("8x8") for line in out.splitlines()) == 2  # metrics row and errors row
