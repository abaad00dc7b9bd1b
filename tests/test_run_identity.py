"""Telling runs apart and finding config keys: run names from the overrides, MLflow source tags and the
experiment's kind, ``--show-config``, "did you mean" for a misspelled key, and a run directory that
cannot be created (one line, exit 2, nothing created)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from curriculum.adapters.mlflow_links import runs_table_link
from curriculum.adapters.mlflow_store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, create_run
from curriculum.adapters.source_tags import REPO_ROOT, source_tags
from curriculum.cli.run import PROG, main
from curriculum.core.describe import config_yaml
from curriculum.core.naming import MAX_NAME_CHARS, run_name
from curriculum.core.overrides import build_config
from oracle.cli_errors import UsageError, run_cli


def cli(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ended:
        run_cli(lambda: main(argv), PROG)
    out = capsys.readouterr()
    return ended.value.code, out.out, out.err


def test_run_names_say_what_differs():
    assert run_name("tiny") == "tiny"
    assert run_name("tiny", None, ["train.lr=5e-4", "curriculum.stages.0.gate.threshold=0.9"]) == (
        "tiny lr=5e-4 stages.0.gate.threshold=0.9"
    )
    assert run_name("gpu", Path("confs/my_run.yaml"), ["space.x=1"]) == "gpu my_run space.x=1"
    long = run_name("tiny", None, [f"train.lr={'1' * 200}"])
    assert len(long) == MAX_NAME_CHARS and long.endswith("...")


@pytest.mark.parametrize("preset", ["smoke", "tiny"])
def test_show_config_is_the_resolved_config_described_and_loads_back_as_a_config_file(preset, tmp_path):
    config = build_config(preset, None, ["train.lr=5e-4"])
    text = config_yaml(config)
    assert yaml.safe_load(text) == config.model_dump(mode="json")
    for description in (
        "# Peak learning rate of AdamATan2.",
        "# Grid side N of this stage's tasks.",
        "# Seconds between",
    ):
        assert description in text, description
    path = tmp_path / "shown.yaml"
    path.write_text(text)
    assert build_config(None, path) == config


def test_show_config_prints_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli(["--preset", "smoke", "--show-config", "train.lr=0.002"], capsys)
    assert code == 0 and yaml.safe_load(out)["train"]["lr"] == 0.002
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "override, line",
    [
        ("train.lrr=1e-3", "train.lrr: unknown key; did you mean train.lr?"),
        ("trian.lr=1e-3", "trian: unknown key; did you mean train?"),
        ("curriculum.stages.1.gate.treshold=0.5", "did you mean curriculum.stages.1.gate.threshold?"),
        ("train.zzz=1", "train.zzz: unknown key (known here: batch_size, lr,"),
    ],
)
def test_a_misspelled_key_names_the_nearest_real_one(override, line, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(["--preset", "smoke", "--backend", "local", override], capsys)
    assert code == 2 and line in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_a_misspelled_key_in_a_config_file_too(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  hiden_size: 64\n")
    with pytest.raises(UsageError, match=r"model.hiden_size: unknown key; did you mean model.hidden_size\?"):
        build_config("smoke", path)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory on a read-only file system (a tmpfs mounted ro), or a mode-555 one for a non-root user."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o555)
        yield target
        target.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)], capture_output=True)
    if mounted.returncode != 0 or shutil.which("umount") is None:
        pytest.skip("cannot mount a read-only file system here")
    yield target
    subprocess.run(["umount", str(target)], check=True)


def test_a_run_dir_on_a_read_only_file_system_is_one_line_and_exit_2(read_only_dir, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run_dir = read_only_dir / "runs" / "a"
    code, _, err = cli(["--preset", "smoke", "--run-dir", str(run_dir)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert str(run_dir) in lines[0] and str(read_only_dir) in lines[0] and "Traceback" not in err
    assert list(work.iterdir()) == [], "no mlflow.db, no run directory"
    assert list(read_only_dir.iterdir()) == []


def test_source_tags_name_the_command_and_the_commit():
    tags = source_tags(PROG, ["--preset", "smoke", "train.lr=5e-4"])
    assert tags["mlflow.source.name"] == PROG and tags["mlflow.source.type"] == "LOCAL"
    assert tags["curriculum.command"] == f"{PROG} --preset smoke train.lr=5e-4"
    if shutil.which("git") and (REPO_ROOT / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert tags["mlflow.source.git.commit"] == head.stdout.strip()
        assert tags["curriculum.git_dirty"] in ("true", "false")


def test_ui_links_open_the_model_training_runs_table():
    assert runs_table_link("sqlite:////tmp/mlflow.db", "3") == (
        "http://127.0.0.1:5000/#/experiments/3?workflowType=machine_learning"
    )
    assert runs_table_link("http://head:5000/", "3", "abc") == (
        "http://head:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    )


def test_the_experiment_opens_on_its_training_runs_and_a_chosen_kind_is_kept(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    create_run(uri, "curricula", "tiny")
    assert client.get_experiment_by_name("curricula").tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    other = client.create_experiment("chosen")
    client.set_experiment_tag(other, EXPERIMENT_KIND_TAG, "genai_development")
    create_run(uri, "chosen", "tiny")
    assert client.get_experiment(other).tags[EXPERIMENT_KIND_TAG] == "genai_development"
