"""Bad arguments and configs: one line naming the problem, exit 2, nothing created.

Every field of the run config is checked against values past each of its bounds, of a wrong type, and
NaN (cases generated from the config models by ``conftest.pytest_generate_tests``), through the CLI's
own ``main`` in this process; a few cases run as real processes to show the exit status and the one
line end to end.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from curriculum.cli.run import PROG, main
from curriculum.core.overrides import build_config
from oracle.cli_errors import UsageError, run_cli


def cli(argv, capsys) -> tuple[int, str]:
    """Exit status and the stderr line of ``python -m curriculum.run ARGV``, run in this process."""
    with pytest.raises(SystemExit) as ended:
        run_cli(lambda: main(argv), PROG)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return ended.value.code, lines[0]


def test_every_field_refuses_values_past_its_bounds_of_a_wrong_type_or_nan(
    refused_override, tmp_path, monkeypatch, capsys
):
    path, override = refused_override
    with pytest.raises(UsageError, match=re.escape(path)):  # refused before any command runs
        build_config("smoke", None, [override])
    monkeypatch.chdir(tmp_path)
    code, line = cli(["--preset", "smoke", "--backend", "local", override], capsys)
    assert code == 2 and line.startswith(f"{PROG}: error: {path}"), line
    assert list(tmp_path.iterdir()) == [], "nothing may be created (no run dir, no mlflow.db)"


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--preset", "huge"], "--preset"),
        (["train.bogus=3"], "train.bogus"),
        (["bogus.section=3"], "bogus"),
        (["curriculum.stages.0.gate.bogus=3"], "curriculum.stages.0.gate.bogus"),
        (["curriculum.stages.1.size=8", "curriculum.stages.0.size=12"], "must not shrink"),
        (["curriculum.stages=[]"], "curriculum.stages"),
        (["curriculum.stages.9.size=10"], "curriculum.stages.9"),
        (["train.batch_size"], "key.path=value"),
        (["train.lr=[unclosed"], "train.lr"),
        (["--config", "missing.yaml"], "missing.yaml"),
        (["--resume", "nowhere"], "nowhere"),
        (["--backend", "spark"], "--backend"),
        (["--backend", "local", "--address", "auto"], "--address"),
        (["curriculum.stages.0.task.min_distance=50"], "min_distance"),
        (["model.expansion=0.001"], "expansion 0.001"),
        (["model.hidden_size=36", "model.num_heads=4"], "head dim 9"),
        (["train.eval_size=1", "scaling.num_workers=2"], "train.eval_size"),
        (["curriculum.stages.1.replay=0.99"], "curriculum.stages.1.replay 0.99 leaves no task of the stage itself"),
        (
            ["curriculum.stages.1.batch_size=2", "curriculum.stages.1.replay=0.9"],
            "in a batch of curriculum.stages.1.batch_size 2",
        ),
        (["curriculum.stages.1.batch_size=0"], "curriculum.stages.1.batch_size"),
        (["model.vocab_size=2"], "model.vocab_size 2 is below the task's 42 tokens"),
        (["model.num_vehicles=3"], "model.num_vehicles 3"),
        (["tracking.mlflow_uri=./mlruns"], "tracking.mlflow_uri"),
    ],
)
def test_bad_arguments_exit_2_naming_them_and_create_nothing(tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(tmp_path)
    code, line = cli(args if "--preset" in args or "--resume" in args else ["--preset", "smoke", *args], capsys)
    assert code == 2 and needle in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content,needle",
    [
        ("- a\n- b\n", "top level must be a mapping, not list"),
        ("just a string\n", "top level must be a mapping, not str"),
        ("train: [unclosed\n", "not valid YAML"),
        ("train:\n  lr: fast\n", "train.lr"),
        ("train:\n  speed: 3\n", "train.speed"),
        ("curriculum:\n  stages: []\n", "curriculum.stages"),
        (
            "curriculum:\n  stages:\n    - {size: 20, gate: {threshold: 0.5}, max_steps: 9}\n"
            "    - {size: 10, gate: {threshold: 0.5}, max_steps: 9}\n",
            "must not shrink",
        ),
    ],
)
def test_bad_yaml_files_exit_2_naming_the_field(tmp_path, monkeypatch, capsys, content, needle):
    (tmp_path / "bad.yaml").write_text(content)
    monkeypatch.chdir(tmp_path)
    code, line = cli(["--config", "bad.yaml"], capsys)
    assert code == 2 and needle in line, line
    assert [p.name for p in tmp_path.iterdir()] == ["bad.yaml"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--preset", "smoke", "train.lr=-1"], "train.lr"),
        (["--preset", "smoke", "--backend", "spark"], "--backend"),
        (["--preset", "smoke", "curriculum.stages.0.size=65"], "curriculum.stages.0.size"),
        (["--preset", "smoke", "model.l_attention=false"], "model: l_attention=false needs local_mixing=true"),
        (["--preset", "smoke", "model.attention_pool=0"], "model.attention_pool"),
    ],
)
def test_a_real_process_prints_one_line_and_exits_2(tmp_path, args, needle):
    result = subprocess.run(
        [sys.executable, "-m", "curriculum.run", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and result.stdout == "", result.stderr
    assert list(tmp_path.iterdir()) == [], "nothing may be created (no run dir, no mlflow.db)"


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


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:  # bound, never listening: connecting to it is refused
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "address,needle",
    [
        ("127.0.0.1:{port}", "no Ray cluster at 127.0.0.1:{port} (connection refused"),
        ("ray://127.0.0.1:{port}", "no Ray cluster at 127.0.0.1:{port}"),
        ("nosuchhost.invalid:6379", "host 'nosuchhost.invalid' is not known"),
        ("head-node", "is not host:port"),
    ],
)
def test_an_address_with_no_ray_cluster_is_refused_before_anything_is_created(tmp_path, address, needle):
    port = _closed_port()
    address, needle = address.format(port=port), needle.format(port=port)
    result = subprocess.run(
        [sys.executable, "-m", "curriculum.run", "--preset", "smoke", "--address", address, "--run-dir", "run"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,  # it once waited inside ray.init without end
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: --address ") and needle in lines[0], lines
    assert list(tmp_path.iterdir()) == [], "nothing may be created (no run dir, no mlflow.db)"


def test_one_held_out_task_cannot_decide_a_promotion(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, line = cli(["--preset", "smoke", "--backend", "local", "train.eval_size=1"], capsys)
    assert code == 2 and "train.eval_size" in line and "16" in line, line
    assert list(tmp_path.iterdir()) == []


def test_evaluate_on_cuda_without_a_gpu_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    result = subprocess.run(
        [sys.executable, "-m", "curriculum.evaluate", str(tmp_path / "run"), "--device", "cuda"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "python -m curriculum.evaluate: error: --device cuda: no CUDA device is available here (use --device cpu)"
    )


def test_bad_resume_locations_are_one_line_naming_them_and_create_nothing(tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("")
    (tmp_path / "empty").mkdir()
    (tmp_path / "unreadable" / "config.json").mkdir(parents=True)  # a directory where the file should be
    (tmp_path / "unreadable" / "run.json").write_text("{}")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cases = [
        (str(tmp_path / "empty"), "missing config.json"),
        (f"file://{tmp_path}/empty", "missing config.json"),
        (f"file://{tmp_path}/nothing/here", "missing config.json"),
        (f"file://{tmp_path}/afile/run", "missing config.json"),
        ("nosuchfs://bucket/ray/run", "Unrecognized filesystem type"),
        (str(tmp_path / "unreadable"), "cannot read it"),
    ]
    for location, needle in cases:
        for backend in ("local", "ray"):
            code, line = cli(["--resume", location, "--backend", backend], capsys)
            assert code == 2 and location in line and needle in line, (location, line)
    assert list(work.iterdir()) == [], "no run directory, no MLflow store"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "empty", "unreadable", "work"]
    assert list((tmp_path / "empty").iterdir()) == []
