"""Hierarchical Reasoning Model with adaptive computation time (HRM ACT v1), for N x N grids.

Written from the HRM paper (arXiv 2506.21734):
- two recurrent modules, H (slow) and L (fast), each a stack of post-norm Transformer blocks;
- one segment = h_cycles x l_cycles: L gets zL + zH + x, H gets zH + zL after every l_cycles L steps;
- the gradient (``config.backprop``) reaches a suffix of the segment's calls, the earlier ones run
  under no_grad: ``one_step`` (HRM) the last L and the last H call; ``last_h_cycle`` (TRM) the last
  H-cycle, i.e. its l_cycles L calls and its H call; ``full`` every call. The state carried between
  segments is detached in every mode;
- ACT: a Q-head on the first position predicts q_halt / q_continue; the batch carry lets every
  sample halt on its own, and halted slots are refilled from the next batch.

Routing specifics: the sequence is one vehicle-prefix token followed by the N*N row-major cells
(N can change between batches, since positions are 2-D rotary), so a 10x10 batch costs 101 tokens.

Batch dict consumed by the model: ``inputs`` [B, N*N] int token ids and ``vehicle`` [B] int.
Any other keys (labels, costs, start, end, ...) ride along in the carry so the loss and metrics
see the data of the samples the outputs belong to: ``new_carry.current_data``.
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext
from dataclasses import dataclass, replace
from functools import cache
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from hrm.config import ModelConfig
from hrm.layers import Linear, ReasoningModule, Rotary2D, trunc_normal_


@dataclass
class HRMCarry:
    """State that persists across ``HRM.forward`` calls (one call = one ACT segment)."""

    z_h: torch.Tensor  # [B, 1 + N*N, D] high-level state, detached
    z_l: torch.Tensor  # [B, 1 + N*N, D] low-level state, detached
    steps: torch.Tensor  # [B] int32 segments run by the current sample
    halted: torch.Tensor  # [B] bool: the sample finished; its slot is refilled at the next call
    min_steps: torch.Tensor  # [B] int32 exploration minimum drawn when the sample started
    current_data: dict[str, torch.Tensor]  # the batch tensors of the samples now in each slot


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@cache  # the hardware does not change; _autocast asks on every segment
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); emulated bf16 is slower than float32.

    A torch capped below AVX-512 (``ATEN_CPU_CAPABILITY=avx2`` or ``default``, as when measuring what a
    laptop CPU does) counts as without it."""
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in ("default", "avx2"):
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes (or a non-x86 build): assume not
        return False


def autocast_dtype(config: ModelConfig, device: torch.device) -> torch.dtype:
    """The dtype the model's matrix products run in on ``device`` (float32 = no autocast)."""
    if device.type == "cuda":
        return getattr(torch, config.forward_dtype)
    if device.type == "cpu":
        wanted = config.cpu_dtype
        if wanted == "auto":
            wanted = "bfloat16" if cpu_has_native_bf16() else "float32"
        return getattr(torch, wanted)
    return torch.float32  # MPS and others: plain float32


def grid_side(num_cells: int) -> int:
    """N for a row-major N x N grid of ``num_cells`` cells; ValueError if it is not a square."""
    n = math.isqrt(num_cells)
    if n * n != num_cells:
        raise ValueError(f"inputs have {num_cells} cells per sample, not a square grid")
    return n


def _graph_if(keep: bool):
    """Record the autograd graph of the call inside (when the caller records one), or run it under no_grad."""
    return nullcontext() if keep else torch.no_grad()


