"""``python -m tuners.penalties``: search penalty weights and stage schedules with Ray Tune.

    python -m tuners.penalties [--preset smoke|tiny|gpu] [--trials N] [--search random|optuna|pbt]
                               [--budget-steps S] [--resume DIR] [--out DIR] [key.path=value ...]

Which penalty weights and which stage schedule teach the model fastest? Each trial is a full
curriculum run (a TorchTrainer inside a Tune trial) scored by curriculum progress (stages passed +
the current gate metric) at every evaluation; ASHA stops hopeless trials early (``--search pbt``:
a population whose weights, thresholds and replay share mutate during training, see
``tuners/pbt.py``). MLflow gets one
parent run for the search and one child run per trial. ``space.<field>=value`` overrides change
the search space (see ``tuners/space.py``); other ``key=value`` overrides change the base config.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

if __package__ in (None, ""):  # run as `python tuners/penalties.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml
from pydantic import ValidationError

from curriculum.adapters.tracking import flatten_config
from curriculum.core.overrides import apply_override, build_config, parse_override
from curriculum.core.uris import redact_uri, usable_uri
from oracle.cli_errors import OneLineParser, UsageError, describe_validation_error, run_cli
from tuners.cluster import start_ray
from tuners.resources import base_beside_driver
from tuners.space import SearchSpace, apply_point, default_space

PROG = "python -m tuners.penalties"
TUNE_PRESETS = ("smoke", "tiny", "gpu")
TRIAL_DRIVER_CPU = 0.01


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[1].strip())
    parser.add_argument("--preset", choices=TUNE_PRESETS, default=None, help="base config (default tiny)")
    parser.add_argument("--trials", type=int, default=8, help="trials to run (default 8)")
    parser.add_argument(
        "--search",
        choices=("random", "optuna", "pbt"),
        default="random",
        help="random or optuna sampling with ASHA early stopping, or population-based training",
    )
    parser.add_argument("--budget-steps", type=int, help="training steps per trial (default: the preset's)")
    parser.add_argument("--grace-steps", type=int, help="steps before ASHA may stop a trial (default budget/4)")
    parser.add_argument(
        "--perturbation-steps", type=int, help="pbt: steps between perturbations (default 2 x train.eval_every)"
    )
    parser.add_argument("--resume", type=Path, metavar="DIR", help="continue an interrupted search")
    parser.add_argument("--out", type=Path, help="output directory (default tune/<preset>-<time>)")
    parser.add_argument("--address", help="Ray cluster address (default RAY_ADDRESS or a new local instance)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.path=value",
        help="space.<field>=... changes the search space, anything else the base config",
    )
    return parser


def resolve_search(args) -> dict[str, Any]:
    """Validate everything up front (UsageError, exit 2) and return the search settings."""
    if args.trials < 1:
        raise UsageError(f"--trials must be at least 1, got {args.trials}")
    preset = args.preset or "tiny"
    space_overrides = [o for o in args.overrides if o.startswith("space.")]
    config_overrides = [o for o in args.overrides if not o.startswith("space.")]
    base = build_config(preset, None, config_overrides)
    raw_space = default_space(preset).model_dump()
    for text in space_overrides:
        path, value = parse_override(text)
        if path[1] not in SearchSpace.model_fields:
            raise UsageError(
                f"{'.'.join(path)}: unknown search-space field (known: "
                f"{', '.join('space.' + f for f in SearchSpace.model_fields)})"
            )
        apply_override(raw_space, path[1:], value)
    try:
        space = SearchSpace.model_validate(raw_space)
    except ValidationError as exc:
        raise UsageError(describe_validation_error(exc, prefix="space")) from None
    budget = args.budget_steps or base.train.max_steps
    # Every trial's stages copy the base's first stage (tuners.space.apply_point), its evaluation cadence too.
    first = base.curriculum.stages[0]
    every = first.eval_interval(base.train.eval_every)
    every_field = "train.eval_every" if first.eval_every is None else "curriculum.stages.0.eval_every"
    if budget < every:
        raise UsageError(f"--budget-steps {budget} is shorter than {every_field} {every}")
    grace = args.grace_steps or max(every, budget // 4)
    perturbation = args.perturbation_steps or 2 * every
    if args.search == "pbt":
        if base.scaling.num_workers != 1:
            raise UsageError(
                f"--search pbt trains each member in its own trial process: scaling.num_workers must be 1, "
                f"not {base.scaling.num_workers}"
            )
        if perturbation < every or perturbation % every:
            raise UsageError(
                f"--perturbation-steps {perturbation} must be a multiple of {every_field} "
                f"{every} (members are checkpointed at evaluations)"
            )
    # Every ladder must make a valid run: check them all now rather than in a trial.
    for ladder in space.ladders:
        point = {
            "penalties": {k: v[1] for k, v in space.penalty_exponents.items()},
            "ladder": ladder,
            "gate_threshold": space.gate_threshold[1],
            "gate_patience": space.gate_patience[1],
            "replay": space.replay[1],
        }
        try:
            apply_point(base.model_dump(mode="json"), point, space, budget)
        except ValidationError as exc:
            raise UsageError(f"space.ladders {ladder!r}: {describe_validation_error(exc)}") from None
    _searcher(args.search)  # an unavailable search algorithm is a usage error, found before anything starts
    return {
        "preset": preset,
        "base": base.model_dump(mode="json"),
        "space": space.model_dump(mode="json"),
        "budget_steps": budget,
        "grace_steps": grace,
        "perturbation_steps": perturbation,
        "trials": args.trials,
        "search": args.search,
        "experiment": base.tracking.experiment,
    }


def _searcher(kind: str):
    if kind in ("random", "pbt"):
        return None  # Tune's default: random sampling of the distributions
    try:
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:
        raise UsageError("--search optuna needs the optuna package (pip install optuna)") from None
    return OptunaSearch()


def _trial_table(rows: list[dict]) -> str:
    header = (
        f"{'#':>2} | {'trial':<12} | {'status':<9} | {'ladder':<22} | {'score':>6} | {'stage':>5} | "
        f"{'steps':>6} | {'valid_route':>11} | penalties (path_class, sparsity, budget, coverage, connectivity)"
    )
    lines = [header, "-" * len(header)]
    for i, row in enumerate(rows, 1):
        weights = ", ".join(f"{w:.3g}" for w in row["penalties"])
        lines.append(
            f"{i:>2} | {row['trial']:<12} | {row['status']:<9} | {row['ladder']:<22} | "
            f"{row['score']:>6.3f} | {row['stage']:>5} | {row['steps']:>6} | {row['valid_route']:>11.3f} | "
            f"{weights}"
        )
    return "\n".join(lines)


def rank_trials(rows: list[dict]) -> list[dict]:
    """Best first: furthest stage reached, then the fewest steps to reach it, then the highest score."""

    def key(row: dict):
        reached = int(math.floor(row["score"] + 1e-9))
        return (-reached, row["steps_to_reach"], -row["score"])

    return sorted(rows, key=key)


def best_params(point: dict, space: SearchSpace) -> dict[str, Any]:
    """The best point as ``best.*`` params, penalties as the weights the console and best_config.yaml
    show (the space samples their log10 exponents; a weight switched off is 0)."""
    from tuners.space import weight_from_exponent

    weights = {name: weight_from_exponent(value, space.off_below) for name, value in point.get("penalties", {}).items()}
    return {f"best.{k}": v for k, v in flatten_config({**point, "penalties": weights}).items()}


def summarize(result, space: SearchSpace, out_dir: Path) -> dict:
    """One row of the trial table from a Tune ``Result``."""
    from tuners.space import weight_from_exponent

    history = []
    frame = result.metrics_dataframe
    if frame is not None and "score" in frame:
        history = [(int(s), float(v)) for s, v in zip(frame["step"], frame["score"]) if not math.isnan(v)]
    score = max((v for _, v in history), default=0.0)
    reached = math.floor(score + 1e-9)
    steps_to_reach = min((s for s, v in history if math.floor(v + 1e-9) >= reached), default=10**12)
    point = result.config
    metrics = result.metrics or {}
    trial_id = str(metrics.get("trial_id", "?"))
    completed = (out_dir / "trials" / trial_id / "outcome.json").is_file()
    return {
        "trial": trial_id,
        "point": point,
        "history": history,
        "score": score,
        "steps_to_reach": steps_to_reach,
        "stage": int(metrics.get("stage", 0)),
        "steps": int(metrics.get("step", 0)),
        "valid_route": float(metrics.get("eval/valid_route", float("nan"))),
        "status": "error" if result.error else ("completed" if completed else "stopped"),
        "ladder": point.get("ladder", "?"),
        "penalties": [
            weight_from_exponent(point.get("penalties", {}).get(name, -99.0), space.off_below)
            for name in space.penalty_exponents
        ],
    }


def tune_config(search: dict, concurrent: int):
    """What Tune maximises and how it stops trials: every report of a trial must carry ``score`` and
    ``step`` (see ``curriculum.trainer.reporting.final_report``)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from tuners.pbt import pbt_scheduler

    if search["search"] == "pbt":
        scheduler = pbt_scheduler(SearchSpace.model_validate(search["space"]), search["perturbation_steps"])
    else:
        scheduler = ASHAScheduler(
            time_attr="step", max_t=search["budget_steps"], grace_period=search["grace_steps"], reduction_factor=2
        )
    return tune.TuneConfig(
        metric="score",
        mode="max",
        num_samples=search["trials"],
        search_alg=_searcher(search["search"]),
        scheduler=scheduler,
        max_concurrent_trials=concurrent,
    )


