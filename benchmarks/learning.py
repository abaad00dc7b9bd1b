"""Learning curves that back the README's Results tables: train a preset for a wall-clock budget, then
measure the trained model on fresh held-out tasks at every grid size.

    python benchmarks/learning.py --preset tiny --minutes 30 --backend ray    # the laptop row
    python benchmarks/learning.py --preset gpu --minutes 25 --device cuda     # the GPU row
    python benchmarks/learning.py --preset tiny --minutes 30 --variant direct      # ablation rows
    python benchmarks/learning.py --preset tiny --minutes 30 --variant onestep
    python benchmarks/learning.py --preset tiny --minutes 30 --variant fullbp-ema
    python benchmarks/learning.py --preset tiny --minutes 30 --variant direct curriculum.stages.0.size=20
    python benchmarks/learning.py --preset tiny --minutes 15 --config tune/out/best_config.yaml  # a tuned config

Each row is one ``python -m curriculum.run`` with ``train.max_minutes`` set (``--backend local`` by
default, so it also runs on a GPU box without Ray or MLflow; ``--backend ray`` is the main job as
users start it), followed by ``curriculum.evaluate`` on ``--count``
tasks per size. Variants change one thing against the preset:

- ``curriculum``: the preset as it is;
- ``direct``: a one-stage ladder, the preset's last stage (40×40 in tiny, gpu and paper) from step 0
  (trailing overrides apply after the variant's, so ``curriculum.stages.0.size=20`` trains 20×20);
- ``anyopt`` / ``detour`` / ``head``: the oracle-supervised levers, each on top of the one before: a
  route loss that accepts every optimal route (``penalties.route_target=any_optimal``), then the cost-aware detour
  term (``penalties.detour``), then the route head trained on the oracle's dense fields
  (``model.route_head``, ``penalties.optimal_set``, ``penalties.cost_to_go``);
- ``onestep`` / ``fullbp-ema``: HRM's one-step gradient without an EMA, or backprop through every
  call of the segment (``model.backprop=full``) with an EMA of the weights (TRM's EMA; the preset's
  decay, 0.999 where it has none), everything else as in the preset. TRM's own gradient keeps only
  its last H-cycle in the graph: ``model.backprop=last_h_cycle`` as a trailing override.

Prints a Markdown table (grid size × connectivity / valid_route / optimal / exact, and the step and
minute at which the run reached each stage) and writes it with the raw numbers to RUN_DIR/learning.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

VARIANTS = ("curriculum", "direct", "onestep", "fullbp-ema", "anyopt", "detour", "head")
COLUMNS = ("connectivity", "valid_route", "optimal", "cost_ratio", "exact", "decoded_optimal", "fewest_cells_optimal")
# The oracle-supervised levers, each added on top of the previous one, on every stage.
LEVERS = {
    "anyopt": {"penalties.route_target": "any_optimal"},
    "detour": {"penalties.route_target": "any_optimal", "penalties.detour": "1.0"},
    "head": {
        "penalties.route_target": "any_optimal",
        "penalties.detour": "1.0",
        "penalties.optimal_set": "0.5",
        "penalties.cost_to_go": "0.5",
    },
}


def variant_overrides(preset: str, variant: str) -> list[str]:
    """The dotted overrides that turn ``preset`` into ``variant``."""
    from curriculum.core.presets import preset_config

    if variant == "curriculum":
        return []
    if variant == "direct":
        last = dict(preset_config(preset).curriculum.stages[-1].model_dump(mode="json"), replay=0.0)
        return ["curriculum.stages=" + json.dumps([last])]
    if variant in LEVERS:
        stages = range(len(preset_config(preset).curriculum.stages))
        extra = ["model.route_head=true"] if variant == "head" else []
        return extra + [
            f"curriculum.stages.{i}.{key}={value}" for i in stages for key, value in LEVERS[variant].items()
        ]
    if variant == "onestep":
        return ["model.backprop=one_step", "model.ema_decay=null"]
    if variant == "fullbp-ema":  # the preset's own EMA where it has one, so only the gradient changes
        decay = preset_config(preset).model.ema_decay or 0.999
        return ["model.backprop=full", f"model.ema_decay={decay}"]
    raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")


def stage_arrivals(outcome: dict, sizes: list[int]) -> dict[int, tuple[int, float]]:
    """Grid size -> (step, minutes) at which the run first reached the stage of that size.

    ``outcome.json`` keeps the transitions and, per stage visit, its steps and seconds; the two
    line up: visit i + 1 began with transition i.
    """
    arrivals = {sizes[0]: (0, 0.0)}
    step, seconds = 0, 0.0
    for transition, visit_steps, visit_seconds in zip(
        outcome["transitions"], outcome["stage_steps"], outcome["stage_seconds"]
    ):
        step, seconds = step + visit_steps, seconds + visit_seconds
        if transition["action"] == "promote":
            arrivals.setdefault(sizes[transition["to_stage"]], (step, seconds / 60.0))
    return arrivals


def markdown_table(results: dict[int, dict[str, float]], arrivals: dict[int, tuple[int, float]]) -> str:
    lines = [
        "| grid | " + " | ".join(COLUMNS) + " | stage reached at step | minutes |",
        "| --- | " + " | ".join("---" for _ in COLUMNS) + " | --- | --- |",
    ]
    for size, means in results.items():
        step, minutes = arrivals.get(size, (None, None))
        reached = ("—", "—") if step is None else (f"{step:,}", f"{minutes:.1f}")
        lines.append(
            f"| {size}×{size} | " + " | ".join(f"{means[c]:.3f}" for c in COLUMNS) + f" | {reached[0]} | {reached[1]} |"
        )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--variant", default="curriculum", choices=VARIANTS)
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget (train.max_minutes)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--backend",
        default="local",
        choices=("local", "ray"),
        help="local: in-process (no Ray needed); ray: Ray Train workers, as the main job runs",
    )
    parser.add_argument("--count", type=int, default=512, help="held-out tasks per grid size")
    parser.add_argument("--sizes", default="10,20,30,40")
    parser.add_argument("--segments", type=int, help="ACT segments in the final evaluation (default: the run's)")
    parser.add_argument("--run-dir", type=Path, help="default runs/learning-<preset>-<variant>-<time>")
    parser.add_argument("--config", type=Path, help="YAML file laid over the preset (a tuner's best_config.yaml)")
    parser.add_argument("overrides", nargs="*", help="extra key.path=value overrides for the run")
    args = parser.parse_args(argv)

    run_dir = args.run_dir or Path("runs") / f"learning-{args.preset}-{args.variant}-{time.strftime('%Y%m%d-%H%M%S')}"
    command = [
        sys.executable,
        "-m",
        "curriculum.run",
        "--backend",
        args.backend,
        "--preset",
        args.preset,
        "--run-dir",
        str(run_dir),
        *(["--config", str(args.config)] if args.config else []),
        f"train.max_minutes={args.minutes:g}",
        f"train.device={args.device}",
        *variant_overrides(args.preset, args.variant),
        *args.overrides,
    ]
    print("$ " + " ".join(command), flush=True)
    started = time.perf_counter()
    finished = subprocess.run(command)
    wall = time.perf_counter() - started
    if finished.returncode not in (0, 130):
        print(f"learning: the run failed (exit {finished.returncode})", file=sys.stderr)
        return finished.returncode

    from curriculum.adapters.checkpoint import latest_checkpoint
    from curriculum.cli.evaluate import evaluate_checkpoint

    outcome = json.loads((run_dir / "outcome.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    ladder = [stage["size"] for stage in config["curriculum"]["stages"]]
    sizes = [int(s) for s in args.sizes.split(",")]
    results = evaluate_checkpoint(
        latest_checkpoint(run_dir / "checkpoints"),
        sizes,
        args.count,
        args.device,
        run_dir / "pictures",
        segments=args.segments,
        errors=True,
    )
    arrivals = stage_arrivals(outcome, ladder)
    table = markdown_table(results, arrivals)
    print(
        f"\n{args.preset} / {args.variant}: {outcome['outcome']} at step {outcome['step']:,}, stage "
        f"{outcome['stage']} ({ladder[outcome['stage']]}×{ladder[outcome['stage']]}), "
        f"{wall / 60:.1f} min wall, {args.count} held-out tasks per size on {args.device}"
    )
    print(table)
    from routing.route_errors import errors_table

    print(errors_table(results))
    (run_dir / "learning.json").write_text(
        json.dumps(
            {
                "preset": args.preset,
                "variant": args.variant,
                "minutes": args.minutes,
                "device": args.device,
                "command": command,
                "wall_seconds": wall,
                "outcome": outcome,
                "heldout": {str(k): v for k, v in results.items()},
                "arrivals": {str(k): list(v) for k, v in arrivals.items()},
                "table": table,
            },
            indent=2,
        )
    )
    print(f"pictures: {run_dir / 'pictures'}; numbers: {run_dir / 'learning.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
