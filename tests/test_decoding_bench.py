"""benchmarks/decoding.py: best of K chains by exact cost, for a trained model and for the cost-blind search."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from curriculum.adapters.tracking import NullTracker
from curriculum.core.overrides import build_config
from curriculum.trainer.context import WorkerContext
from curriculum.trainer.loop import run_curriculum
from oracle import TaskSpec, generate_tasks

CUTOFF = 13  # steps enumerated by brute force
ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("decoding_bench", ROOT / "benchmarks" / "decoding.py")
decoding = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(decoding)


def test_candidates_are_the_k_lightest_chains_by_brute_force():
    tasks = generate_tasks(TaskSpec(size=8), 30, seed=3)
    rng = np.random.default_rng(1)
    checked = []
    for i in range(len(tasks)):
        # Weights in [1, 1.5]: a chain of h steps weighs at least h, so every chain as light as the fifth
        # candidate has at most ceil(its weight) steps, and enumerating that many finds them all.
        weight = rng.uniform(1.0, 1.5, 64)
        found = decoding.candidate_costs(weight, tasks.costs[i], tasks.start[i], tasks.end[i], 8, 5)
        legal = {(v // 8, v % 8) for v in np.flatnonzero(np.isfinite(tasks.costs[i]))}
        graph = nx.grid_2d_graph(8, 8).subgraph(legal)
        start, end = divmod(int(tasks.start[i]), 8), divmod(int(tasks.end[i]), 8)
        chains = [[r * 8 + c for r, c in chain] for chain in nx.all_simple_paths(graph, start, end, cutoff=CUTOFF)]
        chains = sorted(chains, key=lambda chain: weight[chain[1:]].sum())[:5]
        if len(chains) < 5 or weight[chains[-1][1:]].sum() > CUTOFF:
            continue  # the fifth lightest chain may be longer than the enumeration reached
        expected = [tasks.costs[i][chain[1:]].sum() for chain in chains]
        assert found.tolist() == pytest.approx(expected)
        assert decoding.best_of_k(found, tasks.optimal_cost[i], [1, 5]) == [
            bool(np.isclose(expected[0], tasks.optimal_cost[i])),
            bool(np.isclose(min(expected), tasks.optimal_cost[i])),
        ]
        checked.append(i)
    assert len(checked) >= 10  # 14 of these 30 tasks


def test_best_of_k_on_a_trained_checkpoint(tmp_path, capsys):
    config = build_config("smoke", None, ["train.max_steps=10", "train.eval_every=10", "tracking.images_per_eval=0"])
    run_curriculum(config, WorkerContext(say=lambda line: None), NullTracker(), tmp_path)
    assert decoding.main([str(tmp_path), "--sizes", "8", "--count", "12", "--k", "1,3,9"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 8×8")]
    assert [row.split("|")[2].strip() for row in rows] == ["model", "fewest cells (no model)"]
    for row in rows:
        shares = [float(cell) for cell in row.strip("| ").split("|")[2:]]
        assert len(shares) == 3 and all(0.0 <= s <= 1.0 for s in shares)
        assert shares == sorted(shares)  # more candidates never lose the cheapest one found so far
