"""The curriculum training loop: one plain function of (config, worker context, tracker, run dir).

Per step: this rank's batch from its task stream (current stage, plus replayed earlier stages),
one ACT training step. Every ``eval_every`` steps: the stage's fixed held-out set (sharded across
ranks, metric sums all-reduced so every rank sees the same numbers), the scheduler's decision
(taken identically on every rank, so all switch stage at the same step), logging on rank 0, and
a checkpoint. The same function runs in-process (``--backend local``) and in Ray Train workers.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numba
import numpy as np
import torch

from curriculum.adapters.checkpoint import latest_checkpoint, load_checkpoint, restoring, save_checkpoint
from curriculum.core.config import RunConfig
from curriculum.core.outcome import RunOutcome
from curriculum.adapters.console import StageProgress
from curriculum.trainer.context import WorkerContext
from curriculum.core.scheduler import Action, SchedulerState, count_steps, curriculum_score, decide
from curriculum.core.streams import TaskStream, heldout_tasks, shard
from curriculum.adapters.tracking import Tracker, flatten_config
from routing.batch import task_tensors
from hrm.ema import EMA
from routing.metrics import means_from_sums, metric_sums
from hrm.model import HRM
from hrm.optimizer import AdamATan2, lr_at
from routing.training import evaluate, predict_tokens, train_step
from oracle.dataset import select

EVAL_KEYS = ("path_ratio", "excess", "valid", "connectivity", "valid_route", "cost_ratio", "optimal", "exact",
             "path_f1", "q_halt_accuracy", "act_steps", "count", "connected_count")


class NonFiniteLossError(RuntimeError):
    """Too many consecutive non-finite losses."""


def _reduce_eval(sums: dict[str, torch.Tensor], ctx: WorkerContext, device: torch.device) -> dict[str, float]:
    vector = torch.stack([torch.as_tensor(sums.get(k, 0.0), dtype=torch.float64, device=device).reshape(())
                          for k in EVAL_KEYS])
    vector = ctx.all_reduce_sum(vector)
    return means_from_sums({k: vector[i] for i, k in enumerate(EVAL_KEYS)})


def _all_finite(ctx: WorkerContext, device: torch.device):
    if ctx.world_size == 1:
        return None

    def agree(finite: bool) -> bool:
        flag = torch.tensor([0.0 if finite else 1.0], device=device)
        return bool(ctx.all_reduce_sum(flag).item() == 0)

    return agree


def _over_budget(max_minutes: Optional[float], elapsed: float, ctx: WorkerContext) -> bool:
    """Whether the wall-clock budget is spent; ranks' clocks differ, so any rank over it stops them all."""
    if max_minutes is None:
        return False
    return _any_rank(ctx, elapsed >= 60.0 * max_minutes)


def _any_rank(ctx: WorkerContext, flag: bool) -> bool:
    """Whether ``flag`` holds on any rank: ranks must agree on stopping, or the others wait forever."""
    if ctx.world_size == 1:
        return flag
    return bool(ctx.all_reduce_sum(torch.tensor([1.0 if flag else 0.0], device=ctx.device)).item() > 0)


def _heldout_batches(config: RunConfig, stage: int, ctx: WorkerContext) -> list[dict[str, torch.Tensor]]:
    tasks = shard(heldout_tasks(config.curriculum.stages, stage, config.train.seed, config.train.eval_size),
                  ctx.rank, ctx.world_size)
    size = config.train.eval_batch_size
    return [task_tensors(select(tasks, np.arange(i, min(i + size, len(tasks)))), ctx.device)
            for i in range(0, len(tasks), size)]


