"""The whole learning stack can learn: a tiny HRM overfits 32 fixed 10×10 tasks on CPU."""

import pytest
import torch

from hrm.config import ModelConfig
from hrm.model import HRM
from hrm.optimizer import AdamATan2, lr_at
from oracle import TaskSpec, generate_tasks
from routing.batch import task_tensors
from routing.metrics import means_from_sums
from routing.penalties import PenaltyWeights
from routing.training import evaluate, train_step

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop

MAX_STEPS = 600


def test_tiny_model_overfits_32_tasks_to_optimal_routes():
    torch.manual_seed(0)
    config = ModelConfig(hidden_size=64, num_heads=4, h_layers=1, l_layers=1, h_cycles=2, l_cycles=2, halt_max_steps=1)
    model = HRM(config)
    tasks = task_tensors(generate_tasks(TaskSpec(size=10), 32, seed=0))
    optimizer = AdamATan2(model.parameters(), lr=3e-3, weight_decay=0.1)
    carry = model.initial_carry(tasks)
    before = means_from_sums(evaluate(model, [tasks]))
    history = []
    for step in range(MAX_STEPS):
        lr = lr_at(step, 3e-3, warmup_steps=20, total_steps=500, min_ratio=0.02)
        carry, logs, _ = train_step(model, carry, tasks, optimizer, PenaltyWeights(), lr)
        assert torch.isfinite(logs["total"])
        if step % 25 == 24:
            history.append(means_from_sums(evaluate(model, [tasks])))
            if history[-1]["optimal"] >= 0.9:
                break
    assert before["optimal"] == 0 and before["connectivity"] < 0.2
    assert history[-1]["optimal"] >= 0.9, [round(h["optimal"], 2) for h in history]
    assert history[-1]["valid_route"] >= 0.9


def test_non_finite_loss_skips_the_update():
    torch.manual_seed(0)
    model = HRM(
        ModelConfig(hidden_size=32, num_heads=2, h_layers=1, l_layers=1, h_cycles=1, l_cycles=1, halt_max_steps=1)
    )
    tasks = task_tensors(generate_tasks(TaskSpec(size=8), 4, seed=0))
    optimizer = AdamATan2(model.parameters(), lr=1e-3)
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float("nan")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, logs, _ = train_step(model, model.initial_carry(tasks), tasks, optimizer, PenaltyWeights(), 1e-3)
    assert logs["skipped"] == 1
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]) or torch.isnan(value).any(), name
    assert not optimizer.state, "no optimizer step was taken"
