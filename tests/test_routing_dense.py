"""The oracle-supervised loss levers: any-optimal route loss, the detour (cost) term, the route head, and
evaluation with more ACT segments than training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrm.config import ModelConfig
from hrm.model import HRM
from oracle import TaskSpec, generate_tasks
from oracle.vocab import PATH, VOCAB_SIZE
from routing.batch import task_tensors
from routing.losses import act_loss, optimal_cells, preferred_optimal_labels, relative_detour
from routing.penalties import PenaltyWeights


def confident_outputs(batch: dict[str, torch.Tensor], route: torch.Tensor) -> dict[str, torch.Tensor]:
    """Logits that mark ``route`` as PATH and copy the input token everywhere else."""
    logits = torch.full((1, route.numel(), VOCAB_SIZE), -8.0)
    inputs = batch["inputs"][0].long()
    logits[0, torch.arange(route.numel()), inputs] = torch.where(route, -8.0, 8.0)
    logits[0, route, PATH] = 8.0
    return {"logits": logits, "q_halt_logits": torch.zeros(1), "q_continue_logits": torch.zeros(1)}


ROUTE_TERMS = dict(path_class=1.0, sparsity=1.0, budget=1.0, coverage=0.5, connectivity=3.0)


def test_any_optimal_loss_gives_no_extra_penalty_to_another_optimal_route(two_optimal_routes):
    batch, label, other = two_optimal_routes
    halt = torch.ones(1, dtype=torch.bool)
    weights = PenaltyWeights(**ROUTE_TERMS, detour=1.0, route_target="any_optimal")
    loss_label, _ = act_loss(confident_outputs(batch, label), batch, halt, weights)
    loss_other, _ = act_loss(confident_outputs(batch, other), batch, halt, weights)
    torch.testing.assert_close(loss_other, loss_label, rtol=1e-6, atol=1e-6)
    # The label-only loss punishes the other optimal route: that is what any_optimal removes.
    plain = PenaltyWeights(**ROUTE_TERMS)
    plain_label, _ = act_loss(confident_outputs(batch, label), batch, halt, plain)
    plain_other, _ = act_loss(confident_outputs(batch, other), batch, halt, plain)
    assert float(plain_other) > float(plain_label) + 1.0


def test_any_optimal_still_punishes_a_route_off_the_optimal_set(two_optimal_routes):
    batch, label, _ = two_optimal_routes
    on = optimal_cells(batch)[0]
    legal_off = torch.isfinite(batch["costs"][0]) & ~on
    padded = label | legal_off  # the route plus every legal cell on no optimal route
    weights = PenaltyWeights(**ROUTE_TERMS, route_target="any_optimal")
    halt = torch.ones(1, dtype=torch.bool)
    good, _ = act_loss(confident_outputs(batch, label), batch, halt, weights)
    bad, _ = act_loss(confident_outputs(batch, padded), batch, halt, weights)
    assert float(bad) > float(good) + 1.0


def test_detour_is_zero_on_optimal_routes_and_grows_with_the_extra_cost(two_optimal_routes):
    batch, label, other = two_optimal_routes
    weights = PenaltyWeights.off().model_copy(update={"detour": 1.0})
    halt = torch.ones(1, dtype=torch.bool)
    terms = {}
    for name, route in {"label": label, "other": other}.items():
        _, logs = act_loss(confident_outputs(batch, route), batch, halt, weights)
        terms[name] = float(logs["detour"])
    assert terms["label"] < 1e-3 and terms["other"] < 1e-3
    # Mark one legal cell off every optimal route, beside the route: the detour term rises by its slack.
    slack = batch["from_start"][0] + batch["to_end"][0] - batch["optimal_cost"][0]
    candidates = torch.nonzero(torch.isfinite(slack) & (slack > 0)).flatten()
    cell = int(candidates[torch.argmin(slack[candidates])])
    worse = label.clone()
    worse[cell] = True
    _, logs = act_loss(confident_outputs(batch, worse), batch, halt, weights)
    expected = min(float(slack[cell] / batch["optimal_cost"][0]), 1.0) / float(label.sum())
    assert float(logs["detour"]) == pytest.approx(expected, rel=1e-3)


def test_detour_has_a_gradient_that_lowers_path_probability_off_the_optimal_set(two_optimal_routes):
    batch, label, _ = two_optimal_routes
    grads = {}
    for weight in (0.0, 1.0):
        out = confident_outputs(batch, label)
        out["logits"] = torch.zeros_like(out["logits"]).requires_grad_()
        weights = PenaltyWeights.off().model_copy(update={"detour": weight})
        loss, _ = act_loss(out, batch, torch.ones(1, dtype=torch.bool), weights)
        loss.backward()
        grads[weight] = out["logits"].grad[0, :, PATH]
    from_detour = grads[1.0] - grads[0.0]
    on = optimal_cells(batch)[0]
    legal = torch.isfinite(batch["costs"][0])
    assert (from_detour[legal & ~on] > 0).all()  # descent lowers PATH there
    assert from_detour[on].abs().max() < 1e-9


def small_model(**extra) -> HRM:
    torch.manual_seed(0)
    config = ModelConfig(
        hidden_size=32, num_heads=2, h_layers=1, l_layers=1, h_cycles=1, l_cycles=1, halt_max_steps=2, **extra
    )
    return HRM(config)


def test_route_head_outputs_and_gradients():
    tasks = task_tensors(generate_tasks(TaskSpec(size=10), 4, seed=2))
    model = small_model(route_head=True)
    carry, outputs = model(model.initial_carry(tasks), tasks)
    assert outputs["route"].shape == (4, 100, 2) and outputs["route"].dtype == torch.float32
    weights = PenaltyWeights.off().model_copy(update={"optimal_set": 1.0, "cost_to_go": 1.0})
    loss, logs = act_loss(outputs, carry.current_data, torch.zeros(4, dtype=torch.bool), weights)
    assert float(logs["optimal_set"]) > 0 and float(logs["cost_to_go"]) > 0
    loss.backward()
    assert model.route_head.weight.grad.abs().sum() > 0
    assert model.h_level.layers[0].mlp.down.weight.grad.abs().sum() > 0  # the trunk learns from the fields too


def test_route_head_terms_need_the_head():
    tasks = task_tensors(generate_tasks(TaskSpec(size=10), 2, seed=2))
    model = small_model()
    carry, outputs = model(model.initial_carry(tasks), tasks)
    assert "route" not in outputs
    with pytest.raises(ValueError, match="route_head"):
        act_loss(outputs, carry.current_data, torch.zeros(2, dtype=torch.bool), PenaltyWeights(optimal_set=1.0))


def test_route_head_learns_the_optimal_set():
    # A few hundred steps on one batch: the head's BCE falls well below its starting value.
    tasks = task_tensors(generate_tasks(TaskSpec(size=8, min_distance=2, max_distance=6), 16, seed=4))
    model = small_model(route_head=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    weights = PenaltyWeights.off().model_copy(update={"optimal_set": 1.0})
    first = None
    for _ in range(150):
        carry, outputs = model(model.initial_carry(tasks), tasks)
        loss, logs = act_loss(outputs, carry.current_data, torch.zeros(16, dtype=torch.bool), weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = float(logs["optimal_set"]) if first is None else first
    assert float(logs["optimal_set"]) < 0.5 * first


def test_predict_runs_more_segments_than_training():
    tasks = task_tensors(generate_tasks(TaskSpec(size=10), 3, seed=2))
    model = small_model()
    carry, two = model.predict(tasks)
    assert carry.steps.tolist() == [2, 2, 2]
    carry, five = model.predict(tasks, segments=5)
    assert carry.steps.tolist() == [5, 5, 5]
    _, again = model.predict(tasks, segments=2)
    torch.testing.assert_close(again["logits"], two["logits"])
    assert not torch.allclose(five["logits"], two["logits"])
    with pytest.raises(ValueError, match="segments"):
        model.predict(tasks, segments=0)


def test_preferred_optimal_target_is_the_optimal_route_the_model_leans_to(two_optimal_routes):
    batch, label, other = two_optimal_routes
    halt = torch.ones(1, dtype=torch.bool)
    weights = PenaltyWeights(**ROUTE_TERMS, route_target="preferred_optimal")
    assert torch.equal(preferred_optimal_labels(confident_outputs(batch, other)["logits"], batch)[0] == PATH, other)
    assert torch.equal(preferred_optimal_labels(confident_outputs(batch, label)["logits"], batch)[0] == PATH, label)
    loss_label, _ = act_loss(confident_outputs(batch, label), batch, halt, weights)
    loss_other, _ = act_loss(confident_outputs(batch, other), batch, halt, weights)
    torch.testing.assert_close(loss_other, loss_label, rtol=1e-6, atol=1e-6)


def test_preferred_optimal_routes_are_optimal_for_any_probabilities():
    from oracle import verify_paths
    from oracle.chain import most_probable_optimal_routes

    for size in (10, 30):
        tasks = generate_tasks(TaskSpec(size=size), 1000, seed=size)
        from_start, to_end = tasks.route_fields()
        prob = np.random.default_rng(size).uniform(0.0, 1.0, tasks.costs.shape)
        mask = most_probable_optimal_routes(
            prob, tasks.costs, tasks.start, tasks.end, from_start, to_end, tasks.optimal_cost
        )
        verdict = verify_paths(mask, tasks.costs, tasks.start, tasks.end, tasks.optimal_cost)
        assert verdict.optimal.all()
        # With the label's cells most probable, the label itself comes back.
        label = tasks.labels == PATH
        again = most_probable_optimal_routes(
            np.where(label, 0.9, 0.1), tasks.costs, tasks.start, tasks.end, from_start, to_end, tasks.optimal_cost
        )
        assert np.array_equal(again, label)


def test_near_optimal_path_class_weighs_close_rivals_of_the_route_and_not_far_cells(two_optimal_routes):
    batch, label, _ = two_optimal_routes
    legal = torch.isfinite(batch["costs"][0])
    detour = relative_detour(batch)[0]
    rival = int(torch.nonzero(legal & ~label & (detour > 0) & (detour <= 0.25))[0])
    far = int(torch.nonzero(legal & (detour > 0.5))[0])
    halt = torch.ones(1, dtype=torch.bool)

    def path_class(route: torch.Tensor, cells: str) -> float:
        weights = PenaltyWeights(**ROUTE_TERMS, path_class_cells=cells, near_slack=0.25)
        return float(act_loss(confident_outputs(batch, route), batch, halt, weights)[1]["path_class"])

    with_rival, with_far = label.clone(), label.clone()
    with_rival[rival] = True
    with_far[far] = True
    # The label-only term reads label cells alone: marking any other cell leaves it as it was.
    assert path_class(with_rival, "label") == pytest.approx(path_class(label, "label"))
    # near_optimal also weighs the rival, at the same weight as a route cell, but not the far cell.
    assert path_class(with_rival, "near_optimal") > path_class(label, "near_optimal") + 0.1
    assert path_class(with_far, "near_optimal") == pytest.approx(path_class(label, "near_optimal"))
    # Leaving out a route cell costs it as much as marking the rival.
    without = label.clone()
    without[int(torch.nonzero(label & (batch["labels"][0] == PATH))[1])] = False
    assert path_class(without, "near_optimal") == pytest.approx(path_class(with_rival, "near_optimal"), rel=1e-3)
