"""Batched torch metrics agree with the reference verifier and cannot be fooled."""

import numpy as np
import pytest
import torch

from oracle import TaskSpec, generate_tasks, verify_paths
from oracle.vocab import PATH
from routing.metrics import means_from_sums, metric_sums, path_metrics, route_costs_inside


def as_tensors(batch):
    return dict(
        labels=torch.from_numpy(batch.labels.astype(np.int64)),
        costs=torch.from_numpy(batch.costs),
        start=torch.from_numpy(batch.start.astype(np.int64)),
        end=torch.from_numpy(batch.end.astype(np.int64)),
        optimal_cost=torch.from_numpy(batch.optimal_cost),
    )


def predictions_from_masks(batch, masks):
    """Token predictions: the input copied, PATH where the mask says (what a model outputs)."""
    pred = batch.inputs.astype(np.int64).copy()
    pred[masks] = PATH
    return torch.from_numpy(pred)


def random_masks(batch, rng, reference):
    """A mix of what models predict: labels, perturbed labels, noise, other optima, everything."""
    n = batch.size
    labels = batch.labels == PATH
    masks = np.zeros_like(labels)
    kinds = rng.integers(0, 7, len(batch))
    for i, kind in enumerate(kinds):
        m = labels[i].copy()
        if kind == 1:  # drop a few path cells
            drop = rng.choice(np.flatnonzero(m), size=rng.integers(1, 3), replace=True)
            m[drop] = False
        elif kind == 2:  # add random cells (legal or not)
            m[rng.integers(0, n * n, rng.integers(1, 8))] = True
        elif kind == 3:  # sparse noise
            m = rng.random(n * n) < rng.uniform(0.02, 0.3)
            m[batch.start[i]] = m[batch.end[i]] = True
        elif kind == 4:  # every legal cell
            m = np.isfinite(batch.costs[i])
        elif kind == 5:  # another optimal route (reverse neighbour order)
            costs = batch.costs[i].astype(np.float64)
            dist = reference.distances_from(costs, n, batch.start[i])
            m = reference.walk_back(costs, dist, n, batch.start[i], batch.end[i], reference.canonical_order[::-1])
        elif kind == 6:  # label plus a neighbourhood blob
            idx = np.flatnonzero(m)
            centre = rng.choice(idx)
            r, c = divmod(int(centre), n)
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    if 0 <= r + dr < n and 0 <= c + dc < n:
                        m[(r + dr) * n + c + dc] = True
        masks[i] = m
    return masks


@pytest.mark.parametrize("size,count", [(10, 1500), (20, 1000), (40, 400)])
def test_agrees_with_reference_verifier_on_random_predictions(size, count, reference):
    batch = generate_tasks(TaskSpec(size=size), count, seed=500 + size)
    masks = random_masks(batch, np.random.default_rng(size), reference)
    verdict = verify_paths(masks, batch.costs, batch.start, batch.end, batch.optimal_cost)
    t = as_tensors(batch)
    m = path_metrics(predictions_from_masks(batch, masks), **t)
    np.testing.assert_array_equal(m["connectivity"].numpy().astype(bool), verdict.connected)
    np.testing.assert_array_equal(m["optimal"].numpy().astype(bool), verdict.optimal)
    legal_share = np.where(verdict.path_cells > 0, verdict.legal_cells / np.maximum(verdict.path_cells, 1), 0)
    np.testing.assert_allclose(m["valid"].numpy(), legal_share, rtol=1e-6)
    connected = verdict.connected
    np.testing.assert_allclose(
        m["cost_ratio"].numpy()[connected], verdict.cost[connected] / batch.optimal_cost[connected], rtol=1e-6
    )
    np.testing.assert_allclose(m["path_ratio"].numpy(), masks.sum(1) / size**2, rtol=1e-6)
    # The tensor sweeps used on CUDA give the same route costs as the verifier.
    allowed = torch.from_numpy(masks & np.isfinite(batch.costs))
    swept = route_costs_inside(allowed, t["costs"], t["start"])[torch.arange(count), t["end"]]
    np.testing.assert_array_equal(swept.numpy(), verdict.cost.astype(np.float32))
    # The mix really contains every verdict.
    assert 0 < verdict.optimal.mean() < 1 and 0 < verdict.connected.mean() < 1 and 0 < verdict.legal.mean() < 1


@pytest.fixture(scope="module")
def batch20():
    return generate_tasks(TaskSpec(size=20), 64, seed=3)


def test_marking_every_road_cell_connects_but_never_passes(batch20):
    masks = np.isfinite(batch20.costs)
    m = path_metrics(predictions_from_masks(batch20, masks), **as_tensors(batch20))
    assert m["connectivity"].min() == 1
    assert m["valid_route"].max() == 0 and m["optimal"].max() == 0 and m["exact"].max() == 0
    assert m["valid"].min() == 1 and m["excess"].min() > 1.5


