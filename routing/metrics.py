"""Path metrics for a whole batch, on the model's device, that marking every cell cannot fool.

Per sample, from argmax predictions (``pred`` tokens) against the task:

| metric        | meaning                                                                          |
| ------------- | -------------------------------------------------------------------------------- |
| path_ratio    | predicted PATH cells / N²                                                         |
| excess        | predicted PATH cells / optimal path cells                                         |
| valid         | share of predicted PATH cells the vehicle may enter (0 for an empty prediction)   |
| connectivity  | start and end joined by 4-connected predicted cells the vehicle may enter         |
| valid_route   | connectivity and excess <= 1.5                                                    |
| cost_ratio    | cheapest route inside the predicted legal cells / optimal cost (connected only)   |
| optimal       | the predicted cells are exactly one optimal route (any optimal route counts)      |
| exact         | every token equals the label                                                      |
| path_f1       | F1 of predicted vs label PATH cells                                               |
| q_halt_accuracy | (q_halt logit >= 0) agrees with "optimal"                                       |
| act_steps     | ACT segments used                                                                 |
| decoded_*     | optimal / cost_ratio / excess of the decoded route (``routing.decode``): the most |
|               | probable legal chain under the model's path probabilities (evaluation only)       |
| fewest_cells_* | the same three of the legal chain with the fewest cells: a cost-blind reference  |
|               | that reads no model (evaluation only)                                             |

Connectivity and the inside-route cost come from one batched min-plus relaxation over all samples
at once (row and column scans, see ``route_costs_inside``), never from a per-sample Python search. "optimal" follows the
reference verifier (``oracle.verify``): connected, every predicted cell legal, and the entry costs
of the predicted cells (start excluded) add up to the optimal cost.
"""

from __future__ import annotations

from typing import Optional

import torch

from hrm.model import grid_side
from oracle.vocab import PATH

VALID_ROUTE_MAX_EXCESS = 1.5
# cost_ratio averages over connected samples only; every other metric over all samples.
_CONNECTED_ONLY = ("cost_ratio",)


_BLOCKED = 1_000_000  # entry cost standing for "may not enter": far above any real route (<= 12·40²)


def _forward_scan(dist: torch.Tensor, inclusive: torch.Tensor) -> torch.Tensor:
    """Min-plus scan along the last dim, left to right: d'[c] = min_{k<=c} d[k] + P[c] - P[k]."""
    return inclusive + torch.cummin(dist - inclusive, dim=-1).values


def _backward_scan(dist: torch.Tensor, exclusive: torch.Tensor) -> torch.Tensor:
    """Right to left: d'[c] = min_{k>=c} (d[k] + E[k]) - E[c], with E the exclusive prefix sum."""
    flipped = torch.flip(dist + exclusive, dims=(-1,))
    return torch.flip(torch.cummin(flipped, dim=-1).values, dims=(-1,)) - exclusive


def _sweep(
    dist: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor], cols: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Rows both ways, then columns both ways (columns on a transposed, contiguous copy).

    ``rows``/``cols``: (inclusive, exclusive) prefix sums of entry costs along each layout's last dim.
    """
    dist = torch.minimum(dist, _forward_scan(dist, rows[0]))
    dist = torch.minimum(dist, _backward_scan(dist, rows[1]))
    dist_t = dist.transpose(1, 2).contiguous()
    dist_t = torch.minimum(dist_t, _forward_scan(dist_t, cols[0]))
    dist_t = torch.minimum(dist_t, _backward_scan(dist_t, cols[1]))
    return dist_t.transpose(1, 2).clamp(max=_BLOCKED)


def route_costs_inside(allowed: torch.Tensor, costs: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Cheapest route cost from ``start`` to every cell using only ``allowed`` cells.

    allowed: bool [B, N*N]; costs: float [B, N*N] whole entry costs; start: [B] flat indices.
    Returns float32 [B, N*N], +inf where unreachable. Each sweep scans rows and columns in both
    directions with prefix sums and a cumulative minimum, so a straight run of any length is relaxed
    at once and the sweeps needed grow with the turns of the best routes, not their length. Samples
    drop out of the sweeps once a sweep changes nothing for them (one device sync per sweep).
    """
    batch, cells = allowed.shape
    n = grid_side(cells)
    step = torch.where(allowed, costs, 0).round().to(torch.int32)
    step = torch.where(allowed, step, _BLOCKED).view(batch, n, n)
    step_t = step.transpose(1, 2).contiguous()
    row_sums = torch.cumsum(step, dim=-1, dtype=torch.int32)
    col_sums = torch.cumsum(step_t, dim=-1, dtype=torch.int32)
    prefix = (row_sums, row_sums - step, col_sums, col_sums - step_t)
    rows = torch.arange(batch, device=allowed.device)
    dist = torch.full((batch, cells), _BLOCKED, dtype=torch.int32, device=allowed.device)
    dist[rows, start] = torch.where(allowed[rows, start], 0, _BLOCKED).to(torch.int32)
    dist = dist.view(batch, n, n)
    active = rows
    for _ in range(cells):
        p = [t[active] for t in prefix] if active.numel() < batch else prefix
        before = dist[active]
        after = _sweep(before, (p[0], p[1]), (p[2], p[3]))
        dist[active] = after
        changed = (after != before).flatten(1).any(1)
        active = active[changed]
        if active.numel() == 0:
            break
    dist = dist.view(batch, cells).float()
    return torch.where(dist >= _BLOCKED, float("inf"), dist)


