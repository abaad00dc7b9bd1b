"""One call on a bare GPU machine: HRM throughput, memory, and a short curriculum, as JSON and Markdown.

The GPU machine has torch, numba and numpy but no Ray, MLflow, pydantic or PyYAML, and no network.
The training loop runs there on the local backend with file-only tracking; pydantic, PyYAML and
tqdm come from a wheel folder carried with the checkout. Build it once, here, for the Python
versions the GPU machine may have (a few MB):

    for v in 3.10 3.11 3.12 3.13; do
      pip download --only-binary=:all: --no-deps --python-version $v --platform manylinux2014_x86_64 \\
        --platform manylinux_2_17_x86_64 -d .whl pydantic pydantic-core typing-extensions \\
        annotated-types typing-inspection pyyaml tqdm
    done

and run, with `.whl` carried (it is git-ignored):

    python benchmarks/device_check.py --out "$OUT" --minutes 3        # on the GPU machine
    python benchmarks/device_check.py --dry-run --out /tmp/check      # on a CPU, in seconds

Measures, in at most ``--budget-s`` seconds (default 480):
1. training throughput of the ``gpu`` and ``paper`` presets' models at 10×10 and 40×40: ms/step,
   tokens/s, TFLOP/s counted by torch's FLOP counter on one step, and the share of the GPU's dense
   bf16 peak;
2. peak GPU memory of the ``paper`` model at 40×40 per batch size, doubling until one does not fit;
3. the ``gpu`` preset's curriculum for ``--minutes`` on the local backend, then its held-out metrics
   at 10, 20, 30 and 40.
A measurement that fails is recorded with its error and the others still run. Writes
``device_check.json`` and ``device_check.md`` to ``--out`` (default ``$OUT``, else ``device_check/``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
WHEELS = ROOT / ".whl"
NEEDED = {"pydantic": "pydantic", "yaml": "pyyaml", "tqdm": "tqdm"}


def ensure_dependencies(wheels: Path = WHEELS) -> list[str]:
    """Install what the local training path imports beyond torch/numba/numpy from ``wheels`` (no
    network); returns the packages installed."""
    missing = [pkg for module, pkg in NEEDED.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return []
    if not wheels.is_dir():
        raise SystemExit(
            f"device_check: {', '.join(missing)} missing and no wheel folder {wheels} (see the top of this file)"
        )
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", str(wheels), *missing]
    subprocess.run(command, check=True)
    importlib.invalidate_caches()
    return missing


class Budget:
    """Wall-clock budget of the whole check: each phase asks before it starts."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def attempt(results: dict, key: str, fn: Callable[[], Any], label: Optional[str] = None) -> None:
    """Record ``fn()`` under ``key``, or its error: one failure never stops the other measurements."""
    started = time.monotonic()
    try:
        results[key] = fn()
    except Exception as exc:  # noqa: BLE001 - recorded, not raised
        results[key] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0], "trace": traceback.format_exc()}
    failed = " (failed)" if isinstance(results[key], dict) and "error" in results[key] else ""
    print(f"{label or key}: {time.monotonic() - started:.1f} s{failed}", flush=True)


