"""``python -m curriculum.evaluate CHECKPOINT``: held-out metrics of a trained model per grid size.

    python -m curriculum.evaluate runs/tiny-.../checkpoints/checkpoint-000002000.pt --sizes 10,20 --count 512

CHECKPOINT is a checkpoint file or a run directory (its newest checkpoint). Tasks are fresh draws
from the run's own stage settings for each size (default settings for sizes outside the run's
ladder, which the table's "tasks from" column says), from a seed no training stream uses. Sizes up to
64 are accepted, beyond the 40x40 a run trains on: the model's 2-D positions extend to any grid.
``--segments 2,4,8`` evaluates each size with that many ACT segments (more than training used is
"thinking longer"). Prints a table, writes route pictures, and logs the results to the run's MLflow
run (metrics ``evaluate/<size>/<metric>``, or ``evaluate/<size>/segments<k>/<metric>`` with
``--segments``, at the checkpoint's step, the table as artifacts under ``evaluate/``).
``--errors`` adds a table of where the argmax goes wrong (``routing.route_errors``), logged as
``evaluate/<size>/errors/<field>``. ``--weights live`` reads the trained weights instead of their
exponential average (the EMA, which the run's own evaluations and gates read): how far the average
lags the model after a promotion (metrics ``evaluate/<size>/live/<metric>``). ``--register NAME``
also logs the checkpoint's weights (the EMA's where the run keeps one) as an MLflow model of that run
and registers it as NAME (``curriculum.cli.register_model``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from curriculum.adapters.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, restoring
from curriculum.cli.register_model import check_register, register, registry_run
from curriculum.core.config import RunConfig
from curriculum.core.uris import usable_uri
from oracle.cli_errors import OneLineParser, UsageError, run_cli
from oracle.footprint import check_fits
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
    "fewest_cells_optimal",
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


def _unwritable(folder: Path) -> Optional[str]:
    """Why no picture can be written in ``folder`` (created if missing), or None when one can."""
    if folder.exists() and not folder.is_dir():
        return "is a file, not a directory"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot be written ({exc.strerror or exc})"
    return None


def spec_for_size(config: RunConfig, size: int) -> TaskSpec:
    """The run's own task knobs for a size it trained on, the defaults otherwise."""
    for stage in config.curriculum.stages:
        if stage.size == size:
            return stage.task_spec()
    return TaskSpec(size=size)


def task_source(config: RunConfig, size: int) -> str:
    """Where a size's task settings come from: ``stage N`` of the run's ladder, or ``default``."""
    for index, stage in enumerate(config.curriculum.stages):
        if stage.size == size:
            return f"stage {index}"
    return "default"


def checkpoint_in(path: Path) -> Optional[Path]:
    """``path`` itself for a file; for a run directory its latest checkpoint (None when it has none)."""
    if not path.is_dir():
        return path
    return latest_checkpoint(path / "checkpoints") or latest_checkpoint(path)


def keeps_average(saved: dict, config: RunConfig) -> bool:
    """Whether the checkpoint ``saved`` holds an exponential average of its weights for the model to be read with."""
    return saved.get("ema") is not None and bool(config.model.ema_decay)


def load_trained(path: Path, max_size: int, device: str = "cpu") -> tuple[RunConfig, Any, Any]:
    """``(config, model, ema)`` of the checkpoint at ``path``, the model able to read grids up to ``max_size``
    (``ema`` None when the run kept no average). Raises ``CheckpointError`` for an unreadable checkpoint."""
    from hrm.ema import EMA
    from hrm.model import HRM

    saved = load_checkpoint(path, map_location=device)
    ema = None
    with restoring(path):
        config = RunConfig.model_validate_json(saved["config"])
        # max_grid only bounds the inputs; the weights hold no per-size table, so larger grids run as they are.
        model = HRM(config.model.model_copy(update={"max_grid": max(config.model.max_grid, max_size)})).to(device)
        model.load_state_dict(saved["model"])
        if keeps_average(saved, config):
            ema = EMA(model, config.model.ema_decay)
            ema.load_state_dict(saved["ema"])
    return config, model, ema


