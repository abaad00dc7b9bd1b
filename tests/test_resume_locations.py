"""``--resume`` of a run directory or of the run's storage location, with real files and real checkpoints
(of the smoke model, written as the training loop writes them) but no training: which checkpoint is taken,
which run directory the run goes on in (bad locations: ``tests/faults/test_bad_input.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curriculum.adapters.checkpoint import save_checkpoint
from curriculum.cli.resume import resolve_resume
from curriculum.core.overrides import build_config
from curriculum.core.scheduler import SchedulerState
from hrm.model import HRM
from oracle.cli_errors import UsageError

CONFIG = build_config("smoke", None, ["scaling.storage=/unused"])


def checkpoint(directory: Path, step: int) -> Path:
    state = {
        "model": HRM(CONFIG.model).state_dict(),
        "config": CONFIG.model_dump_json(),
        "scheduler": SchedulerState().model_dump_json(),
    }
    return save_checkpoint(directory, state, step, keep=10)


def run_files(directory: Path, **record) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(CONFIG.model_dump_json())
    (directory / "run.json").write_text(json.dumps({"run_id": "abc", "tracking_uri": None, **record}))


@pytest.fixture
def cluster_run(tmp_path) -> tuple[Path, Path]:
    """What a cluster leaves behind: the driver's run directory on the head with only the driver's files,
    and the storage location with the same two files and Ray Train's checkpoint directories."""
    head, shared = tmp_path / "head" / "run", tmp_path / "shared" / "run"
    record = {"run_dir": str(head), "storage": str(shared)}
    run_files(head, **record)
    run_files(shared, **record)
    checkpoint(shared / "checkpoint_2026-01-01_10-00-09.000", 40)
    checkpoint(shared / "checkpoint_2026-01-01_10-00-00.000", 20)
    return head, shared


def test_the_storage_location_resumes_from_anywhere_with_a_run_directory_here(cluster_run, tmp_path, monkeypatch):
    _, shared = cluster_run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    resumed = resolve_resume(str(shared), ["train.max_steps=80"])
    assert resumed.checkpoint == str(shared / "checkpoint_2026-01-01_10-00-09.000" / "checkpoint-000000040.pt")
    assert resumed.run_dir == Path("runs/run") and resumed.record["run_id"] == "abc"
    assert resumed.config.train.max_steps == 80
    assert resumed.config.scaling.storage == str(tmp_path / "shared"), "Ray Train goes on writing there"
    assert list(elsewhere.iterdir()) == [], "resolving creates nothing"


def test_the_head_run_directory_finds_its_checkpoints_in_storage(cluster_run, monkeypatch):
    head, shared = cluster_run
    monkeypatch.chdir(head.parent)
    resumed = resolve_resume("run", [])
    assert resumed.run_dir == Path("run")
    assert resumed.checkpoint.endswith("checkpoint-000000040.pt") and resumed.checkpoint.startswith(str(shared))


def test_the_newest_of_both_places_wins(cluster_run, monkeypatch):
    head, shared = cluster_run
    monkeypatch.chdir(head.parent)
    checkpoint(head / "checkpoints", 60)  # rank 0 ran on the driver's node and wrote a later one
    assert resolve_resume("run", []).checkpoint == "run/checkpoints/checkpoint-000000060.pt"
    checkpoint(head / "checkpoints", 40)  # the same step in both: the copy every node reads
    (head / "checkpoints" / "checkpoint-000000060.pt").unlink()
    assert resolve_resume("run", []).checkpoint.startswith(str(shared))


def test_a_run_directory_here_of_the_same_run_is_reused_and_of_another_refused(cluster_run, tmp_path, monkeypatch):
    _, shared = cluster_run
    monkeypatch.chdir(tmp_path)
    run_files(tmp_path / "runs" / "run")  # the same run id: this machine's earlier run directory
    checkpoint(tmp_path / "runs" / "run" / "checkpoints", 80)
    assert resolve_resume(str(shared), []).checkpoint == "runs/run/checkpoints/checkpoint-000000080.pt"
    (tmp_path / "runs" / "run" / "run.json").write_text(json.dumps({"run_id": "other", "tracking_uri": None}))
    with pytest.raises(UsageError, match="runs/run here holds another run"):
        resolve_resume(str(shared), [])


def test_a_storage_location_without_checkpoints_names_both_places(tmp_path, monkeypatch):
    shared = tmp_path / "shared" / "run"
    run_files(shared, storage=str(shared), run_dir="/head/run")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=f"--resume {shared}: no checkpoint in {shared}"):
        resolve_resume(str(shared), [])
