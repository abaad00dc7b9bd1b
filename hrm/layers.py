"""Building blocks of HRM: weightless RMSNorm, SwiGLU, 2-D rotary attention, post-norm block, and an
optional local mixing of each cell with its grid neighbours.

Every linear map is bias-free and LeCun-initialised from a truncated normal, as in HRM.
Shapes: B batch, L tokens (1 vehicle prefix + N*N grid cells), D hidden, H heads, d head dim.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def trunc_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """Fill ``tensor`` from N(0, std^2) truncated at +-2 sigma, rescaled so the result has std ``std``.

    Truncation at 2 sigma shrinks the standard deviation by ~0.88; we undo that so that
    "std" means the actual spread of the weights (as HRM's initialiser does).
    """
    if std == 0:
        return tensor.zero_() if tensor.device.type != "meta" else tensor
    # Variance of a standard normal truncated to [-2, 2]: 1 - 2 * 2 * pdf(2) / (cdf(2) - cdf(-2)).
    pdf2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    shrink = math.sqrt(1 - 4 * pdf2 / mass)
    sigma = std / shrink
    return nn.init.trunc_normal_(tensor, mean=0.0, std=sigma, a=-2 * sigma, b=2 * sigma)


class Linear(nn.Module):
    """y = x W^T (+ b), W ~ truncated LeCun normal (std 1/sqrt(fan_in))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_(torch.empty(out_features, in_features), std=in_features**-0.5))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def rms_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm without a learned scale, computed in float32 and returned in x's dtype."""
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.square().mean(-1, keepdim=True) + eps)
    return x32.to(x.dtype)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)); inner width 2/3 * expansion * D rounded up to a multiple of 256."""

    def __init__(self, hidden_size: int, expansion: float) -> None:
        super().__init__()
        inner = _round_up(round(expansion * hidden_size * 2 / 3), 256)
        self.gate_up = Linear(hidden_size, 2 * inner)
        self.down = Linear(inner, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Rotary2D(nn.Module):
    """Rotary position embedding over a 2-D grid, with one unrotated prefix position.

    A head of dim d is split into a row block (first d/2 dims) and a column block (last d/2).
    Within each block, dim i is paired with dim i + d/4 and rotated by angle pos * f_i, where pos
    is the cell's row (row block) or column (column block) and f_i = theta^(-i / (d/4)).
    The dot product of a rotated query and key then depends only on (row1 - row2, col1 - col2),
    so the same weights serve every grid size N. Position 0 (the vehicle prefix) gets angle 0:
    cos = 1, sin = 0, an identity rotation. Tables are cached per (N, device).
    """

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 4 != 0:
            raise ValueError(f"head_dim {head_dim} must be a multiple of 4")
        self.head_dim = head_dim
        quarter = head_dim // 4
        self.register_buffer(
            "inv_freq", theta ** (-torch.arange(quarter, dtype=torch.float32) / quarter), persistent=False
        )
        self._cache: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin tables of shape [1 + n*n, head_dim] in float32 for an n x n row-major grid."""
        device = self.inv_freq.device
        key = (n, str(device))
        if key not in self._cache:
            idx = torch.arange(n * n, device=device)
            rows, cols = (idx // n).float(), (idx % n).float()
            ang_r = rows[:, None] * self.inv_freq[None, :]  # [n*n, d/4]
            ang_c = cols[:, None] * self.inv_freq[None, :]
            angles = torch.cat([ang_r, ang_r, ang_c, ang_c], dim=-1)  # [n*n, d]
            angles = torch.cat([angles.new_zeros(1, self.head_dim), angles], dim=0)  # prefix: identity
            self._cache[key] = (angles.cos(), angles.sin())
        return self._cache[key]

    def _apply(self, fn, *args, **kwargs):  # moving devices invalidates the cached tables
        self._cache = {}
        return super()._apply(fn, *args, **kwargs)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., d] by tables broadcastable to it ([L, d] for x [..., L, d]); math in float32, result
    in x's dtype.

    Within each half (row / column block) of the last dim the pair (a, b) becomes
    (a cos - b sin, b cos + a sin): x cos plus the halves-swapped x times sin with the a half's sign
    flipped. One flip instead of a negation and a stack: with the layout in ``Attention`` it rotates a 10x10
    batch's queries and keys (forward and backward) in 60% of the time, a 40x40 batch's in half."""
    x32 = x.float()
    d = x.shape[-1]
    swapped = x32.unflatten(-1, (2, 2, d // 4)).flip(-2).flatten(-3)  # (a, b) -> (b, a) in each block
    sign = torch.ones(2, 2, d // 4, dtype=sin.dtype, device=sin.device)
    sign[:, 0] = -1
    return (x32 * cos + swapped * (sin * sign.flatten())).to(x.dtype)


EXPLICIT_ATTENTION_MAX_TOKENS = 256  # grids up to 15x15 (+ the prefix token)


def pool_cells(x: torch.Tensor, pool: int) -> torch.Tensor:
    """Average [..., 1 + n*n, d] over pool x pool squares of the row-major n x n grid; the prefix token
    stays itself. A square cut by the grid's edge (n not a multiple of pool) averages the cells it has."""
    *lead, L, d = x.shape
    n = math.isqrt(L - 1)
    grid = x[..., 1:, :].reshape(-1, n, n, d).permute(0, 3, 1, 2)  # [batch*heads, d, n, n]
    pooled = F.avg_pool2d(grid, pool, ceil_mode=True, count_include_pad=False)
    cells = pooled.permute(0, 2, 3, 1).reshape(*lead, -1, d)
    return torch.cat((x[..., :1, :], cells), dim=-2)


