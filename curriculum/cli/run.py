"""``python -m curriculum.run``: train HRM through the curriculum, logged to MLflow.

    python -m curriculum.run [--preset NAME] [--config FILE.yaml] [--run-dir DIR] [--name NAME]
                             [--resume DIR|LOCATION] [--backend ray|local] [--address ADDR] [--show-config]
                             [key.path=value ...]

No arguments: the ``tiny`` preset on a local Ray instance, MLflow at sqlite:///mlflow.db in the
working directory (unless MLFLOW_TRACKING_URI says otherwise). ``--address auto`` or RAY_ADDRESS
joins an existing cluster. ``--resume`` takes a run directory or the run's storage location
``<scaling.storage>/<run name>`` (``curriculum.cli.resume``). Bad arguments or config values: one line
naming the problem, exit 2, nothing created. Ctrl-C or SIGTERM: the current step finishes, a checkpoint
is written, the MLflow run ends KILLED, exit 128 + the signal number (130, 143); the same signal again
stops at once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

from curriculum.adapters.console import LiveBar
from curriculum.adapters.run_lock import RunLockedError, hold_run_lock, live_driver
from curriculum.cli.run_files import check_creatable, claim_location, save_outcome, save_run_files, storage_location
from curriculum.cli.stop_flag import StopFlag
from curriculum.core.config import RunConfig
from curriculum.core.naming import run_name as default_run_name
from curriculum.core.outcome import RunOutcome, RunStatus
from curriculum.core.overrides import build_config
from curriculum.core.presets import PRESET_NAMES
from curriculum.core.summary import summary_table
from curriculum.core.uris import redact_uri, usable_uri
from oracle.cli_errors import OneLineParser, UsageError, run_cli

PROG = "python -m curriculum.run"


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=PRESET_NAMES, help="starting point (default tiny)")
    parser.add_argument("--config", type=Path, help="YAML file laid over the preset")
    parser.add_argument("--run-dir", type=Path, help="where checkpoints and pictures go (default runs/<preset>-<time>)")
    parser.add_argument(
        "--name", help="MLflow run name (default: the preset, config file and overrides, e.g. 'tiny lr=5e-4')"
    )
    parser.add_argument(
        "--resume",
        metavar="DIR|LOCATION",
        help="continue a run from its newest checkpoint: its run directory, or its storage location "
        "<scaling.storage>/<run name> (a shared path or s3://...)",
    )
    parser.add_argument(
        "--backend",
        choices=("ray", "local"),
        default="ray",
        help="ray (Ray Train workers, default) or local (in-process, no Ray)",
    )
    parser.add_argument(
        "--address",
        help="Ray cluster address (auto = the running cluster; default: RAY_ADDRESS or a new local instance)",
    )
    parser.add_argument(
        "--show-config",
        action="store_true",
        help="print the resolved config as YAML, every key with its description, and exit (usable as --config)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key.path=value", help="config overrides (see --show-config for the keys)"
    )
    return parser


def _resolve(args) -> tuple[RunConfig, Path, Optional[dict], Optional[str]]:
    """Config, run directory and (when resuming) the saved run record and the checkpoint to resume from;
    raises UsageError."""
    if args.resume is not None:
        if args.preset or args.config or args.name:
            raise UsageError("--resume takes the run's saved config and name; give only key=value overrides with it")
        # Imported here: reading checkpoints loads torch, which a new run's config errors do not wait for.
        from curriculum.cli.resume import resolve_resume

        resumed = resolve_resume(args.resume, args.overrides)
        return resumed.config, resumed.run_dir, resumed.record, resumed.checkpoint
    config = build_config(args.preset, args.config, args.overrides)
    if args.name is not None:
        if not args.name.strip():
            raise UsageError("--name must not be empty")
        config.tracking.run_name = args.name
    run_dir = args.run_dir or Path("runs") / f"{config.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--run-dir {run_dir} is a file, not a directory")
    if run_dir.exists() and any(run_dir.iterdir()):
        holder = live_driver(run_dir) if run_dir.is_dir() else None
        if holder is not None:  # --resume would be refused too: the run is not stopped
            raise UsageError(f"--run-dir {run_dir} is being trained by a live driver (pid {holder}); choose another")
        raise UsageError(f"--run-dir {run_dir} already holds files (use --resume {run_dir} to continue it)")
    check_creatable(run_dir, "--run-dir")
    return config, run_dir, None, None


def _lock(run_dir: Path):
    try:
        return hold_run_lock(run_dir)
    except RunLockedError as exc:
        raise UsageError(f"--resume {run_dir}: {exc}") from None


def _save_traceback(run_dir: Path) -> str:
    """Write the traceback to ``run_dir/error.txt``; on a full disk that may fail too, which must not
    replace the real error by a second one."""
    path = run_dir / "error.txt"
    try:
        path.write_text(traceback.format_exc())
    except OSError:
        return ""
    return f" (traceback in {path})"


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.show_config:
        from curriculum.core.describe import config_yaml

        shown = _resolve(args)[0] if args.resume else build_config(args.preset, args.config, args.overrides)
        print(config_yaml(shown), end="")
        return 0
    config, run_dir, record, resume_from = _resolve(args)
    # A resumed run whose driver is still alive is left alone (and never marked KILLED).
    lock = _lock(run_dir) if record is not None and run_dir.is_dir() else None
    uri = None
    if record is not None:
        try:
            uri = usable_uri(record.get("tracking_uri"), os.environ)
        except ValueError as exc:
            raise UsageError(f"--resume {run_dir}: {exc}") from None
    elif mlflow_installed():
        from curriculum.adapters.mlflow_store import resolve_tracking_uri, sqlite_path

        try:
            uri = resolve_tracking_uri(config.tracking.mlflow_uri)
        except ValueError as exc:
            raise UsageError(f"tracking.mlflow_uri: {exc}") from None
        database = sqlite_path(uri)
        if database is not None and not database.exists():
            check_creatable(database.parent, f"MLflow store {database}: its directory")
    if uri is not None:  # before anything is created: a store no run can be written to is a usage error
        from curriculum.adapters.store_check import UnusableStore, check_store

        try:
            check_store(uri)
        except UnusableStore as exc:
            raise UsageError(f"tracking.mlflow_uri: {exc}") from None
    address = args.address or os.environ.get("RAY_ADDRESS")
    if args.backend == "local" and args.address:
        raise UsageError("--address needs --backend ray")
    if args.backend == "local":
        from curriculum.trainer.context import pick_device

        try:
            pick_device(config.train.device)  # e.g. cuda on a machine without one: refused before anything exists
        except RuntimeError as exc:
            raise UsageError(str(exc)) from None
    storage = _connect_ray(config, run_dir, address) if args.backend == "ray" else None
    location = storage_location(config, storage, run_dir)
    if location is not None:  # shared storage: the run's state lives there too
        claim_location(location, config, new_run=record is None)
    # Installed after ray.init, which sets a SIGTERM handler of its own (exit at once, run left RUNNING).
    stop = StopFlag()
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}

    # Nothing was created before this point.
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = lock or _lock(run_dir)  # held until this process exits, however it exits
    if record is None:
        run_id = None
        if uri is not None:
            from curriculum.adapters.mlflow_datasets import log_curriculum_inputs
            from curriculum.adapters.mlflow_store import create_run
            from curriculum.adapters.source_tags import source_tags

            run_name = config.tracking.run_name or default_run_name(config.preset, args.config, args.overrides)
            run_id = create_run(
                uri,
                config.tracking.experiment,
                run_name,
                {
                    **source_tags(PROG, sys.argv[1:] if argv is None else argv),
                    "curriculum.preset": config.preset,
                    "curriculum.backend": args.backend,
                    "curriculum.run_dir": str(run_dir.absolute()),
                },
            )
            log_curriculum_inputs(uri, run_id, config)
        record = {"run_id": run_id, "tracking_uri": redact_uri(uri), "experiment": config.tracking.experiment}
        save_run_files(run_dir, config, record, location)
        if uri is None:
            print(
                f"run ({config.preset}) in {run_dir}; MLflow is not installed here, so metrics go to "
                f"{run_dir / 'tracking'} (log them later: python -m curriculum.replay {run_dir})"
            )
        else:
            print(
                f"run {run_id} ({run_name}) in {run_dir}; MLflow: {redact_uri(uri)}, "
                f"experiment {config.tracking.experiment}"
            )
    else:
        run_id = record["run_id"]
        if run_id is not None:
            from curriculum.adapters.mlflow_store import mark_killed_if_orphaned, reopen_run

            if mark_killed_if_orphaned(uri, run_id):
                print(f"run {run_id} was left RUNNING by a driver that is gone: marked KILLED, now resuming it")
            reopen_run(uri, run_id)
        save_run_files(run_dir, config, record, location)

    status: RunStatus = "FAILED"
    console = LiveBar()  # a live bar on a terminal, on either backend
    try:
        if args.backend == "local":
            outcome = _run_local(config, run_dir, run_id, uri, resume_from, stop, console)
        else:
            from curriculum.adapters.ray_backend import run_with_ray

            console.waiting("starting Ray Train workers")
            outcome = _with_quiet_ray(
                lambda: run_with_ray(
                    config,
                    run_dir,
                    run_id,
                    uri,
                    storage,
                    resume_from,
                    say=console.say,
                    stop_requested=lambda: stop.set,
                    show_progress=console.show,
                    idle=console.tick,
                )
            )
        status = outcome.status
        save_outcome(location, outcome)
    except KeyboardInterrupt:
        status = "KILLED"
        print(f"{PROG}: aborted; resume with: {PROG} --resume {location or run_dir}", file=sys.stderr)
        return stop.exit_code
    except Exception as exc:
        print(
            f"{PROG}: error: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            f"{_save_traceback(run_dir)}",
            file=sys.stderr,
        )
        return 1
    finally:
        console.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if run_id is not None:  # the driver owns the run's final status
            from curriculum.adapters.mlflow_tracker import MlflowTracker

            MlflowTracker(uri, run_id).finish(status)
    print(summary_table(config, outcome))
    print(f"checkpoints: {run_dir / 'checkpoints'}")
    if run_id is not None:
        from curriculum.adapters.mlflow_links import run_link

        serve = "" if uri.startswith("http") else f"mlflow ui --backend-store-uri {uri}, then "
        link = run_link(uri, run_id)
        print(f"MLflow: {serve}{link or f'experiment {config.tracking.experiment}, run {run_id}'}")
    if outcome.outcome == "killed":
        print(f"stopped; resume with: {PROG} --resume {location or run_dir}", file=sys.stderr)
        return stop.exit_code
    return 0


def mlflow_installed() -> bool:
    """Machines without MLflow (a bare GPU box) still train; metrics then go to the run's file log."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    return True


