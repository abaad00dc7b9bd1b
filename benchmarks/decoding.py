"""Best of K decoded routes: how much of a decoder's `optimal` is the model's and how much the search's.

    python benchmarks/decoding.py RUN --sizes 10,20 --count 512 --k 1,2,4,8,16

For each held-out task (the same fresh tasks `curriculum.evaluate` draws), the K most probable legal
start->end chains under the model's PATH probabilities (Yen's K shortest simple paths on -log p, by
networkx), and the cheapest of them by the exact cost computed from the input: the "best of K" inference
mode. Beside it the same search with every cell weighed alike, which reads no model: the K chains with
the fewest cells, the cheapest of them kept. Prints, per size and K, the share of tasks whose chosen
chain is an optimal route, for the model and for the cost-blind search. Where the cost-blind search
matches the model at the same K, the search, not the model, finds the cheap routes.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import torch


def candidate_costs(weight: np.ndarray, costs: np.ndarray, start: int, end: int, n: int, k: int) -> np.ndarray:
    """Exact costs (start excluded) of the ``k`` legal start->end chains of least total ``weight``, in order
    (fewer when fewer chains exist). ``weight``, ``costs``: float [N*N], ``costs`` +inf where illegal."""
    graph = nx.DiGraph()
    legal = np.isfinite(costs)
    for v in np.flatnonzero(legal):
        r, c = divmod(int(v), n)
        for rr, cc in ((r - 1, c), (r, c - 1), (r + 1, c), (r, c + 1)):
            u = rr * n + cc
            if 0 <= rr < n and 0 <= cc < n and legal[u]:
                graph.add_edge(u, int(v), weight=float(weight[v]))  # entering v pays v's weight
    chains = nx.shortest_simple_paths(graph, int(start), int(end), weight="weight")
    return np.array([costs[chain[1:]].sum() for chain in itertools.islice(chains, k)])


def best_of_k(found: np.ndarray, optimal_cost: float, ks: list[int]) -> list[bool]:
    """Per K: whether the cheapest of the first K candidate costs ``found`` is the optimal cost."""
    return [bool(np.isclose(found[:k].min(), optimal_cost)) for k in ks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run directory or checkpoint file")
    parser.add_argument("--sizes", default="10")
    parser.add_argument("--count", type=int, default=256, help="held-out tasks per size")
    parser.add_argument("--k", default="1,2,4,8,16", help="candidate counts, comma-separated")
    parser.add_argument("--segments", type=int, help="ACT segments (default: the run's evaluation setting)")
    args = parser.parse_args(argv)
    from curriculum.cli.evaluate import checkpoint_in, load_trained, spec_for_size
    from curriculum.core.streams import evaluation_tasks
    from oracle.dataset import select
    from oracle.vocab import PATH
    from routing.batch import task_tensors
    from routing.training import predict_logits

    sizes = [int(s) for s in args.sizes.split(",")]
    ks = sorted({int(k) for k in args.k.split(",")})
    if min(ks) < 1 or args.count < 1:
        parser.error("--k and --count must be positive")
    path = checkpoint_in(args.run)
    if path is None:
        parser.error(f"{args.run}: no checkpoint found")
    config, model, ema = load_trained(path, max(sizes))
    segments = args.segments if args.segments is not None else config.train.eval_segments
    print(f"{path}: best of K chains by exact cost, {args.count} held-out tasks per size", flush=True)
    print("| grid | chains ranked by | " + " | ".join(f"K={k}" for k in ks) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in ks) + " |")
    for size in sizes:
        tasks = evaluation_tasks(spec_for_size(config, size), config.train.seed, args.count)
        probabilities = []
        for first in range(0, args.count, 256):
            batch = task_tensors(select(tasks, np.arange(first, min(first + 256, args.count))))
            logits = predict_logits(model, batch, ema, segments)
            probabilities.append(torch.softmax(logits.float(), -1)[..., PATH].double().numpy())
        weights = {"model": -np.log(np.clip(np.concatenate(probabilities), 1e-12, 1.0))}
        weights["fewest cells (no model)"] = np.ones_like(weights["model"])
        for ranking, weight in weights.items():
            hits = np.array(
                [
                    best_of_k(
                        candidate_costs(weight[i], tasks.costs[i], tasks.start[i], tasks.end[i], size, max(ks)),
                        tasks.optimal_cost[i],
                        ks,
                    )
                    for i in range(args.count)
                ]
            )
            print(f"| {size}×{size} | {ranking} | " + " | ".join(f"{v:.3f}" for v in hits.mean(0)) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
