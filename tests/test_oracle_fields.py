"""The dense oracle fields (cost from the start, cost to the end) against SciPy's Dijkstra, on thousands of tasks."""

import numpy as np
import pytest

from oracle import TaskSpec, generate_tasks
from oracle.dataset import load_dataset, save_dataset
from oracle.embed import embed_tasks
from oracle.fields import on_optimal_route, route_fields
from oracle.vocab import PATH

TASKS_PER_SIZE = 1000


@pytest.fixture(scope="module", params=[10, 20, 40, 64])
def batch(request):
    return generate_tasks(TaskSpec(size=request.param), TASKS_PER_SIZE, seed=77 + request.param)


def test_fields_match_independent_dijkstra_both_ways(batch, reference):
    n = batch.size
    from_start, to_end = batch.route_fields()
    assert from_start.dtype == np.float32 and from_start.shape == batch.costs.shape
    for i in range(len(batch)):
        forward = reference.distances_from(batch.costs[i], n, batch.start[i])
        backward = reference.distances_to(batch.costs[i], n, batch.end[i])
        np.testing.assert_array_equal(from_start[i], forward.astype(np.float32), err_msg=f"task {i}: from_start")
        np.testing.assert_array_equal(to_end[i], backward.astype(np.float32), err_msg=f"task {i}: to_end")


def test_the_label_route_lies_in_the_optimal_set(batch):
    from_start, to_end = batch.route_fields()
    rows = np.arange(len(batch))
    np.testing.assert_array_equal(from_start[rows, batch.end], batch.optimal_cost)
    np.testing.assert_array_equal(to_end[rows, batch.start], batch.optimal_cost)
    on = on_optimal_route(from_start, to_end, batch.optimal_cost)
    label = batch.labels == PATH
    assert not (label & ~on).any(), "a label cell is off every optimal route"
    assert (on.sum(1) >= label.sum(1)).all()
    assert not (on & np.isinf(batch.costs)).any()


def test_several_optimal_routes_are_common_on_larger_grids():
    # What the any-optimal loss is for: the optimal set is often larger than the one label route.
    tasks = generate_tasks(TaskSpec(size=20), 500, seed=5)
    from_start, to_end = tasks.route_fields()
    on = on_optimal_route(from_start, to_end, tasks.optimal_cost).sum(1)
    assert (on > (tasks.labels == PATH).sum(1)).mean() > 0.3


def test_fields_are_the_same_bytes_on_any_thread_count():
    import numba

    tasks = generate_tasks(TaskSpec(size=30), 200, seed=9)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = route_fields(tasks.costs, tasks.start, tasks.end)
        numba.set_num_threads(max(1, numba.config.NUMBA_NUM_THREADS))
        many = route_fields(tasks.costs, tasks.start, tasks.end)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, many):
        assert a.tobytes() == b.tobytes()


def test_embedded_tasks_keep_their_fields():
    small = generate_tasks(TaskSpec(size=10), 16, seed=3)
    big = embed_tasks(small, 20, np.full(16, 4), np.full(16, 7))
    fs_small, _ = small.route_fields()
    fs_big, te_big = big.route_fields()
    inside = (np.arange(10)[:, None] + 4) * 20 + np.arange(10)[None, :] + 7
    np.testing.assert_array_equal(fs_big[:, inside.ravel()], fs_small)
    outside = np.ones(400, bool)
    outside[inside.ravel()] = False
    assert np.isinf(fs_big[:, outside]).all() and np.isinf(te_big[:, outside]).all()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="square"):
        route_fields(np.ones((2, 10), np.float32), np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="start and end"):
        route_fields(np.ones((1, 16), np.float32), np.array([16]), np.array([0]))
    with pytest.raises(ValueError, match="one start"):
        route_fields(np.ones((2, 16), np.float32), np.zeros(1), np.zeros(2))


def test_dataset_writes_and_reads_the_fields(tmp_path):
    spec = TaskSpec(size=10)
    train = generate_tasks(spec, 40, seed=1)
    test = generate_tasks(spec, 10, seed=2)
    out = save_dataset(tmp_path / "ds", train, test, spec, seed=1)
    split = load_dataset(out)["train"]
    from_start, to_end = train.route_fields()
    np.testing.assert_array_equal(split.fields["from_start"], from_start)
    np.testing.assert_array_equal(split.fields["to_end"], to_end)