def _with_quiet_ray(fn):
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    return fn()


def _connect_ray(config: RunConfig, run_dir: Path, address: Optional[str]) -> str:
    """Join Ray and settle the checkpoint storage before the run directory and MLflow run exist."""
    from curriculum.adapters.ray_address import UnreachableAddress, check_reachable
    from curriculum.adapters.ray_backend import connect
    from curriculum.adapters.storage import StorageError

    if address:
        try:
            check_reachable(address)
        except UnreachableAddress as exc:
            raise UsageError(f"--address {exc}") from None
    try:
        return _with_quiet_ray(lambda: connect(config, run_dir, address))
    except StorageError as exc:
        raise UsageError(str(exc)) from None
    except (ConnectionError, RuntimeError) as exc:  # ray.init could not reach or start a cluster
        where = f" at {address}" if address else ""
        raise UsageError(f"cannot connect to Ray{where}: {str(exc).strip().splitlines()[0]}") from None


def _run_local(
    config: RunConfig,
    run_dir: Path,
    run_id: Optional[str],
    uri: Optional[str],
    resume_from: Optional[str],
    stop: StopFlag,
    console: LiveBar,
) -> RunOutcome:
    from curriculum.adapters.mlflow_model import final_model_logger
    from curriculum.adapters.mlflow_tracker import run_tracker
    from curriculum.adapters.run_storage import fetch
    from curriculum.trainer.context import local_context
    from curriculum.trainer.loop import run_curriculum

    if resume_from is not None:  # a checkpoint in storage (s3://...) is downloaded into the run directory
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        resume_from = fetch(resume_from, run_dir / "checkpoints")
    ctx = local_context(
        config.train.device,
        resume_from,
        stop_requested=lambda: stop.set,
        say=console.say,
        show_progress=console.show,
        log_model=final_model_logger(uri, run_id),
    )
    tracker = run_tracker(run_dir, uri, run_id, config.tracking.system_metrics_every_s)
    try:
        outcome = run_curriculum(config, ctx, tracker, run_dir, run_id)
    except BaseException:
        try:
            tracker.finish("FAILED")
        except Exception:  # noqa: BLE001 - e.g. a full disk: the error that stopped the run matters more
            pass
        raise
    tracker.finish(outcome.status)
    return outcome


if __name__ == "__main__":
    run_cli(main, PROG)
