"""The run comparison: ranking as a pure function, and the CLI on runs logged through MlflowTracker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from curriculum.cli.compare import ladder_sizes, main, penalty_weights, rank_runs, stage_reach_steps
from curriculum.adapters.tracking import flatten_config
from oracle.cli_errors import UsageError

REPO = Path(__file__).resolve().parents[1]


def _row(name: str, stage, reached, valid_route) -> dict:
    return {"name": name, "stage": stage, "reached": reached, "valid_route": valid_route}


def _names(rows: list[dict]) -> list[str]:
    return [r["name"] for r in rows]


# ------------------------------------------------------------------ pure ranking

def test_rank_runs_orders_by_stage_then_steps_then_valid_route():
    rows = [
        _row("stage1", 1, [0, 300], 0.99),
        _row("stage3-slow", 3, [0, 100, 200, 900], 0.9),
        _row("stage3-fast-low", 3, [0, 100, 200, 600], 0.5),
        _row("stage3-fast-high", 3, [0, 150, 250, 600], 0.7),
        _row("stage0", 0, [0], 1.0),
    ]
    assert _names(rank_runs(rows)) == ["stage3-fast-high", "stage3-fast-low", "stage3-slow", "stage1", "stage0"]
    assert _names(rows)[0] == "stage1"  # the input is not reordered in place


def test_rank_runs_puts_missing_values_last_and_keeps_ties_in_order():
    rows = [
        _row("no-eval", None, [], None),
        _row("no-valid-route", 2, [0, 10, 20], None),
        _row("tie-a", 2, [0, 10, 20], 0.4),
        _row("nan", 2, [0, 10, 20], float("nan")),
        _row("tie-b", 2, [0, 10, 20], 0.4),
    ]
    assert _names(rank_runs(rows)) == ["tie-a", "tie-b", "no-valid-route", "nan", "no-eval"]


def test_stage_reach_steps_takes_the_first_step_at_or_beyond_each_stage():
    # A back-off (stage 1 -> 0) does not move the first time stage 1 was reached; a jump 0 -> 2 reaches both.
    assert stage_reach_steps([(0, 0.0), (10, 1.0), (20, 0.0), (30, 1.0), (40, 2.0)], 3) == [0, 10, 40]
    assert stage_reach_steps([(30, 2.0), (0, 0.0)], 4) == [0, 30, 30, None]


def test_ladder_and_penalties_are_read_from_flattened_params():
    params = {k: str(v) for k, v in flatten_config({"curriculum": {"stages": [
        {"size": s, "penalties": {"sparsity": 0.5, "budget": 0.1}} for s in (8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28)
    ]}}).items()}
    assert ladder_sizes(params) == [8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28]  # stage 10 after stage 9
    assert penalty_weights(params) == "budget=0.1 sparsity=0.5"


# ------------------------------------------------------------------ the CLI on a real store

RUNS = {
    # name, in creation order: (stage history [(step, stage)], final eval/valid_route, sparsity weight)
    "slow-full": ([(0, 0), (300, 1), (600, 2), (900, 3)], 0.7, 0.5),
    "stuck": ([(0, 0), (200, 1), (400, 1), (800, 1)], 0.95, 1.0),
    "fast-full": ([(0, 0), (200, 1), (400, 2), (600, 3)], 0.6, 0.25),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    pytest.importorskip("mlflow")
    from curriculum.adapters.mlflow_tracker import MlflowTracker, create_run

    uri = f"sqlite:///{tmp_path_factory.mktemp('compare') / 'mlflow.db'}"
    for name, (history, valid_route, sparsity) in RUNS.items():
        run_id = create_run(uri, "ladders", name, {"curriculum.preset": "tiny"})
        tracker = MlflowTracker(uri, run_id)
        config = {"preset": "tiny", "curriculum": {"stages": [
            {"size": size, "penalties": {"sparsity": sparsity, "connectivity": 0.05}} for size in (10, 20, 30, 40)]}}
        tracker.log_params(flatten_config(config))
        for step, stage in history:
            tracker.log_metrics({"curriculum/stage": stage, "curriculum/grid_size": 10 * (stage + 1),
                                 "eval/connectivity": 0.5, "eval/valid_route": valid_route / 2,
                                 "eval/optimal": 0.1}, step)
        tracker.log_metrics({"eval/valid_route": valid_route}, history[-1][0] + 1)
        tracker.set_tags({"curriculum.outcome": "finished" if history[-1][1] == 3 else "stalled"})
        tracker.finish("FINISHED")
    return uri


def test_the_table_lists_the_best_run_first(store, capsys):
    assert main(["--experiment", "ladders", "--tracking-uri", store]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("experiment 'ladders'") and "3 runs" in out[0]
    header, rows = out[1], out[3:]
    assert header.split()[:4] == ["#", "run", "status", "outcome"]
    assert [line.split()[1] for line in rows] == ["fast-full", "slow-full", "stuck"]

    fast = rows[0]
    assert "10-20-30-40" in fast and "connectivity=0.05 sparsity=0.25" in fast and "finished" in fast
    # Columns line up: each value ends where its header ends (numbers are right-aligned).
    for column, value in (("to s3", "600"), ("valid_route", "0.600"), ("optimal", "0.100")):
        end = header.index(column) + len(column)
        assert fast[end - len(value):end] == value, column
    stuck = rows[2]
    end = header.index("to s2") + len("to s2")
    assert stuck[end - 1:end] == "-" and "stalled" in stuck


def test_max_runs_limits_the_table(store, capsys):
    assert main(["--experiment", "ladders", "--tracking-uri", store, "--max-runs", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4  # title, header, rule, one run


def test_an_unknown_experiment_is_one_line_and_exit_2(store, tmp_path):
    result = subprocess.run([sys.executable, "-m", "curriculum.compare", "--experiment", "nope",
                             "--tracking-uri", store], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"python -m curriculum.compare: error: no experiment 'nope' at {store}"]


@pytest.mark.parametrize("argv, message", [
    (["--tracking-uri", "./mlruns"], "file store"),
    (["--tracking-uri", "sqlite:///{tmp}/missing.db"], "no MLflow database"),
    (["--max-runs", "0"], "--max-runs"),
    (["--tracking-uri", "nosuchscheme://host"], "nosuchscheme"),
])
def test_bad_arguments_are_usage_errors(argv, message, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(UsageError, match=message):
        main(["--experiment", "ladders", *argv])
    assert not (tmp_path / "missing.db").exists()  # comparing never creates a database


def test_the_default_experiment_comes_from_the_run_config(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    with pytest.raises(UsageError, match="no experiment 'hrm-curriculum'"):
        main([])
