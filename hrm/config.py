"""Model configuration: one validated pydantic object, plus named presets.

The fields follow the HRM paper (arXiv 2506.21734) and its ACT v1 model; the grid-specific ones
(``max_grid``, ``num_vehicles``) describe the routing task. Every field is documented so the CLIs
can print ``ModelConfig.model_json_schema()`` as help.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Backprop = Literal["one_step", "last_h_cycle", "full"]


class ModelConfig(BaseModel):
    """Hyper-parameters of the Hierarchical Reasoning Model with adaptive computation time."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    hidden_size: int = Field(512, ge=8, description="Width of every token state (zH, zL, embeddings).")
    num_heads: int = Field(8, ge=1, description="Attention heads per block; hidden_size / num_heads is the head dim.")
    expansion: float = Field(
        4.0, gt=0, description="SwiGLU width factor; the inner width is 2/3 * expansion * hidden, rounded up to 256."
    )
    h_layers: int = Field(4, ge=1, description="Post-norm Transformer blocks in the slow, high-level module H.")
    l_layers: int = Field(4, ge=1, description="Post-norm Transformer blocks in the fast, low-level module L.")
    h_cycles: int = Field(2, ge=1, description="H updates per ACT segment.")
    l_cycles: int = Field(2, ge=1, description="L updates per H update.")
    halt_max_steps: int = Field(
        16, ge=1, description="Most ACT segments a sample may run; evaluation runs all of them."
    )
    halt_exploration_prob: float = Field(
        0.1, ge=0.0, le=1.0, description="Chance that a sample gets a random minimum of 2..halt_max_steps segments."
    )
    q_continue: bool = Field(
        True,
        description="HRM's ACT: q_continue learns a target bootstrapped from one extra no-grad segment per "
        "training step, and a sample halts when q_halt > q_continue. False: TRM's simplification, no "
        "q_continue loss and no extra segment (a third less compute per step); halt when q_halt > 0.",
    )
    max_grid: int = Field(
        40, ge=1, description="Largest grid side N the model accepts (rotary tables are built per N)."
    )
    vocab_size: int = Field(42, ge=2, description="Number of token ids (oracle.vocab.VOCAB_SIZE).")
    num_vehicles: int = Field(4, ge=1, description="Number of vehicle kinds; each has a learned prefix embedding.")
    backprop: Backprop = Field(
        "one_step",
        description="Which calls of a segment keep their autograd graph (a segment is h_cycles times: "
        "l_cycles L calls, then one H call). one_step: HRM's one-step gradient, only the last L call and "
        "the last H call. last_h_cycle: TRM's, the last H-cycle (its l_cycles L calls and its H call); the "
        "h_cycles - 1 earlier H-cycles run without gradient. full: every call of the segment. In every "
        "mode the state carried between segments is detached. The older spelling full_backprop=true/false "
        "is read as full/one_step.",
    )
    route_head: bool = Field(
        False,
        description="A second per-cell output head trained on the oracle's dense fields: whether the cell lies "
        "on some optimal route, and its cost to the end relative to the optimal cost (auxiliary targets; the "
        "route itself is still read from the token logits).",
    )
    local_mixing: bool = Field(
        False,
        description="Not in HRM: every block also mixes each cell with its 8 grid neighbours (a depthwise 3x3 "
        "convolution, added beside attention), so routes spread from cell to cell without attention having "
        "to learn locality first.",
    )
    l_attention: bool = Field(
        True,
        description="Not in HRM when false: the fast L module's blocks mix cells only through local_mixing, "
        "with no attention, while the slow H module keeps attending over the whole grid. Attention is about "
        "three quarters of a 40x40 training step; without it in L a step there takes half the time. Needs "
        "local_mixing.",
    )
    attention_pool: int = Field(
        1,
        ge=1,
        le=8,
        description="Not in HRM when above 1: every attention reads keys and values averaged over "
        "attention_pool x attention_pool squares of the grid (each cell keeps its own query), so it sees the "
        "whole grid at 1/attention_pool^2 of the cost, more coarsely. 1 = every cell is its own key.",
    )
    ema_decay: float | None = Field(
        None, gt=0.0, lt=1.0, description="Decay of the exponential moving average of weights (TRM); None = off."
    )
    forward_dtype: Literal["bfloat16", "float16", "float32"] = Field("bfloat16", description="Autocast dtype on CUDA.")
    cpu_dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "float32",
        description="Autocast dtype on a CPU. auto = bfloat16 where the CPU multiplies bfloat16 natively "
        "(AVX512-BF16 or AMX: about 2.4x the float32 matrix throughput), float32 elsewhere.",
    )
    rms_norm_eps: float = Field(1e-5, gt=0.0, description="Epsilon of the weightless RMSNorm.")
    rope_theta: float = Field(10000.0, gt=1.0, description="Base of the rotary frequencies (per grid axis).")

    @model_validator(mode="before")
    @classmethod
    def _read_full_backprop(cls, data: Any) -> Any:
        """Configs, checkpoints and overrides written before ``backprop`` say ``full_backprop: true/false``."""
        if not isinstance(data, dict) or "full_backprop" not in data:
            return data
        data = dict(data)
        legacy = data.pop("full_backprop")
        if not isinstance(legacy, bool):  # a ValueError, not a TypeError: pydantic reports only the former
            raise ValueError(f"full_backprop must be true or false, got {legacy!r}")  # noqa: TRY004
        wanted = "full" if legacy else "one_step"
        # A preset's dump always carries backprop (one_step unless it says otherwise), so an override
        # full_backprop=true laid over it wins; only a backprop other than the default can contradict it.
        given = data.get("backprop", "one_step")
        if given not in ("one_step", wanted):
            raise ValueError(f"full_backprop={legacy} contradicts backprop={given!r}; set backprop alone")
        data["backprop"] = wanted
        return data

    @model_validator(mode="after")
    def _check_shapes(self) -> ModelConfig:
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        head_dim = self.hidden_size // self.num_heads
        # 2-D rotary: half the head dims rotate with the row, half with the column, in pairs.
        if head_dim % 4 != 0:
            raise ValueError(f"head dim {head_dim} must be a multiple of 4 for the 2-D rotary embedding")
        if not (self.l_attention or self.local_mixing):
            raise ValueError("l_attention=false needs local_mixing=true: the L blocks would not mix cells at all")
        # hrm.layers.SwiGLU's inner width rounds 2/3 * expansion * hidden_size; at 0 there is no layer to build.
        if round(self.expansion * self.hidden_size * 2 / 3) < 1:
            raise ValueError(f"expansion {self.expansion} leaves the SwiGLU of hidden_size {self.hidden_size} no width")
        return self

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


MODEL_PRESETS: dict[str, ModelConfig] = {
    # About 1M parameters: trains on a laptop CPU. Fewer ACT segments keep evaluation cheap.
    "cpu": ModelConfig(
        hidden_size=128,
        num_heads=4,
        h_layers=2,
        l_layers=2,
        h_cycles=2,
        l_cycles=2,
        halt_max_steps=8,
    ),
    # The paper's model: 27M parameters, 4+4 blocks of width 512, 2x2 cycles, up to 16 segments.
    "paper": ModelConfig(
        hidden_size=512,
        num_heads=8,
        h_layers=4,
        l_layers=4,
        h_cycles=2,
        l_cycles=2,
        halt_max_steps=16,
    ),
}


def model_preset(name: str, **overrides: object) -> ModelConfig:
    """A copy of preset ``name`` with ``overrides`` applied (and validated)."""
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known presets: {sorted(MODEL_PRESETS)}")
    return ModelConfig(**{**MODEL_PRESETS[name].model_dump(), **overrides})
