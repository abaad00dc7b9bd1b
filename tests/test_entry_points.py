"""The installed console scripts dispatch to the same commands as ``python -m ...``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop


def _script(name: str) -> str:
    # The scripts sit beside the interpreter of the virtual environment the project is installed in.
    path = Path(sys.executable).parent / name
    found = str(path) if path.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"console script {name} is not installed (pip install -e .)")
    return found


def test_hrm_oracle_generate_writes_the_same_dataset_as_the_module(tmp_path):
    args = ["--size", "8", "--count", "24", "--seed", "3"]
    script = subprocess.run(
        [_script("hrm-oracle"), "generate", *args, "--out", str(tmp_path / "a")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    module = subprocess.run(
        [sys.executable, "-m", "oracle.generate", *args, "--out", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert script.returncode == 0 and module.returncode == 0, script.stderr + module.stderr
    for split in ("train", "test"):
        for name in ("all__inputs.npy", "all__labels.npy", "all__costs.npy"):
            assert np.array_equal(np.load(tmp_path / "a" / split / name), np.load(tmp_path / "b" / split / name))


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], "usage: hrm-curriculum {run,evaluate,compare,replay,tune}"),
        (["bogus"], "hrm-curriculum: error: unknown command 'bogus'"),
        (["run", "--preset", "nope"], "python -m curriculum.run: error: argument --preset: invalid choice: 'nope'"),
        (["tune", "--trials", "0"], "python -m tuners.penalties: error:"),
        (["evaluate", "/nonexistent-run"], "python -m curriculum.evaluate: error:"),
    ],
)
def test_hrm_curriculum_dispatches_and_usage_errors_exit_2(argv, expected):
    result = subprocess.run([_script("hrm-curriculum"), *argv], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(expected), result.stderr


def test_hrm_oracle_without_generate_is_a_usage_error():
    result = subprocess.run([_script("hrm-oracle"), "solve"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "usage: hrm-oracle generate" in result.stderr
