"""The penalty tuner: real Ray Tune + Train, real SQLite MLflow, early stopping on 2 CPUs."""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml
from mlflow.tracking import MlflowClient

from curriculum.core.overrides import build_config
from routing.penalties import PENALTY_TERMS
from tuners.penalties import best_params, rank_trials
from tuners.space import SearchSpace, apply_point, default_space, weight_from_exponent
from tuners.trials import trial_line, trial_name

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop


def run_tuner(args, cwd, timeout=900):
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "tuners.penalties", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


@pytest.fixture
def busy_cpu():
    """A busy machine, as a user's laptop is: when Tune sees each report then depends on the scheduler,
    so a report-order bug cannot hide behind an idle CI box.

    In the full suite, pytest-xdist runs a test per core and the other workers' tests already keep every
    core busy; a spinner there would only take CPU from them. With fewer workers than cores (``-n 0``,
    as when the test is run alone), a process spins on one core beside it: yielded, None otherwise.
    """
    from ray._private.utils import get_num_cpus  # the CPUs Ray sees (cgroup limits included), on any OS

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers >= get_num_cpus():
        yield None
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield spinner
    spinner.kill()
    spinner.wait()


def test_three_trial_search_with_early_stopping_nests_runs_and_writes_a_usable_best_config(tmp_path, busy_cpu):
    result = run_tuner(
        ["--preset", "smoke", "--trials", "3", "--budget-steps", "80", "--grace-steps", "40", "--out", "out"], tmp_path
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert busy_cpu is None or busy_cpu.poll() is None  # the contention lasted the whole search
    out = tmp_path / "out"
    best = out / "best_config.yaml"
    assert f"best config: {best}" in result.stdout
    search = json.loads((out / "search.json").read_text())
    client = MlflowClient(search["tracking_uri"])
    parent = client.get_run(search["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "search")} >= {
        "search/best_config.yaml",
        "search/trial_scores.png",
    }
    # best.penalties.* are the weights best_config.yaml holds, not the log10 exponents sampled.
    best_weights = yaml.safe_load(best.read_text())["curriculum"]["stages"][0]["penalties"]
    for name in PENALTY_TERMS:  # the searched weights; the other penalty fields keep the preset's
        assert float(parent.data.params[f"best.penalties.{name}"]) == pytest.approx(best_weights[name]), name
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 3
    assert not client.search_logged_models([parent.info.experiment_id]), "trials are measurements, not models"
    for child in children:
        # Stopped early is the search working: FINISHED, with the reason in a tag, never KILLED or RUNNING.
        assert child.info.status == "FINISHED", child.data.tags
        assert child.info.run_name.startswith("trial ") and "ladder" in child.info.run_name
        if child.data.tags.get("tune.early_stopped") == "true":
            assert child.data.tags["tune.stop_reason"].startswith("ASHA")
        assert "search.ladder" in child.data.params and "search.penalties.sparsity" in child.data.params
        assert "curriculum.stages.0.penalties.sparsity" in child.data.params
    # One line per trial as Tune is done with it, before the final table.
    done = [line for line in result.stdout.splitlines() if re.match(r"trial \S+ (finished|stopped early)", line)]
    assert len(done) == 3, result.stdout
    # The table lists every trial, best first.
    table = [line for line in result.stdout.splitlines() if line[:3].strip().isdigit()]
    assert len(table) == 3
    # The best config is a complete run config that curriculum.run accepts as is.
    config = yaml.safe_load(best.read_text())
    assert config["preset"] == "smoke" and config["train"]["max_steps"] == 80
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "curriculum.run",
            "--config",
            str(best),
            "--backend",
            "local",
            "--run-dir",
            "again",
            "train.max_steps=20",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.parametrize(
    "override,needle",
    [
        ("space.bogus=1", "space.bogus"),
        ("space.ladders=['20-10']", "shrinks"),
        ("space.ladders=['10-5']", "8..64"),
        ("space.ladders=[]", "ladder"),
        ("space.gate_threshold=[0.9, 0.5]", "gate_threshold"),
        ("space.penalty_exponents.sparsity=[1, -1]", "sparsity"),
        ("space.penalty_exponents.gravity=[0, 1]", "gravity"),
        ("train.lr=-3", "train.lr"),
    ],
)
def test_bad_search_space_overrides_exit_2_naming_the_key(tmp_path, override, needle):
    result = run_tuner(["--preset", "smoke", "--trials", "2", override], tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_trials_must_be_positive(tmp_path):
    result = run_tuner(["--preset", "smoke", "--trials", "0"], tmp_path, timeout=120)
    assert result.returncode == 2 and "--trials" in result.stderr


def test_a_sample_becomes_a_valid_run_config():
    space = default_space("tiny")
    base = build_config("tiny").model_dump(mode="json")
    point = {
        "penalties": {"path_class": 0.0, "sparsity": -3.0, "budget": -1.0, "coverage": 0.5, "connectivity": -2.4},
        "gate_threshold": 0.85,
        "gate_patience": 3,
        "ladder": "10-15-20-25-30-35-40",
        "replay": 0.2,
    }
    config = apply_point(base, point, space, budget_steps=500)
    assert [s.size for s in config.curriculum.stages] == [10, 15, 20, 25, 30, 35, 40]
    first, later = config.curriculum.stages[0], config.curriculum.stages[3]
    assert first.replay == 0.0 and later.replay == 0.2
    assert later.gate.threshold == 0.85 and later.gate.patience == 3 and later.gate.guard_max_excess == 1.5
    # tiny leaves 10x10 on optimal routes; its trials gate every stage on valid_route, without a cost guard
    assert base["curriculum"]["stages"][0]["gate"]["metric"] == "optimal"
    assert {(s.gate.metric, s.gate.guard_max_cost_ratio) for s in config.curriculum.stages} == {("valid_route", None)}
    # smoke names no trial metric: its trials keep its first gate's metric (connectivity)
    smoke = apply_point(build_config("smoke").model_dump(mode="json"), point, default_space("smoke"), 500)
    assert {s.gate.metric for s in smoke.curriculum.stages} == {"connectivity"}
    assert later.penalties.path_class == 1.0 and later.penalties.sparsity == 0.0  # below off_below: off
    assert later.penalties.budget == pytest.approx(0.1) and later.penalties.connectivity == pytest.approx(10**-2.4)
    # the base's first-stage dense term (tiny: detour on 10x10) is not searched: every rung keeps it
    assert {s.penalties.detour for s in config.curriculum.stages} == {1.0}
    base["curriculum"]["stages"][0]["penalties"]["detour"] = 0.0
    assert {s.penalties.detour for s in apply_point(base, point, space, 500).curriculum.stages} == {0.0}
    assert config.train.max_steps == 500
    assert weight_from_exponent(-2.6, -2.5) == 0.0 and weight_from_exponent(0.0, -2.5) == 1.0


def test_best_params_log_weights_and_trial_lines_read_well():
    space = default_space("smoke")
    point = {"penalties": {"sparsity": -1.0, "connectivity": -9.0}, "ladder": "8-10", "replay": 0.1}
    params = best_params(point, space)
    assert params["best.penalties.sparsity"] == pytest.approx(0.1) and params["best.penalties.connectivity"] == 0.0
    assert params["best.ladder"] == "8-10"
    assert trial_name("abc_00001", point) == "trial abc_00001 ladder 8-10 replay 0.1"
    line = trial_line("abc_00001", "finished", {"score": 1.5, "step": 120, "stage": 1, "eval/valid_route": 0.25})
    assert line == "trial abc_00001 finished: score 1.500 at step 120 (stage 1, valid_route 0.250)"
    assert "before its first evaluation" in trial_line("abc_00002", "failed", {})


def test_ranking_prefers_the_furthest_stage_then_the_fewest_steps():
    rows = [
        {"trial": "a", "score": 1.4, "steps_to_reach": 300},
        {"trial": "b", "score": 2.1, "steps_to_reach": 900},
        {"trial": "c", "score": 2.05, "steps_to_reach": 500},
        {"trial": "d", "score": 0.9, "steps_to_reach": 10**12},
    ]
    assert [r["trial"] for r in rank_trials(rows)] == ["c", "b", "a", "d"]


def test_space_validation():
    with pytest.raises(ValueError, match="shrinks"):
        SearchSpace(ladders=["20-10"])
    with pytest.raises(ValueError, match="gate_threshold"):
        SearchSpace(ladders=["10"], gate_threshold=(0.5, 1.5))


def test_interrupted_search_resumes_with_optuna(tmp_path):
    import signal
    import time

    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    args = [
        "--preset",
        "smoke",
        "--trials",
        "2",
        "--search",
        "optuna",
        "--budget-steps",
        "60",
        "--grace-steps",
        "20",
        "--out",
        "out",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuners.penalties", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    trials = tmp_path / "out" / "trials"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if any(trials.glob("*/checkpoints/checkpoint-*.pt")):
                break
            assert proc.poll() is None, "the search ended before it could be interrupted"
            time.sleep(0.5)
        else:
            pytest.fail("no trial checkpoint in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    result = run_tuner(["--resume", "out"], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resuming search" in result.stdout and (tmp_path / "out" / "best_config.yaml").is_file()
    search = json.loads((tmp_path / "out" / "search.json").read_text())
    client = MlflowClient(search["tracking_uri"])
    assert client.get_run(search["parent_run_id"]).info.status == "FINISHED"
    assert search["search"] == "optuna"


def test_population_based_training_clones_members_with_their_stage_and_shows_each_mutation(tmp_path):
    # Low gate thresholds on a 3-stage ladder: members promote at different steps within the budget,
    # so the population's scores differ and a clone has a stage to keep. A perturbation at every
    # evaluation: members finish the ladder by step ~100, and only unfinished members are ranked.
    args = ["--preset", "smoke", "--search", "pbt", "--trials", "4", "--budget-steps", "160"]
    args += [
        "--perturbation-steps",
        "20",
        "--out",
        "out",
        "space.gate_threshold=[0.3, 0.6]",
        "space.ladders=['8-9-10']",
    ]
    result = run_tuner(args, tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    out = tmp_path / "out"
    search = json.loads((out / "search.json").read_text())
    client = MlflowClient(search["tracking_uri"])
    parent = client.get_run(search["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["tune.search"] == "pbt"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 4 and all(child.info.status == "FINISHED" for child in children)
    assert len({child.data.params["search.ladder"] for child in children}) == 1, "one ladder for the population"
    by_trial = {child.data.tags["tune.trial_id"]: child for child in children}
    pattern = r"step (\d+): continued from trial (\S+)'s checkpoint in stage (\d+) with .*gate_threshold="

    def clonings_of(run) -> list[tuple[int, str, int]]:
        """(step, donor, stage) of each of the run's perturbation tags, in the order they happened."""
        texts = []
        while f"pbt.perturbation.{len(texts)}" in run.data.tags:
            texts.append(run.data.tags[f"pbt.perturbation.{len(texts)}"])
        assert len(texts) == len(set(texts)), "a restart from the same donor checkpoint is one perturbation"
        found = [re.match(pattern, text) for text in texts]
        assert all(found), texts
        return [(int(f[1]), f[2], int(f[3])) for f in found]

    clones = 0
    for trial, child in by_trial.items():
        schedule = client.get_metric_history(child.info.run_id, "pbt/gate_threshold")
        assert schedule[0].step == 0, "the values a member starts with are logged at step 0"
        clonings = clonings_of(child)
        clones += len(clonings)
        own = [json.loads(line) for line in (out / "trials" / trial / "decisions" / "rank-0.jsonl").open()]
        steps = [d["step"] for d in own]
        assert steps == sorted(set(steps)), "each step decided once in the member's decisions"
        for k, (step, donor, stage) in enumerate(clonings):
            assert donor in by_trial and donor != trial
            # The values in force after the perturbation are a point of the member's schedule at that step.
            assert step in [point.step for point in schedule]
            # The donor's checkpoint was in the stage the donor decided at that step; the donor's file
            # still shows it unless the donor itself was since sent back to an earlier step.
            donor_at = None
            if all(earlier >= step for earlier, _, _ in clonings_of(by_trial[donor])):
                donor_file = out / "trials" / donor / "decisions" / "rank-0.jsonl"
                donor_at = next(d for d in map(json.loads, donor_file.open()) if d["step"] == step)
                assert donor_at["next_stage"] == stage
            # The clone goes on in its donor's stage, from the donor's step: its decisions after that
            # step are this continuation's, unless a later cloning sent it back to that step or before.
            if any(later <= step for later, _, _ in clonings[k + 1 :]):
                continue
            after = [d for d in own if d["step"] > step]
            if after:
                assert after[0]["stage"] == stage, (trial, clonings, after[0])
            else:  # cloned at the end of the budget, or from a finished member: it ends at once
                outcome = json.loads((out / "trials" / trial / "outcome.json").read_text())
                assert outcome["step"] == step
                assert donor_at is None or donor_at["action"] == "finish" or step == 160
    assert clones >= 1, "PBT never cloned a member"
    assert any(d.path == "search/trial_scores.png" for d in client.list_artifacts(parent.info.run_id, "search"))
    config = yaml.safe_load((out / "best_config.yaml").read_text())
    assert config["train"]["max_steps"] == 160


def test_a_trial_whose_worker_fills_the_machine_still_trains(tmp_path):
    # tiny's one 2-CPU worker on a 2-core laptop: beside its driver's sliver of a CPU the worker
    # found no room, and the search waited for ever.
    from ray._private.utils import get_num_cpus

    args = ["--preset", "smoke", "--trials", "1", "--budget-steps", "20", "--out", "out"]
    result = run_tuner([*args, f"scaling.cpus_per_worker={get_num_cpus()}"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert re.search(r"trial \S+ finished: score .* at step 20", result.stdout), result.stdout
    config = yaml.safe_load((tmp_path / "out" / "best_config.yaml").read_text())
    assert config["scaling"]["cpus_per_worker"] == get_num_cpus(), "the best config keeps the preset's CPUs"


def test_pbt_refuses_members_of_several_workers(tmp_path):
    result = run_tuner(["--preset", "smoke", "--search", "pbt", "scaling.num_workers=2"], tmp_path, timeout=120)
    assert result.returncode == 2
    assert "scaling.num_workers must be 1" in result.stderr and not (tmp_path / "tune").exists()


def test_pbt_perturbs_only_at_evaluations_of_the_stage_cadence_every_trial_copies(tmp_path):
    # Every trial's stages copy stage 0, its own eval_every too: members are checkpointed every 10 steps.
    args = ["--preset", "smoke", "--search", "pbt", "--perturbation-steps", "15", "curriculum.stages.0.eval_every=10"]
    result = run_tuner(args, tmp_path, timeout=120)
    assert result.returncode == 2
    assert "--perturbation-steps 15 must be a multiple of curriculum.stages.0.eval_every 10" in result.stderr
    assert not (tmp_path / "tune").exists()


def test_an_address_with_no_ray_cluster_exits_2_before_the_search_exists(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = run_tuner(["--preset", "smoke", "--address", f"127.0.0.1:{port}", "--out", "out"], tmp_path, 60)
    assert result.returncode == 2 and f"no Ray cluster at 127.0.0.1:{port}" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "mlflow.db").exists()


def test_the_search_gives_its_workers_the_base_runs_allocator_environment():
    from curriculum.trainer.host_memory import is_glibc

    # A trial's workers start inside the search's Ray job: their environment is the one start_ray gives it.
    probe = (
        "import os, ray\n"
        "from curriculum.core.presets import preset_config\n"
        "from tuners.cluster import start_ray\n"
        "base = preset_config('smoke').model_dump(mode='json')\n"
        "for keep in (True, False):\n"
        "    base['train']['keep_freed_memory'] = keep\n"
        "    start_ray(None, base)\n"
        "    print(ray.get(ray.remote(lambda: os.environ.get('MALLOC_ARENA_MAX')).remote()))\n"
        "    ray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "RAY_AUTH_MODE": "disabled"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == (["1", "None"] if is_glibc() else ["None", "None"])
