"""One tuner trial: a Ray Tune function that builds and fits a ``TorchTrainer`` (Train V2).

Each trial has its own MLflow child run (``mlflow.parentRunId`` = the search's run) and its own
run directory; the curriculum loop runs unchanged in the trainer's workers, and
``TuneReportCallback`` forwards every evaluation report (with its curriculum ``score``) to Tune.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import Callback

from curriculum.adapters.tracking import flatten_config
from curriculum.core.config import RunConfig
from curriculum.core.outcome import RunStatus
from curriculum.core.uris import redact_uri, usable_uri
from tuners.space import SearchSpace, apply_point


def open_trial_run(point: dict[str, Any], search: dict[str, Any]) -> tuple[RunConfig, Path, str]:
    """The trial's config, run directory and MLflow child run (``mlflow.parentRunId`` = the search's run);
    created at the trial's first start, found again at a restart (a PBT member after a perturbation)."""
    from curriculum.adapters.mlflow_datasets import log_curriculum_inputs
    from curriculum.adapters.mlflow_store import create_run
    from curriculum.adapters.mlflow_tracker import MlflowTracker

    space = SearchSpace.model_validate(search["space"])
    config = apply_point(search["base"], point, space, search["budget_steps"])
    # A trial is a measurement, not a model to keep: a search of many trials would log as many models.
    config = config.model_copy(update={"tracking": config.tracking.model_copy(update={"log_model": False})})
    trial_id = tune.get_context().get_trial_id()
    run_dir = Path(search["out_dir"]) / "trials" / trial_id
    record_path = run_dir / "run.json"
    if record_path.is_file():
        return config, run_dir, json.loads(record_path.read_text())["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = create_run(
        search["tracking_uri"],
        search["experiment"],
        trial_name(trial_id, point),
        {"mlflow.parentRunId": search["parent_run_id"], "tune.trial_id": trial_id, "curriculum.preset": config.preset},
    )
    log_curriculum_inputs(search["tracking_uri"], run_id, config)
    (run_dir / "config.json").write_text(config.model_dump_json(indent=2))
    (run_dir / "run.json").write_text(
        json.dumps({"run_id": run_id, "tracking_uri": redact_uri(search["tracking_uri"]), "point": point}, indent=2)
    )
    MlflowTracker(search["tracking_uri"], run_id).log_params(
        {f"search.{k}": v for k, v in flatten_config(point).items()}
    )
    return config, run_dir, run_id


def run_trial(point: dict[str, Any], *, search: dict[str, Any]) -> None:
    """Tune trainable: ``point`` is the sampled configuration, ``search`` the fixed search settings."""
    from ray.tune.integration.ray_train import TuneReportCallback

    from curriculum.adapters.ray_backend import TrainJob, build_trainer

    config, run_dir, run_id = open_trial_run(point, search)
    trial_id = tune.get_context().get_trial_id()
    # No restarts: a failed trial is Tune's to report, not to retry.
    job = TrainJob(config=config, run_dir=run_dir, run_id=run_id, tracking_uri=search["tracking_uri"])
    trainer = build_trainer(
        job,
        name=f"train-{trial_id}",
        storage_path=str(Path(search["out_dir"]) / "ray-train"),
        max_failures=0,
        callbacks=[TuneReportCallback()],
    )
    try:
        trainer.fit()
    finally:
        release_placement_group(run_dir)


def trial_name(trial_id: str, point: dict[str, Any]) -> str:
    """``trial 3f2a1_00001 ladder 10-40 replay 0.2``: what sets the trial apart in the runs table."""
    parts = [f"trial {trial_id}"]
    if "ladder" in point:
        parts.append(f"ladder {point['ladder']}")
    if "replay" in point:
        parts.append(f"replay {point['replay']:.2g}")
    return " ".join(parts)


def trial_line(trial_id: str, how: str, result: dict[str, Any]) -> str:
    """The one console line of a trial Tune is done with."""
    if not result:
        return f"trial {trial_id} {how} before its first evaluation"
    valid = result.get("eval/valid_route", float("nan"))
    return (
        f"trial {trial_id} {how}: score {result.get('score', float('nan')):.3f} at step {result.get('step', '?')}"
        f" (stage {result.get('stage', '?')}, valid_route {valid:.3f})"
    )


def release_placement_group(run_dir: Path) -> bool:
    """Remove the trial's worker placement group if Ray left it behind; True if one was removed.

    A Train run nested in a Tune trial can leave its placement group reserved when the trial ends
    or is stopped early (ray-project/ray#54305); the next trials would then wait forever for CPUs.
    """
    import ray
    from ray.util.placement_group import PlacementGroup

    record = Path(run_dir) / "placement_group.txt"
    if not record.is_file():
        return False
    group_id = record.read_text().strip()
    entry = ray.util.placement_group_table().get(group_id)
    if not entry or entry.get("state") == "REMOVED":
        return False
    ray.util.remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id))))
    return True


class TrialRunStatus(Callback):
    """Closes each trial's MLflow child run when Tune is done with the trial, and prints one line for it.

    A trial that reported its curriculum outcome ends FINISHED; one stopped early by the scheduler
    ends FINISHED too, tagged ``tune.early_stopped=true`` and ``tune.stop_reason`` (being stopped is
    the search working, not the trial failing); one that crashed ends FAILED. Nothing is left RUNNING.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)

    def _close(self, trial, status: RunStatus) -> None:
        from curriculum.adapters.mlflow_store import find_run, make_client

        if release_placement_group(self.out_dir / "trials" / trial.trial_id):
            print(f"released the placement group left behind by trial {trial.trial_id}", flush=True)
        result = trial.last_result or {}
        finished = (self.out_dir / "trials" / trial.trial_id / "outcome.json").is_file()
        stopped_early = status == "FINISHED" and not finished
        how = {"FAILED": "failed", "FINISHED": "stopped early by ASHA" if stopped_early else "finished"}[status]
        print(trial_line(trial.trial_id, how, result), flush=True)
        record_path = self.out_dir / "trials" / trial.trial_id / "run.json"
        if not record_path.is_file():
            return
        record = json.loads(record_path.read_text())
        uri = usable_uri(record["tracking_uri"], os.environ)
        run = find_run(uri, record["run_id"])
        if run is None:
            return
        client = make_client(uri)
        if stopped_early:
            client.set_tag(record["run_id"], "tune.early_stopped", "true")
            client.set_tag(
                record["run_id"],
                "tune.stop_reason",
                f"ASHA: score below its rung's cutoff at step {result.get('step', '?')}",
            )
        client.set_tag(record["run_id"], "tune.trial_status", "stopped" if stopped_early else status)
        if run.info.status == "RUNNING" or status != "FINISHED":
            client.set_terminated(record["run_id"], status)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._close(trial, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._close(trial, "FAILED")
