"""The whole run as validated pydantic models: model, train, curriculum, scaling, tracking.

Defaults live in one place, ``curriculum.core.presets``; these models only say what a valid run is.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from curriculum.core.uris import has_credentials
from hrm.config import ModelConfig
from oracle.spec import MAX_SIZE, MIN_SIZE, TaskSpec
from oracle.vocab import NUM_VEHICLES, VOCAB_SIZE
from routing.metric_names import METRIC_NAMES
from routing.penalties import PenaltyWeights

GateMetric = Literal["connectivity", "valid_route", "optimal", "exact", "path_f1", "valid"]
_STRICT = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TrainConfig(BaseModel):
    """Optimisation and evaluation cadence."""

    model_config = _STRICT

    batch_size: int = Field(ge=1, le=65536, description="Samples per optimizer step on each worker.")
    lr: float = Field(gt=0, le=1.0, description="Peak learning rate of AdamATan2.")
    lr_min_ratio: float = Field(
        1.0, ge=0.0, le=1.0, description="Final lr / peak lr of a cosine decay over max_steps (1 = constant, HRM)."
    )
    warmup_steps: int = Field(ge=0, description="Linear learning-rate warm-up steps.")
    weight_decay: float = Field(ge=0, description="Decoupled weight decay.")
    grad_clip: Optional[float] = Field(1.0, gt=0, description="Clip the gradient norm to this (None = off).")
    max_steps: int = Field(ge=1, description="Optimizer steps for the whole run, all stages together.")
    max_minutes: Optional[float] = Field(
        None,
        gt=0,
        description="Wall-clock budget of training (resumes included), checked after every step; "
        "the run then evaluates, checkpoints and ends as 'budget' (None = no limit).",
    )
    eval_every: int = Field(ge=1, description="Steps between evaluations (and checkpoints).")
    eval_size: int = Field(
        ge=16,
        le=100_000,
        description="Held-out tasks per stage, fixed for the run; at least 16, so that no handful of tasks "
        "decides a promotion.",
    )
    eval_batch_size: int = Field(256, ge=1, description="Held-out tasks per forward pass during evaluation.")
    eval_earlier_every: int = Field(
        0,
        ge=0,
        description="Every this many evaluations (0 = never) also measure every earlier stage's held-out set: "
        "forgetting shows in the heldout-<N>x<N>/ metrics, and shortfall replay reads them.",
    )
    eval_segments: Optional[int] = Field(
        None,
        ge=1,
        le=64,
        description="ACT segments every held-out task runs in evaluation (None = model.halt_max_steps); more "
        "than training used lets the model think longer.",
    )
    seed: int = Field(0, ge=0, lt=2**63, description="Seeds the model, the task streams and the held-out sets.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available.")
    torch_threads: Optional[int] = Field(
        None, ge=1, description="CPU threads per worker for torch (None = scaling.cpus_per_worker)."
    )
    max_skipped_steps: int = Field(
        20, ge=1, description="Consecutive non-finite losses after which the run stops with an error."
    )
    keep_freed_memory: bool = Field(
        True,
        description="glibc: serve large tensors from the heap and keep freed memory for the next step instead "
        "of mapping it anew (a fifth of a 40x40 CPU step's time went to the kernel's page faults); costs a higher "
        "resident peak. False = glibc's defaults.",
    )


class GateConfig(BaseModel):
    """When a stage is passed: ``metric >= threshold`` and each guard holds, ``patience`` evaluations in a row."""

    model_config = _STRICT

    metric: GateMetric = Field("valid_route", description="Held-out metric that must pass the threshold.")
    threshold: float = Field(gt=0.0, le=1.0, description="Pass mark for the metric, in (0, 1].")
    guard_max_excess: Optional[float] = Field(
        1.5,
        ge=1.0,
        description="Also require held-out excess <= this (None = no guard): marking "
        "everything as path can never promote.",
    )
    guard_max_cost_ratio: Optional[float] = Field(
        None,
        ge=1.0,
        description="Also require held-out cost_ratio <= this (None = no guard): the connected routes must be "
        "near the cheapest, not only connected.",
    )
    patience: int = Field(1, ge=1, description="Consecutive passing evaluations needed.")


class TaskKnobs(BaseModel):
    """The stage's task distribution (``oracle.TaskSpec`` without the size)."""

    model_config = _STRICT

    min_distance: Optional[int] = Field(
        None, ge=1, description="Smallest start-end Manhattan distance (None = N // 2)."
    )
    max_distance: Optional[int] = Field(None, ge=1, description="Largest start-end Manhattan distance (None = 2(N-1)).")
    traffic_scale: float = Field(1.0, ge=0.0, le=2.5, description="Multiplier on jam and closure probabilities.")
    vehicle_mix: tuple[float, float, float, float] = Field(
        (1.0, 1.0, 1.0, 1.0), description="Relative weights of bike, car, van, truck."
    )
    obstacle_density: float = Field(0.08, ge=0.0, le=0.5, description="Share of the area covered by parks.")


