"""Every report a trial makes satisfies the tuner's Tune settings, the last one (the outcome) included.

A trial's last report carries the curriculum outcome back to the driver; Tune checks every report for
the metric it maximises and ASHA reads its time attribute from each, so a last report without them
failed whole searches whenever Tune happened to see it (it depends on timing, so it is tested here
directly, with the tuner's own ``TuneConfig`` on a real Tune run).
"""

import pytest

from curriculum.core.outcome import RunOutcome
from curriculum.trainer.reporting import final_report
from tuners.penalties import tune_config

EVALUATION = {"step": 40, "stage": 0, "status": "running", "score": 0.62, "eval/valid_route": 0.5}
OUTCOME = RunOutcome(outcome="budget", step=45, stage=0, transitions=[], final_metrics={"valid_route": 0.5})


def test_the_final_report_carries_the_last_evaluation_and_the_outcome():
    report = final_report(EVALUATION, OUTCOME)
    assert report["final"] is True and report["outcome"] == "budget"
    assert report["score"] == 0.62 and report["eval/valid_route"] == 0.5
    assert report["step"] == 45  # the outcome's step: the run went on after its last evaluation
    assert RunOutcome.from_json(report) == OUTCOME
    # Stopped before any evaluation: no progress, but still a score.
    assert final_report({}, OUTCOME)["score"] == 0.0


def _trial(config):
    from ray import tune

    tune.report(dict(EVALUATION))
    tune.report(final_report(EVALUATION, OUTCOME) if config["fixed"] else {"final": True, **OUTCOME.to_json()})


@pytest.mark.slow
def test_a_trial_whose_last_report_is_the_outcome_passes_tunes_metric_checks(tmp_path):
    import ray
    from ray import tune

    search = {"trials": 1, "search": "random", "budget_steps": 100, "grace_steps": 20}
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        grid = tune.Tuner(
            _trial,
            param_space={"fixed": True},
            tune_config=tune_config(search, concurrent=1),
            run_config=tune.RunConfig(name="reports", storage_path=str(tmp_path), verbose=0),
        ).fit()
        assert not grid.errors
        result = grid[0]
        assert result.metrics["final"] is True and result.metrics["score"] == 0.62
        assert list(result.metrics_dataframe["step"]) == [40, 45]

        # The report shape the workers used to send as their last one: Tune rejects it.
        with pytest.raises(Exception, match="score"):
            grid = tune.Tuner(
                _trial,
                param_space={"fixed": False},
                tune_config=tune_config(search, concurrent=1),
                run_config=tune.RunConfig(name="old", storage_path=str(tmp_path), verbose=0),
            ).fit()
            raise RuntimeError(str(grid.errors))
    finally:
        ray.shutdown()


def test_a_clone_restarted_from_the_same_donor_checkpoint_is_tagged_once(tmp_path):
    from mlflow.tracking import MlflowClient

    from curriculum.adapters.mlflow_tracker import MlflowTracker
    from tuners.pbt import record_perturbation

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("pbt")).info.run_id
    tracker = MlflowTracker(uri, run_id)
    first = "step 40: continued from trial b's checkpoint in stage 1 with gate_threshold=0.4"
    second = "step 80: continued from trial c's checkpoint in stage 1 with gate_threshold=0.5"
    for text in (first, first, second, first):  # Tune resumed the paused clone from the same checkpoint
        record_perturbation(tmp_path, tracker, text)
    tags = {k: v for k, v in client.get_run(run_id).data.tags.items() if k.startswith("pbt.perturbation.")}
    assert tags == {"pbt.perturbation.0": first, "pbt.perturbation.1": second}
    assert sorted(p.name for p in (tmp_path / "perturbations").iterdir()) == ["0.txt", "1.txt"]
