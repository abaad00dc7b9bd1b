"""FileTracker, replay_into, flatten_config, MultiTracker: the tracking side that needs no MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from curriculum.adapters.tracking import (
    MAX_PARAM_VALUE_CHARS,
    TRUNCATION_MARKER,
    FileTracker,
    MultiTracker,
    NullTracker,
    flatten_config,
    replay_into,
)

REPO = Path(__file__).resolve().parents[1]


class RecordingTracker:
    """Keeps every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def log_params(self, params):
        self.calls.append(("params", dict(params)))

    def log_metrics(self, metrics, step, timestamp=None):
        self.calls.append(("metrics", dict(metrics), step, timestamp))

    def set_tags(self, tags):
        self.calls.append(("tags", dict(tags)))

    def log_artifact(self, path, artifact_path=None):
        self.calls.append(("artifact", Path(path).read_text(), Path(path).name, artifact_path))

    def finish(self, status):
        self.calls.append(("finish", status))

    def of(self, kind: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == kind]


class FailingTracker(RecordingTracker):
    def log_metrics(self, metrics, step, timestamp=None):
        raise OSError("disk full")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _logged_run(run_dir: Path, source: Path) -> FileTracker:
    """A FileTracker directory with params, tags, three metric lines, two artifacts and a status."""
    tracker = FileTracker(run_dir)
    tracker.log_params({"train.lr": 0.001, "model.name": "hrm"})
    tracker.log_params({"train.lr": 0.002, "train.seed": 3})  # a second call merges, last value wins
    tracker.set_tags({"curriculum.preset": "tiny"})
    for step in (0, 10, 20):
        tracker.log_metrics({"train/loss": 1.0 / (step + 1), "curriculum/stage": step // 10}, step)
    tracker.set_tags({"curriculum.outcome": "finished"})
    source.mkdir(exist_ok=True)
    (source / "routes.png").write_text("png bytes")
    (source / "timeline.png").write_text("timeline")
    tracker.log_artifact(source / "routes.png", "routes")
    tracker.log_artifact(source / "timeline.png")
    tracker.finish("FINISHED")
    return tracker


def test_file_tracker_writes_every_kind_of_record(tmp_path):
    tracker = _logged_run(tmp_path / "run", tmp_path / "src")
    root = tmp_path / "run" / "tracking"

    assert json.loads((root / "params.json").read_text()) == {"train.lr": 0.002, "model.name": "hrm", "train.seed": 3}
    assert json.loads((root / "tags.json").read_text()) == {
        "curriculum.preset": "tiny",
        "curriculum.outcome": "finished",
    }
    lines = _lines(root / "metrics.jsonl")
    assert [line["step"] for line in lines] == [0, 10, 20]
    assert lines[2]["metrics"] == {"train/loss": pytest.approx(1 / 21), "curriculum/stage": 2.0}
    assert all(isinstance(line["time"], float) for line in lines)
    assert (root / "artifacts" / "routes" / "routes.png").read_text() == "png bytes"
    assert (root / "artifacts" / "timeline.png").read_text() == "timeline"
    assert json.loads((root / "status.json").read_text())["status"] == "FINISHED"
    # Atomic writes leave no temp or partial files behind.
    assert not [p.name for p in root.rglob(".*")]
    assert tracker.metrics_path == root / "metrics.jsonl"


def test_file_tracker_on_an_existing_directory_appends(tmp_path):
    FileTracker(tmp_path).log_metrics({"train/loss": 2.0}, 5)
    resumed = FileTracker(tmp_path)
    resumed.log_metrics({"train/loss": 1.0}, 6, timestamp=123.5)
    lines = _lines(tmp_path / "tracking" / "metrics.jsonl")
    assert [(line["step"], line["metrics"]["train/loss"]) for line in lines] == [(5, 2.0), (6, 1.0)]
    assert lines[1]["time"] == 123.5


def test_file_tracker_copies_a_directory_artifact(tmp_path):
    source = tmp_path / "pictures"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.txt").write_text("a")
    FileTracker(tmp_path / "run").log_artifact(source, "figs")
    assert (tmp_path / "run" / "tracking" / "artifacts" / "figs" / "pictures" / "sub" / "a.txt").read_text() == "a"


def test_finish_rejects_an_unknown_status(tmp_path):
    tracker = FileTracker(tmp_path)
    with pytest.raises(ValueError, match="FINISHED"):
        tracker.finish("DONE")
    assert not (tmp_path / "tracking" / "status.json").exists()
    with pytest.raises(ValueError):
        NullTracker().finish("DONE")
    with pytest.raises(ValueError):
        MultiTracker(RecordingTracker()).finish("RUNNING")


def test_replay_into_relogs_everything_in_order(tmp_path):
    _logged_run(tmp_path / "run", tmp_path / "src")
    written = _lines(tmp_path / "run" / "tracking" / "metrics.jsonl")
    target = RecordingTracker()

    assert replay_into(tmp_path / "run", target) == 3

    assert target.of("params") == [("params", {"train.lr": 0.002, "model.name": "hrm", "train.seed": 3})]
    assert target.of("tags") == [("tags", {"curriculum.preset": "tiny", "curriculum.outcome": "finished"})]
    assert [(c[2], c[1]["curriculum/stage"], c[3]) for c in target.of("metrics")] == [
        (line["step"], line["metrics"]["curriculum/stage"], line["time"]) for line in written
    ]
    assert sorted(target.of("artifact"), key=str) == sorted(
        [("artifact", "png bytes", "routes.png", "routes"), ("artifact", "timeline", "timeline.png", None)], key=str
    )
    assert target.calls[-1] == ("finish", "FINISHED")


def test_replay_into_a_file_tracker_reproduces_the_directory(tmp_path):
    _logged_run(tmp_path / "a", tmp_path / "src")
    replay_into(tmp_path / "a", FileTracker(tmp_path / "b"))
    a, b = tmp_path / "a" / "tracking", tmp_path / "b" / "tracking"
    for name in ("metrics.jsonl", "params.json", "tags.json"):
        assert (b / name).read_text() == (a / name).read_text(), name
    assert (b / "artifacts" / "routes" / "routes.png").read_text() == "png bytes"
    assert json.loads((b / "status.json").read_text())["status"] == "FINISHED"


def test_replay_of_a_crashed_run_skips_a_torn_last_line_and_finishes_killed(tmp_path, capsys):
    tracker = FileTracker(tmp_path)
    tracker.log_metrics({"train/loss": 1.0}, 1)
    tracker.log_metrics({"train/loss": 0.5}, 2)
    with open(tracker.metrics_path, "a") as f:
        f.write('{"step": 3, "metr')  # the process died in mid-write; no status.json
    target = RecordingTracker()

    assert replay_into(tmp_path, target) == 2
    assert [c[2] for c in target.of("metrics")] == [1, 2]
    assert target.calls[-1] == ("finish", "KILLED")
    assert "torn last line" in capsys.readouterr().err


def test_replay_refuses_a_torn_line_in_the_middle(tmp_path):
    tracker = FileTracker(tmp_path)
    with open(tracker.metrics_path, "a") as f:
        f.write('{"step": 1, "metr\n')
    tracker.log_metrics({"train/loss": 0.5}, 2)
    with pytest.raises(ValueError, match="metrics.jsonl:1"):
        replay_into(tmp_path, RecordingTracker())


def test_replay_needs_a_tracking_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        replay_into(tmp_path, RecordingTracker())


def test_flatten_config_uses_dotted_keys_for_dicts_and_lists():
    config = {
        "train": {"lr": 1e-3, "grad_clip": None, "device": "cpu", "bf16": True},
        "curriculum": {"stages": [{"size": 10, "gate": {"threshold": 0.8}}, {"size": 20, "gate": {"threshold": 0.9}}]},
        "task": {"vehicle_mix": (1.0, 0.5)},
        "empty": {"list": [], "dict": {}},
        "path": Path("/x/y"),
    }
    assert flatten_config(config) == {
        "train.lr": 1e-3,
        "train.grad_clip": None,
        "train.device": "cpu",
        "train.bf16": True,
        "curriculum.stages.0.size": 10,
        "curriculum.stages.0.gate.threshold": 0.8,
        "curriculum.stages.1.size": 20,
        "curriculum.stages.1.gate.threshold": 0.9,
        "task.vehicle_mix.0": 1.0,
        "task.vehicle_mix.1": 0.5,
        "empty.list": "[]",
        "empty.dict": "{}",
        "path": "/x/y",
    }
    assert flatten_config({"lr": 1}, prefix="train") == {"train.lr": 1}


def test_flatten_config_truncates_values_longer_than_mlflow_accepts():
    flat = flatten_config({"short": "a" * MAX_PARAM_VALUE_CHARS, "long": "b" * (MAX_PARAM_VALUE_CHARS + 1)})
    assert flat["short"] == "a" * MAX_PARAM_VALUE_CHARS
    assert len(flat["long"]) == MAX_PARAM_VALUE_CHARS
    assert flat["long"].endswith(TRUNCATION_MARKER) and flat["long"].startswith("bbb")


def test_flatten_config_of_a_real_run_config_has_the_names_compare_reads():
    from curriculum.core.presets import preset_config

    flat = flatten_config(preset_config("tiny").model_dump(mode="json"))
    assert [flat[f"curriculum.stages.{i}.size"] for i in range(4)] == [10, 20, 30, 40]
    assert flat["curriculum.stages.0.gate.threshold"] == 0.8
    assert "curriculum.stages.0.penalties.sparsity" in flat
    assert flat["preset"] == "tiny"
    assert all(v is None or isinstance(v, (str, int, float, bool)) for v in flat.values())


def test_multi_tracker_fans_out_and_raises_after_calling_every_tracker(tmp_path):
    first, last = RecordingTracker(), RecordingTracker()
    multi = MultiTracker(first, FailingTracker(), last, FileTracker(tmp_path))
    multi.log_params({"a": 1})
    multi.set_tags({"t": "v"})
    with pytest.raises(OSError, match="disk full"):
        multi.log_metrics({"train/loss": 1.0}, 7)
    multi.finish("FAILED")

    for tracker in (first, last):
        assert tracker.calls == [
            ("params", {"a": 1}),
            ("tags", {"t": "v"}),
            ("metrics", {"train/loss": 1.0}, 7, None),
            ("finish", "FAILED"),
        ]
    assert _lines(tmp_path / "tracking" / "metrics.jsonl")[0]["step"] == 7


def test_tracking_modules_import_and_log_where_mlflow_is_not_installed(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        class NoMlflow:
            def find_spec(self, name, path=None, target=None):
                if name == "mlflow" or name.startswith("mlflow."):
                    raise ImportError("mlflow is not installed")
        sys.meta_path.insert(0, NoMlflow())
        from pathlib import Path
        from curriculum.adapters.tracking import FileTracker, MultiTracker, NullTracker
        import curriculum.adapters.mlflow_tracker
        import curriculum.adapters.mlflow_store as store
        tracker = MultiTracker(FileTracker(Path({str(tmp_path)!r})), NullTracker())
        tracker.log_metrics({{"train/loss": 1.0}}, 1)
        tracker.finish("FINISHED")
        print(store.resolve_tracking_uri("sqlite:///a.db"))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sqlite:///{tmp_path.resolve()}/a.db"
    assert (tmp_path / "tracking" / "status.json").exists()
