"""Ray Train adapter: runs ``run_curriculum`` in ``TorchTrainer`` workers (Train V2 API).

``connect`` joins (or starts) Ray and settles where checkpoints go before the run exists: a local
path only while every node shares one host, shared storage (s3://...) otherwise
(``curriculum.adapters.storage``). ``build_trainer`` makes the ``TorchTrainer`` of a ``TrainJob`` (the
typed arguments of every worker) with one worker per ``scaling.num_workers`` (DDP over gloo on CPU,
NCCL on GPU), restarting the worker group from the last reported checkpoint on failure
(``FailureConfig``); the CLI (``run_with_ray``) and the tuner's trials both launch through it.
``run_with_ray`` also shows rank 0's console lines and progress snapshots (the live bar), which
travel through a Ray queue so Ray's own worker logs can stay out of the terminal.

Stopping: ``trainer.fit()`` runs in a thread of its own, so Ray Train does not install its SIGINT
handler (which aborts the workers mid-step, without a checkpoint); the driver's handler stays in
charge and a stop request reaches the workers through a small flag actor that they poll without
blocking. They finish the step, write a checkpoint and report the outcome ``killed``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from curriculum.adapters.checkpoint import KEEP, CheckpointError
from curriculum.adapters.ray_stop import Flag, StopPoller
from curriculum.adapters.storage import StorageError, check_storage, storage_scheme, workers_fit
from curriculum.core.config import RunConfig
from curriculum.core.outcome import RunOutcome
from curriculum.core.progress import Progress
from curriculum.core.run_location import is_uri
from curriculum.trainer.context import WorkerContext
from curriculum.trainer.host_memory import ray_runtime_env
from curriculum.trainer.loop import run_curriculum
from curriculum.trainer.reporting import final_report

if TYPE_CHECKING:
    from ray.train.torch import TorchTrainer


@dataclass(frozen=True)
class TrainJob:
    """What every Ray Train worker is given: the run and where it logs, resumes and reports."""

    config: RunConfig
    run_dir: Path
    run_id: Optional[str] = None  # the MLflow run rank 0 logs to (None: the run's file log only)
    tracking_uri: Optional[str] = None
    # A checkpoint to start from, a path or a URI (a restart takes the newer of it and Ray's). On a cluster it
    # lies in the run's storage location, which every node reads; a plain path must be one every node sees.
    resume_from: Optional[str] = None
    console: Optional[Any] = None  # a ray.util.queue.Queue for rank 0's console lines
    stop_flag: Optional[Any] = None  # a handle of the driver's ``ray_stop.Flag`` actor

    def __post_init__(self) -> None:
        # Ray Train's controller and workers run in other directories.
        object.__setattr__(self, "run_dir", Path(self.run_dir).absolute())
        if self.resume_from is not None:
            where = str(self.resume_from)
            object.__setattr__(self, "resume_from", where if is_uri(where) else str(Path(where).absolute()))

    def to_loop_config(self) -> dict[str, Any]:
        """The ``train_loop_config`` mapping Ray Train hands each worker (the config travels as JSON)."""
        return {
            "config": self.config.model_dump_json(),
            "run_dir": str(self.run_dir),
            "run_id": self.run_id,
            "tracking_uri": self.tracking_uri,
            "resume_from": self.resume_from,
            "console": self.console,
            "stop": self.stop_flag,
        }

    @classmethod
    def from_loop_config(cls, data: dict[str, Any]) -> TrainJob:
        """The job ``to_loop_config`` wrote."""
        return cls(
            config=RunConfig.model_validate_json(data["config"]),
            run_dir=Path(data["run_dir"]),
            run_id=data["run_id"],
            tracking_uri=data["tracking_uri"],
            resume_from=data["resume_from"],
            console=data["console"],
            stop_flag=data["stop"],
        )


def _worker(loop_config: dict) -> None:
    """Entry point of every Ray Train worker (``loop_config``: ``TrainJob.to_loop_config``)."""
    import ray
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist

    from curriculum.adapters.checkpoint import latest_checkpoint
    from curriculum.adapters.run_storage import fetch
    from curriculum.adapters.tracking import NullTracker
    from curriculum.core.run_location import newest_checkpoint

    job = TrainJob.from_loop_config(loop_config)
    config, run_dir, queue = job.config, job.run_dir, job.console
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    # Which Ray node runs this rank: shows where a multi-node run placed its workers.
    node_file = run_dir / "decisions" / f"rank-{rank}.node"
    node_file.parent.mkdir(parents=True, exist_ok=True)
    node_file.write_text(ray.get_runtime_context().get_node_id() + "\n")

    stop_requested = StopPoller(job.stop_flag)
    restore = job.resume_from
    restart = ray.train.get_checkpoint()
    staging = None
    if restart is not None:  # a restart: Ray hands back the last checkpoint it registered
        staging = Path(tempfile.mkdtemp(prefix="restore-"))
        restart.to_directory(str(staging))
        handed = latest_checkpoint(staging)
        if handed is None:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError("the checkpoint Ray Train handed back for the restart holds no checkpoint file")
        # Ray registers reports a little after they are made, so on a driver's --resume (same storage)
        # it may hand back an older checkpoint than the newest the run wrote: take the newer one.
        restore = newest_checkpoint([job.resume_from, str(handed)])
    if restore is not None and is_uri(restore):  # in the run's storage location (s3://...): download it
        staging = staging or Path(tempfile.mkdtemp(prefix="restore-"))
        restore = str(fetch(restore, staging))

    def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
        if world > 1:
            tensor = tensor.to(device)
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    last_report: dict = {}

    def report(metrics: dict, checkpoint_file: Optional[Path]) -> None:
        last_report.clear()
        last_report.update(metrics)
        if checkpoint_file is None:
            ray.train.report(metrics)
            return
        # A dot name ending in .tmp: if the worker dies here, the next checkpoint save removes it.
        with tempfile.TemporaryDirectory(prefix=".report-", suffix=".tmp", dir=checkpoint_file.parent) as tmp:
            os.link(checkpoint_file, Path(tmp) / checkpoint_file.name)  # same filesystem: no copy
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def say(line: str) -> None:
        print(line, flush=True)
        if queue is not None:
            queue.put(line)

    def show_progress(progress: Progress) -> None:
        if queue is not None:  # to the driver, which draws the bar (a worker has no terminal)
            queue.put(progress)

    if rank == 0:
        # Recorded so a supervisor (the tuner) can release it if Ray leaves it behind (ray#54305).
        group = ray.util.get_current_placement_group()
        if group is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "placement_group.txt").write_text(group.id.hex())
    tracker, log_model = NullTracker(), None
    if rank == 0:
        from curriculum.adapters.mlflow_model import final_model_logger
        from curriculum.adapters.mlflow_tracker import run_tracker

        tracker = run_tracker(run_dir, job.tracking_uri, job.run_id, config.tracking.system_metrics_every_s)
        log_model = final_model_logger(job.tracking_uri, job.run_id)
    ctx = WorkerContext(
        rank=rank,
        world_size=world,
        device=device,
        all_reduce_sum=all_reduce_sum,
        wrap_model=ray.train.torch.prepare_model,
        report=report,
        restore_from=Path(restore) if restore is not None else None,
        stop_requested=stop_requested,
        say=say,
        show_progress=show_progress,
        log_model=log_model,
    )
    try:
        outcome = run_curriculum(config, ctx, tracker, run_dir, job.run_id)
        # Delivers metrics queued during a tracking-server outage and closes the file log.
        tracker.finish(outcome.status)
    except CheckpointError as exc:
        if queue is None:  # no driver to tell (a tuner trial, which is never restarted)
            raise
        # A full disk (or a file-size limit) stays full after a restart: end the run now, with the one
        # line the local backend prints, rather than let Ray restart the workers into the same error.
        tracker.finish("FAILED")
        queue.put(WorkerFailure(str(exc)))
        report({"score": 0.0, **last_report, "final": True}, None)
        return
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    # A last report carries the outcome back to the driver (every rank must report). The driver
    # reads the metrics of the newest checkpoint, so rank 0 attaches its last checkpoint again.
    last = latest_checkpoint(run_dir / "checkpoints") if rank == 0 else None
    report(final_report(dict(last_report), outcome), last)


@dataclass(frozen=True)
class WorkerFailure:
    """Rank 0's word to the driver that the run failed in a way no restart mends (a checkpoint that
    cannot be written); the driver raises it as a ``CheckpointError`` once Ray Train has ended."""

    message: str


def _worker_resources(config: RunConfig) -> dict[str, float]:
    scaling = config.scaling
    resources = {"CPU": scaling.cpus_per_worker}
    if scaling.use_gpu:
        resources["GPU"] = scaling.gpus_per_worker
    return resources


def connect(config: RunConfig, run_dir: Path, address: Optional[str]) -> str:
    """Join the Ray cluster at ``address`` (None: RAY_ADDRESS, the running local one, or a new one).

    Returns the ``storage_path`` for Ray Train; raises ``curriculum.adapters.storage.StorageError`` when the
    run's workers can land on several hosts but ``scaling.storage`` is a local path or unset.
    """
    import ray

    if not ray.is_initialized():
        from contextlib import nullcontext

        from curriculum.adapters.process_group import children_in_their_own_group

        # No address: a new local instance (ray.init would otherwise join a cluster started on this machine),
        # whose processes must outlive a SIGTERM sent to the driver's whole process group.
        with children_in_their_own_group() if address in (None, "local") else nullcontext():
            ray.init(
                address=address or "local",
                logging_level="WARNING",
                log_to_driver=False,
                configure_logging=True,
                include_dashboard=False,
                runtime_env=ray_runtime_env(config.train.keep_freed_memory),
            )
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    num_workers = config.scaling.num_workers
    # Alive nodes that cannot hold every worker mean the autoscaler has to start more (other hosts).
    fits = workers_fit([node.get("Resources", {}) for node in nodes], _worker_resources(config), num_workers)
    if not fits and address is None:  # a local instance never grows: say what is missing
        have = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        raise StorageError(
            f"scaling: {num_workers} worker(s) x {_worker_resources(config)} do not fit on this machine "
            f"({have}); lower scaling.num_workers or scaling.cpus_per_worker, or set scaling.use_gpu=false"
        )
    storage = check_storage(
        config.scaling.storage,
        [node["NodeManagerAddress"] for node in nodes],
        num_workers,
        local_default=str((run_dir / "ray").absolute()),
        may_add_nodes=not fits,
    )
    # Ray Train wants an absolute local path: its controller and workers run in other directories.
    return storage if storage_scheme(storage) else str(Path(storage).expanduser().absolute())


def build_trainer(
    job: TrainJob, *, name: str, storage_path: str, max_failures: int, callbacks: Sequence[Any] = ()
) -> TorchTrainer:
    """The ``TorchTrainer`` that runs ``job``: ``scaling.num_workers`` workers of ``scaling``'s resources,
    ``max_failures`` worker-group restarts from the last reported checkpoint, Ray Train ``callbacks``."""
    from ray.train import CheckpointConfig, FailureConfig, ScalingConfig
    from ray.train import RunConfig as RayRunConfig
    from ray.train.torch import TorchTrainer

    scaling = job.config.scaling
    return TorchTrainer(
        _worker,
        train_loop_config=job.to_loop_config(),
        scaling_config=ScalingConfig(
            num_workers=scaling.num_workers, use_gpu=scaling.use_gpu, resources_per_worker=_worker_resources(job.config)
        ),
        # Ray keeps every reported checkpoint unless told otherwise: a long run would fill the disk.
        run_config=RayRunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=list(callbacks),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=KEEP),
        ),
    )


def run_with_ray(
    config: RunConfig,
    run_dir: Path,
    run_id: Optional[str],
    tracking_uri: Optional[str],
    storage: str,
    resume_from: Optional[str],
    say: Callable[[str], None] = print,
    stop_requested: Callable[[], bool] = lambda: False,
    show_progress: Callable[[Progress], None] = lambda progress: None,
    idle: Callable[[], None] = lambda: None,
) -> RunOutcome:
    """Fit the curriculum with Ray Train on the cluster ``connect`` joined; returns rank 0's outcome.

    Rank 0's console lines go to ``say`` and its progress snapshots to ``show_progress``; ``idle`` is
    called whenever half a second passes without either.
    ``stop_requested`` (polled twice a second) asks the workers to stop after their current step.
    """
    import ray
    from ray.util.queue import Queue

    console = Queue()
    stop_flag = ray.remote(num_cpus=0)(Flag).remote()
    job = TrainJob(
        config=config,
        run_dir=run_dir,
        run_id=run_id,
        tracking_uri=tracking_uri,
        resume_from=resume_from,
        console=console,
        stop_flag=stop_flag,
    )
    trainer = build_trainer(job, name=run_dir.name, storage_path=storage, max_failures=config.scaling.max_failures)
    done = threading.Event()

    failures: list[WorkerFailure] = []

    def pump() -> None:
        forwarded = False
        while not done.is_set():
            if not forwarded and stop_requested():
                stop_flag.set.remote()
                forwarded = True
            try:
                item = console.get(timeout=0.5)
            except Exception:  # queue.Empty or the queue actor going away at shutdown
                idle()
                continue
            if isinstance(item, WorkerFailure):
                failures.append(item)
            else:
                show_progress(item) if isinstance(item, Progress) else say(item)

    fitted: dict = {}

    def fit() -> None:
        try:
            fitted["result"] = trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread below
            fitted["error"] = exc

    printer = threading.Thread(target=pump, daemon=True)
    printer.start()
    # Daemon: a second Ctrl-C ends the driver at once, without waiting for Ray.
    fitter = threading.Thread(target=fit, name="ray-train-fit", daemon=True)
    fitter.start()
    try:
        while fitter.is_alive():
            fitter.join(timeout=0.5)  # the main thread stays free to run signal handlers
    finally:
        while True:  # drain the lines left (a stale bar frame is not worth showing)
            try:
                item = console.get(timeout=0.2)
            except Exception:
                break
            if isinstance(item, WorkerFailure):
                failures.append(item)
            elif not isinstance(item, Progress):
                say(item)
        done.set()
        printer.join(timeout=2)
    if failures:
        raise CheckpointError(failures[0].message)
    if "error" in fitted:
        raise fitted["error"]
    result = fitted["result"]
    if result.error is not None:
        raise _first_worker_error(result.error)
    return final_outcome(result.metrics)


def final_outcome(metrics: Optional[dict[str, Any]]) -> RunOutcome:
    """The outcome in the workers' last report (``Result.metrics`` of a fit that did not fail); a
    RuntimeError when those metrics are not that report."""
    final = metrics or {}
    if not final.get("final"):
        seen = f"the last report seen was of step {final['step']}" if "step" in final else "no report was seen"
        raise RuntimeError(f"Ray Train ended without the workers' final report of the outcome ({seen})")
    return RunOutcome.from_json(final)


def _first_worker_error(error: BaseException) -> BaseException:
    """The exception of the lowest failed rank, unwrapped from Ray's wrappers, so the driver's one-line
    message names the real problem (a full disk, non-finite losses), not "Training failed"."""
    failures = getattr(error, "worker_failures", None) or {}
    if not failures:
        return error
    cause = failures[min(failures)]
    return getattr(cause, "cause", None) or cause
