"""Checkpoints: atomic and pruned; a corrupt, foreign or mismatched one is refused naming the file, and is
read with ``torch.load(weights_only=True)``, so a malicious pickle never runs."""

from __future__ import annotations

import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import curriculum.adapters.checkpoint as ckpt
from curriculum.core.overrides import build_config
from hrm.model import HRM

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop


def state(step):
    return {"model": {"w": torch.full((3,), float(step))}, "scheduler": '{"stage": 1}', "elapsed": 1.5}


def test_round_trip_and_pruning(tmp_path):
    for step in (10, 20, 30):
        path = ckpt.save_checkpoint(tmp_path, state(step), step)
        assert path.name == ckpt.checkpoint_name(step)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [ckpt.checkpoint_name(20), ckpt.checkpoint_name(30)]
    loaded = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))
    assert loaded["step"] == 30 and torch.equal(loaded["model"]["w"], torch.full((3,), 30.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.checkpoint_name(20), ckpt.checkpoint_name(30)]


def test_truncated_checkpoint_is_refused_naming_the_file(tmp_path):
    path = ckpt.save_checkpoint(tmp_path, state(1), 1)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ckpt.CheckpointError, match=path.name):
        ckpt.load_checkpoint(path)


class Payload:
    """Unpickling this creates the file ``marker``: proof that a pickle was executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_foreign_pickles_are_never_unpickled(tmp_path):
    evil = tmp_path / ckpt.checkpoint_name(5)
    evil.write_bytes(pickle.dumps({"format": ckpt.FORMAT, "x": Payload(tmp_path / "pwned")}))
    with pytest.raises(ckpt.CheckpointError, match=evil.name):
        ckpt.load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ckpt.CheckpointError, match="not a checkpoint of this project"):
        ckpt.load_checkpoint(other)
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


WRITER = """
import sys, torch
from curriculum.adapters.checkpoint import save_checkpoint
big = {"model": {"w": torch.randn(4_000_000)}}  # 16 MB: every write takes a while
step = 0
while True:
    step += 1
    save_checkpoint(sys.argv[1], {**big, "scheduler": str(step)}, step)
    print(step, flush=True)
