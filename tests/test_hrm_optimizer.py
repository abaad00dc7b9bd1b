"""AdamATan2, the learning-rate schedule, and the EMA of weights."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from hrm.ema import EMA
from hrm.optimizer import AdamATan2, lr_at


def _step(param: torch.Tensor, grad: torch.Tensor, opt: AdamATan2) -> None:
    param.grad = grad.clone()
    opt.step()


def test_matches_hand_computed_updates():
    w = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    lr, wd, (b1, b2) = 0.1, 0.5, (0.9, 0.95)
    opt = AdamATan2([w], lr=lr, betas=(b1, b2), weight_decay=wd)
    g1, g2 = torch.tensor([0.3, -0.2, 0.0]), torch.tensor([-0.1, -0.4, 0.0])

    _step(w, g1, opt)
    # Step 1: m_hat = g, v_hat = g^2, so the update is atan2(g, |g|) = +-pi/4 (0 where g = 0).
    expected = torch.tensor([1.0, -2.0, 0.5]) * (1 - lr * wd) - lr * torch.tensor([math.pi / 4, -math.pi / 4, 0.0])
    assert torch.allclose(w.detach(), expected, atol=1e-6)

    _step(w, g2, opt)
    m = b1 * (1 - b1) * g1 + (1 - b1) * g2
    v = b2 * (1 - b2) * g1**2 + (1 - b2) * g2**2
    m_hat, v_hat = m / (1 - b1**2), v / (1 - b2**2)
    expected = expected * (1 - lr * wd) - lr * torch.atan2(m_hat, v_hat.sqrt())
    assert torch.allclose(w.detach(), expected, atol=1e-6)
    assert opt.state[w]["step"] == 2


def test_a_b_scaling():
    w = torch.zeros(1, requires_grad=True)
    opt = AdamATan2([w], lr=1.0, weight_decay=0.0, a=2.0, b=3.0)
    _step(w, torch.tensor([1.0]), opt)
    assert torch.allclose(w.detach(), torch.tensor([-2.0 * math.atan2(1.0, 3.0)]))


def test_update_is_bounded_and_scale_invariant():
    torch.manual_seed(0)
    lr = 1e-2
    w_small = torch.zeros(100, requires_grad=True)
    w_big = torch.zeros(100, requires_grad=True)
    opt_small = AdamATan2([w_small], lr=lr, weight_decay=0.0)
    opt_big = AdamATan2([w_big], lr=lr, weight_decay=0.0)
    for _ in range(20):
        g = torch.randn(100) * torch.logspace(-8, 8, 100)  # wildly different scales per coordinate
        before = w_small.detach().clone()
        _step(w_small, g, opt_small)
        _step(w_big, g * 1e6, opt_big)
        assert ((w_small.detach() - before).abs() <= lr * math.pi / 2 + 1e-9).all()
        assert torch.isfinite(w_small).all()
    # atan2(m_hat, sqrt(v_hat)) does not change when every gradient is multiplied by a constant.
    assert torch.allclose(w_small.detach(), w_big.detach(), rtol=1e-4, atol=1e-8)


def test_decoupled_weight_decay():
    w = torch.full((4,), 3.0, requires_grad=True)
    opt = AdamATan2([w], lr=1e-2, weight_decay=1.0)
    for _ in range(3):
        _step(w, torch.zeros(4), opt)  # zero gradient: only the decay acts
    assert torch.allclose(w.detach(), torch.full((4,), 3.0 * (1 - 1e-2) ** 3))
    frozen = torch.ones(2, requires_grad=True)  # no grad at all: untouched
    opt2 = AdamATan2([frozen], lr=1e-2, weight_decay=1.0)
    opt2.step()
    assert torch.equal(frozen.detach(), torch.ones(2))


def test_defaults_follow_hrm_and_arguments_are_checked():
    opt = AdamATan2([torch.zeros(1, requires_grad=True)])
    group = opt.param_groups[0]
    assert group["lr"] == 1e-4 and group["betas"] == (0.9, 0.95) and group["weight_decay"] == 1.0
    with pytest.raises(ValueError):
        AdamATan2([torch.zeros(1, requires_grad=True)], betas=(1.0, 0.9))
    with pytest.raises(ValueError):
        AdamATan2([torch.zeros(1, requires_grad=True)], weight_decay=-1)


def test_optimizer_state_dict_roundtrip_continues_identically():
    torch.manual_seed(0)
    grads = [torch.randn(3) for _ in range(4)]
    w1 = torch.randn(3, requires_grad=True)
    w2 = w1.detach().clone().requires_grad_()
    opt1 = AdamATan2([w1], lr=1e-2)
    for g in grads[:2]:
        _step(w1, g, opt1)
    with torch.no_grad():
        w2.copy_(w1)
    opt2 = AdamATan2([w2], lr=1e-2)
    opt2.load_state_dict(copy.deepcopy(opt1.state_dict()))  # as after torch.save / torch.load
    for g in grads[2:]:
        _step(w1, g, opt1)
        _step(w2, g, opt2)
    assert torch.equal(w1, w2)


def test_lr_schedule():
    assert lr_at(0, 1e-4, 2000) == pytest.approx(1e-4 / 2000)  # the first step is not wasted at lr 0
    assert lr_at(999, 1e-4, 2000) == pytest.approx(0.5e-4)
    assert lr_at(1999, 1e-4, 2000) == pytest.approx(1e-4)
    assert lr_at(2000, 1e-4, 2000) == lr_at(10**6, 1e-4, 2000) == 1e-4  # constant after warm-up (HRM)
    assert lr_at(5, 1.0, 0) == 1.0
    # Optional cosine decay to a floor.
    assert lr_at(100, 1.0, 0, total_steps=100, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_at(50, 1.0, 0, total_steps=100, min_ratio=0.0) == pytest.approx(0.5)
    assert lr_at(500, 1.0, 0, total_steps=100, min_ratio=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        lr_at(-1, 1.0, 10)


# ---------------------------------------------------------------- EMA
def test_ema_update_swap_and_checkpoint():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(0.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.update(model)  # 0.9 * 1 + 0.1 * 2
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 1.1))
    with ema.average_weights(model):
        assert torch.allclose(model.weight, torch.full((1, 2), 1.1))
    assert torch.equal(model.weight.detach(), torch.full((1, 2), 2.0))  # live weights restored
    with pytest.raises(RuntimeError):
        with ema.average_weights(model):
            raise RuntimeError("evaluation failed")
    assert torch.equal(model.weight.detach(), torch.full((1, 2), 2.0))  # restored even after an error

    restored = EMA(nn.Linear(2, 1), decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.9 and restored.num_updates == 1
    assert torch.equal(restored.shadow["weight"], ema.shadow["weight"])
    with pytest.raises(KeyError):
        EMA(nn.Linear(2, 1, bias=False)).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError):
        EMA(model, decay=1.0)


def test_ema_follows_a_model_wrapped_for_data_parallelism(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        model = nn.Linear(2, 1)
        ema = EMA(model, decay=0.5)  # built on the bare model, as the learner does
        wrapped = DistributedDataParallel(model)
        assert all(name.startswith("module.") for name, _ in wrapped.named_parameters())
        with torch.no_grad():
            model.weight.add_(2.0)
        expected = ema.shadow["weight"] + 1.0  # half way to the new weights
        ema.update(wrapped)
        assert torch.allclose(ema.shadow["weight"], expected)
        with ema.average_weights(wrapped):
            assert torch.allclose(model.weight, expected)
    finally:
        dist.destroy_process_group()
    # A model that lacks the averaged parameters is an error, never a silent no-op.
    with pytest.raises(KeyError, match="lacks"):
        ema.update(nn.Linear(2, 1, bias=False))
