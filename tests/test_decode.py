"""The decoded route: the most probable legal chain under the model's path probabilities."""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse.csgraph import dijkstra

from oracle import TaskSpec, generate_tasks
from oracle.chain import most_probable_chains
from oracle.vocab import PATH, VOCAB_SIZE
from routing.batch import task_tensors
from routing.decode import decode_routes
from routing.metrics import path_metrics


def test_chain_weight_matches_independent_dijkstra_on_random_probabilities(reference):
    tasks = generate_tasks(TaskSpec(size=12), 300, seed=8)
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.01, 1.0, tasks.costs.shape)
    legal = np.isfinite(tasks.costs)
    mask, found = most_probable_chains(prob, legal, tasks.start, tasks.end)
    assert found.all()
    weight = -np.log(prob)
    for i in range(len(tasks)):
        # Node weights as entry costs of a graph on the legal cells; the start pays its own weight.
        graph_costs = np.where(legal[i], weight[i], np.inf)
        dist = dijkstra(reference.grid_graph(graph_costs, 12), indices=int(tasks.start[i]))
        best = dist[tasks.end[i]] + weight[i, tasks.start[i]]
        assert np.isclose(weight[i][mask[i]].sum(), best, rtol=1e-9)
        assert mask[i][tasks.start[i]] and mask[i][tasks.end[i]] and legal[i][mask[i]].all()
    # Every decoded chain is one connected legal route (checked by the batched metric).
    metrics = path_metrics(
        torch.from_numpy(np.where(mask, PATH, tasks.inputs).astype(np.int64)),
        torch.from_numpy(tasks.labels.astype(np.int64)),
        torch.from_numpy(tasks.costs),
        torch.from_numpy(tasks.start.astype(np.int64)),
        torch.from_numpy(tasks.end.astype(np.int64)),
        torch.from_numpy(tasks.optimal_cost),
    )
    assert metrics["connectivity"].all()


def test_confident_probabilities_on_the_label_decode_to_the_label():
    tasks = generate_tasks(TaskSpec(size=20), 64, seed=2)
    batch = task_tensors(tasks)
    label = batch["labels"] == PATH
    logits = torch.zeros(64, 400, VOCAB_SIZE)
    logits[..., PATH] = torch.where(label, 6.0, -6.0)
    decoded = decode_routes(logits, batch)
    assert torch.equal(decoded == PATH, label)
    assert torch.equal(decoded[~label], batch["inputs"][~label])


def test_a_gap_in_the_argmax_is_bridged_by_the_decoded_chain():
    tasks = generate_tasks(TaskSpec(size=10), 32, seed=4)
    batch = task_tensors(tasks)
    label = batch["labels"] == PATH
    p = torch.where(label, 0.9, 0.05)
    rows = torch.arange(32)
    # Knock the cell after the start out of the argmax: just under 0.5, still the best legal link.
    second = torch.nonzero(label & ~torch.nn.functional.one_hot(batch["start"], 100).bool())
    p[second[:, 0], second[:, 1]] = torch.where(label[second[:, 0], second[:, 1]], 0.45, p[second[:, 0], second[:, 1]])
    logits = torch.log(torch.stack([1 - p, p], -1))
    full = torch.full((32, 100, VOCAB_SIZE), -1e4)
    full[..., 0], full[..., PATH] = logits[..., 0], logits[..., 1]
    argmax_path = full.argmax(-1) == PATH
    assert not torch.equal(argmax_path, label)
    decoded = decode_routes(full, batch) == PATH
    assert decoded[rows, batch["end"]].all()
    assert (decoded == label).float().mean() > 0.97


def test_unreachable_tasks_report_no_chain():
    prob = np.full((1, 16), 0.5)
    legal = np.ones((1, 16), bool)
    legal[0, [1, 4, 5]] = False  # wall off cell 0
    mask, found = most_probable_chains(prob, legal, np.array([0]), np.array([15]))
    assert not found[0] and not mask.any()