class _TrainAverages:
    """Running means of the training terms and metrics between two evaluations.

    Sums stay tensors on the model's device until ``pop``, so a training step costs no extra sync.
    """

    def __init__(self) -> None:
        self.logs: dict[str, torch.Tensor] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, logs: dict[str, torch.Tensor], metrics: dict[str, torch.Tensor]) -> None:
        for name, value in logs.items():
            self.logs[name] = self.logs.get(name, 0) + value.detach()
        for name, value in metric_sums(metrics).items():
            self.sums[name] = self.sums.get(name, 0) + value
        self.count += 1

    def pop(self) -> dict[str, float]:
        means: dict[str, float] = {}
        if self.count:
            means = {f"train/{k}": float(v) / self.count for k, v in self.logs.items() if k != "skipped"}
            means["train/loss"] = means.pop("train/total")
            means.update({f"train/{k}": v for k, v in means_from_sums(self.sums).items() if math.isfinite(v)})
        self.logs, self.sums, self.count = {}, {}, 0
        return means


def _describe_transition(t: dict, config: RunConfig) -> str:
    stages = config.curriculum.stages
    a, b = stages[t["from_stage"]].size, stages[t["to_stage"]].size
    verb = {"promote": "promoted", "finish": "finished the curriculum", "back_off": "backed off",
            "stall": "stalled"}[t["action"]]
    where = f"stage {t['from_stage']} ({a}x{a}) -> stage {t['to_stage']} ({b}x{b})" if a != b or \
        t["from_stage"] != t["to_stage"] else f"stage {t['from_stage']} ({a}x{a})"
    return f"step {t['step']}: {verb}, {where}, {t['metric']}={t['value']:.3f}"


