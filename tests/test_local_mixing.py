"""model.local_mixing: a depthwise 3x3 convolution over the grid beside each block's attention."""

from __future__ import annotations

import pytest
import torch

from hrm.config import ModelConfig
from hrm.layers import Block, LocalMixing, Rotary2D
from hrm.model import HRM

D = 8


def _mixing(seed: int = 0) -> LocalMixing:
    torch.manual_seed(seed)
    return LocalMixing(D)


def _by_hand(mix: LocalMixing, x: torch.Tensor, n: int) -> torch.Tensor:
    """out[r, c, d] = sum over the 3x3 window of weight[d, dr, dc] * x[r + dr - 1, c + dc - 1, d]."""
    grid = x[:, 1:].reshape(x.shape[0], n, n, D)
    out = torch.zeros_like(grid)
    w = mix.weight[:, 0]  # [D, 3, 3]
    for r in range(n):
        for c in range(n):
            for dr in range(3):
                for dc in range(3):
                    rr, cc = r + dr - 1, c + dc - 1
                    if 0 <= rr < n and 0 <= cc < n:
                        out[:, r, c] += w[:, dr, dc] * grid[:, rr, cc]
    return torch.cat((torch.zeros(x.shape[0], 1, D), out.flatten(1, 2)), dim=1)


@pytest.mark.parametrize("n", [3, 5])
def test_each_cell_mixes_its_own_and_its_eight_neighbours_channel_by_channel(n: int):
    mix = _mixing()
    x = torch.randn(2, 1 + n * n, D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(mix(x), _by_hand(mix, x, n), atol=1e-5)


def test_a_change_in_one_cell_reaches_only_its_neighbours_and_never_the_prefix():
    n = 6
    mix = _mixing()
    x = torch.randn(1, 1 + n * n, D, generator=torch.Generator().manual_seed(2))
    for r, c, reached in ((2, 3, 9), (0, 0, 4), (5, 2, 6)):  # inside, a corner, an edge
        y = x.clone()
        y[0, 1 + r * n + c] += 1.0
        with torch.no_grad():
            changed = (mix(y) - mix(x)).abs().sum(-1)[0] > 1e-6
        assert not changed[0]  # the vehicle prefix gets nothing from the grid
        cells = changed[1:].reshape(n, n).nonzero().tolist()
        assert len(cells) == reached
        assert all(abs(rr - r) <= 1 and abs(cc - c) <= 1 for rr, cc in cells)
    # And the prefix's own state does not leak into any cell.
    y = x.clone()
    y[0, 0] += 1.0
    with torch.no_grad():
        assert torch.equal(mix(y), mix(x))


def test_block_adds_the_mixing_only_when_asked():
    torch.manual_seed(0)
    plain = Block(D, 2, 2.0)
    torch.manual_seed(0)
    mixed = Block(D, 2, 2.0, local_mixing=True)
    assert plain.local is None and isinstance(mixed.local, LocalMixing)
    assert not any("local" in name for name in plain.state_dict())
    mixed.load_state_dict({**plain.state_dict(), "local.weight": torch.zeros(D, 1, 3, 3)})
    x = torch.randn(2, 17, D)
    cos_sin = Rotary2D(D // 2)(4)
    with torch.no_grad():  # zero weights: exactly the plain block
        assert torch.allclose(mixed(x, cos_sin), plain(x, cos_sin))
        mixed.local.weight.normal_()
        assert not torch.allclose(mixed(x, cos_sin), plain(x, cos_sin))


def _config(**overrides) -> ModelConfig:
    base = dict(hidden_size=32, num_heads=2, expansion=2.0, h_layers=1, l_layers=2, halt_max_steps=2)
    return ModelConfig(**{**base, **overrides})


def test_off_by_default_and_every_mixing_weight_learns_when_on():
    assert ModelConfig().local_mixing is False
    assert not any("local" in name for name in HRM(_config()).state_dict())
    torch.manual_seed(0)
    model = HRM(_config(local_mixing=True, backprop="full"))
    names = [name for name, _ in model.named_parameters() if "local" in name]
    assert len(names) == 3  # one per block: 1 in H, 2 in L
    g = torch.Generator().manual_seed(3)
    batch = {"inputs": torch.randint(2, 42, (2, 49), generator=g), "vehicle": torch.tensor([0, 3])}
    z = model.z_h_init.expand(2, 50, -1)
    _, _, logits, q_halt, _, _ = model.segment(z, model.z_l_init.expand(2, 50, -1), batch)
    (logits.square().mean() + q_halt.sum()).backward()
    grads = dict(model.named_parameters())
    for name in names:
        assert grads[name].grad is not None and grads[name].grad.abs().sum() > 0, name


def test_bfloat16_autocast_matches_float32():
    torch.manual_seed(0)
    model = HRM(_config(local_mixing=True)).eval()
    g = torch.Generator().manual_seed(4)
    batch = {"inputs": torch.randint(2, 42, (2, 100), generator=g), "vehicle": torch.tensor([1, 2])}
    with torch.no_grad():
        _, full = model(model.initial_carry(batch), batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, half = model(model.initial_carry(batch), batch)
    assert full["logits"].dtype == torch.float32
    assert (half["logits"].float() - full["logits"]).abs().max() < 0.25
    assert (half["logits"].float().argmax(-1) == full["logits"].argmax(-1)).float().mean() > 0.9


def test_without_l_attention_only_h_attends_and_every_weight_still_learns():
    assert ModelConfig().l_attention is True
    torch.manual_seed(0)
    model = HRM(_config(local_mixing=True, l_attention=False, backprop="full"))
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.startswith("l_level.") and ".attn." in name for name in names)
    assert any(name.startswith("h_level.") and ".attn." in name for name in names)
    g = torch.Generator().manual_seed(3)
    batch = {"inputs": torch.randint(2, 42, (2, 49), generator=g), "vehicle": torch.tensor([0, 3])}
    z = model.z_h_init.expand(2, 50, -1)
    _, _, logits, q_halt, _, _ = model.segment(z, model.z_l_init.expand(2, 50, -1), batch)
    (logits.square().mean() + q_halt.sum()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert "(local mixing only)" in model.describe()


@pytest.mark.parametrize("l_attention,reach", [(False, 5 * 5), (True, 8 * 8)])
def test_an_l_call_without_attention_reaches_only_two_cells_per_call_of_two_blocks(l_attention, reach):
    n = 8
    torch.manual_seed(0)
    model = HRM(_config(local_mixing=True, l_attention=l_attention)).eval()
    cos_sin = model.rotary(n)
    g = torch.Generator().manual_seed(5)
    z_l, injection = (torch.randn(1, 1 + n * n, 32, generator=g) for _ in range(2))
    moved = injection.clone()
    moved[0, 1 + 3 * n + 3] += 1.0  # cell (3, 3)
    with torch.no_grad():
        changed = (model.l_level(z_l, moved, cos_sin) - model.l_level(z_l, injection, cos_sin)).abs().sum(-1)[0]
    cells = (changed[1:] > 1e-6).reshape(n, n)
    # Two local blocks: the 5x5 square around (3, 3); with attention every cell hears of it.
    assert int(cells.sum()) == reach
    if not l_attention:
        assert cells[1:6, 1:6].all()


def test_l_attention_off_needs_local_mixing():
    with pytest.raises(ValueError, match="l_attention=false needs local_mixing=true"):
        _config(l_attention=False)
    with pytest.raises(ValueError, match="attention or local mixing"):
        Block(D, 2, 2.0, attention=False)
