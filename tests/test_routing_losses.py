"""Losses: stablemax cross-entropy, ACT Q losses, and the differentiable route penalties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import routing.losses as losses
from oracle.vocab import OBSTACLE_TOKEN, PATH, VOCAB_SIZE
from routing.losses import (
    PENALTY_TERMS,
    PenaltyWeights,
    act_loss,
    connectivity_term,
    log_stablemax,
    stablemax_cross_entropy,
)

N = 6
ROAD = 4  # any road token id


def routing_batch(batch_size: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Row 0 is the route from (0,0) to (0,5); row 2 is a wall of forbidden cells."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.full((N, N), ROAD)
    grid[2] = OBSTACLE_TOKEN
    costs = torch.ones(N, N)
    costs[2] = float("inf")
    labels = grid.clone()
    labels[0] = PATH
    B = batch_size
    return {
        "inputs": grid.flatten().repeat(B, 1),
        "vehicle": torch.randint(0, 4, (B,), generator=g),
        "labels": labels.flatten().repeat(B, 1),
        "costs": costs.flatten().repeat(B, 1),
        "start": torch.zeros(B, dtype=torch.long),
        "end": torch.full((B,), N - 1, dtype=torch.long),
    }


def model_outputs(batch_size: int = 2, seed: int = 0, train: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {
        "logits": torch.randn(batch_size, N * N, VOCAB_SIZE, generator=g).requires_grad_(),
        "q_halt_logits": torch.randn(batch_size, generator=g).requires_grad_(),
        "q_continue_logits": torch.randn(batch_size, generator=g).requires_grad_(),
    }
    if train:
        out["target_q_continue"] = torch.rand(batch_size, generator=g)
    return out


def logits_from_path_prob(p: torch.Tensor) -> torch.Tensor:
    """Logits [1, C, V] whose softmax gives PATH probability p and spreads the rest evenly."""
    C = p.numel()
    probs = ((1 - p) / (VOCAB_SIZE - 1)).unsqueeze(-1).expand(C, VOCAB_SIZE).clone()
    probs[:, PATH] = p
    return probs.log().unsqueeze(0)


# ---------------------------------------------------------------- cross-entropy
def test_stablemax_matches_hand_computation():
    x = torch.tensor([[2.0, 0.0, -1.0]])
    s = torch.tensor([3.0, 1.0, 0.5])  # x+1, x+1, 1/(1-x)
    expected = torch.log(s / s.sum()).double()
    assert log_stablemax(x).dtype == torch.float64
    assert torch.allclose(log_stablemax(x)[0], expected)
    ce = stablemax_cross_entropy(x.unsqueeze(0), torch.tensor([[2]]))
    assert torch.allclose(ce, -expected[2].view(1, 1))
    # No inf/nan for huge logits (the point of stablemax).
    big = torch.tensor([[[1e6, -1e6, 0.0]]])
    assert torch.isfinite(stablemax_cross_entropy(big, torch.tensor([[1]]))).all()


def test_base_loss_is_ce_plus_half_q_losses():
    batch, out = routing_batch(), model_outputs()
    halt_target = torch.tensor([True, False])
    total, logs = act_loss(out, batch, halt_target, PenaltyWeights.off())
    ce = stablemax_cross_entropy(out["logits"], batch["labels"]).mean()
    qh = F.binary_cross_entropy_with_logits(out["q_halt_logits"], halt_target.float())
    qc = F.binary_cross_entropy_with_logits(out["q_continue_logits"], out["target_q_continue"])
    assert torch.allclose(total, ce + 0.5 * (qh + qc))
    assert set(logs) == {"ce", "q_halt", "q_continue", "total"}
    assert all(not v.requires_grad for v in logs.values())
    # Eval outputs carry no target_q_continue: no q_continue term.
    eval_out = {k: v for k, v in out.items() if k != "target_q_continue"}
    total_eval, logs_eval = act_loss(eval_out, batch, halt_target, PenaltyWeights.off())
    assert "q_continue" not in logs_eval and torch.allclose(total_eval, ce + 0.5 * qh)


def test_q_head_weight_scales_both_q_losses_and_nothing_else():
    batch, out = routing_batch(), model_outputs()
    halt_target = torch.tensor([True, False])
    half, logs_half = act_loss(out, batch, halt_target, PenaltyWeights.off())
    tenth, logs_tenth = act_loss(out, batch, halt_target, PenaltyWeights.off().model_copy(update={"q_head": 0.1}))
    q_sum = logs_half["q_halt"] + logs_half["q_continue"]
    assert torch.allclose(half - tenth, 0.4 * q_sum.to(half.dtype))
    assert logs_tenth["ce"] == logs_half["ce"] and logs_tenth["q_halt"] == logs_half["q_halt"]
    # At 0 the Q head gets no gradient from the loss; the route logits still do.
    off = PenaltyWeights.off().model_copy(update={"q_head": 0.0})
    total, _ = act_loss(out, batch, halt_target, off)
    total.backward()
    assert out["q_halt_logits"].grad is None or not out["q_halt_logits"].grad.any()
    assert out["logits"].grad.abs().sum() > 0
    with pytest.raises(ValueError):
        PenaltyWeights(q_head=-0.5)


# ---------------------------------------------------------------- penalty switches
def test_penalty_weights_validation():
    with pytest.raises(ValueError):
        PenaltyWeights(sparsity=-0.1)
    with pytest.raises(ValueError):
        PenaltyWeights(budget=float("inf"))
    assert all(getattr(PenaltyWeights(), t) > 0 for t in PENALTY_TERMS)
    assert all(getattr(PenaltyWeights.off(), t) == 0 for t in PENALTY_TERMS)


@pytest.mark.parametrize("term", PENALTY_TERMS)
def test_zero_weight_removes_the_term_exactly(term: str, monkeypatch):
    batch, out = routing_batch(), model_outputs()
    halt_target = torch.tensor([True, False])
    on = PenaltyWeights()
    off = on.model_copy(update={term: 0.0})
    total_on, logs_on = act_loss(out, batch, halt_target, on)
    total_off, logs_off = act_loss(out, batch, halt_target, off)
    assert term in logs_on and term not in logs_off
    assert torch.allclose(total_off, total_on - getattr(on, term) * logs_on[term].double(), atol=1e-6)
    # "Off" means not computed at all: the result is bit-identical even if the term would blow up.
    func = f"{term}_term"
    monkeypatch.setattr(losses, func, lambda *a, **k: (_ for _ in ()).throw(AssertionError(f"{func} called")))
    total_off_again, _ = act_loss(out, batch, halt_target, off)
    assert torch.equal(total_off_again, total_off)
    with pytest.raises(AssertionError, match="called"):
        act_loss(out, batch, halt_target, on)
    # All penalties off is bit-identical to the paper's loss.
    base, _ = act_loss(out, batch, halt_target, PenaltyWeights.off())
    only_this_off, _ = act_loss(out, batch, halt_target, PenaltyWeights.off().model_copy(update={term: 0.0}))
    assert torch.equal(base, only_this_off)


@pytest.mark.parametrize("term", PENALTY_TERMS)
def test_each_penalty_has_a_gradient_wrt_logits(term: str):
    batch, out = routing_batch(), model_outputs()
    weights = PenaltyWeights.off().model_copy(update={term: 1.0})
    base, _ = act_loss(out, batch, torch.tensor([True, False]), PenaltyWeights.off())
    total, _ = act_loss(out, batch, torch.tensor([True, False]), weights)
    (grad_total,) = torch.autograd.grad(total, out["logits"])
    (grad_base,) = torch.autograd.grad(base, out["logits"])
    grad_term = grad_total - grad_base
    assert torch.isfinite(grad_term).all()
    assert grad_term.abs().sum() > 1e-6


# ---------------------------------------------------------------- penalty semantics
def only(term: str) -> PenaltyWeights:
    return PenaltyWeights.off().model_copy(update={term: 1.0})


def _term(term: str, p: torch.Tensor, batch=None) -> float:
    batch = batch or routing_batch(1)
    out = {"logits": logits_from_path_prob(p), "q_halt_logits": torch.zeros(1), "q_continue_logits": torch.zeros(1)}
    _, logs = act_loss(out, batch, torch.zeros(1, dtype=torch.bool), only(term))
    return float(logs[term])


def test_sparsity_budget_coverage_semantics():
    route = torch.zeros(N, N)
    route[0] = 1.0
    perfect = route.flatten() * 0.98 + 0.01
    assert _term("sparsity", perfect) == pytest.approx(0.01, abs=1e-4)
    everything = torch.full((N * N,), 0.98)
    assert _term("sparsity", everything) > 0.9  # marking every cell as path is punished
    assert _term("budget", perfect) < 1e-2
    assert _term("budget", everything) > 10  # ~36 expected cells for a 6-cell route
    on_wall = perfect.view(N, N).clone()
    on_wall[2] = 0.98
    assert _term("coverage", perfect) == pytest.approx(6 * 0.01 / 6, abs=1e-4)
    assert _term("coverage", on_wall.flatten()) == pytest.approx(6 * 0.98 / 6, abs=1e-3)


def test_connectivity_prefers_a_connected_route_to_one_with_a_gap():
    route = torch.full((N, N), 0.02)
    route[0] = 0.95
    gap = route.clone()
    gap[0, 3] = 0.02
    connected, broken = _term("connectivity", route.flatten()), _term("connectivity", gap.flatten())
    assert connected == pytest.approx(-math.log(0.95), rel=1e-3)  # product of p along the 6 route cells, per cell
    assert broken > connected + 0.4
    # A confident detour around the gap through legal cells reconnects (8 cells instead of 6)...
    detour = gap.clone()
    detour[1] = 0.95
    assert _term("connectivity", detour.flatten()) == pytest.approx(-8 * math.log(0.95) / 6, rel=1e-3)
    # ...but not when the detour's cells are forbidden for the vehicle.
    batch = routing_batch(1)
    batch["costs"].view(N, N)[1, 2:5] = float("inf")
    assert _term("connectivity", detour.flatten(), batch) == pytest.approx(broken, rel=1e-4)


def test_connectivity_gradient_targets_the_weak_link():
    route = torch.full((N, N), 0.02)
    route[0] = 0.95
    route[0, 3] = 0.3
    batch = routing_batch(1)
    log_p = route.flatten().log().unsqueeze(0).requires_grad_()
    nll = connectivity_term(log_p, torch.isinf(batch["costs"]), batch["start"], batch["end"], N)
    (grad,) = torch.autograd.grad(nll.sum(), log_p)
    grad = grad.view(N, N)
    assert torch.allclose(grad[0], torch.full((N,), -1.0))  # every cell of the best chain, weak link included
    assert grad[1:].abs().sum() == 0


def test_connectivity_unreachable_end_is_capped_without_gradient():
    batch = routing_batch(1)
    batch["end"] = torch.tensor([N * N - 1])  # below the wall: no legal chain
    logits = logits_from_path_prob(torch.full((N * N,), 0.5)).requires_grad_()
    out = {"logits": logits, "q_halt_logits": torch.zeros(1), "q_continue_logits": torch.zeros(1)}
    total, logs = act_loss(out, batch, torch.zeros(1, dtype=torch.bool), only("connectivity"))
    assert float(logs["connectivity"]) == losses.CONNECTIVITY_CAP
    base, _ = act_loss(out, batch, torch.zeros(1, dtype=torch.bool), PenaltyWeights.off())
    g_total, g_base = torch.autograd.grad(total, logits)[0], torch.autograd.grad(base, logits)[0]
    assert torch.allclose(g_total, g_base) and torch.isfinite(g_total).all()


def test_path_class_weights_route_cells():
    batch, out = routing_batch(1), model_outputs(1)
    cell_ce = stablemax_cross_entropy(out["logits"], batch["labels"])
    expected = cell_ce[0, :N].mean()  # row 0 is the route
    assert _term_from(out, batch, "path_class") == pytest.approx(float(expected.detach()), rel=1e-5)


def _term_from(out, batch, term: str) -> float:
    _, logs = act_loss(out, batch, torch.zeros(1, dtype=torch.bool), only(term))
    return float(logs[term])