def _search(args, search: dict, space: SearchSpace, out_dir: Path) -> list[dict]:
    """Run (or restore) the Tune search; returns the trial rows, best first."""
    import ray
    from ray import tune

    from tuners.pbt import pbt_param_space, run_pbt_trial
    from tuners.space import param_space
    from tuners.trials import TrialRunStatus, run_trial

    if not ray.is_initialized():
        start_ray(args.address, search["base"])
    if search["search"] != "pbt":  # a trial's driver holds a sliver of a CPU beside its workers
        nodes = [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]]
        search = {**search, "base": base_beside_driver(search["base"], nodes, TRIAL_DRIVER_CPU)}
    base_scaling = search["base"]["scaling"]
    workers_cpus = base_scaling["num_workers"] * base_scaling["cpus_per_worker"]
    if search["search"] == "pbt":  # a member trains in its trial process, which holds its CPUs
        per_trial, trainable = (
            workers_cpus,
            tune.with_resources(tune.with_parameters(run_pbt_trial, search=search), {"CPU": workers_cpus}),
        )
        space_of_points = pbt_param_space(space)
    else:  # the trial function only drives its TorchTrainer (a sliver of a CPU); its workers hold the CPUs
        per_trial, trainable = (
            workers_cpus + TRIAL_DRIVER_CPU,
            tune.with_resources(tune.with_parameters(run_trial, search=search), {"CPU": TRIAL_DRIVER_CPU}),
        )
        space_of_points = param_space(space)
    concurrent = max(1, int(ray.cluster_resources().get("CPU", 1) // per_trial))
    if args.resume is not None:
        tuner = tune.Tuner.restore(str(out_dir / "tune"), trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=space_of_points,
            tune_config=tune_config(search, concurrent),
            run_config=tune.RunConfig(
                name="tune", storage_path=str(out_dir), verbose=0, callbacks=[TrialRunStatus(out_dir)]
            ),
        )
    grid = tuner.fit()
    return rank_trials([summarize(result, space, out_dir) for result in grid])


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.resume is not None:
        record_path = args.resume / "search.json"
        if not record_path.is_file():
            raise UsageError(f"--resume {args.resume}: no search.json (not a tuner output directory)")
        search = json.loads(record_path.read_text())
        out_dir = args.resume
    else:
        search = resolve_search(args)
        out_dir = args.out or Path("tune") / f"{search['preset']}-{time.strftime('%Y%m%d-%H%M%S')}"
        if out_dir.exists() and any(out_dir.iterdir()):
            raise UsageError(f"--out {out_dir} already holds files (use --resume {out_dir})")
    address = args.address or os.environ.get("RAY_ADDRESS")
    if address:  # ray.init waits without end on an address where no cluster answers
        from curriculum.adapters.ray_address import UnreachableAddress, check_reachable

        try:
            check_reachable(address)
        except UnreachableAddress as exc:
            raise UsageError(f"--address {exc}") from None
    from curriculum.adapters.mlflow_store import create_run, reopen_run, resolve_tracking_uri
    from curriculum.adapters.mlflow_tracker import MlflowTracker

    try:
        if search.get("tracking_uri"):  # a resumed search: search.json holds the URI without credentials
            uri = usable_uri(search["tracking_uri"], os.environ)
            search["tracking_uri"] = uri  # in memory only, for the trials
        else:
            uri = resolve_tracking_uri(search["base"]["tracking"]["mlflow_uri"])
    except ValueError as exc:
        raise UsageError(f"tracking.mlflow_uri: {exc}") from None
    from curriculum.adapters.store_check import UnusableStore, check_store

    try:
        check_store(uri)
    except UnusableStore as exc:
        raise UsageError(f"tracking.mlflow_uri: {exc}") from None

    from tuners.score_plot import render_scores

    out_dir = out_dir.absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.resume is None:
        from curriculum.adapters.source_tags import source_tags

        parent = create_run(
            uri,
            search["experiment"],
            f"search-{out_dir.name}",
            {
                **source_tags(PROG, sys.argv[1:] if argv is None else argv),
                "tune.search": search["search"],
                "tune.trials": str(search["trials"]),
                "curriculum.preset": search["preset"],
                "tune.out_dir": str(out_dir),
            },
        )
        search.update({"tracking_uri": uri, "parent_run_id": parent, "out_dir": str(out_dir)})
        (out_dir / "search.json").write_text(json.dumps({**search, "tracking_uri": redact_uri(uri)}, indent=2))
        MlflowTracker(uri, parent).log_params(
            {
                "tune.budget_steps": search["budget_steps"],
                "tune.trials": search["trials"],
                "tune.search": search["search"],
            }
        )
        print(
            f"search {parent}: {search['trials']} trials of {search['preset']}, {search['budget_steps']} steps "
            f"each, in {out_dir}; MLflow {redact_uri(uri)}"
        )
    else:
        reopen_run(uri, search["parent_run_id"])
        print(f"resuming search {search['parent_run_id']} in {out_dir}")
    parent = search["parent_run_id"]
    space = SearchSpace.model_validate(search["space"])

    status = "FAILED"
    try:
        rows = _search(args, search, space, out_dir)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        print(f"{PROG}: interrupted; continue with: {PROG} --resume {out_dir}", file=sys.stderr)
        return 130
    finally:
        if status != "FINISHED":
            MlflowTracker(uri, parent).finish(status)
    best = next((row for row in rows if row["status"] != "error"), None)
    print(_trial_table(rows))
    tracker = MlflowTracker(uri, parent)
    plot = render_scores(
        {row["trial"]: row["history"] for row in rows},
        out_dir / "trial_scores.png",
        best=best["trial"] if best else None,
    )
    tracker.log_artifact(plot, "search")
    if best is None:
        tracker.finish("FAILED")
        print(f"{PROG}: every trial failed; see {out_dir}", file=sys.stderr)
        return 1
    best_config = apply_point(search["base"], best["point"], space, search["budget_steps"])
    best_path = out_dir / "best_config.yaml"
    best_path.write_text(yaml.safe_dump(best_config.model_dump(mode="json"), sort_keys=False))
    tracker.log_artifact(best_path, "search")
    tracker.log_params(best_params(best["point"], space))
    tracker.set_tags({"tune.best_trial": best["trial"], "tune.best_score": f"{best['score']:.3f}"})
    tracker.log_metrics({"tune/best_score": best["score"]}, step=0)
    tracker.finish("FINISHED")
    print(
        f"best trial {best['trial']}: score {best['score']:.3f}\nbest config: {best_path}\n"
        f"run it: python -m curriculum.run --config {best_path}\nscores: {plot}"
    )
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
