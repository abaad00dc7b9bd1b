"""HRM speed: training-step throughput per grid size, and batched metrics vs a per-sample Python BFS.

    python benchmarks/hrm_bench.py                       # CPU preset on this machine
    python benchmarks/hrm_bench.py --cpu-dtype bfloat16 --sizes 10,20   # bfloat16 autocast on the CPU
    python benchmarks/hrm_bench.py --preset paper --device cuda --batch 256
    python benchmarks/hrm_bench.py --preset tiny --sizes 10,40 --attention-pool 2   # a run preset's model

Prints tokens/s and samples/s of full ACT training steps (one segment, loss, backward, AdamATan2)
at N = 10, 20, 30, 40; on CUDA also the achieved TFLOP/s as a share of the GPU's bf16 dense peak;
then the time of ``routing.metrics.path_metrics`` on 256 tasks at 40×40 next to a per-sample Python
BFS on the same predictions. Targets: metrics >= 100x faster than the loop; a 10×10 step <= 1/8 of
a 40×40 step; the paper preset on an H100 at >= 35% of bf16 peak.
"""

from __future__ import annotations

import argparse
import time
from collections import deque

import numpy as np
import torch

from curriculum.trainer.host_memory import keep_freed_memory
from hrm.config import MODEL_PRESETS, ModelConfig, model_preset
from hrm.model import HRM, autocast_dtype, count_parameters
from hrm.optimizer import AdamATan2
from oracle import TaskSpec, generate_tasks
from oracle.vocab import PATH
from routing.batch import task_tensors
from routing.metrics import path_metrics
from routing.penalties import PenaltyWeights
from routing.training import train_step

BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}  # dense, SXM where it varies


def step_flops(model: HRM, batch: int, cells: int) -> float:
    """Matmul FLOPs of one training step (one-step gradient, plus the no-grad Q-target segment).

    Per block and token: 2 FLOPs per weight, plus 4·T·D for QKᵀ and AV. A segment makes
    h_cycles·l_cycles L calls and h_cycles H calls; backward (2× forward) covers only the last L
    and H call; the target segment is forward only.
    """
    c = model.config
    tokens = cells + 1
    block_params = sum(p.numel() for p in model.h_level.parameters()) / c.h_layers
    per_block = batch * tokens * (2 * block_params + 4 * tokens * c.hidden_size)
    l_call, h_call = c.l_layers * per_block, c.h_layers * per_block
    segment = c.h_cycles * c.l_cycles * l_call + c.h_cycles * h_call
    head = 2 * batch * cells * c.hidden_size * c.vocab_size
    target = segment + head if c.halt_max_steps > 1 else 0.0
    return segment + head + 2 * (l_call + h_call + head) + target


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_step(
    model: HRM, optimizer: torch.optim.Optimizer, tasks: dict, steps: int, device: torch.device, warmup: int = 3
) -> float:
    """Wall time of one full ACT training step on ``tasks``, averaged over ``steps`` after ``warmup``."""
    carry = model.initial_carry(tasks)
    for _ in range(warmup):
        carry, _, _ = train_step(model, carry, tasks, optimizer, PenaltyWeights(), 1e-4)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        carry, _, _ = train_step(model, carry, tasks, optimizer, PenaltyWeights(), 1e-4)
    sync(device)
    return (time.perf_counter() - t0) / steps


RUN_PRESETS = ("tiny", "gpu")  # run presets whose model differs from every model preset


def bench_model(preset: str, **overrides: object) -> ModelConfig:
    """A model preset (cpu, paper) or a run preset's model (tiny, gpu), with ``overrides`` applied."""
    if preset in MODEL_PRESETS:
        return model_preset(preset, **overrides)
    # Imported here, not at the top: the run presets load the whole curriculum config, which the model
    # presets and the GPU check (which imports this module) never need.
    from curriculum.core.presets import preset_config

    return ModelConfig(**{**preset_config(preset).model.model_dump(), **overrides})


def bench_training(
    preset: str,
    device: torch.device,
    batch: int,
    sizes: list[int],
    steps: int,
    cpu_dtype: str = "float32",
    attention_pool: int = 1,
) -> dict[int, float]:
    torch.manual_seed(0)
    model = HRM(bench_model(preset, cpu_dtype=cpu_dtype, attention_pool=attention_pool)).to(device)
    optimizer = AdamATan2(model.parameters(), lr=1e-4)
    print(
        f"{preset} preset: {count_parameters(model) / 1e6:.2f}M parameters on {device}, batch {batch}, "
        f"matmuls in {str(autocast_dtype(model.config, device)).removeprefix('torch.')}"
    )
    peak = next(
        (v for k, v in BF16_PEAK_TFLOPS.items() if device.type == "cuda" and k in torch.cuda.get_device_name(device)),
        None,
    )
    print(f"{'N':>3} | {'ms/step':>8} | {'samples/s':>10} | {'tokens/s':>11} | {'TFLOP/s':>8} | {'% bf16 peak':>11}")
    times = {}
    for n in sizes:
        tasks = task_tensors(generate_tasks(TaskSpec(size=n), batch, seed=n), device)
        dt = seconds_per_step(model, optimizer, tasks, steps, device)
        times[n] = dt
        tflops = step_flops(model, batch, n * n) / dt / 1e12
        share = f"{100 * tflops / peak:>10.1f}%" if peak else f"{'n/a':>11}"
        print(
            f"{n:>3} | {dt * 1e3:>8.1f} | {batch / dt:>10,.0f} | {batch * n * n / dt:>11,.0f} | "
            f"{tflops:>8.2f} | {share}"
        )
    if 10 in times and 40 in times:
        print(f"10x10 step / 40x40 step = 1/{times[40] / times[10]:.1f}")
    return times


