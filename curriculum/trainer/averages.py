"""Running means of the training terms and metrics: since the last cadenced log, and since the last evaluation.

Two windows because the wall-clock cadence of ``train/*`` points and the evaluations run independently:
from 20x20 on a cadenced point often falls on the step just before an evaluation, so a single window
would leave that evaluation the means of one step, or of none (when that step replayed an earlier
stage, which is never averaged).
"""

from __future__ import annotations

import math

import torch

from routing.metrics import means_from_sums, metric_sums


class _Window:
    """Sums stay tensors on the model's device until ``means``, so a training step costs no extra sync."""

    def __init__(self) -> None:
        self.logs: dict[str, torch.Tensor] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, logs: dict[str, torch.Tensor], sums: dict[str, torch.Tensor]) -> None:
        for name, value in logs.items():
            self.logs[name] = self.logs.get(name, 0) + value
        for name, value in sums.items():
            self.sums[name] = self.sums.get(name, 0) + value
        self.count += 1

    def means(self) -> dict[str, float]:
        """``train/<name>`` means (the total loss as ``train/loss``); empty when no step was added."""
        if not self.count:
            return {}
        means = {f"train/{k}": float(v) / self.count for k, v in self.logs.items()}
        means["train/loss"] = means.pop("train/total")
        means.update({f"train/{k}": v for k, v in means_from_sums(self.sums).items() if math.isfinite(v)})
        return means


class TrainAverages:
    """Skipped steps are never added: their terms are not finite."""

    def __init__(self) -> None:
        self._since_log, self._since_eval = _Window(), _Window()

    def add(self, logs: dict[str, torch.Tensor], metrics: dict[str, torch.Tensor]) -> None:
        logs = {name: value.detach() for name, value in logs.items()}
        sums = metric_sums(metrics)
        self._since_log.add(logs, sums)
        self._since_eval.add(logs, sums)

    def pop(self) -> dict[str, float]:
        """Means since the last ``pop`` or ``pop_evaluation`` (a cadenced point); then start that window over."""
        means, self._since_log = self._since_log.means(), _Window()
        return means

    def pop_evaluation(self) -> dict[str, float]:
        """Means since the last evaluation, whatever the cadence took in between; both windows start over."""
        means, self._since_eval, self._since_log = self._since_eval.means(), _Window(), _Window()
        return means
