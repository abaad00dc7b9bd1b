"""Where an argmax route goes wrong: its wrong cells sorted by kind, per task, from the oracle's fields.

``optimal`` fails on one wrong cell, so its rate alone does not say what to fix. Per sample [B]:

| field                  | meaning                                                                       |
| ---------------------- | ----------------------------------------------------------------------------- |
| wrong_cells            | cells whose PATH / not-PATH call differs from the label                       |
| missing                | label route cells not predicted PATH                                          |
| extra_other_optimal    | predicted PATH cells off the label route but on another optimal route         |
| extra_off_optimal      | predicted PATH cells on no optimal route: a detour, or a stray                |
| off_optimal_slack      | the largest relative detour among those (cost of the cheapest route through   |
|                        | the cell / optimal cost - 1; 0 where there are none, +inf where none passes)  |
| isolated               | predicted PATH cells without a predicted PATH 4-neighbour                     |
| several_optimal        | 1 where the task has more than one optimal route (their cells outnumber the   |
|                        | label's)                                                                      |
| optimal                | the predicted cells are exactly one optimal route (``routing.metrics``)       |
| marked_sure            | with ``path_probability`` only: predicted PATH cells with probability >= SURE |
| marked_unsure          | the other predicted PATH cells                                                |
| marked_*_on_label      | those of them on the label route                                              |

A task with several optimal routes is the hard case for the argmax: every one of them is a right
answer, but only one may be marked, and marking two fails ``optimal`` as surely as a detour does.
Pure tensor code on the batch's device; ``summarise`` turns a batch's breakdown into the means a
report prints.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from hrm.model import grid_side
from oracle.vocab import PATH
from routing.losses import optimal_cells, route_slack
from routing.metrics import path_metrics

WRONG_CELL_BINS = ((0, 0), (1, 1), (2, 2), (3, 5), (6, None))  # inclusive ranges of the histogram
SURE = 0.9  # path probability above which a marked cell counts as "sure"


def route_errors(
    pred: torch.Tensor,
    batch: dict[str, torch.Tensor],
    path_probability: Optional[torch.Tensor] = None,
    optimal: Optional[torch.Tensor] = None,
) -> dict[str, torch.Tensor]:
    """The per-sample breakdown above for argmax tokens ``pred`` [B, N*N] (float tensors [B]).

    ``batch``: the tensors of ``routing.batch.task_tensors`` (labels, costs, start, end, optimal_cost,
    from_start, to_end). ``path_probability`` [B, N*N]: the model's probability of PATH per cell (the
    distribution its loss trains), which splits the marked cells into sure and unsure ones: how often
    each lies on the label route says how far the argmax's marks are calibrated. ``optimal`` [B]: the
    metric as ``routing.metrics.path_metrics`` already gave it for ``pred`` (computed here otherwise)."""
    predicted = pred == PATH
    label = batch["labels"] == PATH
    on_optimal = optimal_cells(batch)
    extra = predicted & ~label
    off_optimal = extra & ~on_optimal
    slack = route_slack(batch)
    worst_slack = torch.where(off_optimal, slack, torch.zeros_like(slack)).amax(-1)

    n = grid_side(pred.shape[1])
    grid = predicted.float().view(-1, 1, n, n)
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], device=pred.device).view(1, 1, 3, 3)
    neighbours = F.conv2d(grid, cross, padding=1).view(-1, n * n)
    isolated = predicted & (neighbours == 0)

    if optimal is None:
        optimal = path_metrics(
            pred, batch["labels"], batch["costs"], batch["start"], batch["end"], batch["optimal_cost"]
        )["optimal"]
    calibration = {}
    if path_probability is not None:
        sure = predicted & (path_probability >= SURE)
        unsure = predicted & ~sure
        calibration = {
            "marked_sure": sure.sum(-1).float(),
            "marked_sure_on_label": (sure & label).sum(-1).float(),
            "marked_unsure": unsure.sum(-1).float(),
            "marked_unsure_on_label": (unsure & label).sum(-1).float(),
        }
    return {
        **calibration,
        "wrong_cells": (predicted != label).sum(-1).float(),
        "missing": (label & ~predicted).sum(-1).float(),
        "extra_other_optimal": (extra & on_optimal).sum(-1).float(),
        "extra_off_optimal": off_optimal.sum(-1).float(),
        "off_optimal_slack": worst_slack,
        "isolated": isolated.sum(-1).float(),
        "several_optimal": (on_optimal.sum(-1) > label.sum(-1)).float(),
        "optimal": optimal,
    }


def concatenate(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One breakdown from the breakdowns of several batches (same fields, samples stacked)."""
    return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}


