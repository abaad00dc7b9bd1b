"""AdamATan2 in plain PyTorch, and the learning-rate schedule.

AdamATan2 (Everett et al. 2024, "Scaling Exponents Across Parameterizations and Optimizers") replaces
Adam's m_hat / (sqrt(v_hat) + eps) by a * atan2(m_hat, b * sqrt(v_hat)): no epsilon to tune, the
update is invariant to the scale of the gradient, and every coordinate moves by at most
lr * a * pi/2. HRM trains with it (betas 0.9/0.95, lr 1e-4, decoupled weight decay 1.0).

Per parameter, at step t (1-based), with g the gradient:
    w <- w * (1 - lr * wd)                         decoupled weight decay
    m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2
    m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)
    w <- w - lr * a * atan2(m_hat, b * sqrt(v_hat))

Note: the CUDA ``adam-atan2`` package applies the first-moment bias correction outside the atan2
(lr / (1 - b1^t) * atan2(m, sqrt(v_hat))); the two agree once 1 - b1^t ~ 1 (a few dozen steps).
We keep the paper's form because it makes the pi/2 bound hold from the first step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer


class AdamATan2(Optimizer):
    """Adam with an atan2 update and decoupled weight decay. ``a``/``b`` scale the update and the denominator."""

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 1.0,
        a: float = 1.0,
        b: float = 1.0,
    ) -> None:
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas {betas}")
        if weight_decay < 0:
            raise ValueError(f"invalid weight_decay {weight_decay}")
        if a <= 0 or b <= 0:
            raise ValueError(f"a and b must be positive, got a={a}, b={b}")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay, a=a, b=b))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, a, b = group["lr"], group["weight_decay"], group["a"], group["b"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamATan2 does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    # Moments in float32 even for low-precision parameters.
                    state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                g = p.grad.float()

                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                m_hat = m / (1 - beta1**t)
                v_hat = v / (1 - beta2**t)
                update = torch.atan2(m_hat, b * v_hat.sqrt())  # atan2(0, 0) = 0: untouched coordinates stay

                w = p.float()
                w.mul_(1 - lr * wd).add_(update, alpha=-lr * a)
                p.copy_(w)
        return loss


def lr_at(
    step: int,
    base_lr: float,
    warmup_steps: int,
    total_steps: int | None = None,
    min_ratio: float = 1.0,
) -> float:
    """Learning rate for optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_steps`` (the first step already gets base_lr / warmup_steps, never 0),
    then constant (HRM: ``min_ratio=1``). With ``total_steps`` and ``min_ratio < 1`` the rate instead
    follows a cosine from base_lr down to ``min_ratio * base_lr`` at ``total_steps`` and stays there.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"min_ratio must be in [0, 1], got {min_ratio}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if total_steps is None or min_ratio >= 1.0 or total_steps <= warmup_steps:
        return base_lr
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return base_lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
