"""Running means of the training terms and metrics between two evaluations."""

from __future__ import annotations

import math

import torch

from routing.metrics import means_from_sums, metric_sums


class TrainAverages:
    """Sums stay tensors on the model's device until ``pop``, so a training step costs no extra sync.
    Skipped steps are never added: their terms are not finite."""

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
        """``train/<name>`` means since the last pop (the total loss as ``train/loss``); then start over."""
        means: dict[str, float] = {}
        if self.count:
            means = {f"train/{k}": float(v) / self.count for k, v in self.logs.items()}
            means["train/loss"] = means.pop("train/total")
            means.update({f"train/{k}": v for k, v in means_from_sums(self.sums).items() if math.isfinite(v)})
        self.logs, self.sums, self.count = {}, {}, 0
        return means