def peak_tflops(device) -> Optional[float]:
    import torch
    from hrm_bench import BF16_PEAK_TFLOPS

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def throughput(preset: str, size: int, batch: int, steps: int, device) -> dict[str, Any]:
    """One preset's model at one grid size: time per step, tokens/s, counted TFLOP/s, share of peak."""
    import torch
    from hrm_bench import seconds_per_step
    from torch.utils.flop_counter import FlopCounterMode

    from curriculum.core.overrides import build_config
    from hrm.model import HRM, autocast_dtype, count_parameters
    from hrm.optimizer import AdamATan2
    from oracle import TaskSpec, generate_tasks
    from routing.batch import task_tensors
    from routing.penalties import PenaltyWeights
    from routing.training import train_step

    torch.manual_seed(0)
    model = HRM(build_config(preset, None, []).model).to(device)
    optimizer = AdamATan2(model.parameters(), lr=1e-4)
    tasks = task_tensors(generate_tasks(TaskSpec(size=size), batch, seed=size), device)
    with FlopCounterMode(display=False) as counter:
        train_step(model, model.initial_carry(tasks), tasks, optimizer, PenaltyWeights(), 1e-4)
    flops = counter.get_total_flops()
    seconds = seconds_per_step(model, optimizer, tasks, steps, device)
    tflops = flops / seconds / 1e12
    peak = peak_tflops(device)
    return {
        "preset": preset,
        "size": size,
        "batch": batch,
        "parameters_m": round(count_parameters(model) / 1e6, 2),
        "dtype": str(autocast_dtype(model.config, device)).removeprefix("torch."),
        "ms_per_step": round(seconds * 1e3, 2),
        "tokens_per_s": round(batch * (size * size + 1) / seconds),
        "tflops": float(f"{tflops:.4g}"),  # 4 significant digits: a CPU dry run is far below 0.01
        "bf16_peak_tflops": peak,
        "share_of_peak": round(tflops / peak, 4) if peak else None,
    }


