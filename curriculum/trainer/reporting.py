"""What an evaluation leaves behind outside the loop: the decisions file of every rank, and on rank 0
the tracked metrics and tags, the console line and the route pictures; the run's timeline at its end."""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import torch

from curriculum.adapters.atomic_file import atomic_write
from curriculum.adapters.tracking import Tracker
from curriculum.core.config import RunConfig
from curriculum.core.evaluation import Evaluation
from curriculum.core.outcome import RunOutcome
from curriculum.core.scheduler import SchedulerState, curriculum_score
from curriculum.core.transitions import describe_transition
from curriculum.trainer.learner import Learner
from routing.training import predict_tokens


def record_decision(run_dir: Path, rank: int, record: Evaluation) -> None:
    """Every rank appends its own decision, so anyone can check that all ranks switched together."""
    path = run_dir / "decisions" / f"rank-{rank}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {
        "step": record.step,
        "stage": record.stage,
        "next_stage": record.scheduler.stage,
        "action": record.action.value,
    }
    with path.open("a") as handle:
        handle.write(json.dumps(line) + "\n")


def drop_decisions_after(run_dir: Path, rank: int, step: int) -> None:
    """Forget this rank's decisions after ``step``: a run restored from the checkpoint of ``step`` takes
    them again, and each step is decided once in the file."""
    path = run_dir / "decisions" / f"rank-{rank}.jsonl"
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        text = "".join(line + "\n" for line in kept).encode()
        atomic_write(path, lambda handle: handle.write(text))


def report_metrics(record: Evaluation, config: RunConfig) -> dict[str, Any]:
    """What Ray Train (and a tuner) receives for an evaluation: progress, one score, the held-out means."""
    stages = config.curriculum.stages
    gate_value = record.current.get(stages[record.stage].gate.metric, float("nan"))
    score = curriculum_score(record.scheduler, len(stages), gate_value, record.action)
    return {
        "step": record.step,
        "stage": record.scheduler.stage,
        "status": record.scheduler.status,
        "score": score,
        **record.eval_metrics,
    }


def final_report(last_report: dict[str, Any], outcome: RunOutcome) -> dict[str, Any]:
    """The run's last report: its outcome, still carrying the last evaluation's progress metrics.

    Whoever watches the reports for a metric (a tuner's ``score``, its scheduler's ``step``) must find
    it in every one, the last included, or Tune rejects the trial; a run stopped before its first
    evaluation has made no progress and scores 0.
    """
    return {"score": 0.0, **last_report, "final": True, **outcome.to_json()}


def log_evaluation(record: Evaluation, config: RunConfig, tracker: Tracker, say: Callable[[str], None]) -> None:
    """Rank 0: the evaluation's metrics to the tracker, a console line, and the transition it decided."""
    size = record.evaluated.size
    means, train = record.current, record.train
    metrics: dict[str, Any] = {name: v for name, v in record.eval_metrics.items() if math.isfinite(v)}
    metrics.update(train)
    for measured, values in record.metrics.items():  # every held-out set, by size: forgetting shows here
        prefix = f"heldout-{measured.size}x{measured.size}/"
        metrics.update({prefix + name: v for name, v in values.items() if math.isfinite(v)})
    metrics.update(
        {
            "curriculum/stage": record.stage,
            "curriculum/grid_size": size,
            "perf/steps_per_s": record.lap.steps_per_s,
            "train/skipped_steps": record.skipped_steps,
        }
    )
    tracker.log_metrics(metrics, record.step)
    # No loss when every step since the last evaluation was skipped or replayed an earlier stage.
    loss = f"{train['train/loss']:.3f}" if "train/loss" in train else "  -  "
    say(
        f"step {record.step:>6} | stage {record.stage} {size}x{size} | loss {loss}"
        f" | conn {means['connectivity']:.3f} | valid_route {means['valid_route']:.3f}"
        f" | optimal {means['optimal']:.3f} | excess {means['excess']:.2f} | {record.lap.steps_per_s:.2f} steps/s"
    )
    earlier = [k for k in record.metrics if k != record.evaluated]
    if earlier:
        say(
            "         earlier stages | "
            + " | ".join(
                f"{k.size}x{k.size} valid_route {record.metrics[k]['valid_route']:.3f}"
                f" optimal {record.metrics[k]['optimal']:.3f}"
                for k in earlier
            )
        )
    if record.transition is not None:
        described = describe_transition(
            record.transition.model_dump(mode="json"), [stage.size for stage in config.curriculum.stages]
        )
        tracker.set_tags({f"curriculum.transition.{len(record.scheduler.transitions)}": described})
        say(">>> " + described)


@functools.cache
def pictures_available() -> bool:
    """Whether matplotlib can be imported; a bare GPU machine may lack it, and pictures are not worth a run."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: this run draws no pictures", file=sys.stderr, flush=True)
        return False
    return True


def log_routes(
    record: Evaluation, learner: Learner, batch: dict[str, torch.Tensor], tracker: Tracker, run_dir: Path, shown: int
) -> None:
    """Rank 0: a picture of the model's routes on the first ``shown`` tasks of the evaluated set."""
    if not pictures_available():
        return
    from curriculum.adapters.pictures import render_routes

    part = {k: v[:shown] for k, v in batch.items()}
    pred = predict_tokens(learner.model, part, learner.ema, learner.config.train.eval_segments).cpu().numpy()
    arrays = {k: v.cpu().numpy() for k, v in part.items()}
    n = record.evaluated.size
    path = _picture(
        render_routes,
        arrays["inputs"],
        arrays["labels"],
        pred,
        arrays["costs"],
        arrays["start"],
        arrays["end"],
        n,
        run_dir / "pictures" / f"routes-step{record.step:07d}.png",
        title=f"step {record.step}, stage {record.stage} ({n}x{n}): held-out routes",
    )
    if path is not None:
        tracker.log_artifact(path, "routes")


def log_timeline(config: RunConfig, tracker: Tracker, run_dir: Path, scheduler: SchedulerState, step: int) -> None:
    """Rank 0, at the end: the stages over the run's steps."""
    if not pictures_available():
        return
    from curriculum.adapters.pictures import render_timeline

    path = _picture(
        render_timeline,
        [t.model_dump(mode="json") for t in scheduler.transitions],
        [s.size for s in config.curriculum.stages],
        step,
        run_dir / "pictures" / "timeline.png",
    )
    if path is not None:
        tracker.log_artifact(path, "timeline")


def _picture(render, *args, **kwargs) -> Optional[Path]:
    """A picture's path, or None with a warning when it cannot be written (a full disk): a picture is
    never worth the run; the checkpoint that follows reports a full disk as what it is."""
    try:
        return render(*args, **kwargs)
    except OSError as exc:
        print(f"warning: picture not written: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return None
