"""Exponential moving average of model weights (used by TRM, arXiv 2510.04871, for evaluation).

    shadow <- decay * shadow + (1 - decay) * weight      after every optimizer step

Evaluate with the averaged weights inside ``with ema.average_weights(model): ...``; the live
training weights are restored on exit, even if the body raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """A float32 shadow copy of every trainable parameter of ``model``."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone() for name, p in model.named_parameters() if p.requires_grad
        }

    def _parameters(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The shadowed parameters of ``model``, which may be the model wrapped for data parallelism.

        A wrapper (DistributedDataParallel) prefixes every name with ``module.``; matching names as
        given would silently match none, and the average would never move. So the wrapped module is
        read, and a model whose names do not all match is an error, never a no-op.
        """
        inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        params = {name: p for name, p in inner.named_parameters() if name in self.shadow}
        if len(params) != len(self.shadow):
            missing = sorted(set(self.shadow) - set(params))
            raise KeyError(f"the model lacks {len(missing)} parameters the EMA averages, e.g. {missing[0]!r}")
        return params

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights one step towards the model's current weights."""
        for name, p in self._parameters(model).items():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's parameters with the averaged ones (for a final export)."""
        for name, p in self._parameters(model).items():
            p.copy_(self.shadow[name].to(p.dtype))

    @contextmanager
    def average_weights(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily swap the averaged weights into ``model``; restore the live ones on exit."""
        params = self._parameters(model)
        backup = {name: p.detach().clone() for name, p in params.items()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(backup[name])

    def state_dict(self) -> dict:
        shadow = {k: v.clone() for k, v in self.shadow.items()}
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": shadow}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state does not match the model's parameters: {sorted(missing)}")
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
