"""The model being trained and what travels with it: optimizer, weight average, the model as wrapped
for data parallelism, the learning-rate schedule and the ACT carry between steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import torch
from torch import nn

from curriculum.core.config import RunConfig
from curriculum.trainer.host_memory import keep_freed_memory
from hrm.ema import EMA
from hrm.model import HRM, HRMCarry
from hrm.optimizer import AdamATan2, lr_at


def use_worker_cpus(config: RunConfig) -> None:
    """Thread counts and float modes for this worker's share of the CPUs."""
    threads = config.train.torch_threads or max(1, int(config.scaling.cpus_per_worker))
    torch.set_num_threads(threads)
    # Weight decay drives many weights toward zero; denormal arithmetic on a CPU is many times slower.
    torch.set_flush_denormal(True)
    # Task generation (Numba) shares the worker's CPUs: more threads than CPUs only contend.
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    if config.train.keep_freed_memory:
        keep_freed_memory()


class Learner:
    """Built from the config on one device; ``wrap`` it once any checkpoint is restored."""

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        self.config = config
        torch.manual_seed(config.train.seed)  # the initial weights follow the run seed
        self.model = HRM(config.model).to(device)
        self.optimizer = AdamATan2(self.model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
        self.ema = EMA(self.model, config.model.ema_decay) if config.model.ema_decay else None
        self.trained: nn.Module = self.model  # what steps run through: the model, or its DDP wrapper
        self._carries: dict[int, HRMCarry] = {}  # per stage whose tasks the carry holds

    def state_dicts(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }

    def load_state_dicts(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.ema is not None and saved.get("ema") is not None:
            self.ema.load_state_dict(saved["ema"])

    def wrap(self, wrap_model: Callable[[nn.Module], nn.Module]) -> None:
        """Wrap for data parallelism; after restoring, since wrapping broadcasts rank 0's weights."""
        self.trained = wrap_model(self.model)

    def lr(self, step: int) -> float:
        train = self.config.train
        return lr_at(step, train.lr, train.warmup_steps, total_steps=train.max_steps, min_ratio=train.lr_min_ratio)

    def carry(self, stage: int, batch: dict[str, torch.Tensor]) -> HRMCarry:
        """The ACT carry for a step on ``stage``'s tasks: a fresh one the first time (a new grid size); each
        stage keeps its own, so native-size replay steps never disturb the current stage's samples."""
        if stage not in self._carries:
            self._carries[stage] = self.model.initial_carry(batch)
        return self._carries[stage]

    def keep_carry(self, stage: int, carry: HRMCarry) -> None:
        self._carries[stage] = carry
