"""benchmarks/learning.py end to end on the smoke preset: a real run, then held-out tables."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "learning.py"


def _bench(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--preset",
            "smoke",
            "--count",
            "32",
            "--sizes",
            "8,10",
            "--run-dir",
            str(tmp_path / "run"),
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )


def test_curriculum_row_reports_every_size_and_when_each_stage_was_reached(tmp_path):
    result = _bench(tmp_path, "--minutes", "5")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "learning.json").read_text())
    assert set(report["heldout"]) == {"8", "10"}
    for means in report["heldout"].values():
        assert 0.0 <= means["valid_route"] <= means["connectivity"] <= 1.0
        assert means["errors/optimal"] == pytest.approx(means["optimal"])  # the breakdown of the same argmax
    assert "argmax errors" in result.stdout
    # smoke promotes out of 8x8 within its step cap: the 10x10 row carries the step it got there.
    promotions = [t for t in report["outcome"]["transitions"] if t["action"] == "promote"]
    assert promotions and report["arrivals"]["10"][0] == promotions[0]["step"]
    assert f"| 10×10 | {report['heldout']['10']['connectivity']:.3f} |" in result.stdout
    assert (tmp_path / "run" / "pictures" / "evaluate-10x10.png").is_file()


@pytest.mark.parametrize(
    "variant, extra, expected",
    [
        ("direct", [], {"sizes": [10], "backprop": "one_step", "ema_decay": None}),
        # trailing overrides land after the variant's: a direct ladder at another size
        ("direct", ["curriculum.stages.0.size=8"], {"sizes": [8], "backprop": "one_step", "ema_decay": None}),
        ("fullbp-ema", [], {"sizes": [8, 10], "backprop": "full", "ema_decay": 0.999}),  # smoke has no EMA of its own
    ],
)
def test_variants_change_one_thing(tmp_path, variant, extra, expected):
    result = _bench(tmp_path, "--minutes", "0.001", "--variant", variant, *extra)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [s["size"] for s in config["curriculum"]["stages"]] == expected["sizes"]
    assert config["model"]["backprop"] == expected["backprop"]
    assert config["model"]["ema_decay"] == expected["ema_decay"]
    assert config["train"]["max_minutes"] == 0.001
    assert json.loads((tmp_path / "run" / "outcome.json").read_text())["step"] == 1  # the budget ends it at once


def test_a_tuned_config_file_is_laid_over_the_preset_and_keeps_the_budget(tmp_path):
    tuned = tmp_path / "best_config.yaml"
    tuned.write_text("train:\n  lr: 0.0005\n  max_minutes: 60\n  eval_size: 48\n")
    result = _bench(tmp_path, "--minutes", "0.001", "--config", str(tuned))
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["lr"] == 0.0005 and config["train"]["eval_size"] == 48
    assert config["train"]["max_minutes"] == 0.001, "the benchmark's budget wins over the file's"


def test_fullbp_ema_keeps_the_presets_own_decay():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from learning import variant_overrides
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert variant_overrides("tiny", "fullbp-ema") == ["model.backprop=full", "model.ema_decay=0.995"]
    assert variant_overrides("paper", "fullbp-ema") == ["model.backprop=full", "model.ema_decay=0.999"]
    assert variant_overrides("tiny", "onestep") == ["model.backprop=one_step", "model.ema_decay=null"]
