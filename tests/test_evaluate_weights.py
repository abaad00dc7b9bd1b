"""``curriculum.evaluate --weights``: the run's weight average (the default) or the trained weights themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from curriculum.adapters.checkpoint import latest_checkpoint
from curriculum.adapters.tracking import NullTracker
from curriculum.cli import evaluate as evaluate_cli
from curriculum.core.overrides import build_config
from curriculum.trainer.context import WorkerContext
from curriculum.trainer.loop import run_curriculum
from oracle.cli_errors import UsageError

SETTINGS = ["train.max_steps=10", "train.eval_every=10", "tracking.images_per_eval=0"]


def _train(run_dir: Path, extra: list[str]) -> Path:
    config = build_config("smoke", None, SETTINGS + extra)
    run_curriculum(config, WorkerContext(say=lambda line: None), NullTracker(), run_dir)
    return latest_checkpoint(run_dir / "checkpoints")


@pytest.fixture(scope="module")
def averaged(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("averaged"), ["model.ema_decay=0.9"])


def _rewritten(checkpoint: Path, folder: Path, change) -> Path:
    """A copy of ``checkpoint`` in ``folder/checkpoints`` with ``change`` applied to its saved state."""
    saved = torch.load(checkpoint, weights_only=True)
    change(saved)
    target = folder / "checkpoints" / checkpoint.name
    target.parent.mkdir(parents=True)
    torch.save(saved, target)
    return target


def same(scores: dict[str, float]):
    """Equal to ``scores`` item by item, NaN (a rate over no tasks) equal to NaN."""
    return pytest.approx(scores, rel=0, abs=0, nan_ok=True)


def _scores(checkpoint: Path, live: bool = False) -> dict[str, float]:
    return evaluate_cli.evaluate_checkpoint(checkpoint, [8], 16, errors=True, live=live)[8]


def test_live_reads_the_trained_weights_and_the_default_their_average(averaged, tmp_path):
    # An average whose output layer is zeroed predicts one token everywhere, unlike the trained weights.
    def zero_the_average_head(saved):
        saved["ema"]["shadow"]["lm_head.weight"].zero_()

    blunted = _rewritten(averaged, tmp_path / "blunted", zero_the_average_head)
    shadow = torch.load(blunted, weights_only=True)["ema"]["shadow"]

    def average_as_model(saved):
        saved["model"].update(shadow)
        saved["ema"] = None

    def drop_average(saved):
        saved["ema"] = None

    as_model = _rewritten(blunted, tmp_path / "as_model", average_as_model)
    trained_only = _rewritten(averaged, tmp_path / "trained_only", drop_average)

    default, live = _scores(blunted), _scores(blunted, live=True)
    assert default == same(_scores(as_model))  # the default reads the average
    assert live == same(_scores(trained_only))  # live reads the trained weights...
    assert live == same(_scores(averaged, live=True))  # ...whatever the average holds
    assert default != same(live)


def test_the_cli_says_which_weights_it_read(averaged, capsys, tmp_path):
    code = evaluate_cli.main(
        [str(averaged), "--sizes", "8", "--count", "6", "--weights", "live", "--pictures", str(tmp_path)]
    )
    assert code == 0
    assert "trained weights, not their average" in capsys.readouterr().out
    assert (tmp_path / "evaluate-8x8-live.png").is_file()
    assert evaluate_cli.main([str(averaged), "--sizes", "8", "--count", "6", "--weights", "ema", "--no-mlflow"]) == 0
    assert "trained weights" not in capsys.readouterr().out


def test_asking_for_an_average_a_run_did_not_keep_is_a_usage_error(tmp_path):
    plain = _train(tmp_path / "plain", [])
    with pytest.raises(UsageError, match=r"--weights ema: .*holds no weight average"):
        evaluate_cli.main([str(plain), "--weights", "ema", "--no-mlflow"])
    with pytest.raises(UsageError, match="--weights"):
        evaluate_cli.main([str(plain), "--weights", "best"])
