"""Training loss: HRM's stablemax cross-entropy and ACT Q losses, plus differentiable route penalties.

    total = CE + w_q_head * (BCE(q_halt, halt_target) + BCE(q_continue, target_q_continue))   (HRM: w_q_head 0.5)
          + w_path_class * CE on PATH cells + w_sparsity * sparsity + w_budget * budget
          + w_coverage * coverage + w_connectivity * connectivity
          + w_detour * detour + w_optimal_set * BCE(route head, on-optimal) + w_cost_to_go * regression

``route_target`` says which of several optimal routes the route terms teach: the canonical label;
``any_optimal``, where on a cell of some optimal route (start and end aside) the cross-entropy accepts
either the input token or PATH and sparsity counts only cells on no optimal route; or
``preferred_optimal``, the optimal route the model already finds most probable, as the label.
``path_class_cells`` says which cells the extra path-class cross-entropy weighs: the label route's, or
those and their near-optimal rivals alike. The dense terms read the
oracle's fields (``from_start``, ``to_end``: see ``oracle.fields``): ``detour`` weighs path
probability by the least extra cost of any route through the cell, so of two connected routes the
cheaper one costs less; ``optimal_set`` and ``cost_to_go`` train the model's route head.

Every penalty is a smooth function of p = softmax(logits)[..., PATH], the predicted probability that
a cell is on the route, never of argmax tokens (argmax has no gradient). A weight of 0 skips the
term entirely: it is neither computed nor added, so the total is bit-identical to the loss without it.
Every term is averaged per sample, then over the batch, so its size does not depend on B or N.

Batch keys (use ``carry.current_data``, the data the outputs belong to): ``labels`` [B, N*N] int,
``costs`` [B, N*N] float (+inf where the vehicle may not go), ``start`` / ``end`` [B] flat indices;
for ``any_optimal`` and the dense terms also ``inputs``, ``optimal_cost``, ``from_start`` and ``to_end``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hrm.model import grid_side
from oracle.vocab import PATH
from routing.penalties import (
    CONNECTIVITY_CAP,
    COST_TO_GO_CAP,
    DENSE_TERMS,
    PENALTY_TERMS,
    PenaltyWeights,
)


# ---------------------------------------------------------------- cross-entropy
def log_stablemax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log of stablemax: s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0, normalised over ``dim``.

    s grows linearly, not exponentially, so probabilities stay representable when logits grow
    large late in training (HRM's remedy for softmax collapse). Evaluated in float64 as HRM does.
    """
    x = logits.double()
    s = torch.where(x >= 0, x + 1, 1 / (1 - torch.clamp(x, max=0.0)))  # clamp: no inf in the unused branch
    return torch.log(s) - torch.log(s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-cell cross-entropy [B, C] (float64) of stablemax(logits) [B, C, V] against labels [B, C]."""
    logp = log_stablemax(logits, dim=-1)
    return -logp.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)


def optimal_cells(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """bool [B, C]: cells on at least one optimal route (exact: costs are small integers)."""
    return (batch["from_start"] + batch["to_end"]) == batch["optimal_cost"].float().unsqueeze(-1)


def any_optimal_cross_entropy(
    logits: torch.Tensor, batch: dict[str, torch.Tensor], on_optimal: torch.Tensor
) -> torch.Tensor:
    """Per-cell cross-entropy [B, C] (float64) that accepts every optimal route.

    On a cell of some optimal route other than start and end, a route may pass or not: the target is
    "PATH or the input token" (-log of their summed probability). Elsewhere, and at start and end
    (on every route), the target is the label.
    """
    logp = log_stablemax(logits, dim=-1)
    label = logp.gather(-1, batch["labels"].long().unsqueeze(-1)).squeeze(-1)
    either = torch.logaddexp(logp.gather(-1, batch["inputs"].long().unsqueeze(-1)).squeeze(-1), logp[..., PATH])
    endpoints = (
        F.one_hot(batch["start"].long(), logits.shape[1]).bool()
        | F.one_hot(batch["end"].long(), logits.shape[1]).bool()
    )
    return -torch.where(on_optimal & ~endpoints, either, label)


@torch.no_grad()
def preferred_optimal_labels(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Labels [B, C]: the input with the optimal route the model finds most probable set to PATH."""
    from oracle.chain import most_probable_optimal_routes

    p = torch.softmax(logits.float(), dim=-1)[..., PATH]
    arrays = {k: batch[k].cpu().numpy() for k in ("costs", "start", "end", "from_start", "to_end", "optimal_cost")}
    mask = most_probable_optimal_routes(
        p.cpu().numpy(),
        arrays["costs"],
        arrays["start"],
        arrays["end"],
        arrays["from_start"],
        arrays["to_end"],
        arrays["optimal_cost"],
    )
    route = torch.from_numpy(mask).to(logits.device)
    return torch.where(route, torch.full_like(batch["inputs"], PATH), batch["inputs"]).to(batch["labels"].dtype)


# ---------------------------------------------------------------- penalties (each [B])
def path_class_term(cell_ce: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over ``cells`` (the label route's, or those and their near-optimal rivals)."""
    return (cell_ce * cells).sum(-1) / cells.sum(-1).clamp_min(1)


def sparsity_term(p: torch.Tensor, is_path: torch.Tensor) -> torch.Tensor:
    """Mean predicted path probability over cells whose label is not PATH."""
    off = ~is_path
    return (p * off).sum(-1) / off.sum(-1).clamp_min(1)


def budget_term(p: torch.Tensor, path_len: torch.Tensor) -> torch.Tensor:
    """((sum p - L) / L)^2: the expected number of path cells should match the route length L."""
    return ((p.sum(-1) - path_len) / path_len).square()


def coverage_term(p: torch.Tensor, forbidden: torch.Tensor, path_len: torch.Tensor) -> torch.Tensor:
    """Predicted path mass on cells the vehicle may not enter, per label route cell.

    Normalised by the route length rather than by the number of forbidden cells, so one wrongly
    marked cell costs the same on a sparse 10x10 town as on a dense 40x40 city.
    """
    return (p * forbidden).sum(-1) / path_len


def connectivity_term(
    log_p: torch.Tensor,
    forbidden: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    n: int,
    iterations: int | None = None,
) -> torch.Tensor:
    """-log(soft reach of end from start), per sample, in nats, not yet normalised.

    Soft reachability is max-product propagation over the 4-neighbour grid:
        r_0 = p at start (0 elsewhere),  r_{t+1} = max(r_t, p * max over 4 neighbours of r_t),
    with p = 0 on cells the vehicle may not enter. After enough iterations r[end] is the largest
    product of p along any legal 4-connected chain from start to end, so -log r[end] is the
    negative log-likelihood of the most probable route: small when a connected chain of confident
    path cells exists, large when every chain must cross a gap of low p. Gradients flow to p on that
    best chain, pushing it to close its weakest link. Computed in log space (sums instead of
    products) so long chains do not underflow. ``iterations`` defaults to 4 N, longer than the
    canonical route on a city grid. Forbidden cells get log p = finfo.min, so an end that no legal
    chain reaches within ``iterations`` steps gets a huge finite value (``act_loss`` caps it).
    """
    B = log_p.shape[0]
    neg_inf = torch.finfo(log_p.dtype).min
    logq = torch.where(forbidden, torch.full_like(log_p, neg_inf), log_p).view(B, n, n)
    start_mask = F.one_hot(start.long(), n * n).bool().view(B, n, n)
    reach = torch.where(start_mask, logq, torch.full_like(logq, neg_inf))
    for _ in range(iterations if iterations is not None else 4 * n):
        padded = F.pad(reach, (1, 1, 1, 1), value=neg_inf)
        best_neighbour = torch.maximum(
            torch.maximum(padded[:, :-2, 1:-1], padded[:, 2:, 1:-1]),
            torch.maximum(padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]),
        )
        # finfo.min + finfo.min would overflow to -inf; clamp keeps the arithmetic finite.
        reach = torch.maximum(reach, (logq + best_neighbour).clamp_min(neg_inf))
    return -reach.view(B, n * n).gather(1, end.long().view(B, 1)).squeeze(1)


def route_slack(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, C]: (cheapest route through the cell - optimal cost) / optimal cost; 0 on every optimal route,
    +inf where no route passes."""
    optimal = batch["optimal_cost"].float().clamp_min(1).unsqueeze(-1)
    return (batch["from_start"] + batch["to_end"] - optimal) / optimal


def relative_detour(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``route_slack`` capped at 1 (1 also where no route passes): [B, C] in [0, 1]."""
    return route_slack(batch).nan_to_num(posinf=1.0).clamp(0.0, 1.0)


def detour_term(p: torch.Tensor, batch: dict[str, torch.Tensor], legal: torch.Tensor, path_len: torch.Tensor):
    """Sum over legal cells of p times the cell's relative detour, per label route cell.

    A route through cell v costs at least from_start[v] + to_end[v]; its excess over the optimal cost
    C*, divided by C* and capped at 1, bounds what marking v adds to the route's cost. Cells of every
    optimal route weigh 0.
    """
    return (p * relative_detour(batch) * legal).sum(-1) / path_len


def route_head_terms(route: torch.Tensor, batch: dict[str, torch.Tensor], on_optimal: torch.Tensor, legal):
    """(BCE of the on-optimal logit over legal cells, smooth-L1 of the cost to go over cells that reach the end)."""
    legal_f = legal.float()
    bce = F.binary_cross_entropy_with_logits(route[..., 0], on_optimal.float(), reduction="none")
    optimal_set = (bce * legal_f).sum(-1) / legal_f.sum(-1).clamp_min(1)
    to_end = batch["to_end"]
    reach = torch.isfinite(to_end)
    target = (torch.where(reach, to_end, 0.0) / batch["optimal_cost"].float().clamp_min(1).unsqueeze(-1)).clamp(
        max=COST_TO_GO_CAP
    )
    err = F.smooth_l1_loss(route[..., 1], target, reduction="none", beta=0.1)
    cost_to_go = (err * reach).sum(-1) / reach.sum(-1).clamp_min(1)
    return optimal_set, cost_to_go


# ---------------------------------------------------------------- total
def act_loss(
    outputs: dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    halt_target: torch.Tensor,
    weights: PenaltyWeights | None = None,
    connectivity_iterations: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and a dict of detached per-term values (batch means, float32 scalars).

    ``outputs``: ``logits`` [B, C, V], ``q_halt_logits`` [B], ``q_continue_logits`` [B], optional
    ``target_q_continue`` [B] (present in training mode; without it there is no q_continue term).
    ``halt_target``: bool [B], the caller's verdict "this prediction is correct" (HRM: fully correct
    sequence; here e.g. predicted route valid and optimal).
    """
    weights = weights if weights is not None else PenaltyWeights()
    logits = outputs["logits"]
    labels = batch["labels"]
    B, C, _ = logits.shape

    any_optimal = weights.route_target == "any_optimal"
    on_optimal = optimal_cells(batch) if any_optimal or weights.detour > 0 or weights.needs_route_head else None
    if weights.route_target == "preferred_optimal":
        labels = preferred_optimal_labels(logits, batch)
    if any_optimal:
        cell_ce = any_optimal_cross_entropy(logits, batch, on_optimal)
    else:
        cell_ce = stablemax_cross_entropy(logits, labels)  # [B, C] float64
    ce = cell_ce.mean(-1).mean()
    q_halt_logits = outputs["q_halt_logits"]
    q_halt = F.binary_cross_entropy_with_logits(q_halt_logits, halt_target.to(q_halt_logits.dtype))
    total = ce + weights.q_head * q_halt
    logs: dict[str, torch.Tensor] = {"ce": ce, "q_halt": q_halt}
    if "target_q_continue" in outputs:
        q_continue = F.binary_cross_entropy_with_logits(outputs["q_continue_logits"], outputs["target_q_continue"])
        total = total + weights.q_head * q_continue
        logs["q_continue"] = q_continue

    on = [name for name in PENALTY_TERMS + DENSE_TERMS if getattr(weights, name) > 0]
    if weights.needs_route_head and "route" not in outputs:
        raise ValueError("the optimal_set and cost_to_go penalties need the model's route head (model.route_head)")
    if on:
        is_path = labels == PATH
        log_p = F.log_softmax(logits.float(), dim=-1)[..., PATH]  # [B, C]
        p = log_p.exp()
        path_len = is_path.sum(-1).clamp_min(1).to(p.dtype)
        forbidden = torch.isinf(batch["costs"])
        head = route_head_terms(outputs["route"], batch, on_optimal, ~forbidden) if weights.needs_route_head else None
        # any_optimal: the cells a route may use are those of every optimal route, not only the label's.
        route_cells = on_optimal if any_optimal else is_path
        for name in on:
            if name == "path_class":
                weighed = route_cells
                if weights.path_class_cells == "near_optimal":
                    weighed = route_cells | (~forbidden & (relative_detour(batch) <= weights.near_slack))
                term = path_class_term(cell_ce, weighed)
            elif name == "sparsity":
                term = sparsity_term(p, route_cells)
            elif name == "detour":
                term = detour_term(p, batch, ~forbidden, path_len)
            elif name == "optimal_set":
                term = head[0]
            elif name == "cost_to_go":
                term = head[1]
            elif name == "budget":
                term = budget_term(p, path_len)
            elif name == "coverage":
                term = coverage_term(p, forbidden, path_len)
            else:
                n = grid_side(C)
                nll = connectivity_term(log_p, forbidden, batch["start"], batch["end"], n, connectivity_iterations)
                # Cap: an unreachable end (or p ~ e^-50 along the whole route) is a constant, no gradient.
                term = torch.clamp(nll / path_len, max=CONNECTIVITY_CAP)
            term = term.mean()
            total = total + getattr(weights, name) * term
            logs[name] = term

    logs = {k: v.detach().float() for k, v in logs.items()}
    logs["total"] = total.detach().float()
    return total, logs
