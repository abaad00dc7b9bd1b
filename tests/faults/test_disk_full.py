"""Disk full while checkpointing: the previous checkpoint survives and the run stops with one clear line.

The checkpoint directory of a run is put on a small tmpfs, filled to the last byte, and the run resumed:
its next checkpoint write meets a real ENOSPC. Mounting needs root (CAP_SYS_ADMIN); without it, the
resumed driver runs under RLIMIT_FSIZE instead, which makes the same write fail with EFBIG, and the
model is widened so that a checkpoint, and only a checkpoint, is larger than the limit.
"""

from __future__ import annotations

import errno
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from curriculum.adapters.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop

FSIZE_LIMIT = 6 * 2**20  # above MLflow's database and the other files, below the widened model's checkpoint


def fill(folder: Path) -> None:
    """Write a file until the filesystem is full."""
    with (folder / "filler").open("wb", buffering=0) as out:  # unbuffered: the error comes from write()
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def limit_file_size() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


@pytest.fixture
def mount_tmpfs():
    """``mount(where, size) -> bool``: a tmpfs over ``where`` when this process may mount one; unmounted after."""
    mounted: list[Path] = []

    def mount(where: Path, size: str) -> bool:
        done = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
            ).returncode
            == 0
        )
        if done:
            mounted.append(where)
        return done

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_keeps_the_previous_checkpoint_and_stops_with_one_line(mount_tmpfs, runs, tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    mounted = mount_tmpfs(probe, "64k")
    run_dir = tmp_path / "run"
    wide = [] if mounted else ["model.hidden_size=192", "model.num_heads=4"]
    first = runs.run(
        [
            "--preset",
            "smoke",
            "--backend",
            "local",
            "--run-dir",
            "run",
            "train.max_steps=20",
            "tracking.images_per_eval=0",
            *wide,
        ],
        tmp_path,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    good = run_dir / "checkpoints" / "checkpoint-000000020.pt"
    before = good.read_bytes()
    if mounted:  # the run's checkpoints move onto a small disk, which is then filled up
        shutil.copy2(good, tmp_path / good.name)
        assert mount_tmpfs(run_dir / "checkpoints", "2m")
        shutil.copy2(tmp_path / good.name, good)
        fill(run_dir / "checkpoints")
        assert shutil.disk_usage(run_dir / "checkpoints").free < 4096
    else:
        assert len(before) > FSIZE_LIMIT, "the widened model's checkpoint must exceed the file size limit"

    resumed = subprocess.run(
        [sys.executable, "-m", "curriculum.run", "--resume", "run", "--backend", "local", "train.max_steps=40"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=runs.env(),
        timeout=300,
        preexec_fn=None if mounted else limit_file_size,
    )
    assert resumed.returncode == 1, resumed.stderr[-3000:]
    error = resumed.stderr.strip().splitlines()[-1]
    why = "No space left on device" if mounted else "File too large"
    assert error.startswith(
        "python -m curriculum.run: error: CheckpointError: cannot write checkpoint "
        f"run/checkpoints/checkpoint-000000040.pt: {why}; the previous checkpoint "
        f"run/checkpoints/checkpoint-000000020.pt is kept"
    ), error

    assert good.read_bytes() == before and load_checkpoint(good)["step"] == 20
    left = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert left == ([good.name, "filler"] if mounted else [good.name]), "no partial file is left behind"
    _, run = runs.mlflow_run(run_dir)
    assert run.info.status == "FAILED"


def test_a_full_disk_on_ray_fails_once_with_the_same_line_and_no_restarts(mount_tmpfs, runs, tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    mounted = mount_tmpfs(probe, "64k")
    run_dir = tmp_path / "run"
    wide = [] if mounted else ["model.hidden_size=192", "model.num_heads=4"]
    args = ["--preset", "smoke", "--backend", "local", "--run-dir", "run", "train.max_steps=20", *wide]
    first = runs.run([*args, "tracking.images_per_eval=0"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    good = run_dir / "checkpoints" / "checkpoint-000000020.pt"
    before = good.read_bytes()
    if mounted:
        shutil.copy2(good, tmp_path / good.name)
        assert mount_tmpfs(run_dir / "checkpoints", "2m")
        shutil.copy2(tmp_path / good.name, good)
        fill(run_dir / "checkpoints")

    resumed = subprocess.run(  # on the driver's own local Ray this time, with Ray's default restarts (2)
        [sys.executable, "-m", "curriculum.run", "--resume", "run", "train.max_steps=40"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=runs.env(),
        timeout=300,
        preexec_fn=None if mounted else limit_file_size,
    )
    assert resumed.returncode == 1, resumed.stderr[-3000:]
    error = resumed.stderr.strip().splitlines()[-1]
    why = "No space left on device" if mounted else "File too large"
    assert error.startswith("python -m curriculum.run: error: CheckpointError: cannot write checkpoint "), error
    assert f"checkpoint-000000040.pt: {why}; the previous checkpoint " in error and "000000020.pt is kept" in error
    assert resumed.stdout.count("resumed from") == 1, "no restart into the same full disk"
    assert good.read_bytes() == before
    client, run = runs.mlflow_run(run_dir)
    assert run.info.status == "FAILED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval/valid_route")]
    assert len(steps) == len(set(steps)), steps