def inside_route_cost(
    allowed: torch.Tensor, costs: torch.Tensor, start: torch.Tensor, end: torch.Tensor
) -> torch.Tensor:
    """Cheapest start->end route cost inside ``allowed`` cells per sample (+inf if none), float32 [B].

    On CUDA: the tensor sweeps of ``route_costs_inside``. On CPU the same numbers come from the
    oracle's compiled, thread-parallel search over the whole batch (zero-copy numpy views), which a
    CPU runs far faster than sweeps of tensor scans.
    """
    if allowed.device.type == "cpu":
        from oracle.verify import route_costs

        return torch.from_numpy(route_costs(allowed.numpy(), costs.numpy(), start.numpy(), end.numpy()))
    rows = torch.arange(allowed.shape[0], device=allowed.device)
    return route_costs_inside(allowed, costs, start)[rows, end]


def path_metrics(
    pred: torch.Tensor,
    labels: torch.Tensor,
    costs: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    optimal_cost: torch.Tensor,
    q_halt_logits: Optional[torch.Tensor] = None,
    steps: Optional[torch.Tensor] = None,
) -> dict[str, torch.Tensor]:
    """Per-sample metrics (float tensors [B]); see the module docstring for the definitions."""
    pred_path = pred == PATH
    label_path = labels == PATH
    legal_cell = torch.isfinite(costs)
    cells = pred.shape[1]
    rows = torch.arange(pred.shape[0], device=pred.device)
    start, end = start.long(), end.long()

    n_pred = pred_path.sum(1).float()
    n_label = label_path.sum(1).float()
    n_legal = (pred_path & legal_cell).sum(1).float()
    route_cost = inside_route_cost(pred_path & legal_cell, costs, start, end)
    connected = torch.isfinite(route_cost)
    excess = n_pred / n_label.clamp(min=1)
    all_legal = n_legal == n_pred
    mask_cost = torch.where(pred_path & legal_cell, costs.float(), 0.0).sum(1) - torch.where(
        pred_path[rows, start] & legal_cell[rows, start], costs[rows, start].float(), 0.0
    )
    optimal = connected & all_legal & (mask_cost == optimal_cost.float())
    true_pos = (pred_path & label_path).sum(1).float()
    f1 = 2 * true_pos / (n_pred + n_label).clamp(min=1)

    metrics = {
        "path_ratio": n_pred / cells,
        "excess": excess,
        "valid": n_legal / n_pred.clamp(min=1),
        "connectivity": connected.float(),
        "valid_route": (connected & (excess <= VALID_ROUTE_MAX_EXCESS)).float(),
        "cost_ratio": torch.where(connected, route_cost / optimal_cost.float().clamp(min=1e-9), 0.0),
        "optimal": optimal.float(),
        "exact": (pred == labels).all(1).float(),
        "path_f1": f1,
    }
    if q_halt_logits is not None:
        metrics["q_halt_accuracy"] = ((q_halt_logits >= 0) == optimal).float()
    if steps is not None:
        metrics["act_steps"] = steps.float()
    return metrics


def metric_sums(per_sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sums and counts that add across batches and ranks (all-reduce them, then ``means_from_sums``)."""
    connected = per_sample["connectivity"]
    sums = {name: value.sum() for name, value in per_sample.items()}
    sums["count"] = torch.tensor(float(len(connected)), device=connected.device)
    sums["connected_count"] = connected.sum()
    return sums


def means_from_sums(sums: dict[str, torch.Tensor]) -> dict[str, float]:
    """Batch means; cost_ratio averages over connected samples only (NaN when none connected)."""
    count = float(sums["count"])
    connected = float(sums["connected_count"])
    means = {}
    for name, total in sums.items():
        if name in ("count", "connected_count"):
            continue
        if name in _CONNECTED_ONLY:
            means[name] = float(total) / connected if connected else float("nan")
        else:
            means[name] = float(total) / max(count, 1.0)
    return means
