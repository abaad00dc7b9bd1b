"""Named starting points for a run: the one source of defaults.

- ``smoke``: plumbing check in minutes on 2 CPU cores: a tiny model, 8×8 then 10×10, low gates so
  that a promotion happens.
- ``tiny``: the laptop default: a small CPU model and real gates (valid_route >= 0.8, excess <= 1.5;
  optimal routes on the first and last rungs) on the ladder 10, 20, 30, 40.
- ``gpu``: one GPU, the full ladder 10 → 40 with a larger model in bf16.
- ``paper``: the paper's 27M-parameter HRM on a multi-GPU cluster.

Each preset is a function returning a fresh, validated ``RunConfig``; ``preset_config(name)`` looks
one up. The 4-stage ladders come from ``ladder``. Fields a preset leaves out take the config models'
defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional

from curriculum.core.config import (
    CurriculumConfig,
    GateConfig,
    GateMetric,
    ReplayConfig,
    RunConfig,
    ScalingConfig,
    StageConfig,
    TaskKnobs,
    TrackingConfig,
    TrainConfig,
)
from hrm.config import ModelConfig, model_preset
from routing.penalties import PenaltyWeights


def stage(
    size: int,
    threshold: float,
    max_steps: int,
    *,
    metric: GateMetric = "valid_route",
    patience: int = 2,
    replay: float = 0.0,
    penalties: Optional[PenaltyWeights] = None,
    task: Optional[TaskKnobs] = None,
    max_cost_ratio: Optional[float] = None,
) -> StageConfig:
    """One rung: gated on ``metric >= threshold`` (and cost_ratio <= ``max_cost_ratio`` where given) for
    ``patience`` evaluations, stalling after ``max_steps``."""
    # Only what is given is passed: the rest keeps StageConfig's own defaults.
    given: dict = {}
    if penalties is not None:
        given["penalties"] = penalties
    if task is not None:
        given["task"] = task
    return StageConfig(
        size=size,
        gate=GateConfig(metric=metric, threshold=threshold, patience=patience, guard_max_cost_ratio=max_cost_ratio),
        max_steps=max_steps,
        replay=replay,
        **given,
    )


def ladder(
    sizes: Sequence[int],
    threshold: float,
    max_steps: int,
    *,
    penalties: Optional[PenaltyWeights] = None,
    first_penalties: Optional[PenaltyWeights] = None,
    replay: float = 0.0,
    metric: GateMetric = "valid_route",
    patience: int = 2,
    first_optimal: Optional[float] = None,
    final_optimal: Optional[float] = None,
) -> list[StageConfig]:
    """One stage per grid size with the same gate and step cap; every stage after the first replays
    ``replay`` of each batch from the earlier ones (the first has nothing to replay). With
    ``first_optimal`` (``final_optimal``), the first (last) stage is passed only on held-out ``optimal``
    at that level with cost_ratio <= 1.05: connected routes are not enough there. ``first_penalties``,
    when given, replaces ``penalties`` on the first stage only."""
    last = len(sizes) - 1
    optimal_at = {i: level for i, level in ((0, first_optimal), (last, final_optimal)) if level is not None}
    stages = []
    for i, size in enumerate(sizes):
        optimal = optimal_at.get(i)
        stages.append(
            stage(
                size,
                threshold if optimal is None else optimal,
                max_steps,
                metric=metric if optimal is None else "optimal",
                patience=patience,
                replay=replay if i else 0.0,
                penalties=first_penalties if i == 0 and first_penalties is not None else penalties,
                max_cost_ratio=None if optimal is None else OPTIMAL_MAX_COST_RATIO,
            )
        )
    return stages


FULL_LADDER = (10, 20, 30, 40)
OPTIMAL_MAX_COST_RATIO = 1.05

# Remembering earlier stages: each evaluation measures the current stage's held-out set and every other
# one also the earlier stages' (logged per size); replay draws the earlier stages by how far they fell
# below their gates, and every fifth step trains on one of them at its own grid size.
REMEMBER = ReplayConfig(weighting="shortfall", floor=0.1, native_every=5)

# The gates ask for a connected route not padded with extra cells (valid_route). At the default
# weights the connectivity term is too weak to matter: in `tiny` runs on 10x10, held-out
# valid_route after 400 steps was 0.01 at the defaults; 0.03 with connectivity 1.0 (connectivity
# itself 0.2 -> 0.43, but excess 1.7); 0.17 with budget and sparsity 1.0 on top (excess 1.3).
# Most remaining failures were a single missing cell, often at a turn: connectivity 3.0 took
# valid_route at step 1,000 from 0.46 to 0.59 (6.0 overshoots: excess 1.43, 0.45; budget 2.0
# with it: 0.51), measured with tiny's lr 1e-3 and EMA.
ROUTE_PENALTIES = PenaltyWeights(connectivity=3.0, budget=1.0, sparsity=1.0)

# Late on 10x10 the optimal gate misses on cost, not connection (gate set: valid_route 0.99, optimal 0.79).
# The detour term (zero on every optimal route) addresses that. In the 30-minute main job on a 2-core CPU
# with AVX2 and no AVX-512, paired on seeds 0-3 (same tasks), it left 10x10 at steps 1,700 / 1,800 /
# 1,600 / 2,000 against 1,600 / 1,900 / not within 30 minutes / 2,200.
FIRST_STAGE_PENALTIES = ROUTE_PENALTIES.model_copy(update={"detour": 1.0})


def smoke() -> RunConfig:
    return RunConfig(
        preset="smoke",
        model=ModelConfig(
            hidden_size=32, num_heads=2, h_layers=1, l_layers=1, h_cycles=1, l_cycles=1, halt_max_steps=2, max_grid=40
        ),
        train=TrainConfig(
            batch_size=16,
            lr=3e-3,
            warmup_steps=10,
            weight_decay=0.1,
            max_steps=240,
            eval_every=20,
            eval_size=64,
            eval_batch_size=64,
        ),
        curriculum=CurriculumConfig(
            stages=[
                stage(8, 0.4, 160, metric="connectivity", task=TaskKnobs(min_distance=1, max_distance=2)),
                stage(
                    10, 0.15, 160, metric="connectivity", replay=0.25, task=TaskKnobs(min_distance=1, max_distance=3)
                ),
            ]
        ),
        tracking=TrackingConfig(images_per_eval=2),
    )


def tiny() -> RunConfig:
    return RunConfig(
        preset="tiny",
        # No q_continue bootstrap segment: a step costs 1.6x less, and learns as much per step.
        # bfloat16 where the CPU has it (1.5-1.9x faster 10x10 steps). The EMA steadies the held-out
        # numbers the gate reads, and with lr 1e-3 instead of 2e-3 valid_route at step 1,000 went
        # from 0.34 (lr 2e-3, no EMA) and 0.35 (lr 2e-3, EMA) to 0.46.
        # Width 96, not the cpu preset's 128: the MLP's inner width rounds to 256 instead of 512, so a
        # step costs 42% of the weight multiply-adds. At equal minutes on 10x10 it was ahead of width 128
        # on one seed and level on another. On a 2-core CPU capped at AVX2 the 30-minute main job left 10x10
        # at 9.7 minutes against 18.7 at width 128 on seed 0, but at 15.7 against 11.4 on seed 1: over the
        # two seeds level on 10x10 optimal (0.430 and 0.283 against 0.354 and 0.344). It stays for its
        # 1.2-1.5x faster steps, not for a measured gain in that job.
        # Over 100 minutes it ends behind width 128 on 40x40 (valid_route 0.469 against 0.756): long
        # CPU runs add model.hidden_size=128.
        # Batch 64, not 32: two threads multiply it more efficiently (10x10: 128-143 tasks/s against
        # 80-118). In the capped 30-minute main job it was ahead on average over two seeds on 10x10 and 20x20
        # (10x10 optimal 0.396 and 0.396 against 0.430 and 0.283; 20x20 valid_route 0.776 against 0.706
        # on average), and the 100-minute ladder left 10x10/20x20/30x30 at 6.3/23.7/79.8 minutes
        # against 10.0/36.2/85.4, level or ahead on every size's held-out valid_route.
        # Local mixing (each cell also sums its 3x3 neighbourhood in every block): on 10x10 alone, 20
        # minutes on one AVX2-capped thread, held-out optimal 0.730 against 0.258 and valid_route 0.977
        # against 0.861, for 1% more time per block.
        # Every cell its own key (no model.attention_pool): on a 2-core CPU with AVX2 and no AVX-512 the
        # 30-minute main job with 2x2 squares left 10x10 at 26.9 minutes against 24.2 and ended behind on
        # 20x20 (held-out valid_route 0.785 against 0.898); it pays on 30x30 and 40x40, in long runs.
        model=model_preset(
            "cpu",
            hidden_size=96,
            halt_max_steps=2,
            q_continue=False,
            cpu_dtype="auto",
            ema_decay=0.995,
            local_mixing=True,
        ),
        train=TrainConfig(
            batch_size=64,
            lr=1e-3,
            lr_min_ratio=1.0,
            warmup_steps=100,
            weight_decay=0.1,
            max_steps=20_000,
            eval_every=100,
            eval_size=256,
            eval_earlier_every=2,
            # Four segments in evaluation against two in training: on 10x10 after 1,200 steps, held-out
            # valid_route 0.768 against 0.723 with two (optimal 0.131 against 0.113), for a cheap evaluation.
            eval_segments=4,
        ),
        curriculum=CurriculumConfig(
            # 10x10 is left on optimal >= 0.8, not valid_route >= 0.8: valid routes come so early that the
            # latter left 10x10 with the argmax optimal in 39% of tasks. In the 30-minute main job capped at
            # AVX2 (seed 0) the optimal gate left 10x10 at 17.7 minutes instead of 6.8, and 20x20 at 28.2
            # instead of 26.1, with held-out optimal 0.820 against 0.670 (10x10) and 0.559 against 0.355
            # (20x20): 20x20 gained more from a better 10x10 than from the extra minutes on it. Seed 1 left
            # 10x10 at 22.4 minutes with held-out optimal 0.822.
            stages=ladder(
                FULL_LADDER,
                0.8,
                8_000,
                penalties=ROUTE_PENALTIES,
                first_penalties=FIRST_STAGE_PENALTIES,
                replay=0.1,
                first_optimal=0.8,
                final_optimal=0.5,
            ),
            replay=REMEMBER,
        ),
        scaling=ScalingConfig(num_workers=1, cpus_per_worker=2),  # one worker using both cores of a small laptop
    )


def gpu() -> RunConfig:
    return RunConfig(
        preset="gpu",
        # No q_continue: with it tiny learned about as much per step (valid_route 0.65 against 0.59
        # at step 1,000) but each step took 1.45x as long. Four ACT segments, not tiny's two, for
        # the longer routes of 40x40 (on tiny at 10x10, four learned somewhat slower per step:
        # valid_route 0.43 against 0.59 at step 1,000).
        model=ModelConfig(
            hidden_size=256,
            num_heads=4,
            h_layers=2,
            l_layers=2,
            h_cycles=2,
            l_cycles=2,
            halt_max_steps=4,
            q_continue=False,
            ema_decay=0.995,
            local_mixing=True,  # measured on CPU with tiny (above); unmeasured on a GPU
        ),
        train=TrainConfig(
            batch_size=256,
            lr=1e-3,
            warmup_steps=200,
            weight_decay=0.1,
            max_steps=40_000,
            eval_every=250,
            eval_size=1024,
            eval_earlier_every=2,
            eval_segments=8,
            device="cuda",
        ),
        curriculum=CurriculumConfig(
            stages=ladder(FULL_LADDER, 0.9, 10_000, penalties=ROUTE_PENALTIES, replay=0.1, final_optimal=0.9),
            replay=REMEMBER,
        ),
        scaling=ScalingConfig(num_workers=1, use_gpu=True, cpus_per_worker=4),
    )


def paper() -> RunConfig:
    return RunConfig(
        preset="paper",
        model=model_preset("paper"),
        train=TrainConfig(
            batch_size=96,
            lr=1e-4,
            warmup_steps=2000,
            weight_decay=1.0,
            max_steps=100_000,
            eval_every=1000,
            eval_size=2048,
            device="cuda",
        ),
        curriculum=CurriculumConfig(stages=ladder(FULL_LADDER, 0.95, 25_000, replay=0.1)),
        scaling=ScalingConfig(num_workers=8, use_gpu=True, cpus_per_worker=4),
    )


PRESETS: dict[str, Callable[[], RunConfig]] = {"smoke": smoke, "tiny": tiny, "gpu": gpu, "paper": paper}
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def preset_config(name: str) -> RunConfig:
    """A fresh ``RunConfig`` of preset ``name`` (a KeyError names the known ones)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    return PRESETS[name]()