class StageConfig(BaseModel):
    """One rung of the ladder."""

    model_config = _STRICT

    size: int = Field(ge=MIN_SIZE, le=MAX_SIZE, description="Grid side N of this stage's tasks.")
    task: TaskKnobs = Field(default_factory=TaskKnobs, description="Task distribution knobs.")
    gate: GateConfig = Field(description="Promotion gate.")
    min_steps: int = Field(0, ge=0, description="Steps to spend in the stage before it may promote.")
    max_steps: int = Field(ge=1, description="Steps after which a stage that has not passed stalls the run.")
    penalties: PenaltyWeights = Field(default_factory=PenaltyWeights, description="Loss penalty weights.")
    replay: float = Field(
        0.0, ge=0.0, lt=1.0, description="Share of each batch drawn from earlier stages (embedded in this grid)."
    )
    batch_size: Optional[int] = Field(
        None,
        ge=1,
        le=65536,
        description="Samples per optimizer step on each worker in this stage (None = train.batch_size): a "
        "smaller batch buys more steps per minute on large grids, where a step costs most.",
    )
    eval_every: Optional[int] = Field(
        None,
        ge=1,
        description="Steps between evaluations (and checkpoints) while this stage trains (None = "
        "train.eval_every): rarer evaluations where one costs most, as on the largest grid.",
    )

    @model_validator(mode="after")
    def _check(self) -> StageConfig:
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps {self.min_steps} exceeds max_steps {self.max_steps}")
        self.task_spec()  # distance range must fit the grid
        return self

    def task_spec(self) -> TaskSpec:
        return TaskSpec(size=self.size, **self.task.model_dump())

    def samples_per_step(self, run_batch_size: int) -> int:
        """This stage's batch size: its own where set, else the run's ``train.batch_size``."""
        return run_batch_size if self.batch_size is None else self.batch_size

    def eval_interval(self, run_eval_every: int) -> int:
        """Steps between this stage's evaluations: its own where set, else the run's ``train.eval_every``."""
        return run_eval_every if self.eval_every is None else self.eval_every

    def replay_count(self, run_batch_size: int) -> int:
        """Samples of each of this stage's batches replayed from earlier stages."""
        return int(round(self.samples_per_step(run_batch_size) * self.replay))


class BackoffConfig(BaseModel):
    """Return to the previous stage when the gate metric collapses."""

    model_config = _STRICT

    enabled: bool = Field(False, description="Allow stepping back a stage.")
    collapse_below: float = Field(0.1, ge=0.0, lt=1.0, description="Gate metric below this counts as a collapse.")
    patience: int = Field(3, ge=1, description="Consecutive collapsed evaluations before stepping back.")
    min_steps: int = Field(0, ge=0, description="Steps in a stage before a back-off is considered.")


class ReplayConfig(BaseModel):
    """How earlier stages come back once the curriculum has moved on (``curriculum.core.replay``)."""

    model_config = _STRICT

    weighting: Literal["uniform", "shortfall"] = Field(
        "uniform",
        description="uniform: every earlier stage alike. shortfall: weighted by how far each earlier stage's "
        "latest held-out gate metric lies below its threshold (plus floor), so forgotten stages come back most.",
    )
    floor: float = Field(0.1, gt=0.0, le=10.0, description="Weight every earlier stage keeps under shortfall.")
    native_every: int = Field(
        0,
        ge=0,
        description="Every this many steps (0 = never), a step in a stage after the first trains on a whole batch "
        "of an earlier stage's tasks at their own grid size, with that stage's penalties.",
    )


class CurriculumConfig(BaseModel):
    """The ladder of stages, smallest grid first."""

    model_config = _STRICT

    stages: list[StageConfig] = Field(min_length=1, description="Stages in order; grid sizes must not shrink.")
    backoff: BackoffConfig = Field(default_factory=BackoffConfig, description="Optional back-off.")
    replay: ReplayConfig = Field(
        default_factory=ReplayConfig, description="Which earlier stages replayed tasks come from, and at what size."
    )

    @model_validator(mode="after")
    def _ladder(self) -> CurriculumConfig:
        for i in range(1, len(self.stages)):
            if self.stages[i].size < self.stages[i - 1].size:
                raise ValueError(
                    f"stages.{i}.size {self.stages[i].size} is smaller than stages.{i - 1}.size "
                    f"{self.stages[i - 1].size}: stage sizes must not shrink"
                )
        return self


