"""The reference verifier catches broken, illegal and non-optimal paths and accepts any optimal one."""

from collections import deque

import numpy as np
import pytest

from oracle import TaskSpec, generate_tasks, verify_paths
from oracle.vocab import PATH


@pytest.fixture(scope="module")
def batch():
    return generate_tasks(TaskSpec(size=20), 400, seed=21)


def verdict_of(batch, i, mask):
    return verify_paths(
        mask[None], batch.costs[i : i + 1], batch.start[i : i + 1], batch.end[i : i + 1], batch.optimal_cost[i : i + 1]
    )


def fewest_cells_path(costs, n, start, end):
    """Breadth-first path with the fewest cells, blind to costs: legal but often not optimal."""
    parent = {int(start): None}
    queue = deque([int(start)])
    while queue:
        v = queue.popleft()
        if v == end:
            break
        r, c = divmod(v, n)
        for rr, cc in ((r + 1, c), (r, c + 1), (r - 1, c), (r, c - 1)):
            u = rr * n + cc
            if 0 <= rr < n and 0 <= cc < n and u not in parent and np.isfinite(costs[u]):
                parent[u] = v
                queue.append(u)
    mask = np.zeros(n * n, bool)
    v = int(end)
    while v is not None:
        mask[v] = True
        v = parent[v]
    return mask


def test_label_passes(batch):
    v = verdict_of(batch, 0, batch.labels[0] == PATH)
    assert v.connected[0] and v.legal[0] and v.optimal[0] and v.cost[0] == batch.optimal_cost[0]


def test_broken_path_is_not_connected(batch):
    i = int(np.argmax((batch.labels == PATH).sum(1) >= 5))
    mask = batch.labels[i] == PATH
    middle = [c for c in np.flatnonzero(mask) if c not in (batch.start[i], batch.end[i])][1]
    mask[middle] = False
    v = verdict_of(batch, i, mask)
    assert not v.connected[0] and not v.optimal[0] and np.isinf(v.cost[0])
    assert v.legal[0]


def test_path_through_forbidden_cell_is_illegal(batch):
    n = batch.size
    i = int(np.argmax(~np.isfinite(batch.costs).all(1)))
    mask = batch.labels[i] == PATH
    forbidden = int(np.flatnonzero(~np.isfinite(batch.costs[i]))[0])
    mask[forbidden] = True
    v = verdict_of(batch, i, mask)
    assert not v.legal[0] and not v.optimal[0]
    assert v.path_cells[0] == v.legal_cells[0] + 1
    assert v.connected[0], "the forbidden cell does not break the legal route beside it"
    assert n * n == batch.costs.shape[1]


def test_forbidden_cell_does_not_count_for_connectivity():
    # A 8x8 corridor whose only link is a forbidden cell: marking it does not connect.
    n = 8
    costs = np.full(n * n, np.inf, np.float32)
    costs[0:3] = 1
    costs[4:7] = 1
    mask = np.zeros(n * n, bool)
    mask[0:7] = True
    v = verify_paths(mask[None], costs[None], [0], [6], optimal_cost=[np.inf])
    assert not v.connected[0] and not v.legal[0]


def test_non_optimal_path_is_connected_and_legal_but_not_optimal(batch, reference):
    n = batch.size
    found = 0
    for i in range(len(batch)):
        mask = fewest_cells_path(batch.costs[i], n, batch.start[i], batch.end[i])
        route_cost = batch.costs[i][mask].sum() - batch.costs[i][batch.start[i]]
        if route_cost > batch.optimal_cost[i]:
            v = verdict_of(batch, i, mask)
            assert v.connected[0] and v.legal[0] and not v.optimal[0]
            assert v.cost[0] == route_cost > batch.optimal_cost[i]
            found += 1
    assert found >= 20


def test_alternative_optimal_path_is_accepted(batch, reference):
    n = batch.size
    other_order = reference.canonical_order[::-1]
    found = 0
    for i in range(len(batch)):
        costs = batch.costs[i].astype(np.float64)
        dist = reference.distances_from(costs, n, batch.start[i])
        alt = reference.walk_back(costs, dist, n, batch.start[i], batch.end[i], order=other_order)
        if not np.array_equal(alt, batch.labels[i] == PATH):
            v = verdict_of(batch, i, alt)
            assert v.connected[0] and v.legal[0] and v.optimal[0], f"task {i}: alternative optimum rejected"
            found += 1
    assert found >= 50, "most tasks have several optimal paths"


def test_extra_cells_beside_an_optimal_path_are_not_optimal(batch):
    i = 3
    mask = batch.labels[i] == PATH
    finite = np.isfinite(batch.costs[i])
    extra = int(np.flatnonzero(finite & ~mask)[0])
    mask[extra] = True
    v = verdict_of(batch, i, mask)
    assert v.legal[0] and v.connected[0] and not v.optimal[0]
    assert v.cost[0] == batch.optimal_cost[i]


def test_mark_everything_connects_but_is_not_optimal(batch):
    every_road = np.isfinite(batch.costs)
    v = verify_paths(every_road, batch.costs, batch.start, batch.end, batch.optimal_cost)
    assert v.connected.all() and v.legal.all() and not v.optimal.any()
    np.testing.assert_array_equal(v.cost, batch.optimal_cost)
    everything = np.ones_like(every_road)
    v = verify_paths(everything, batch.costs, batch.start, batch.end, batch.optimal_cost)
    assert v.connected.all() and not v.legal.any() and not v.optimal.any()


def test_empty_prediction(batch):
    v = verify_paths(np.zeros_like(batch.labels, bool), batch.costs, batch.start, batch.end)
    assert not v.connected.any() and not v.optimal.any() and (v.path_cells == 0).all()


def test_optimal_cost_is_solved_when_not_given(batch):
    v = verify_paths(batch.labels == PATH, batch.costs, batch.start, batch.end)
    assert v.optimal.all()


def test_shape_mismatch_is_a_clear_error(batch):
    with pytest.raises(ValueError, match="shape"):
        verify_paths(batch.labels[:, :-1] == PATH, batch.costs, batch.start, batch.end)
