"""Bad arguments and configs: one line naming the problem, exit 2, nothing created."""

import subprocess
import sys

import pytest
import yaml

from curriculum.overrides import build_config
from oracle.cli_errors import UsageError


def run_cli(args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "curriculum.run", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


@pytest.mark.parametrize("args,needle", [
    (["--preset", "huge"], "--preset"),
    (["train.lr=-1"], "train.lr"),
    (["train.bogus=3"], "train.bogus"),
    (["curriculum.stages.0.gate.threshold=1.5"], "curriculum.stages.0.gate.threshold"),
    (["curriculum.stages.0.gate.threshold=0"], "curriculum.stages.0.gate.threshold"),
    (["curriculum.stages.1.size=8", "curriculum.stages.0.size=12"], "must not shrink"),
    (["curriculum.stages=[]"], "curriculum.stages"),
    (["curriculum.stages.9.size=10"], "curriculum.stages.9"),
    (["model.hidden_size=thirty"], "model.hidden_size"),
    (["train.batch_size"], "key.path=value"),
    (["--config", "missing.yaml"], "missing.yaml"),
    (["--resume", "nowhere"], "nowhere"),
    (["--backend", "spark"], "--backend"),
    (["curriculum.stages.0.size=41"], "curriculum.stages.0.size"),
    (["curriculum.stages.0.task.min_distance=50"], "min_distance"),
])
def test_bad_input_exits_2_naming_the_field_and_creates_nothing(tmp_path, args, needle):
    result = run_cli(["--preset", "smoke", *args] if "--preset" not in args and "--resume" not in args else args,
                     cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == [], "nothing may be created (no run dir, no mlflow.db)"


@pytest.mark.parametrize("content,needle", [
    ("- a\n- b\n", "mapping"),
    ("train: [unclosed\n", "not valid YAML"),
    ("train:\n  lr: fast\n", "train.lr"),
    ("curriculum:\n  stages: []\n", "curriculum.stages"),
])
def test_bad_yaml_files(tmp_path, content, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(UsageError, match=needle):
        build_config(None, path, [])


def test_yaml_file_and_overrides_layer_over_the_preset(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"preset": "smoke", "train": {"lr": 0.01}, "model": {"ema_decay": 0.99}}))
    config = build_config(None, path, ["train.seed=7", "curriculum.stages.1.gate.threshold=0.5"])
    assert config.preset == "smoke" and config.train.lr == 0.01 and config.train.seed == 7
    assert config.model.ema_decay == 0.99 and config.curriculum.stages[1].gate.threshold == 0.5
    assert config.train.batch_size == build_config("smoke").train.batch_size  # untouched defaults stay


def test_every_preset_validates():
    for name in ("smoke", "tiny", "gpu", "paper"):
        config = build_config(name)
        assert config.preset == name and len(config.curriculum.stages) >= 2
        sizes = [s.size for s in config.curriculum.stages]
        assert sizes == sorted(sizes)
        assert all(s.gate.guard_max_excess == 1.5 for s in config.curriculum.stages)
    assert [s.size for s in build_config("gpu").curriculum.stages] == [10, 20, 30, 40]


def test_default_is_tiny():
    assert build_config().preset == "tiny"
