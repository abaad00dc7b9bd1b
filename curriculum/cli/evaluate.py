"""``python -m curriculum.evaluate CHECKPOINT``: held-out metrics of a trained model per grid size.

    python -m curriculum.evaluate runs/tiny-.../checkpoints/checkpoint-000002000.pt --sizes 10,20 --count 512

CHECKPOINT is a checkpoint file or a run directory (its newest checkpoint). Tasks are fresh draws
from the run's own stage settings for each size (default settings for sizes the run never
trained on), from a seed no training stream uses. Sizes up to 64 are accepted, beyond the 40x40 a
run trains on: the model's 2-D positions extend to any grid. ``--segments 2,4,8`` evaluates each size
with that many ACT segments (more than training used is "thinking longer"). Prints a table and
writes route pictures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from curriculum.adapters.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, restoring
from curriculum.core.config import RunConfig
from oracle.cli_errors import OneLineParser, UsageError, run_cli
from oracle.spec import MAX_SIZE, MIN_SIZE, TaskSpec

PROG = "python -m curriculum.evaluate"
COLUMNS = (
    "connectivity",
    "valid_route",
    "optimal",
    "exact",
    "valid",
    "excess",
    "cost_ratio",
    "act_steps",
    "decoded_optimal",
    "decoded_cost_ratio",
)


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--sizes {text!r}: expected comma-separated integers like 10,20,30,40") from None
    bad = [s for s in sizes if not MIN_SIZE <= s <= MAX_SIZE]
    if not sizes or bad:
        raise UsageError(f"--sizes {text!r}: every size must be in {MIN_SIZE}..{MAX_SIZE}")
    return sizes


def _parse_segments(text: Optional[str]) -> list[Optional[int]]:
    if text is None:
        return [None]
    try:
        segments = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--segments {text!r}: expected comma-separated integers like 2,4,8") from None
    if not segments or any(not 1 <= s <= 64 for s in segments):
        raise UsageError(f"--segments {text!r}: every count must be in 1..64")
    return segments


def spec_for_size(config: RunConfig, size: int) -> TaskSpec:
    """The run's own task knobs for a size it trained on, the defaults otherwise."""
    for stage in config.curriculum.stages:
        if stage.size == size:
            return stage.task_spec()
    return TaskSpec(size=size)


def evaluate_checkpoint(
    path: Path,
    sizes: list[int],
    count: int,
    device: str = "cpu",
    picture_dir: Optional[Path] = None,
    shown: int = 4,
    segments: Optional[int] = None,
) -> dict[int, dict[str, float]]:
    """Held-out metric means per size for the model in checkpoint ``path``, each task run for ``segments``
    ACT segments (default: the run's train.eval_segments, else the model's halt_max_steps)."""

    from curriculum.core.streams import evaluation_tasks
    from hrm.ema import EMA
    from hrm.model import HRM
    from oracle.dataset import select
    from routing.batch import task_tensors
    from routing.metrics import means_from_sums
    from routing.training import evaluate, predict_tokens

    saved = load_checkpoint(path, map_location=device)
    ema = None
    with restoring(path):
        config = RunConfig.model_validate_json(saved["config"])
        # max_grid only bounds the inputs; the weights hold no per-size table, so larger grids run as they are.
        model = HRM(config.model.model_copy(update={"max_grid": max([config.model.max_grid, *sizes])})).to(device)
        model.load_state_dict(saved["model"])
        if saved.get("ema") is not None and config.model.ema_decay:
            ema = EMA(model, config.model.ema_decay)
            ema.load_state_dict(saved["ema"])
    segments = segments if segments is not None else config.train.eval_segments
    results = {}
    for size in sizes:
        tasks = evaluation_tasks(spec_for_size(config, size), config.train.seed, count)
        batches = [task_tensors(select(tasks, np.arange(i, min(i + 256, count))), device) for i in range(0, count, 256)]
        results[size] = means_from_sums(evaluate(model, batches, ema, segments))
        if picture_dir is not None and shown:
            from curriculum.adapters.pictures import render_routes

            part = select(tasks, np.arange(min(shown, count)))
            pred = predict_tokens(model, task_tensors(part, device), ema, segments).cpu().numpy()
            render_routes(
                part.inputs,
                part.labels,
                pred,
                part.costs,
                part.start,
                part.end,
                size,
                Path(picture_dir) / f"evaluate-{size}x{size}{'' if segments is None else f'-seg{segments}'}.png",
                title=f"{Path(path).name}: held-out {size}x{size}"
                + ("" if segments is None else f", {segments} segments"),
            )
    return results


def format_table(results: dict[int, dict[str, float]], count: int) -> str:
    header = f"{'grid':>6} | {'tasks':>6} | " + " | ".join(f"{c:>12}" for c in COLUMNS)
    rows = [header, "-" * len(header)]
    for size, means in results.items():
        rows.append(
            f"{size:>2}x{size:<3} | {count:>6} | " + " | ".join(f"{means.get(c, float('nan')):>12.3f}" for c in COLUMNS)
        )
    return "\n".join(rows)


def main(argv: Optional[list[str]] = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint file or run directory")
    parser.add_argument("--sizes", default="10,20,30,40", help="grid sizes (default 10,20,30,40)")
    parser.add_argument("--count", type=int, default=512, help="tasks per size (default 512)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--segments", help="ACT segments per task, comma-separated for several (default: the run's evaluation setting)"
    )
    parser.add_argument("--pictures", type=Path, help="directory for route pictures (default next to the checkpoint)")
    args = parser.parse_args(argv)
    sizes = _parse_sizes(args.sizes)
    segment_counts = _parse_segments(args.segments)
    if args.count <= 0:
        raise UsageError(f"--count must be positive, got {args.count}")
    path = args.checkpoint
    if path.is_dir():
        found = latest_checkpoint(path / "checkpoints") or latest_checkpoint(path)
        if found is None:
            raise UsageError(f"{path}: no checkpoint found")
        path = found
    try:
        load_checkpoint(path)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    picture_dir = args.pictures or path.parent.parent / "pictures"
    print(f"{path}")
    for segments in segment_counts:
        try:
            results = evaluate_checkpoint(path, sizes, args.count, args.device, picture_dir, segments=segments)
        except CheckpointError as exc:  # readable, but not a model of this project's shape
            raise UsageError(str(exc)) from None
        if segments is not None:
            print(f"{segments} ACT segments per task")
        print(format_table(results, args.count))
    print(f"pictures: {picture_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