"""


def test_a_writer_killed_mid_write_never_leaves_a_half_written_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    for delay in (0.03, 0.11, 0.19):  # after its first checkpoint, kills land at different points of a write
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE, text=True)
        writer.stdout.readline()
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert ckpt.list_checkpoints(folder)
        for path in ckpt.list_checkpoints(folder):
            saved = ckpt.load_checkpoint(path)  # raises for a torn file
            assert saved["step"] == int(saved["scheduler"]) and saved["model"]["w"].numel() == 4_000_000
    # A killed writer may leave its temporary file; it never has a checkpoint's name, and the next save removes it.
    ckpt.save_checkpoint(folder, state(10**6), 10**6)
    assert all(not p.name.startswith(".") for p in folder.iterdir())


# ---------------------------------------------------------------- through the CLI: --resume refuses, naming the file


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, runs):
    """A run directory with a checkpoint at step 20."""
    cwd = tmp_path_factory.mktemp("resume")
    result = runs.run(
        [
            "--preset",
            "smoke",
            "--backend",
            "local",
            "--run-dir",
            "run",
            "train.max_steps=20",
            "tracking.images_per_eval=0",
        ],
        cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd / "run"


def _truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


def _malicious(path):
    path.write_bytes(pickle.dumps({"format": ckpt.FORMAT, "x": Payload(path.parent.parent / "pwned")}))


def _other_model(path):
    wide = build_config("smoke", None, ["model.hidden_size=64", "model.num_heads=4"]).model
    loaded = ckpt.load_checkpoint(path)
    torch.save({**loaded, "model": HRM(wide).state_dict()}, path)


@pytest.mark.parametrize(
    "damage,reason",
    [
        (_truncate, "cannot load checkpoint"),
        (_malicious, "not a checkpoint of this project: it holds objects other than tensors and plain data"),
        (_other_model, "does not fit this run: Error(s) in loading state_dict"),
    ],
)
def test_resume_from_a_bad_checkpoint_exits_2_naming_the_file(finished_run, runs, tmp_path, damage, reason):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    latest = ckpt.latest_checkpoint(run_dir / "checkpoints")
    damage(latest)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = runs.run(["--resume", "run", "--backend", "local"], tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    line = runs.one_line(result.stderr)
    assert str(latest.relative_to(tmp_path)) in line and reason in line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "nothing is created"
    assert not (tmp_path / "pwned").exists(), "the pickle was never executed"


def test_evaluate_refuses_a_malicious_checkpoint_naming_it(finished_run, runs, tmp_path):
    evil = tmp_path / ckpt.checkpoint_name(7)
    _malicious(evil)
    result = runs.run([str(evil), "--sizes", "8", "--count", "4"], tmp_path, timeout=120, module="curriculum.evaluate")
    assert result.returncode == 2 and evil.name in runs.one_line(result.stderr)
    assert not (tmp_path.parent / "pwned").exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "content,needle",
    [("garbage", "run.json is not valid JSON"), ("[]", "is not a run record"), ("{}", "is not a run record")],
)
def test_resume_with_a_damaged_run_record_exits_2(finished_run, runs, tmp_path, content, needle):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "run.json").write_text(content)
    result = runs.run(["--resume", "run", "--backend", "local"], tmp_path, timeout=120)
    assert result.returncode == 2 and needle in runs.one_line(result.stderr), result.stderr[-2000:]


def test_evaluate_checks_its_picture_folder_and_count_before_computing(finished_run, runs, tmp_path):
    (tmp_path / "afile").write_text("")
    base = ["--sizes", "8", "--count", "16", "--no-mlflow"]
    result = runs.run([str(finished_run), *base, "--pictures", "afile"], tmp_path, 120, module="curriculum.evaluate")
    assert result.returncode == 2 and "--pictures afile: is a file" in runs.one_line(result.stderr)
    assert result.stdout == "", "refused before any evaluation"
    huge = ["--sizes", "8", "--count", "100000000", "--no-mlflow"]
    result = runs.run([str(finished_run), *huge], tmp_path, 120, module="curriculum.evaluate")
    assert result.returncode == 2 and "--count 100,000,000 tasks of 8x8 need about" in runs.one_line(result.stderr)
    result = runs.run(["--size", "10", "--count", "100000000", "--out", "ds"], tmp_path, 120, module="oracle.generate")
    assert result.returncode == 2 and "more than this machine has free" in runs.one_line(result.stderr)
    assert not (tmp_path / "ds").exists()


def test_odd_run_dirs_and_a_config_nested_10000_deep_exit_2(runs, tmp_path):
    (tmp_path / "afile").write_text("")
    deep = "{a: " * 10_000 + "1" + "}" * 10_000
    (tmp_path / "deep.yaml").write_text(deep)
    cases = [
        (["--preset", "smoke", "--run-dir", "afile"], "--run-dir afile is a file, not a directory"),
        (["--preset", "smoke", "--run-dir", "afile/sub"], "is not a directory"),
        (["--config", "deep.yaml"], "config file deep.yaml: nested too deeply"),
        (["--preset", "smoke", f"train.lr={deep}"], "override train.lr"),
    ]
    for args, needle in cases:
        result = runs.run([*args, "--backend", "local"], tmp_path, timeout=120)
        assert result.returncode == 2 and needle in runs.one_line(result.stderr), (args, result.stderr[-2000:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "deep.yaml"]


def test_a_resume_that_rewrites_the_trained_ladder_is_refused_first_and_changes_nothing(finished_run, runs, tmp_path):
    import json

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    _, before_run = runs.mlflow_run(run_dir)
    edited = json.loads((run_dir / "config.json").read_text())
    del edited["curriculum"]["stages"][0]  # a hand edit: the stage being trained is gone
    (run_dir / "config.json").write_text(json.dumps(edited))
    saved = (run_dir / "config.json").read_bytes()
    result = runs.run(["--resume", "run", "--backend", "local"], tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "curriculum.stages.0.size is 10, but the run trained that stage at 8x8" in runs.one_line(result.stderr)
    assert (run_dir / "config.json").read_bytes() == saved, "config.json is never rewritten by a refused resume"
    _, after_run = runs.mlflow_run(run_dir)
    assert after_run.info.status == before_run.info.status == "FINISHED"
    shutil.rmtree(run_dir)
    shutil.copytree(finished_run, run_dir)
    result = runs.run(["--resume", "run", "--backend", "local", "curriculum.stages.5.size=12"], tmp_path, timeout=120)
    assert result.returncode == 2 and "curriculum.stages.5" in runs.one_line(result.stderr)