def evaluate_checkpoint(
    path: Path,
    sizes: list[int],
    count: int,
    device: str = "cpu",
    picture_dir: Optional[Path] = None,
    shown: int = 4,
    segments: Optional[int] = None,
    errors: bool = False,
    live: bool = False,
) -> dict[int, dict[str, float]]:
    """Held-out metric means per size for the model in checkpoint ``path``, each task run for ``segments``
    ACT segments (default: the run's train.eval_segments, else the model's halt_max_steps). With ``errors``,
    the means also hold the argmax error breakdown as ``errors/<field>`` (``routing.route_errors.summarise``).
    The weights are the run's EMA where it keeps one, the trained weights with ``live``."""

    from curriculum.core.streams import evaluation_tasks
    from oracle.dataset import select
    from routing.batch import task_tensors
    from routing.metrics import means_from_sums
    from routing.route_errors import concatenate, summarise
    from routing.training import evaluate, predict_tokens

    config, model, ema = load_trained(path, max(sizes), device)
    if config.train.keep_freed_memory:  # as the run's own evaluations did
        from curriculum.trainer.host_memory import keep_freed_memory

        keep_freed_memory()
    if live:
        ema = None
    segments = segments if segments is not None else config.train.eval_segments
    results = {}
    for size in sizes:
        tasks = evaluation_tasks(spec_for_size(config, size), config.train.seed, count)
        batches = [task_tensors(select(tasks, np.arange(i, min(i + 256, count))), device) for i in range(0, count, 256)]
        breakdown: Optional[list] = [] if errors else None
        results[size] = means_from_sums(evaluate(model, batches, ema, segments, breakdown))
        if breakdown:
            results[size].update({f"errors/{k}": v for k, v in summarise(concatenate(breakdown)).items()})
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
                Path(picture_dir)
                / f"evaluate-{size}x{size}{'' if segments is None else f'-seg{segments}'}{'-live' if live else ''}.png",
                title=f"{Path(path).name}: held-out {size}x{size}"
                + ("" if segments is None else f", {segments} segments")
                + (", trained weights" if live else ""),
            )
    return results


def format_table(results: dict[int, dict[str, float]], count: int, sources: dict[int, str]) -> str:
    widths = [max(12, len(c)) for c in COLUMNS]
    header = f"{'grid':>6} | {'tasks':>6} | {'tasks from':<10} | " + " | ".join(
        f"{c:>{w}}" for c, w in zip(COLUMNS, widths)
    )
    rows = [header, "-" * len(header)]
    for size, means in results.items():
        rows.append(
            f"{size:>2}x{size:<3} | {count:>6} | {sources[size]:<10} | "
            + " | ".join(f"{means.get(c, float('nan')):>{w}.3f}" for c, w in zip(COLUMNS, widths))
        )
    if "default" in sources.values():
        rows.append("default: a size outside the run's ladder, drawn with the default task settings (oracle.TaskSpec)")
    return "\n".join(rows)


