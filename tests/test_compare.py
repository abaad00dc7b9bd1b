"""The run comparison: ranking as a pure function, and the CLI on runs logged through MlflowTracker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from curriculum.adapters.tracking import flatten_config
from curriculum.cli.compare import (
    by_ladder,
    gate_settings,
    ladder_sizes,
    main,
    penalty_weights,
    rank_runs,
    stage_reach_steps,
    transition_history,
)
from curriculum.core.transitions import describe_transition, parse_transition
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
    params = {
        k: str(v)
        for k, v in flatten_config(
            {
                "curriculum": {
                    "stages": [
                        {"size": s, "penalties": {"sparsity": 0.5, "budget": 0.1}}
                        for s in (8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28)
                    ]
                }
            }
        ).items()
    }
    assert ladder_sizes(params) == [8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28]  # stage 10 after stage 9
    assert penalty_weights(params) == "budget=0.1 sparsity=0.5"


def test_a_finished_run_ranks_above_unfinished_ones_and_ladders_are_ranked_apart():
    rows = [
        {**_row("two-stage-unfinished", 1, [0, 100], 0.9), "ladder": "8-10", "outcome": "budget"},
        {**_row("one-stage-finished", 0, [0], 0.5), "ladder": "8", "outcome": "finished"},
        {**_row("two-stage-finished", 1, [0, 300], 0.8), "ladder": "8-10", "outcome": "finished"},
        {**_row("two-stage-stalled", 1, [0, 50], 0.95), "ladder": "8-10", "outcome": "stalled"},
    ]
    groups = by_ladder(rows)
    assert [ladder for ladder, _ in groups] == ["8-10", "8"]
    assert _names(groups[0][1]) == ["two-stage-finished", "two-stage-stalled", "two-stage-unfinished"]
    assert _names(groups[1][1]) == ["one-stage-finished"]


def test_transition_lines_round_trip_and_give_the_exact_promotion_steps():
    sizes = (8, 10, 12)
    promote = {
        "step": 80,
        "action": "promote",
        "from_stage": 0,
        "to_stage": 1,
        "metric": "connectivity",
        "value": 0.412,
    }
    back = {**promote, "step": 130, "action": "back_off", "from_stage": 1, "to_stage": 0}
    finish = {**promote, "step": 300, "action": "finish", "from_stage": 2, "to_stage": 2}
    assert (
        describe_transition(promote, sizes) == "step 80: promoted, stage 0 (8x8) -> stage 1 (10x10), connectivity=0.412"
    )
    assert parse_transition(describe_transition(back, sizes)) == (130, 1, 0)
    assert parse_transition(describe_transition(finish, sizes)) == (300, 2, 2)
    assert parse_transition("step x: promoted") is None and parse_transition("step 5: exploded, stage 0 (8x8)") is None
    tags = {
        "curriculum.transition.1": describe_transition(promote, sizes),
        "curriculum.transition.2": describe_transition(back, sizes),
        "curriculum.transition.3": describe_transition({**promote, "step": 170}, sizes),
        "curriculum.transition.4": describe_transition({**promote, "step": 250, "from_stage": 1, "to_stage": 2}, sizes),
        "curriculum.transition.5": describe_transition(finish, sizes),
        "curriculum.outcome": "finished",
    }
    history = transition_history(tags)
    assert history == [(0, 0.0), (80, 1.0), (130, 0.0), (170, 1.0), (250, 2.0)]
    assert stage_reach_steps(history, 3) == [0, 80, 250]


def test_gate_settings_say_what_each_stage_asks_for():
    same = {
        k: str(v)
        for k, v in flatten_config(
            {
                "curriculum": {
                    "stages": [
                        {"gate": {"metric": "valid_route", "threshold": 0.8, "patience": 2, "guard_max_excess": 1.5}}
                    ]
                    * 3
                }
            }
        ).items()
    }
    assert gate_settings(same) == "valid_route>=0.8 x2 excess<=1.5"
    differ = {
        k: str(v)
        for k, v in flatten_config(
            {
                "curriculum": {
                    "stages": [
                        {"gate": {"metric": "connectivity", "threshold": 0.4, "patience": 2, "guard_max_excess": None}},
                        {"gate": {"metric": "optimal", "threshold": 0.5, "patience": 1, "guard_max_excess": 1.5}},
                    ]
                }
            }
        ).items()
    }
    assert gate_settings(differ) == "s0: connectivity>=0.4 x2; s1: optimal>=0.5 x1 excess<=1.5"


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
    from curriculum.adapters.mlflow_store import create_run
    from curriculum.adapters.mlflow_tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path_factory.mktemp('compare') / 'mlflow.db'}"
    for name, (history, valid_route, sparsity) in RUNS.items():
        run_id = create_run(uri, "ladders", name, {"curriculum.preset": "tiny"})
        tracker = MlflowTracker(uri, run_id)
        config = {
            "preset": "tiny",
            "curriculum": {
                "stages": [
                    {"size": size, "penalties": {"sparsity": sparsity, "connectivity": 0.05}}
                    for size in (10, 20, 30, 40)
                ]
            },
        }
        tracker.log_params(flatten_config(config))
        for n, ((step, stage), (_, before)) in enumerate(zip(history, [(0, 0)] + history)):
            tracker.log_metrics(
                {
                    "curriculum/stage": stage,
                    "curriculum/grid_size": 10 * (stage + 1),
                    "eval/connectivity": 0.5,
                    "eval/valid_route": valid_route / 2,
                    "eval/optimal": 0.1,
                },
                step,
            )
            if stage != before:  # the tag the trainer writes; its step is the promotion's, not the evaluation's
                transition = {
                    "step": step - 20,
                    "action": "promote",
                    "from_stage": before,
                    "to_stage": stage,
                    "metric": "valid_route",
                    "value": 0.8,
                }
                tracker.set_tags({f"curriculum.transition.{n}": describe_transition(transition, (10, 20, 30, 40))})
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
    for column, value in (("to s3", "580"), ("valid_route", "0.600"), ("optimal", "0.100")):
        end = header.index(column) + len(column)
        assert fast[end - len(value) : end] == value, column
    stuck = rows[2]
    end = header.index("to s2") + len("to s2")
    assert stuck[end - 1 : end] == "-" and "stalled" in stuck


def test_max_runs_limits_the_table(store, capsys):
    assert main(["--experiment", "ladders", "--tracking-uri", store, "--max-runs", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4  # title, header, rule, one run


def test_an_unknown_experiment_is_one_line_and_exit_2(store, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "curriculum.compare", "--experiment", "nope", "--tracking-uri", store],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"python -m curriculum.compare: error: no experiment 'nope' at {store}"
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tracking-uri", "./mlruns"], "file store"),
        (["--tracking-uri", "sqlite:///{tmp}/missing.db"], "no MLflow database"),
        (["--max-runs", "0"], "--max-runs"),
        (["--tracking-uri", "nosuchscheme://host"], "nosuchscheme"),
    ],
)
def test_bad_arguments_are_usage_errors(argv, message, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(UsageError, match=message):
        main(["--experiment", "ladders", *argv])
    assert not (tmp_path / "missing.db").exists()  # comparing never creates a database


def test_the_default_experiment_comes_from_the_run_config(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    with pytest.raises(UsageError, match="no experiment 'hrm-curriculum'"):
        main([])