class HRM(nn.Module):
    """HRM ACT v1. ``forward(carry, batch) -> (new_carry, outputs)`` runs one segment per sample."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = c = config
        D = c.hidden_size

        # Embeddings are initialised with std 1/sqrt(D) and scaled by sqrt(D): unit-variance inputs.
        self.embed_scale = math.sqrt(D)
        self.embed_tokens = nn.Parameter(trunc_normal_(torch.empty(c.vocab_size, D), std=1 / self.embed_scale))
        self.embed_vehicle = nn.Parameter(trunc_normal_(torch.empty(c.num_vehicles, D), std=1 / self.embed_scale))
        self.rotary = Rotary2D(c.head_dim, c.rope_theta)

        self.h_level = ReasoningModule(
            c.h_layers, D, c.num_heads, c.expansion, c.rms_norm_eps, c.local_mixing, attention_pool=c.attention_pool
        )
        self.l_level = ReasoningModule(
            c.l_layers,
            D,
            c.num_heads,
            c.expansion,
            c.rms_norm_eps,
            c.local_mixing,
            attention=c.l_attention,
            attention_pool=c.attention_pool,
        )

        # Fixed random initial states (truncated normal, std 1), broadcast to every position.
        self.register_buffer("z_h_init", trunc_normal_(torch.empty(D), std=1.0), persistent=True)
        self.register_buffer("z_l_init", trunc_normal_(torch.empty(D), std=1.0), persistent=True)

        self.lm_head = Linear(D, c.vocab_size)
        # Dense oracle outputs per cell: [on some optimal route (logit), cost to the end / optimal cost].
        self.route_head = Linear(D, 2) if c.route_head else None
        self.q_head = Linear(D, 2, bias=True)
        # Q starts near sigmoid(-5) ~ 0.007 for both actions: no early halting until Q has learned.
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)

    # ------------------------------------------------------------------ one segment
    def _autocast(self, device: torch.device):
        dtype = autocast_dtype(self.config, device)
        if dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def _embed(self, inputs: torch.Tensor, vehicle: torch.Tensor) -> torch.Tensor:
        """[B, 1 + N*N, D]: vehicle prefix, then the cell tokens; scaled by sqrt(D)."""
        cells = F.embedding(inputs.long(), self.embed_tokens)
        prefix = F.embedding(vehicle.long(), self.embed_vehicle).unsqueeze(1)
        return self.embed_scale * torch.cat([prefix, cells], dim=1)

    def segment(
        self, z_h: torch.Tensor, z_l: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """One ACT segment from states (z_h, z_l).

        Returns new z_h, z_l (detached), logits, q_halt, q_continue, and the route head's outputs
        [B, N*N, 2] (None without ``config.route_head``).
        """
        c = self.config
        inputs = batch["inputs"]
        n = grid_side(inputs.shape[1])
        if n > c.max_grid:
            raise ValueError(f"grid side {n} exceeds max_grid {c.max_grid}")
        with self._autocast(inputs.device):
            x = self._embed(inputs, batch["vehicle"])
            cos_sin = self.rotary(n)

            # Calls run as (l_cycles L calls, then one H call) x h_cycles. Those from number `first` on keep
            # their graph, the earlier ones run under no_grad. one_step approximates the fixed-point
            # gradient by the last L and H call; last_h_cycle keeps the whole last H-cycle.
            calls = c.h_cycles * (c.l_cycles + 1)
            first = {"one_step": calls - 2, "last_h_cycle": calls - (c.l_cycles + 1), "full": 0}[c.backprop]
            if c.backprop != "full":
                z_h, z_l = z_h.detach(), z_l.detach()  # no gradient reaches the state the segment starts from
            call = 0
            for _ in range(c.h_cycles):
                for _ in range(c.l_cycles):
                    with _graph_if(call >= first):
                        z_l = self.l_level(z_l, z_h + x, cos_sin)
                    call += 1
                with _graph_if(call >= first):
                    z_h = self.h_level(z_h, z_l, cos_sin)
                call += 1

            logits = self.lm_head(z_h[:, 1:]).float()  # drop the vehicle prefix
            q = self.q_head(z_h[:, 0]).float()  # the prefix position summarises the whole grid
            route = self.route_head(z_h[:, 1:]).float() if self.route_head is not None else None
        return z_h.detach(), z_l.detach(), logits, q[:, 0], q[:, 1], route

    # ------------------------------------------------------------------ ACT with a batch carry
    def initial_carry(self, batch: dict[str, torch.Tensor]) -> HRMCarry:
        """A carry whose every slot is halted, so the first ``forward`` loads all of ``batch``."""
        inputs = batch["inputs"]
        B, L = inputs.shape[0], inputs.shape[1] + 1
        device = inputs.device
        z = torch.zeros(B, L, self.config.hidden_size, device=device)
        return HRMCarry(
            z_h=z,
            z_l=z.clone(),
            steps=torch.zeros(B, dtype=torch.int32, device=device),
            halted=torch.ones(B, dtype=torch.bool, device=device),
            min_steps=torch.ones(B, dtype=torch.int32, device=device),
            current_data={k: torch.zeros_like(v) for k, v in batch.items()},
        )

    def forward(self, carry: HRMCarry, batch: dict[str, torch.Tensor]) -> tuple[HRMCarry, dict[str, torch.Tensor]]:
        """Run one segment for every slot; slots halted at the previous call restart on ``batch``'s sample.

        Returns the new carry and ``outputs``: ``logits`` [B, N*N, V] float32, ``q_halt_logits`` and
        ``q_continue_logits`` [B] float32, and in training mode ``target_q_continue`` [B].
        The outputs belong to ``new_carry.current_data``, not necessarily to ``batch``.
        """
        c = self.config
        if set(batch) != set(carry.current_data):
            raise ValueError(f"batch keys {sorted(batch)} differ from the carry's {sorted(carry.current_data)}")
        for k, v in batch.items():
            if v.shape != carry.current_data[k].shape:
                raise ValueError(
                    f"batch[{k!r}] has shape {tuple(v.shape)} but the carry holds "
                    f"{tuple(carry.current_data[k].shape)}; "
                    "call initial_carry() again when the grid size or batch size changes"
                )

        halted = carry.halted
        reset = halted.view(-1, 1, 1)
        z_h = torch.where(reset, self.z_h_init.to(carry.z_h.dtype), carry.z_h)
        z_l = torch.where(reset, self.z_l_init.to(carry.z_l.dtype), carry.z_l)
        steps = torch.where(halted, 0, carry.steps)
        data = {
            k: torch.where(halted.view((-1,) + (1,) * (v.ndim - 1)), v, carry.current_data[k]) for k, v in batch.items()
        }
        min_steps = carry.min_steps
        if self.training:
            # Exploration (paper): with prob. eps a starting sample must run a uniform 2..M_max segments.
            explore = torch.rand(halted.shape, device=halted.device) < c.halt_exploration_prob
            drawn = torch.randint_like(steps, low=2, high=max(c.halt_max_steps, 2) + 1)
            min_steps = torch.where(halted, torch.where(explore, drawn, 1), min_steps).to(torch.int32)

        z_h, z_l, logits, q_halt, q_continue, route = self.segment(z_h, z_l, data)
        outputs = {"logits": logits, "q_halt_logits": q_halt, "q_continue_logits": q_continue}
        if route is not None:
            outputs["route"] = route

        with torch.no_grad():
            steps = steps + 1
            last = steps >= c.halt_max_steps
            new_halted = last
            if self.training and c.halt_max_steps > 1 and not c.q_continue:
                # TRM: halt once the model believes its answer is right, never before the minimum.
                new_halted = last | ((q_halt > 0) & (steps >= min_steps))
            elif self.training and c.halt_max_steps > 1:
                # Halt when Q prefers halting (never before the sample's minimum), or at the cap.
                new_halted = last | ((q_halt > q_continue) & (steps >= min_steps))
                # Q-learning target for "continue": the value of the next segment, bootstrapped from
                # one extra no-grad segment (no replay buffer: the many samples act as parallel envs).
                _, _, _, next_halt, next_continue, _ = self.segment(z_h, z_l, data)
                outputs["target_q_continue"] = torch.sigmoid(
                    torch.where(last, next_halt, torch.maximum(next_halt, next_continue))
                )

        new_carry = HRMCarry(
            z_h=z_h, z_l=z_l, steps=steps.to(torch.int32), halted=new_halted, min_steps=min_steps, current_data=data
        )
        return new_carry, outputs

    @torch.no_grad()
    def predict(
        self, batch: dict[str, torch.Tensor], segments: Optional[int] = None
    ) -> tuple[HRMCarry, dict[str, torch.Tensor]]:
        """Evaluation: run every sample for ``segments`` ACT segments (default halt_max_steps), in eval mode,
        and return the last outputs. More segments than training used is "thinking longer": the recurrence
        simply goes on from the state the last segment left."""
        segments = self.config.halt_max_steps if segments is None else segments
        if segments < 1:
            raise ValueError(f"segments must be at least 1, got {segments}")
        was_training = self.training
        self.eval()
        try:
            carry = self.initial_carry(batch)
            outputs: dict[str, torch.Tensor] = {}
            for _ in range(segments):
                # Eval mode halts a sample only at halt_max_steps; past it keep every sample running.
                carry = replace(carry, halted=torch.zeros_like(carry.halted)) if outputs else carry
                carry, outputs = self(carry, batch)
        finally:
            self.train(was_training)
        return carry, outputs

    # ------------------------------------------------------------------ reporting
    def describe(self) -> str:
        """One line for logs and CLIs."""
        c = self.config
        grad = {"one_step": "one-step grad", "last_h_cycle": "grad through the last H-cycle", "full": "full backprop"}[
            c.backprop
        ]
        return (
            f"HRM {count_parameters(self) / 1e6:.2f}M params | D={c.hidden_size} heads={c.num_heads} | "
            f"H {c.h_layers} blocks x {c.h_cycles} cycles, L {c.l_layers} blocks x {c.l_cycles} cycles"
            f"{'' if c.l_attention else ' (local mixing only)'}"
            f"{f' | attention over {c.attention_pool}x{c.attention_pool} squares' if c.attention_pool > 1 else ''} | "
            f"ACT <= {c.halt_max_steps} segments (explore {c.halt_exploration_prob}) | {grad} | "
            f"grids <= {c.max_grid}x{c.max_grid}"
        )

    def extra_repr(self) -> str:
        return self.describe()