def _mean(values: torch.Tensor) -> float:
    return float(values.float().mean()) if values.numel() else float("nan")


def summarise(errors: dict[str, torch.Tensor]) -> dict[str, float]:
    """Means over the tasks: the error counts, the share of tasks with each kind of error, ``optimal``
    on tasks with one and with several optimal routes, and the histogram of wrong cells per task."""
    several = errors["several_optimal"] > 0
    wrong = errors["wrong_cells"]
    summary = {
        "tasks": float(wrong.numel()),
        "several_optimal": _mean(several),
        "optimal": _mean(errors["optimal"]),
        "optimal_one_route": _mean(errors["optimal"][~several]),
        "optimal_several_routes": _mean(errors["optimal"][several]),
    }
    for name in ("wrong_cells", "missing", "extra_other_optimal", "extra_off_optimal", "isolated"):
        summary[name] = _mean(errors[name])
        summary[f"tasks_with_{name}"] = _mean(errors[name] > 0)
    for kind in ("sure", "unsure"):
        if f"marked_{kind}" in errors:
            marked = float(errors[f"marked_{kind}"].sum())
            on_label = float(errors[f"marked_{kind}_on_label"].sum())
            summary[f"label_share_{kind}"] = on_label / marked if marked else float("nan")
            summary[f"marked_{kind}"] = _mean(errors[f"marked_{kind}"])
    detoured = errors["extra_off_optimal"] > 0
    finite = torch.isfinite(errors["off_optimal_slack"]) & detoured
    summary["median_off_optimal_slack"] = (
        float(errors["off_optimal_slack"][finite].median()) if finite.any() else float("nan")
    )
    for low, high in WRONG_CELL_BINS:
        inside = (wrong >= low) if high is None else ((wrong >= low) & (wrong <= high))
        summary[f"wrong_{low}" + ("_or_more" if high is None else "" if high == low else f"-{high}")] = _mean(inside)
    return summary


ERROR_COLUMNS = (
    ("several_optimal", "several opt"),
    ("optimal_one_route", "opt, 1 route"),
    ("optimal_several_routes", "opt, 2+ routes"),
    ("wrong_cells", "wrong cells"),
    ("missing", "missing"),
    ("extra_other_optimal", "extra on opt"),
    ("extra_off_optimal", "extra off opt"),
    ("median_off_optimal_slack", "slack (med)"),
    ("isolated", "isolated"),
    ("label_share_unsure", f"on label|p<{SURE:g}"),
    ("label_share_sure", f"on label|p>={SURE:g}"),
    ("wrong_0", "0 wrong"),
    ("wrong_1", "1 wrong"),
    ("wrong_2", "2 wrong"),
    ("wrong_3-5", "3-5 wrong"),
    ("wrong_6_or_more", "6+ wrong"),
)


def errors_table(results: dict[int, dict[str, float]]) -> str:
    """Where the argmax goes wrong, per size, as text: from per-size means holding ``summarise``'s fields
    as ``errors/<field>``: the share of tasks with several optimal routes, optimal on tasks with one /
    several, mean wrong cells per task by kind, the share of unsure and of sure marked cells that lie on the
    label route, and the share of tasks by wrong-cell count."""
    header = f"{'grid':>6} | " + " | ".join(f"{title:>13}" for _, title in ERROR_COLUMNS)
    rows = ["argmax errors (cells per task; extra on/off opt: on another optimal route / on none)", header]
    rows.append("-" * len(header))
    for size, means in results.items():
        rows.append(
            f"{size:>2}x{size:<3} | "
            + " | ".join(f"{means.get(f'errors/{key}', float('nan')):>13.3f}" for key, _ in ERROR_COLUMNS)
        )
    return "\n".join(rows)
