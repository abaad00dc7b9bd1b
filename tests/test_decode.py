"""The decoded route (the most probable legal chain under the model's path probabilities) and the
cost-blind fewest-cell route beside it."""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse.csgraph import dijkstra

from hrm.config import ModelConfig
from hrm.model import HRM
from oracle import TaskSpec, generate_tasks
from oracle.chain import most_probable_chains
from oracle.vocab import PATH, VOCAB_SIZE
from routing.batch import task_tensors
from routing.decode import decode_routes, fewest_cell_routes
from routing.metric_names import FEWEST_CELLS_METRICS
from routing.metrics import means_from_sums, path_metrics
from routing.training import evaluate


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


def test_fewest_cell_route_is_a_shortest_legal_chain_and_scored_by_its_true_cost(reference):
    tasks = generate_tasks(TaskSpec(size=16), 300, seed=5)
    batch = task_tensors(tasks)
    route = fewest_cell_routes(batch) == PATH
    legal = np.isfinite(tasks.costs)
    optimal_by_reference = []
    for i in range(len(tasks)):
        mask = route[i].numpy()
        hops = dijkstra(reference.grid_graph(np.where(legal[i], 1.0, np.inf), 16), indices=int(tasks.start[i]))
        assert mask.sum() == hops[tasks.end[i]] + 1  # fewest cells: the unweighted distance, start and end included
        assert legal[i][mask].all() and mask[tasks.start[i]] and mask[tasks.end[i]]
        cost = tasks.costs[i][mask].sum() - tasks.costs[i][tasks.start[i]]
        optimal_by_reference.append(np.isclose(cost, tasks.optimal_cost[i]))
    scored = path_metrics(
        fewest_cell_routes(batch), batch["labels"], batch["costs"], batch["start"], batch["end"], batch["optimal_cost"]
    )
    assert scored["connectivity"].all()
    assert scored["optimal"].bool().tolist() == optimal_by_reference
    # The shortest chain is often, not always, the cheapest: both cases occur, so the reference is informative.
    assert 0.2 < np.mean(optimal_by_reference) < 0.9


def test_evaluation_reports_the_fewest_cell_reference_whatever_the_model():
    batch = task_tensors(generate_tasks(TaskSpec(size=10), 64, seed=4))
    readings = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = HRM(
            ModelConfig(hidden_size=32, num_heads=2, h_layers=1, l_layers=1, h_cycles=1, l_cycles=1, halt_max_steps=1)
        )
        with torch.no_grad():  # an untrained model's outputs hardly differ by seed; these do
            for weight in model.parameters():
                weight.normal_(0.0, 0.5)
        readings.append(means_from_sums(evaluate(model, [batch])))
    assert readings[0]["decoded_excess"] != readings[1]["decoded_excess"]  # two different models ...
    for name in FEWEST_CELLS_METRICS:  # ... and one reference, read from the tasks alone
        assert readings[0][name] == readings[1][name]
    scored = path_metrics(
        fewest_cell_routes(batch), batch["labels"], batch["costs"], batch["start"], batch["end"], batch["optimal_cost"]
    )
    assert readings[0]["fewest_cells_optimal"] == float(scored["optimal"].mean())