def test_marking_every_cell_is_invalid(batch20):
    pred = torch.full(batch20.labels.shape, PATH, dtype=torch.long)
    m = path_metrics(pred, **as_tensors(batch20))
    assert m["valid"].max() < 1 and m["valid_route"].max() == 0 and m["optimal"].max() == 0
    assert m["path_ratio"].min() == 1


def test_alternative_optimal_path_is_optimal_but_not_exact(batch20, reference):
    n = batch20.size
    for i in range(len(batch20)):
        costs = batch20.costs[i].astype(np.float64)
        dist = reference.distances_from(costs, n, batch20.start[i])
        alt = reference.walk_back(costs, dist, n, batch20.start[i], batch20.end[i], reference.canonical_order[::-1])
        if not np.array_equal(alt, batch20.labels[i] == PATH):
            break
    else:
        pytest.fail("no task with a second optimal path")
    masks = batch20.labels == PATH
    masks[i] = alt
    m = path_metrics(predictions_from_masks(batch20, masks), **as_tensors(batch20))
    assert m["optimal"][i] == 1 and m["exact"][i] == 0 and m["valid_route"][i] == 1
    assert m["cost_ratio"][i] == pytest.approx(1.0)
    others = np.arange(len(batch20)) != i
    assert (m["exact"].numpy()[others] == 1).all()


def test_path_through_forbidden_cell_gap_and_empty(batch20):
    t = as_tensors(batch20)
    labels = batch20.labels == PATH
    forbidden = labels.copy()
    for i in range(len(batch20)):
        forbidden[i, np.flatnonzero(~np.isfinite(batch20.costs[i]))[0]] = True
    m = path_metrics(predictions_from_masks(batch20, forbidden), **t)
    assert m["valid"].max() < 1 and m["optimal"].max() == 0 and m["connectivity"].min() == 1

    gap = labels.copy()
    for i in range(len(batch20)):
        inner = [c for c in np.flatnonzero(gap[i]) if c not in (batch20.start[i], batch20.end[i])]
        gap[i, inner[len(inner) // 2]] = False
    m = path_metrics(predictions_from_masks(batch20, gap), **t)
    assert m["connectivity"].max() == 0 and m["optimal"].max() == 0 and m["valid"].min() == 1

    empty = np.zeros_like(labels)
    m = path_metrics(predictions_from_masks(batch20, empty), **t)
    assert m["connectivity"].max() == 0 and m["path_ratio"].max() == 0 and m["valid"].max() == 0
    assert m["path_f1"].max() == 0


def test_perfect_prediction_scores_one_everywhere(batch20):
    t = as_tensors(batch20)
    q = torch.full((len(batch20),), 3.0)
    steps = torch.full((len(batch20),), 4)
    m = path_metrics(t["labels"], **t, q_halt_logits=q, steps=steps)
    for name in (
        "connectivity",
        "valid_route",
        "optimal",
        "exact",
        "path_f1",
        "valid",
        "excess",
        "cost_ratio",
        "q_halt_accuracy",
    ):
        assert m[name].min() == pytest.approx(1.0), name
    assert m["act_steps"].mean() == 4
    m = path_metrics(t["labels"], **t, q_halt_logits=-q)
    assert m["q_halt_accuracy"].max() == 0


def test_sums_combine_across_batches_like_one_batch(batch20):
    t = as_tensors(batch20)
    masks = np.isfinite(batch20.costs)
    masks[::2] = batch20.labels[::2] == PATH
    pred = predictions_from_masks(batch20, masks)
    whole = means_from_sums(metric_sums(path_metrics(pred, **t)))
    halves = [
        metric_sums(path_metrics(pred[s], **{k: v[s] for k, v in t.items()})) for s in (slice(0, 20), slice(20, None))
    ]
    combined = means_from_sums({k: halves[0][k] + halves[1][k] for k in halves[0]})
    for name, value in whole.items():
        assert combined[name] == pytest.approx(value), name
    assert whole["optimal"] == pytest.approx(0.5) and whole["connectivity"] == 1


def test_route_costs_inside_matches_reference(batch20, reference):
    allowed = torch.from_numpy(np.isfinite(batch20.costs))
    dist = route_costs_inside(
        allowed, torch.from_numpy(batch20.costs), torch.from_numpy(batch20.start.astype(np.int64))
    )
    for i in range(5):
        expected = reference.distances_from(batch20.costs[i].astype(np.float64), 20, batch20.start[i])
        np.testing.assert_array_equal(dist[i].numpy(), expected.astype(np.float32))