def log_to_run(
    run_dir: Path, checkpoint: Path, step: int, results: dict[Any, dict[str, float]], table: str, rows: list[dict]
) -> Optional[str]:
    """The results into the MLflow run of ``run_dir`` (its run.json); the run id, or None without one."""
    record_path = run_dir / "run.json"
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    if not record.get("run_id") or not record.get("tracking_uri"):
        return None
    from mlflow.entities import Metric

    from curriculum.adapters.mlflow_store import make_client

    try:
        client = make_client(usable_uri(record["tracking_uri"], os.environ))
    except ValueError as exc:
        raise UsageError(f"{record_path}: {exc}") from None
    now = int(time.time() * 1000)
    metrics = [
        Metric(f"evaluate/{size}/{name}", float(value), now, step)
        for size, means in results.items()
        for name, value in means.items()
        if math.isfinite(value)
    ]
    for i in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(record["run_id"], metrics=metrics[i : i + 1000], synchronous=True)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / f"evaluate-{checkpoint.stem}"
        base.with_suffix(".txt").write_text(table + "\n")
        base.with_suffix(".json").write_text(json.dumps(rows, indent=2))
        client.log_artifact(record["run_id"], str(base.with_suffix(".txt")), "evaluate")
        client.log_artifact(record["run_id"], str(base.with_suffix(".json")), "evaluate")
    return record["run_id"]


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
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the results to the run's MLflow run")
    parser.add_argument(
        "--errors",
        action="store_true",
        help="also break the argmax's wrong cells down by kind (missing, on another optimal route, on none)",
    )
    parser.add_argument(
        "--weights",
        choices=("ema", "live"),
        help="ema: the weight average the run's evaluations read (default, where the run keeps one); "
        "live: the trained weights themselves",
    )
    parser.add_argument(
        "--register",
        metavar="NAME",
        help="log the checkpoint's weights as an MLflow model of the run and register it as NAME",
    )
    args = parser.parse_args(argv)
    if args.register is not None:
        check_register(args)
    sizes = _parse_sizes(args.sizes)
    try:
        check_fits(args.count, max(sizes))
    except ValueError as exc:
        raise UsageError(f"--count {exc}") from None
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():  # else loading onto it fails as "cannot load checkpoint"
            raise UsageError("--device cuda: no CUDA device is available here (use --device cpu)")
    segment_counts = _parse_segments(args.segments)
    if args.count <= 0:
        raise UsageError(f"--count must be positive, got {args.count}")
    path = checkpoint_in(args.checkpoint)
    if path is None:
        raise UsageError(f"{args.checkpoint}: no checkpoint found")
    try:
        saved = load_checkpoint(path)
        config = RunConfig.model_validate_json(saved["config"])
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{path}: not a checkpoint of this project (no valid run config)") from None
    if args.weights == "ema" and not keeps_average(saved, config):
        raise UsageError(f"--weights ema: {path} holds no weight average (its run set no model.ema_decay)")
    live = args.weights == "live"
    picture_dir = args.pictures or path.parent.parent / "pictures"
    # Checked before hours of evaluation, not when the first picture is drawn after them.
    problem = _unwritable(picture_dir)
    if problem and args.pictures is not None:
        raise UsageError(f"--pictures {args.pictures}: {problem}")
    if problem:
        print(f"no route pictures: {picture_dir} {problem}", file=sys.stderr)
        picture_dir = None
    record = registry_run(path.parent.parent) if args.register is not None else None
    sources = {size: task_source(config, size) for size in sizes}
    print(f"{path}")
    tables, logged, rows = [], {}, []
    for segments in segment_counts:
        try:
            results = evaluate_checkpoint(
                path, sizes, args.count, args.device, picture_dir, segments=segments, errors=args.errors, live=live
            )
        except CheckpointError as exc:  # readable, but not a model of this project's shape
            raise UsageError(str(exc)) from None
        table = format_table(results, args.count, sources)
        if args.errors:
            from routing.route_errors import errors_table

            table = f"{table}\n{errors_table(results)}"
        if segments is not None:
            table = f"{segments} ACT segments per task\n{table}"
        if live:
            table = f"trained weights, not their average\n{table}"
        print(table)
        tables.append(table)
        suffix = ("" if segments is None else f"/segments{segments}") + ("/live" if live else "")
        logged.update({f"{size}{suffix}": means for size, means in results.items()})
        rows += [
            {
                "size": size,
                "segments": segments,
                "weights": "live" if live else "ema",
                "tasks": args.count,
                "tasks_from": sources[size],
                **results[size],
            }
            for size in sizes
        ]
    table = "\n".join(tables)
    print(f"pictures: {picture_dir}")
    if not args.no_mlflow:
        step = int(saved.get("step", 0))
        try:
            run_id = log_to_run(path.parent.parent, path, step, logged, table, rows)
        except ImportError:
            run_id = None  # no MLflow on this machine: the table above is the record
        except Exception as exc:  # noqa: BLE001 - the evaluation itself succeeded; say what was not logged
            print(f"{PROG}: warning: results not logged to MLflow: {str(exc).strip()[:200]}", file=sys.stderr)
            run_id = None
        if run_id is not None:
            print(f"MLflow: run {run_id}, metrics evaluate/<size>/<metric> at step {step}, artifacts evaluate/")
    if record is not None:
        return register(path, saved, config, record, args.register)
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