class Attention(nn.Module):
    """Non-causal multi-head self-attention with 2-D rotary queries/keys and no biases.

    With ``pool`` > 1 (not in HRM) every cell still asks its own query, but of keys and values averaged
    over pool x pool squares of the grid (after the rotation, so a key sits at about its square's
    centre): the whole grid is in view at 1/pool^2 of the score and weighted-sum work, at a coarser
    grain. Local mixing, where a block has it, keeps the single-cell grain."""

    def __init__(self, hidden_size: int, num_heads: int, pool: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.pool = pool
        self.qkv = Linear(hidden_size, 3 * hidden_size)
        self.out = Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        B, L, D = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.num_heads, self.head_dim)
        cos, sin = cos_sin
        # Queries and keys rotated together while still contiguous, before heads move ahead of positions:
        # the same rotation on the permuted per-head views took about a fifth longer.
        qk = apply_rotary(qkv[:, :, :2], cos[:, None, None], sin[:, None, None])
        q, k = qk.permute(2, 0, 3, 1, 4)  # each [B, H, L, d]
        v = qkv[:, :, 2].transpose(1, 2)
        if self.pool > 1:
            k, v = pool_cells(k, self.pool), pool_cells(v, self.pool)
        if x.device.type == "cpu" and q.dtype == torch.bfloat16 and L <= EXPLICIT_ATTENTION_MAX_TOKENS:
            # PyTorch's fused CPU kernel is slow in bfloat16 on short sequences (10x10: 41 ms forward and
            # backward against 8 ms for these three lines); from about 20x20 on it wins again.
            scores = (q @ k.transpose(-1, -2)) * self.head_dim**-0.5
            y = torch.softmax(scores, dim=-1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=False)  # every cell sees the whole grid
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class LocalMixing(nn.Module):
    """Depthwise 3x3 convolution over the grid: each cell's new value, channel by channel, is a learned
    weighted sum of its own and its 8 neighbours' states (zero beyond the border). No bias.

    Not in HRM: attention can learn locality from the rotary positions, but a route is a chain of
    neighbouring cells and a cheapest route a wave that spreads one cell per step, so this gives every
    block that step directly, for 9 multiply-adds per channel (the MLP spends hundreds). The vehicle
    prefix gets zero from it.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        # LeCun for a fan-in of 9: the mix of unit-variance inputs has about unit variance, like attn's.
        self.weight = nn.Parameter(trunc_normal_(torch.empty(hidden_size, 1, 3, 3), std=1 / 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        n = math.isqrt(L - 1)
        # [B, N*N, D] -> [B, D, N, N] as a view in channels-last order, no transpose copy here.
        grid = x[:, 1:].unflatten(1, (n, n)).permute(0, 3, 1, 2)
        mixed = F.conv2d(grid, self.weight, padding=1, groups=D)
        cells = mixed.permute(0, 2, 3, 1).flatten(1, 2)
        return torch.cat((cells.new_zeros(B, 1, D), cells), dim=1)


class Block(nn.Module):
    """Post-norm Transformer block: x = norm(x + [attn(x)] [+ local(x)]); x = norm(x + mlp(x)).

    At least one of attention and local mixing mixes the tokens."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        expansion: float,
        eps: float = 1e-5,
        local_mixing: bool = False,
        attention: bool = True,
        attention_pool: int = 1,
    ) -> None:
        super().__init__()
        if not (attention or local_mixing):
            raise ValueError("a block needs attention or local mixing to mix its tokens")
        self.attn = Attention(hidden_size, num_heads, attention_pool) if attention else None
        self.local = LocalMixing(hidden_size) if local_mixing else None
        self.mlp = SwiGLU(hidden_size, expansion)
        self.eps = eps

    def forward(self, x: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if self.attn is None:
            mixed = self.local(x)
        else:
            mixed = self.attn(x, cos_sin)
            if self.local is not None:
                mixed = mixed + self.local(x)
        x = rms_norm(x + mixed, self.eps)
        return rms_norm(x + self.mlp(x), self.eps)


class ReasoningModule(nn.Module):
    """A stack of blocks applied to ``state + injection`` (HRM's input injection by addition)."""

    def __init__(
        self,
        num_layers: int,
        hidden_size: int,
        num_heads: int,
        expansion: float,
        eps: float,
        local_mixing: bool = False,
        attention: bool = True,
        attention_pool: int = 1,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            Block(hidden_size, num_heads, expansion, eps, local_mixing, attention, attention_pool)
            for _ in range(num_layers)
        )

    def forward(
        self, state: torch.Tensor, injection: torch.Tensor, cos_sin: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        x = state + injection
        for layer in self.layers:
            x = layer(x, cos_sin)
        return x
