"""Population-based training over the curriculum's schedule (``python -m tuners.penalties --search pbt``).

A population of curricula trains side by side on one ladder. Every ``perturbation_steps`` Ray Tune's
``PopulationBasedTraining`` lets the bottom quarter (by curriculum score) take over the newest
checkpoint of a top-quarter trial and go on with mutated penalty weights, gate threshold and replay
share. The curriculum's state (stage, gate streaks, held-out readings, the training stream's
position) rides in the checkpoint, so a cloned trial continues in its donor's stage.

Each trial trains in its own Tune trial process (one worker, no nested Ray Train run): PBT needs the
trial's checkpoints in Tune's own hands, to pause, clone and restart trials. Each (re)start logs the
values in force as ``pbt/*`` metrics at its step, and a restart from another trial's checkpoint adds
a ``pbt.perturbation.<k>`` tag naming the donor; so the MLflow charts show each trial's schedule.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

from tuners.space import SearchSpace, weight_from_exponent

LINEAGE_FILE = "lineage.json"


def pbt_param_space(space: SearchSpace) -> dict[str, Any]:
    """The initial population: everything PBT mutates drawn at random; the ladder and patience fixed
    (a checkpoint's stage index only means something on the ladder it was trained on)."""
    from tuners.space import param_space

    return {**param_space(space), "ladder": space.ladders[0], "gate_patience": space.gate_patience[0]}


def pbt_scheduler(space: SearchSpace, perturbation_steps: int):
    """Ray Tune's PBT on the curriculum score, perturbing every ``perturbation_steps`` training steps."""
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    return PopulationBasedTraining(
        time_attr="step",
        perturbation_interval=perturbation_steps,
        hyperparam_mutations={
            "penalties": {name: tune.uniform(lo, hi) for name, (lo, hi) in space.penalty_exponents.items()},
            "gate_threshold": tune.uniform(*space.gate_threshold),
            "replay": tune.uniform(*space.replay),
        },
        quantile_fraction=0.25,
        resample_probability=0.25,
    )


def schedule_values(point: dict[str, Any], space: SearchSpace) -> dict[str, float]:
    """The mutated values of a point as ``pbt/*`` metrics (penalties as weights, 0 = off)."""
    values = {
        f"pbt/penalties.{name}": weight_from_exponent(float(exp), space.off_below)
        for name, exp in point.get("penalties", {}).items()
    }
    values["pbt/gate_threshold"] = float(point["gate_threshold"])
    values["pbt/replay"] = float(point["replay"])
    return values


def perturbation_tag(lineage: dict[str, Any], point: dict[str, Any], space: SearchSpace) -> str:
    """What a clone took over: its donor's checkpoint (trial, step, the stage it was in) and the values
    it goes on with."""
    values = ", ".join(f"{k[len('pbt/') :]}={v:.3g}" for k, v in schedule_values(point, space).items())
    step, donor, stage = lineage["step"], lineage["trial_id"], lineage["stage"]
    return f"step {step}: continued from trial {donor}'s checkpoint in stage {stage} with {values}"


def record_perturbation(run_dir: Path, tracker: Any, text: str) -> None:
    """Tag the trial's MLflow run with a perturbation, once: Tune may start a paused clone again from
    the same donor checkpoint, which is still the one perturbation."""
    folder = run_dir / "perturbations"
    folder.mkdir(exist_ok=True)
    known = sorted(folder.glob("*.txt"), key=lambda path: int(path.stem))
    if any(path.read_text().strip() == text for path in known):
        return
    k = len(known)
    (folder / f"{k}.txt").write_text(text + "\n")
    tracker.set_tags({f"pbt.perturbation.{k}": text})


def run_pbt_trial(point: dict[str, Any], *, search: dict[str, Any]) -> None:
    """Tune trainable of a PBT member: the curriculum loop in this process, reporting to Tune with a
    checkpoint at every evaluation, restarting from the checkpoint Tune hands back after a perturbation."""
    from ray import tune

    from curriculum.adapters.checkpoint import latest_checkpoint
    from curriculum.adapters.mlflow_tracker import MlflowTracker, run_tracker
    from curriculum.trainer.context import local_context
    from curriculum.trainer.loop import run_curriculum
    from curriculum.trainer.reporting import final_report
    from tuners.trials import open_trial_run

    space = SearchSpace.model_validate(search["space"])
    config, run_dir, run_id = open_trial_run(point, search)
    trial_id = tune.get_context().get_trial_id()
    handed = tune.get_checkpoint()
    staging: Optional[Path] = None
    restore = None
    if handed is not None:
        staging = Path(tempfile.mkdtemp(prefix="pbt-restore-"))
        handed.to_directory(str(staging))
        restore = latest_checkpoint(staging)
        lineage = json.loads((staging / LINEAGE_FILE).read_text())
        # The trial's own later checkpoints no longer describe the weights it goes on with (its later
        # decisions the loop drops when it restores).
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        tracker = MlflowTracker(search["tracking_uri"], run_id)
        tracker.log_metrics(schedule_values(point, space), lineage["step"])
        if lineage["trial_id"] != trial_id:
            record_perturbation(run_dir, tracker, perturbation_tag(lineage, point, space))
    else:
        MlflowTracker(search["tracking_uri"], run_id).log_metrics(schedule_values(point, space), 0)
    last_report: dict = {}

    def report(metrics: dict, checkpoint_file: Optional[Path]) -> None:
        last_report.clear()
        last_report.update(metrics)
        if checkpoint_file is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="pbt-report-") as tmp:
            shutil.copy2(checkpoint_file, Path(tmp) / checkpoint_file.name)
            lineage = {"trial_id": trial_id, "step": metrics["step"], "stage": metrics["stage"]}
            (Path(tmp) / LINEAGE_FILE).write_text(json.dumps(lineage))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    ctx = local_context(config.train.device, restore)
    ctx.report = report
    tracker = run_tracker(run_dir, search["tracking_uri"], run_id, config.tracking.system_metrics_every_s)
    try:
        outcome = run_curriculum(config, ctx, tracker, run_dir, run_id)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    tune.report(final_report(last_report, outcome))
