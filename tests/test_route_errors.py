"""The argmax error breakdown: each kind of wrong cell counted on hand-made predictions of real tasks,
with the optimal-route cells taken from an independent Dijkstra (SciPy), not the oracle's fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from oracle import TaskSpec, generate_tasks
from oracle.dataset import select
from oracle.vocab import PATH
from routing.batch import task_tensors
from routing.route_errors import WRONG_CELL_BINS, concatenate, route_errors, summarise


def tokens(batch: dict[str, torch.Tensor], route: torch.Tensor) -> torch.Tensor:
    """Argmax tokens that mark ``route`` [C] as PATH and copy the input elsewhere."""
    return torch.where(route, torch.tensor(PATH, dtype=batch["inputs"].dtype), batch["inputs"][0]).unsqueeze(0)


def reference_optimal_cells(reference, batch: dict[str, torch.Tensor], n: int) -> np.ndarray:
    costs = batch["costs"][0].numpy().astype(np.float64)
    start, end = int(batch["start"][0]), int(batch["end"][0])
    through = reference.distances_from(costs, n, start) + reference.distances_to(costs, n, end)
    return np.isclose(through, through[end])


def far_off_cell(batch: dict[str, torch.Tensor], on_optimal: np.ndarray, n: int) -> tuple[int, float]:
    """A legal cell on no optimal route with no optimal-route cell among its 8 neighbours, and its slack."""
    legal = torch.isfinite(batch["costs"][0]).numpy()
    grid = on_optimal.reshape(n, n)
    padded = np.pad(grid, 1)
    near = np.zeros_like(grid)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            near |= padded[1 + dr : 1 + dr + n, 1 + dc : 1 + dc + n]
    candidates = np.flatnonzero(legal & ~near.reshape(-1))
    assert candidates.size, "the task has no legal cell away from its optimal routes"
    cell = int(candidates[0])
    optimal = float(batch["optimal_cost"][0])
    slack = (float(batch["from_start"][0, cell]) + float(batch["to_end"][0, cell]) - optimal) / optimal
    return cell, slack


def test_the_label_route_and_another_optimal_route_have_no_errors(two_optimal_routes, reference):
    batch, label, other = two_optimal_routes
    assert reference_optimal_cells(reference, batch, 10).sum() > label.sum()
    for route in (label, other):
        errors = route_errors(tokens(batch, route), batch)
        assert float(errors["optimal"][0]) == 1.0
        assert float(errors["several_optimal"][0]) == 1.0
        assert float(errors["extra_off_optimal"][0]) == 0.0
        assert float(errors["isolated"][0]) == 0.0
    # The other optimal route differs from the label only by cells of another optimal route.
    errors = route_errors(tokens(batch, other), batch)
    differing = int((other & ~label).sum())
    assert differing > 0
    assert float(errors["extra_other_optimal"][0]) == differing
    assert float(errors["missing"][0]) == int((label & ~other).sum())
    assert float(errors["wrong_cells"][0]) == int((label != other).sum())


def test_marking_two_optimal_routes_fails_optimal_by_extra_cells_on_optimal_routes(two_optimal_routes):
    batch, label, other = two_optimal_routes
    errors = route_errors(tokens(batch, label | other), batch)
    assert float(errors["optimal"][0]) == 0.0
    assert float(errors["extra_other_optimal"][0]) == int((other & ~label).sum())
    assert float(errors["missing"][0]) == 0.0
    assert float(errors["extra_off_optimal"][0]) == 0.0


def test_a_stray_cell_off_every_optimal_route_is_counted_with_its_slack(two_optimal_routes, reference):
    batch, label, _ = two_optimal_routes
    on_optimal = reference_optimal_cells(reference, batch, 10)
    cell, slack = far_off_cell(batch, on_optimal, 10)
    assert slack > 0
    route = label.clone()
    route[cell] = True
    errors = route_errors(tokens(batch, route), batch)
    assert float(errors["optimal"][0]) == 0.0
    assert float(errors["extra_off_optimal"][0]) == 1.0
    assert float(errors["isolated"][0]) == 1.0
    assert float(errors["wrong_cells"][0]) == 1.0
    assert float(errors["off_optimal_slack"][0]) == pytest.approx(slack, rel=1e-6)


def test_summary_splits_optimal_by_how_many_optimal_routes_a_task_has(reference):
    tasks = generate_tasks(TaskSpec(size=10), 200, seed=5)
    parts, several = [], []
    for i in range(len(tasks)):
        batch = task_tensors(select(tasks, np.array([i])))
        label = batch["labels"][0] == PATH
        on_optimal = reference_optimal_cells(reference, batch, 10)
        several.append(bool(on_optimal.sum() > label.sum().item()))
        # Tasks with one optimal route get it right; tasks with several get every optimal cell marked.
        route = torch.from_numpy(on_optimal) if several[-1] else label
        parts.append(route_errors(tokens(batch, route), batch))
    assert 0 < sum(several) < len(several)
    summary = summarise(concatenate(parts))
    assert summary["tasks"] == len(several)
    assert summary["several_optimal"] == pytest.approx(np.mean(several))
    assert summary["optimal_one_route"] == 1.0
    assert summary["optimal_several_routes"] == 0.0
    assert summary["optimal"] == pytest.approx(1 - np.mean(several))
    assert summary["tasks_with_extra_other_optimal"] == pytest.approx(np.mean(several))
    assert summary["extra_off_optimal"] == 0.0
    histogram = [key for key in summary if key.startswith("wrong_") and key != "wrong_cells"]
    assert len(histogram) == len(WRONG_CELL_BINS)
    assert sum(summary[key] for key in histogram) == pytest.approx(1.0)
    assert summary["wrong_0"] == pytest.approx(1 - np.mean(several))


def test_sure_and_unsure_marks_are_scored_against_the_label_route(two_optimal_routes, reference):
    batch, label, _ = two_optimal_routes
    cell, _ = far_off_cell(batch, reference_optimal_cells(reference, batch, 10), 10)
    route = label.clone()
    route[cell] = True
    probability = torch.where(label, 0.95, 0.05).unsqueeze(0)
    probability[0, cell] = 0.6  # marked, but unsure
    errors = route_errors(tokens(batch, route), batch, probability)
    assert float(errors["marked_sure"][0]) == int(label.sum())
    assert float(errors["marked_sure_on_label"][0]) == int(label.sum())
    assert float(errors["marked_unsure"][0]) == 1.0
    assert float(errors["marked_unsure_on_label"][0]) == 0.0
    summary = summarise(errors)
    assert summary["label_share_sure"] == 1.0 and summary["label_share_unsure"] == 0.0
    assert "label_share_sure" not in summarise(route_errors(tokens(batch, route), batch))
