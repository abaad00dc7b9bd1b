"""Training loss: HRM's stablemax cross-entropy and ACT Q losses, plus differentiable route penalties.

    total = CE + 0.5 * (BCE(q_halt, halt_target) + BCE(q_continue, target_q_continue))
          + w_path_class * CE on PATH cells + w_sparsity * sparsity + w_budget * budget
          + w_coverage * coverage + w_connectivity * connectivity

Every penalty is a smooth function of p = softmax(logits)[..., PATH], the predicted probability that
a cell is on the route, never of argmax tokens (argmax has no gradient). A weight of 0 skips the
term entirely: it is neither computed nor added, so the total is bit-identical to the loss without it.
Every term is averaged per sample, then over the batch, so its size does not depend on B or N.

Batch keys (use ``carry.current_data``, the data the outputs belong to): ``labels`` [B, N*N] int,
``costs`` [B, N*N] float (+inf where the vehicle may not go), ``start`` / ``end`` [B] flat indices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from hrm.model import grid_side
from oracle.vocab import PATH

PENALTY_TERMS = ("path_class", "sparsity", "budget", "coverage", "connectivity")
CONNECTIVITY_CAP = 50.0  # nats per label route cell


class PenaltyWeights(BaseModel):
    """Weights of the route penalties; 0 switches a term off exactly."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    path_class: float = Field(
        1.0,
        ge=0.0,
        description="Extra cross-entropy on cells labelled PATH (mean over those cells): "
        "route cells are ~3% of a grid, so plain CE barely sees them.",
    )
    sparsity: float = Field(0.5, ge=0.0, description="Mean predicted path probability on cells not on the label route.")
    budget: float = Field(
        0.1,
        ge=0.0,
        description="Squared relative error between the expected number of path cells and the label route's length.",
    )
    coverage: float = Field(
        0.5,
        ge=0.0,
        description="Expected number of predicted path cells the vehicle may not enter, per label route cell.",
    )
    connectivity: float = Field(
        0.05,
        ge=0.0,
        description="-log of the most probable legal start->end chain of path cells, per label route cell "
        f"(capped at {CONNECTIVITY_CAP:g}).",
    )

    @classmethod
    def off(cls) -> PenaltyWeights:
        """All penalties off: the HRM paper's loss."""
        return cls(**{name: 0.0 for name in PENALTY_TERMS})


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


# ---------------------------------------------------------------- penalties (each [B])
def path_class_term(cell_ce: torch.Tensor, is_path: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the cells whose label is PATH."""
    return (cell_ce * is_path).sum(-1) / is_path.sum(-1).clamp_min(1)


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

    cell_ce = stablemax_cross_entropy(logits, labels)  # [B, C] float64
    ce = cell_ce.mean(-1).mean()
    q_halt_logits = outputs["q_halt_logits"]
    q_halt = F.binary_cross_entropy_with_logits(q_halt_logits, halt_target.to(q_halt_logits.dtype))
    total = ce + 0.5 * q_halt
    logs: dict[str, torch.Tensor] = {"ce": ce, "q_halt": q_halt}
    if "target_q_continue" in outputs:
        q_continue = F.binary_cross_entropy_with_logits(outputs["q_continue_logits"], outputs["target_q_continue"])
        total = total + 0.5 * q_continue
        logs["q_continue"] = q_continue

    on = [name for name in PENALTY_TERMS if getattr(weights, name) > 0]
    if on:
        is_path = labels == PATH
        log_p = F.log_softmax(logits.float(), dim=-1)[..., PATH]  # [B, C]
        p = log_p.exp()
        path_len = is_path.sum(-1).clamp_min(1).to(p.dtype)
        forbidden = torch.isinf(batch["costs"]) if {"coverage", "connectivity"} & set(on) else None
        for name in on:
            if name == "path_class":
                term = path_class_term(cell_ce, is_path)
            elif name == "sparsity":
                term = sparsity_term(p, is_path)
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