def bfs_connected(allowed, start: int, end: int, n: int) -> bool:
    """Per-sample BFS over the allowed cells from start; ``allowed`` is a numpy array or a tensor."""
    if not (bool(allowed[start]) and bool(allowed[end])):
        return False
    seen = {start}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        if v == end:
            return True
        r, c = divmod(v, n)
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            u = rr * n + cc
            if 0 <= rr < n and 0 <= cc < n and u not in seen and bool(allowed[u]):
                seen.add(u)
                queue.append(u)
    return False


def bench_metrics(device: torch.device, count: int = 256, n: int = 40, repeats: int = 5) -> None:
    tasks = generate_tasks(TaskSpec(size=n), count, seed=1)
    rng = np.random.default_rng(0)
    masks = tasks.labels == PATH
    half = count // 2
    masks[half:] = np.isfinite(tasks.costs[half:])  # half exact routes, half "mark every road"
    masks[:half] |= rng.random(masks[:half].shape) < 0.02  # with some stray cells
    pred = tasks.inputs.astype(np.int64)
    pred[masks] = PATH
    t = task_tensors(tasks, device)
    pred_t = torch.from_numpy(pred).to(device)
    args = (pred_t, t["labels"], t["costs"], t["start"], t["end"], t["optimal_cost"])
    path_metrics(*args)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        path_metrics(*args)["connectivity"].sum().item()
    batched = (time.perf_counter() - t0) / repeats
    ours = path_metrics(*args)["connectivity"].bool().cpu().numpy()

    # The published pipeline's way: one sample at a time, reading the prediction tensor cell by cell.
    t0 = time.perf_counter()
    allowed_t = (pred_t == PATH) & torch.isfinite(t["costs"])
    loop = [bfs_connected(allowed_t[i], int(tasks.start[i]), int(tasks.end[i]), n) for i in range(count)]
    tensor_loop = time.perf_counter() - t0
    assert np.array_equal(ours, np.array(loop)), "batched connectivity disagrees with the BFS"
    # A lean loop: one device->host copy, then a numpy-backed BFS per sample.
    t0 = time.perf_counter()
    allowed_np = allowed_t.cpu().numpy()
    loop = [bfs_connected(allowed_np[i], int(tasks.start[i]), int(tasks.end[i]), n) for i in range(count)]
    numpy_loop = time.perf_counter() - t0
    assert np.array_equal(ours, np.array(loop))
    print(
        f"metrics on {count} tasks at {n}x{n} ({device}): every metric batched {batched * 1e3:.1f} ms | "
        f"per-sample BFS on the tensor (connectivity only) {tensor_loop * 1e3:.0f} ms = {tensor_loop / batched:.0f}x | "
        f"per-sample BFS on a numpy copy {numpy_loop * 1e3:.0f} ms = {numpy_loop / batched:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=[*MODEL_PRESETS, *RUN_PRESETS])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="samples per step (default 32 on CPU, 256 on CUDA)")
    parser.add_argument("--sizes", default="10,20,30,40")
    parser.add_argument(
        "--cpu-dtype",
        default="float32",
        choices=["float32", "bfloat16", "auto"],
        help="model.cpu_dtype: autocast dtype on a CPU (auto = bfloat16 where the CPU has it natively)",
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps per size (default 3 CPU, 20 CUDA)")
    parser.add_argument(
        "--attention-pool",
        type=int,
        default=1,
        help="model.attention_pool: keys and values averaged over P x P squares",
    )
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc's allocator as it is (default: train.keep_freed_memory, as training runs)",
    )
    args = parser.parse_args()
    kept = not args.system_malloc and keep_freed_memory()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch or (256 if cuda else 32)
    steps = args.steps or (20 if cuda else 3)
    print(
        f"torch {torch.__version__}, device {torch.cuda.get_device_name(device) if cuda else 'cpu'}, "
        f"{torch.get_num_threads()} CPU threads, freed memory {'kept' if kept else 'as the allocator does by default'}"
    )
    sizes = [int(s) for s in args.sizes.split(",")]
    bench_training(args.preset, device, batch, sizes, steps, args.cpu_dtype, args.attention_pool)
    bench_metrics(device)


if __name__ == "__main__":
    main()