class ScalingConfig(BaseModel):
    """Workers for Ray Train (``--backend local`` runs one in-process worker)."""

    model_config = _STRICT

    num_workers: int = Field(1, ge=1, le=1024, description="Training workers (DDP ranks).")
    use_gpu: bool = Field(False, description="One GPU per worker.")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per worker.")
    gpus_per_worker: float = Field(1.0, ge=0, description="GPUs per worker when use_gpu.")
    max_failures: int = Field(
        2, ge=0, description="Worker-group restarts from the last checkpoint (Ray FailureConfig)."
    )
    storage: Optional[str] = Field(
        None, description="Shared storage for Ray checkpoints (a local path on one machine, s3://... on a cluster)."
    )


class TrackingConfig(BaseModel):
    """Where the run is logged."""

    model_config = _STRICT

    mlflow_uri: Optional[str] = Field(
        None, description="MLflow tracking URI (None = $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)."
    )
    experiment: str = Field("hrm-curriculum", min_length=1, description="MLflow experiment name.")

    @field_validator("mlflow_uri")
    @classmethod
    def _no_credentials(cls, value: Optional[str]) -> Optional[str]:
        # The config is stored (config.json, checkpoints, MLflow params): a password must not be in it.
        if value and has_credentials(value):
            raise ValueError(
                "holds a user name or password, which the config would store; give them in "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or in MLFLOW_TRACKING_URI)"
            )
        return value

    run_name: Optional[str] = Field(
        None, description="MLflow run name (None = the preset and the overrides given, e.g. 'tiny lr=5e-4')."
    )
    images_per_eval: int = Field(4, ge=0, le=16, description="Held-out tasks drawn in each evaluation's PNG.")
    metrics_every_s: float = Field(
        30.0,
        gt=0,
        description="Seconds between training-metric points (train/*, perf/steps_per_s, curriculum/stage), "
        "independent of train.eval_every; the first step always logs one.",
    )
    system_metrics_every_s: float = Field(
        10.0,
        ge=0,
        description="Seconds between MLflow system metrics (system/*: CPU, memory, disk, network, and GPU "
        "where nvidia-ml-py is installed) of the training process's node; 0 = none.",
    )
    log_model: bool = Field(
        True,
        description="At the end of the run, log the final weights (the EMA's where model.ema_decay is set, as "
        "evaluation uses) as the run's MLflow model 'router': a pyfunc from code, loadable with "
        "mlflow.pyfunc.load_model and servable with mlflow models serve. Skipped where MLflow is not installed.",
    )


class RunConfig(BaseModel):
    """A complete curriculum run."""

    model_config = _STRICT

    preset: str = Field("custom", description="The preset this config started from.")
    model: ModelConfig
    train: TrainConfig
    curriculum: CurriculumConfig
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="before")
    @classmethod
    def _former_fields(cls, data: Any) -> Any:
        # Configs saved before fault injection left the config hold an empty ``faults`` section; such
        # runs still resume and their checkpoints still evaluate. Any other ``faults`` is refused.
        if isinstance(data, dict) and data.get("faults") == {"nonfinite_loss_steps": []}:
            data = {k: v for k, v in data.items() if k != "faults"}
        return data

    @model_validator(mode="after")
    def _fits(self) -> RunConfig:
        # The model must read every token and vehicle of the routing task (oracle.vocab).
        if self.model.vocab_size < VOCAB_SIZE:
            raise ValueError(f"model.vocab_size {self.model.vocab_size} is below the task's {VOCAB_SIZE} tokens")
        if self.model.num_vehicles < NUM_VEHICLES:
            raise ValueError(f"model.num_vehicles {self.model.num_vehicles} is below the task's {NUM_VEHICLES}")
        for i, stage in enumerate(self.curriculum.stages):
            if stage.penalties.needs_route_head and not self.model.route_head:
                raise ValueError(
                    f"curriculum.stages.{i}.penalties: optimal_set and cost_to_go train the route head; "
                    "set model.route_head=true or set them to 0"
                )
        largest = max(stage.size for stage in self.curriculum.stages)
        if largest > self.model.max_grid:
            raise ValueError(f"curriculum reaches {largest}x{largest} but model.max_grid is {self.model.max_grid}")
        if self.train.eval_size < self.scaling.num_workers:
            raise ValueError(f"train.eval_size {self.train.eval_size} is smaller than scaling.num_workers")
        for i, stage in enumerate(self.curriculum.stages[1:], start=1):
            batch = stage.samples_per_step(self.train.batch_size)
            if stage.replay_count(self.train.batch_size) >= batch:
                where = "train.batch_size" if stage.batch_size is None else f"curriculum.stages.{i}.batch_size"
                raise ValueError(
                    f"curriculum.stages.{i}.replay {stage.replay} leaves no task of the stage itself "
                    f"in a batch of {where} {batch}"
                )
        return self


assert set(GateMetric.__args__) <= set(METRIC_NAMES)
