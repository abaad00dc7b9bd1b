"""model.attention_pool: every cell's query reads keys and values averaged over pool x pool grid squares."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch

from hrm.config import ModelConfig
from hrm.layers import Attention, Rotary2D, apply_rotary, pool_cells
from hrm.model import HRM

D, HEADS = 16, 2


def _squares_by_hand(x: torch.Tensor, n: int, pool: int) -> torch.Tensor:
    """[B, 1 + n*n, d] -> [B, 1 + m*m, d]: the prefix, then the mean of each square's cells, row-major."""
    grid = x[:, 1:].reshape(x.shape[0], n, n, x.shape[-1])
    m = math.ceil(n / pool)
    squares = [
        grid[:, r * pool : (r + 1) * pool, c * pool : (c + 1) * pool].mean((1, 2)) for r in range(m) for c in range(m)
    ]
    return torch.cat((x[:, :1], torch.stack(squares, dim=1)), dim=1)


@pytest.mark.parametrize("n,pool", [(4, 2), (5, 2), (7, 3), (3, 4)])
def test_cells_are_averaged_square_by_square_and_the_prefix_is_kept(n: int, pool: int):
    x = torch.randn(3, 1 + n * n, 6, generator=torch.Generator().manual_seed(n))
    pooled = pool_cells(x, pool)
    assert pooled.shape == (3, 1 + math.ceil(n / pool) ** 2, 6)
    assert torch.equal(pooled[:, 0], x[:, 0])
    # A square cut by the edge (n = 5, 7, 3) averages only the cells it has.
    assert torch.allclose(pooled, _squares_by_hand(x, n, pool), atol=1e-6)
    # Leading dims (batch, heads) pass through.
    assert torch.allclose(pool_cells(x.view(3, 1, 1 + n * n, 6), pool)[:, 0], pooled, atol=1e-6)


def _attention(pool: int) -> Attention:
    torch.manual_seed(0)
    return Attention(D, HEADS, pool)


@pytest.mark.parametrize("n", [4, 5])
def test_pooled_attention_is_softmax_over_the_rotated_averaged_keys(n: int):
    attn = _attention(2)
    x = torch.randn(2, 1 + n * n, D, generator=torch.Generator().manual_seed(1))
    cos, sin = Rotary2D(D // HEADS)(n)
    with torch.no_grad():
        q, k, v = attn.qkv(x).chunk(3, dim=-1)
        heads = []
        for h in range(HEADS):
            part = slice(h * (D // HEADS), (h + 1) * (D // HEADS))
            qh, kh = apply_rotary(q[..., part], cos, sin), apply_rotary(k[..., part], cos, sin)
            kh, vh = _squares_by_hand(kh, n, 2), _squares_by_hand(v[..., part], n, 2)
            weights = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(D // HEADS), dim=-1)
            assert weights.shape == (2, 1 + n * n, 1 + math.ceil(n / 2) ** 2)  # every cell asks, squares answer
            heads.append(weights @ vh)
        expected = attn.out(torch.cat(heads, dim=-1))
        assert torch.allclose(attn(x, (cos, sin)), expected, atol=1e-5)


def test_keys_are_whole_squares_yet_every_cell_still_hears_every_square():
    n = 6
    x = torch.randn(1, 1 + n * n, D, generator=torch.Generator().manual_seed(2))
    identity = (torch.ones(1 + n * n, D // HEADS), torch.zeros(1 + n * n, D // HEADS))  # no rotation

    def swapped(a: tuple[int, int], b: tuple[int, int]) -> torch.Tensor:
        y = x.clone()
        i, j = 1 + a[0] * n + a[1], 1 + b[0] * n + b[1]
        y[0, [i, j]] = y[0, [j, i]]
        return y

    def others_changed(attn: Attention, y: torch.Tensor, moved: set[int]) -> bool:
        keep = [i for i in range(1 + n * n) if i not in moved]
        with torch.no_grad():
            return not torch.allclose(attn(y, identity)[0, keep], attn(x, identity)[0, keep], atol=1e-6)

    pooled, full = _attention(2), _attention(1)
    inside = swapped((2, 2), (3, 3))  # the same 2x2 square: its average, so its key and value, is unchanged
    across = swapped((1, 1), (2, 2))  # two squares: both averages change
    moved_inside, moved_across = {1 + 2 * n + 2, 1 + 3 * n + 3}, {1 + n + 1, 1 + 2 * n + 2}
    assert not others_changed(pooled, inside, moved_inside)
    assert others_changed(pooled, across, moved_across)
    # Without rotation full attention is blind to where a cell is, so neither swap reaches the others there:
    # what the pooled one heard is which square each cell belongs to.
    assert not others_changed(full, across, moved_across)
    # Global view kept: a change in one corner cell reaches every cell's output.
    y = x.clone()
    y[0, 1] += 1.0
    with torch.no_grad():
        reached = (pooled(y, identity) - pooled(x, identity)).abs().sum(-1)[0] > 1e-6
    assert reached.all()


def _config(**overrides) -> ModelConfig:
    base = dict(hidden_size=32, num_heads=2, expansion=2.0, h_layers=1, l_layers=2, halt_max_steps=2, local_mixing=True)
    return ModelConfig(**{**base, **overrides})


def test_same_weights_as_full_attention_and_every_weight_learns():
    assert ModelConfig().attention_pool == 1
    torch.manual_seed(0)
    full = HRM(_config())
    torch.manual_seed(0)
    model = HRM(_config(attention_pool=2, backprop="full"))
    # No new parameters: a checkpoint trained either way loads into the other.
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in full.state_dict().items()}
    assert all(block.attn.pool == 2 for block in [*model.h_level.layers, *model.l_level.layers])
    assert "attention over 2x2 squares" in model.describe() and "squares" not in full.describe()
    g = torch.Generator().manual_seed(3)
    for n in (7, 10):  # odd grids keep a cut square at the edge
        batch = {"inputs": torch.randint(2, 42, (2, n * n), generator=g), "vehicle": torch.tensor([0, 3])}
        z = model.z_h_init.expand(2, 1 + n * n, -1)
        _, _, logits, q_halt, _, _ = model.segment(z, model.z_l_init.expand(2, 1 + n * n, -1), batch)
        assert logits.shape[:2] == (2, n * n) and torch.isfinite(logits).all()
    model.zero_grad()
    (logits.square().mean() + q_halt.sum()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_bfloat16_short_grids_take_the_explicit_path_and_agree_with_the_fused_kernel():
    attn = _attention(2).to(torch.bfloat16)
    n = 10  # 101 tokens: the explicit bfloat16 path on a CPU
    x = torch.randn(2, 1 + n * n, D, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    cos_sin = Rotary2D(D // HEADS)(n)
    with torch.no_grad():
        explicit = attn(x, cos_sin).float()
        fused = attn.float()(x.float(), cos_sin)
    assert (explicit - fused).abs().max() < 0.1


@pytest.mark.parametrize("pool", [0, 9])
def test_pool_out_of_range_is_refused(pool: int):
    with pytest.raises(pydantic.ValidationError, match="attention_pool"):
        _config(attention_pool=pool)