def run_curriculum(config: RunConfig, ctx: WorkerContext, tracker: Tracker, run_dir: Path,
                   run_id: Optional[str] = None) -> RunOutcome:
    """Train through the curriculum until it finishes, stalls, runs out of steps or is stopped."""
    train, stages = config.train, config.curriculum.stages
    run_dir = Path(run_dir)
    threads = train.torch_threads or max(1, int(config.scaling.cpus_per_worker))
    torch.set_num_threads(threads)
    # Weight decay drives many weights toward zero; denormal arithmetic on a CPU is many times slower.
    torch.set_flush_denormal(True)
    # Task generation (Numba) shares the worker's CPUs: more threads than CPUs only contend.
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    torch.manual_seed(train.seed)
    model = HRM(config.model).to(ctx.device)
    optimizer = AdamATan2(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    ema = EMA(model, config.model.ema_decay) if config.model.ema_decay else None
    state, step, elapsed, stage_marks = SchedulerState(), 0, 0.0, [(0, 0.0)]

    if ctx.restore_from is not None:
        saved = load_checkpoint(ctx.restore_from, map_location=ctx.device)
        with restoring(ctx.restore_from):  # a checkpoint of another model: an error naming the file
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            if ema is not None and saved.get("ema") is not None:
                ema.load_state_dict(saved["ema"])
            state = SchedulerState.model_validate_json(saved["scheduler"])
            step, elapsed = int(saved["step"]), float(saved["elapsed"])
            stage_marks = [tuple(m) for m in saved["stage_marks"]]
            torch.set_rng_state(saved["rng"]["torch"].cpu())
            if ctx.device.type == "cuda" and saved["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(saved["rng"]["cuda"].cpu(), ctx.device)
        if ctx.is_main:
            ctx.say(f"resumed from {ctx.restore_from} at step {step}, stage {state.stage}")
    elif ctx.is_main:
        tracker.log_params(flatten_config(config.model_dump(mode="json")))

    progress = StageProgress(stages, ctx.say, ctx.interactive and ctx.is_main)
    say = progress.say
    trained = ctx.wrap_model(model)
    stream = TaskStream(stages, train.seed + 1, ctx.rank, train.batch_size)
    averages = _TrainAverages()
    carry, carry_stage, skipped_in_row, skipped_total = None, None, 0, 0
    last_metrics: dict[str, float] = {}
    heldout: dict[int, list] = {}
    all_finite = _all_finite(ctx, ctx.device)
    nonfinite_steps = set(config.faults.nonfinite_loss_steps)  # injected faults; empty unless a test asks
    tick, tick_step = time.perf_counter(), step  # training-only rate (evaluations excluded)
    clock = tick  # wall clock for ``elapsed``: evaluations and checkpoints included
    outcome = None

    def save() -> Optional[Path]:
        """Rank 0 writes the checkpoint (atomically); other ranks return None."""
        if not ctx.is_main:
            return None
        return save_checkpoint(run_dir / "checkpoints", {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "scheduler": state.model_dump_json(), "elapsed": elapsed,
            "stage_marks": [list(m) for m in stage_marks],
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(ctx.device) if ctx.device.type == "cuda" else None},
            "run_id": run_id or "", "config": config.model_dump_json(),
        }, step)

    while state.status == "running":
        if step >= train.max_steps:
            outcome = "budget"
            break
        if _any_rank(ctx, ctx.stop_requested()):  # every rank stops at the same step
            outcome = "killed"
            elapsed, clock = elapsed + time.perf_counter() - clock, time.perf_counter()
            saved = save()
            if saved is not None:
                say(f"stopped at step {step}; checkpoint {saved}")
            break
        stage = state.stage
        batch = task_tensors(stream.batch(stage, step), ctx.device)
        if carry is None or carry_stage != stage:
            carry, carry_stage = model.initial_carry(batch), stage
        lr = lr_at(step, train.lr, train.warmup_steps, total_steps=train.max_steps, min_ratio=train.lr_min_ratio)
        carry, logs, metrics = train_step(trained, carry, batch, optimizer, stages[stage].penalties, lr, ema,
                                          train.grad_clip, all_finite, force_nonfinite=step + 1 in nonfinite_steps)
        step += 1
        state = count_steps(state)
        progress.update(state.stage, state.steps_in_stage)
        if float(logs["skipped"]):
            skipped_in_row += 1
            skipped_total += 1
            if skipped_in_row >= train.max_skipped_steps:
                if ctx.is_main:
                    tracker.log_metrics({"train/skipped_steps": skipped_total}, step)
                last = latest_checkpoint(run_dir / "checkpoints")
                kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
                raise NonFiniteLossError(f"{skipped_in_row} consecutive non-finite losses (train.max_skipped_steps) "
                                         f"at step {step}; {kept}")
        else:
            skipped_in_row = 0
            averages.add(logs, metrics)

        # A spent budget ends the run at once, with an evaluation and a checkpoint: a 40x40 step
        # can take seconds, so waiting for the next scheduled evaluation could overrun it badly.
        spent = _over_budget(train.max_minutes, elapsed + time.perf_counter() - clock, ctx)
        if step % train.eval_every and step < train.max_steps and not spent:
            continue
        # ---- evaluation, decision, logging, checkpoint
        now = time.perf_counter()
        elapsed, clock = elapsed + now - clock, now
        steps_per_s = (step - tick_step) / max(now - tick, 1e-9)
        if stage not in heldout:
            heldout = {stage: _heldout_batches(config, stage, ctx)}
        means = _reduce_eval(evaluate(model, heldout[stage], ema), ctx, ctx.device)
        action, state = decide(state, stages, means, step, config.curriculum.backoff)
        _record_decision(run_dir, ctx.rank, step, stage, state.stage, action)
        if action != Action.STAY:
            stage_marks.append((step, elapsed))
        last_metrics = {f"eval/{k}": v for k, v in means.items()}
        if ctx.is_main:
            _log_evaluation(config, say, tracker, run_dir, step, stage, means, averages.pop(), steps_per_s,
                            skipped_total, heldout[stage], model, ema, state, action)
        else:
            averages.pop()
        score = curriculum_score(state, len(stages), means.get(stages[stage].gate.metric, float("nan")), action)
        ctx.report({"step": step, "stage": state.stage, "status": state.status, "score": score, **last_metrics},
                   save())
        tick, tick_step = time.perf_counter(), step
        elapsed, clock = elapsed + tick - clock, tick
        if state.status == "running" and spent:
            outcome = "budget"
            say(f"step {step}: train.max_minutes={train.max_minutes:g} reached; the checkpoint above ends the run")
            break

    progress.close()
    if outcome is None:
        outcome = "finished" if state.status == "finished" else "stalled" if state.status == "stalled" else "budget"
    elapsed += time.perf_counter() - clock
    stage_marks.append((step, elapsed))
    seconds = [b[1] - a[1] for a, b in zip(stage_marks, stage_marks[1:])]
    steps = [b[0] - a[0] for a, b in zip(stage_marks, stage_marks[1:])]
    result = RunOutcome(outcome=outcome, step=step, stage=state.stage,
                        transitions=[t.model_dump(mode="json") for t in state.transitions],
                        final_metrics=last_metrics, stage_seconds=seconds, stage_steps=steps)
    if ctx.is_main:
        tracker.set_tags({"curriculum.outcome": outcome, "curriculum.final_stage": str(state.stage)})
        (run_dir / "outcome.json").write_text(json.dumps(result.to_json(), indent=2))
        _log_timeline(config, tracker, run_dir, state, step)
    return result


def _record_decision(run_dir: Path, rank: int, step: int, stage: int, next_stage: int, action: Action) -> None:
    """Every rank appends its own decision, so anyone can check that all ranks switched together."""
    path = run_dir / "decisions" / f"rank-{rank}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps({"step": step, "stage": stage, "next_stage": next_stage, "action": action.value}) + "\n")


def _log_evaluation(config: RunConfig, say: Callable[[str], None], tracker: Tracker, run_dir: Path, step: int, stage: int,
                    means: dict[str, float], train_means: dict[str, float], steps_per_s: float, skipped: int,
                    heldout: list, model: HRM, ema: Optional[EMA], state: SchedulerState, action: Action) -> None:
    size = config.curriculum.stages[stage].size
    metrics: dict[str, Any] = {f"eval/{k}": v for k, v in means.items() if math.isfinite(v)}
    metrics.update(train_means)
    metrics.update({"curriculum/stage": stage, "curriculum/grid_size": size, "perf/steps_per_s": steps_per_s,
                    "train/skipped_steps": skipped})
    tracker.log_metrics(metrics, step)
    say(f"step {step:>6} | stage {stage} {size}x{size} | loss {train_means.get('train/loss', float('nan')):.3f}"
            f" | conn {means['connectivity']:.3f} | valid_route {means['valid_route']:.3f}"
            f" | optimal {means['optimal']:.3f} | excess {means['excess']:.2f} | {steps_per_s:.2f} steps/s")
    if action != Action.STAY:
        t = state.transitions[-1].model_dump(mode="json")
        tracker.set_tags({f"curriculum.transition.{len(state.transitions)}": _describe_transition(t, config)})
        say(">>> " + _describe_transition(t, config))
    shown = config.tracking.images_per_eval
    if shown:
        _log_routes(tracker, run_dir, step, stage, heldout[0], model, ema, shown)


def _log_routes(tracker: Tracker, run_dir: Path, step: int, stage: int, batch: dict[str, torch.Tensor], model: HRM,
                ema: Optional[EMA], shown: int) -> None:
    from curriculum.adapters.pictures import render_routes

    part = {k: v[:shown] for k, v in batch.items()}
    pred = predict_tokens(model, part, ema).cpu().numpy()
    arrays = {k: v.cpu().numpy() for k, v in part.items()}
    n = int(round(arrays["inputs"].shape[1] ** 0.5))
    path = render_routes(arrays["inputs"], arrays["labels"], pred, arrays["costs"], arrays["start"], arrays["end"],
                         n, run_dir / "pictures" / f"routes-step{step:07d}.png",
                         title=f"step {step}, stage {stage} ({n}x{n}): held-out routes")
    tracker.log_artifact(path, "routes")


def _log_timeline(config: RunConfig, tracker: Tracker, run_dir: Path, state: SchedulerState, step: int) -> None:
    from curriculum.adapters.pictures import render_timeline

    path = render_timeline([t.model_dump(mode="json") for t in state.transitions],
                           [s.size for s in config.curriculum.stages], step, run_dir / "pictures" / "timeline.png")
    tracker.log_artifact(path, "timeline")