def memory_sweep(preset: str, size: int, first_batch: int, budget: Budget, device) -> list[dict[str, Any]]:
    """Peak memory of one training step per batch size, doubling until one does not fit (or time runs out)."""
    import torch

    from curriculum.core.overrides import build_config
    from hrm.model import HRM
    from hrm.optimizer import AdamATan2
    from oracle import TaskSpec, generate_tasks
    from routing.batch import task_tensors
    from routing.penalties import PenaltyWeights
    from routing.training import train_step

    if device.type != "cuda":
        return [{"skipped": "no CUDA device: peak memory is a GPU measurement"}]
    rows, batch = [], first_batch
    model = HRM(build_config(preset, None, []).model).to(device)
    optimizer = AdamATan2(model.parameters(), lr=1e-4)
    while budget.left() > 60:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            tasks = task_tensors(generate_tasks(TaskSpec(size=size), batch, seed=batch), device)
            train_step(model, model.initial_carry(tasks), tasks, optimizer, PenaltyWeights(), 1e-4)
            torch.cuda.synchronize(device)
            rows.append({"batch": batch, "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)})
        except torch.OutOfMemoryError:
            rows.append({"batch": batch, "peak_gib": None, "fits": False})
            break
        finally:
            tasks = None
        batch *= 2
    torch.cuda.empty_cache()
    return rows


def curriculum(preset: str, minutes: float, overrides: list[str], sizes: list[int], count: int) -> dict[str, Any]:
    """The preset's curriculum for ``minutes`` on the local backend (file-only tracking), then held-out
    metrics per size from its last checkpoint."""
    from curriculum.adapters.checkpoint import latest_checkpoint
    from curriculum.adapters.mlflow_tracker import run_tracker
    from curriculum.cli.evaluate import evaluate_checkpoint
    from curriculum.core.overrides import build_config
    from curriculum.trainer.context import local_context
    from curriculum.trainer.loop import run_curriculum

    config = build_config(preset, None, [f"train.max_minutes={minutes}", "tracking.images_per_eval=0", *overrides])
    run_dir = Path(tempfile.mkdtemp(prefix="device-check-run-"))
    ctx = local_context(config.train.device)
    tracker = run_tracker(run_dir, None, None)
    started = time.monotonic()
    outcome = run_curriculum(config, ctx, tracker, run_dir)
    tracker.finish(outcome.status)
    seconds = time.monotonic() - started
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    device = str(ctx.device)
    held_out = evaluate_checkpoint(checkpoint, sizes, count, device=device) if checkpoint else {}
    return {
        "preset": preset,
        "minutes": minutes,
        "outcome": outcome.outcome,
        "steps": outcome.step,
        "stage": outcome.stage,
        "steps_per_s": round(outcome.step / seconds, 2),
        "stage_steps": outcome.stage_steps,
        "held_out": {str(n): {k: round(v, 4) for k, v in m.items()} for n, m in held_out.items()},
    }


def markdown(report: dict[str, Any]) -> str:
    """The figures as README-ready tables."""
    lines = [f"Device: {report['device']} (torch {report['torch']}, {report['when']})", ""]
    lines += ["| preset | grid | batch | dtype | ms/step | tokens/s | TFLOP/s | share of bf16 peak |", "|---" * 8 + "|"]
    for row in report["throughput"]:
        if "error" in row:
            lines.append(f"| {row.get('preset', '?')} | {row.get('size', '?')} | | | error: {row['error']} | | | |")
            continue
        share = f"{100 * row['share_of_peak']:.1f}%" if row["share_of_peak"] is not None else "n/a"
        lines.append(
            f"| {row['preset']} | {row['size']}×{row['size']} | {row['batch']} | {row['dtype']} | "
            f"{row['ms_per_step']} | {row['tokens_per_s']:,} | {row['tflops']} | {share} |"
        )
    memory = report["memory"]
    lines += ["", f"Peak memory of one training step, {report['memory_of']}:", ""]
    if isinstance(memory, dict) and "error" in memory:
        lines.append(f"error: {memory['error']}")
    else:
        lines += ["| batch | peak GiB |", "|---|---|"]
        for row in memory:
            lines.append(
                f"| {row['batch']} | {row['peak_gib'] if row.get('peak_gib') is not None else 'does not fit'} |"
                if "batch" in row
                else f"| {row.get('skipped', '?')} | |"
            )
    run = report["curriculum"]
    lines += [""]
    if "error" in run:
        lines.append(f"curriculum: error: {run['error']}")
    else:
        lines.append(
            f"{run['preset']} curriculum, {run['minutes']} min: {run['steps']} steps ({run['steps_per_s']} steps/s), "
            f"stage {run['stage']}, {run['outcome']}; held-out:"
        )
        lines += ["", "| grid | connectivity | valid_route | optimal | cost_ratio |", "|---|---|---|---|---|"]
        for size, m in run["held_out"].items():
            lines.append(
                f"| {size}×{size} | {m['connectivity']:.3f} | {m['valid_route']:.3f} | {m['optimal']:.3f} | "
                f"{m['cost_ratio']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "device_check"))
    parser.add_argument("--minutes", type=float, default=3.0, help="curriculum budget (default 3)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall-clock limit of the whole check")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on any device, in seconds")
    args = parser.parse_args(argv)
    installed = ensure_dependencies()
    import torch

    budget = Budget(args.budget_s)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"
    report: dict[str, Any] = {
        "device": name,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "dry_run": args.dry_run,
        "installed_from_wheels": installed,
    }
    if args.dry_run:  # the same code paths at toy sizes: smoke's model, small grids, a few steps
        cases, steps, sweep = [("smoke", 8, 4), ("smoke", 10, 4)], 1, ("smoke", 8, 2)
        run = ("smoke", 0.2, ["train.max_steps=20"], [8, 10], 16)
    else:
        cases = [("gpu", 10, 256), ("gpu", 40, 64), ("paper", 10, 256), ("paper", 40, 32)]
        steps, sweep = 10, ("paper", 40, 16)
        run = ("gpu", args.minutes, [], [10, 20, 30, 40], 256)
    report["throughput"] = []
    for preset, size, batch in cases:
        row: dict[str, Any] = {}
        if budget.left() < 60 + 60 * run[1]:
            row = {"preset": preset, "size": size, "error": "skipped: out of time budget"}
        else:
            attempt(
                row, "result", lambda p=preset, s=size, b=batch: throughput(p, s, b, steps, device), f"{preset} {size}"
            )
            row = row["result"] if "error" not in row["result"] else {"preset": preset, "size": size, **row["result"]}
        report["throughput"].append(row)
    report["memory_of"] = f"{sweep[0]} preset at {sweep[1]}x{sweep[1]}"
    attempt(report, "memory", lambda: memory_sweep(*sweep, budget, device))
    attempt(report, "curriculum", lambda: curriculum(*run))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "device_check.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (args.out / "device_check.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
