"""Every label is a legal optimal path, checked against SciPy's Dijkstra, for N = 10, 20, 30, 40."""

import numpy as np
import pytest

from oracle import TaskSpec, generate_tasks, verify_paths
from oracle.vocab import PATH, TOKEN_MARKER, costs_from_inputs

TASKS_PER_SIZE = 2000


@pytest.fixture(scope="module", params=[10, 20, 30, 40])
def batch(request):
    return generate_tasks(TaskSpec(size=request.param), TASKS_PER_SIZE, seed=1234 + request.param)


def test_optimal_cost_and_canonical_label_match_independent_dijkstra(batch, reference):
    n = batch.size
    for i in range(len(batch)):
        costs = batch.costs[i].astype(np.float64)
        dist = reference.distances_from(costs, n, batch.start[i])
        assert dist[batch.end[i]] == batch.optimal_cost[i], f"task {i}: optimal cost differs from Dijkstra"
        path = batch.labels[i] == PATH
        assert np.isfinite(costs[path]).all(), f"task {i}: label crosses a forbidden cell"
        expected = reference.walk_back(costs, dist, n, batch.start[i], batch.end[i])
        assert np.array_equal(path, expected), f"task {i}: label is not the documented canonical path"


def test_labels_verify_as_connected_legal_optimal(batch):
    verdict = verify_paths(batch.labels == PATH, batch.costs, batch.start, batch.end, batch.optimal_cost)
    assert verdict.connected.all() and verdict.legal.all() and verdict.optimal.all()
    np.testing.assert_array_equal(verdict.cost, batch.optimal_cost)


def test_label_is_input_with_path_cells_set(batch):
    path = batch.labels == PATH
    assert (path.sum(1) >= 2).all()
    np.testing.assert_array_equal(batch.labels[~path], batch.inputs[~path])
    assert not (batch.inputs == PATH).any()
    rows = np.arange(len(batch))
    assert path[rows, batch.start].all() and path[rows, batch.end].all()


def test_costs_recomputed_from_tokens_match_exported(batch):
    np.testing.assert_array_equal(costs_from_inputs(batch.inputs), batch.costs)


def test_exactly_one_start_and_end_at_the_exported_cells(batch):
    marker = TOKEN_MARKER[batch.inputs]
    assert ((marker == 1).sum(1) == 1).all() and ((marker == 2).sum(1) == 1).all()
    rows = np.arange(len(batch))
    assert (marker[rows, batch.start] == 1).all() and (marker[rows, batch.end] == 2).all()
    assert np.isfinite(batch.costs[rows, batch.start]).all() and np.isfinite(batch.costs[rows, batch.end]).all()
