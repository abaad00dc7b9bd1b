"""The trained router as a predictor (``routing.served_model``) and the hand-off of a run's final weights.

In-process and fast: the predictor gives predict_tokens' routes, refuses what is not a task in one
line, never unpickles objects; the loop hands rank 0's final weights (the EMA's where the run keeps
one) to the model logger once, and not at all with ``tracking.log_model=false``. The MLflow model
itself (logged, loaded in a fresh process, registered, served) is ``tests/test_mlflow_model.py``.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from curriculum.adapters.mlflow_model import NAME_RULE, check_model_name
from curriculum.adapters.tracking import NullTracker
from curriculum.core.config import TrackingConfig
from curriculum.core.overrides import build_config
from curriculum.trainer.context import WorkerContext
from curriculum.trainer.loop import run_curriculum
from hrm.config import ModelConfig
from hrm.ema import EMA
from hrm.model import HRM
from oracle import TaskSpec, generate_tasks, vocab
from routing.batch import task_tensors
from routing.served_model import (
    RouteInputError,
    Router,
    RouterFileError,
    check_tasks,
    checkpoint_weights,
    final_weights,
    write_router,
)
from routing.training import predict_tokens

SMALL = ModelConfig(hidden_size=32, num_heads=2, h_layers=1, l_layers=1, h_cycles=1, l_cycles=1, halt_max_steps=2)


def drifted(model: HRM) -> EMA:
    """An EMA whose averages differ from the model's weights, as after training."""
    ema = EMA(model, 0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    ema.update(model)
    return ema


@pytest.fixture(scope="module")
def router_files(tmp_path_factory):
    torch.manual_seed(0)
    model = HRM(SMALL)
    ema = drifted(model)
    directory = tmp_path_factory.mktemp("router")
    write_router(directory, final_weights(model, ema), SMALL, 3, {"weights": "ema"})
    return model, ema, directory


def routes_of(tokens: torch.Tensor) -> list[list[int]]:
    return [np.flatnonzero(row == vocab.PATH).tolist() for row in tokens.numpy()]


def test_the_router_gives_predict_tokens_routes_with_the_ema_weights(router_files):
    model, ema, directory = router_files
    router = Router.from_files(directory / "weights.pt", directory / "router.json", device="cpu")
    for size in (8, 10):
        tasks = generate_tasks(TaskSpec(size=size), count=24, seed=size)
        expected = predict_tokens(model, task_tensors(tasks), ema, 3)
        routes = router.predict(tasks.inputs, tasks.vehicle)
        assert [r.cells.tolist() for r in routes] == routes_of(expected)
        with ema.average_weights(model):
            _, outputs = model.predict(task_tensors(tasks), 3)
        halts = torch.sigmoid(outputs["q_halt_logits"]).numpy()
        assert np.allclose([r.halt_confidence for r in routes], halts, atol=1e-6)
        assert all(0.0 < r.halt_confidence < 1.0 for r in routes)
    # The file holds the averages, not the live weights (which the drift moved away from them).
    saved = torch.load(directory / "weights.pt", weights_only=True)
    name = next(iter(ema.shadow))
    assert torch.equal(saved[name], ema.shadow[name]) and not torch.equal(saved[name], model.state_dict()[name])


def test_tasks_of_several_sizes_come_back_in_order_and_segments_matter(router_files):
    model, ema, directory = router_files
    router = Router.from_files(directory / "weights.pt", directory / "router.json", device="cpu")
    small = generate_tasks(TaskSpec(size=8), count=3, seed=1)
    large = generate_tasks(TaskSpec(size=12), count=2, seed=2)
    mixed = [small.inputs[0], large.inputs[0], small.inputs[1], large.inputs[1], small.inputs[2]]
    routes = router.predict(mixed)  # vehicles read from the START tokens
    alone = router.predict(small.inputs) + router.predict(large.inputs)
    order = [0, 3, 1, 4, 2]
    assert [r.cells.tolist() for r in routes] == [alone[i].cells.tolist() for i in order]
    one = router.predict(small.inputs, segments=1)
    expected = predict_tokens(model, task_tensors(small), ema, 1)
    assert [r.cells.tolist() for r in one] == routes_of(expected)


def grid() -> np.ndarray:
    return generate_tasks(TaskSpec(size=8), count=1, seed=3).inputs[0].astype(np.int64)


def with_token(cell: int, token: int) -> list[int]:
    tokens = grid().tolist()
    tokens[cell] = token
    return tokens


def second_start() -> list[int]:
    tokens = grid().tolist()
    road = next(i for i, t in enumerate(tokens) if vocab.TOKEN_MARKER[t] == 0 and vocab.TOKEN_TERRAIN[t] > 0)
    tokens[road] = vocab.START_TOKEN_BASE
    return tokens


@pytest.mark.parametrize(
    ("inputs", "vehicle", "message"),
    [
        ([grid().tolist()[:-1]], None, "task 0: 63 tokens is not an N x N grid with N in 8..64"),
        ([grid().reshape(8, 8).tolist()], None, r"task 0: inputs must be one flat row-major list.*shape \(8, 8\)"),
        ([list(range(49))], None, "task 0: 49 tokens is not an N x N grid"),
        ([grid(), with_token(5, 42)], None, "task 1: token 42 at cell 5 is outside the vocabulary 0..41"),
        ([with_token(0, -1)], None, "task 0: token -1 at cell 0 is outside the vocabulary"),
        ([with_token(7, vocab.PATH)], None, "task 0: token PATH is never an input cell"),
        ([second_start()], None, "task 0: 2 START and 1 END tokens"),
        ([grid().astype(float) + 0.5], None, "task 0: tokens must be integers"),
        ([grid()], [7], r"task 0: vehicle 7 is not one of 0..3 \(bike, car, van, truck\)"),
        ([grid(), grid()], [0], "2 grids but 1 vehicles"),
        ([], None, "no tasks"),
    ],
)
def test_what_is_not_a_task_is_refused_in_one_line_naming_it(router_files, inputs, vehicle, message):
    _, _, directory = router_files
    router = Router.from_files(directory / "weights.pt", directory / "router.json", device="cpu")
    with pytest.raises(RouteInputError, match=message) as caught:
        router.predict(inputs, vehicle)
    assert "\n" not in str(caught.value)


def test_a_vehicle_that_contradicts_the_start_token_is_refused_and_a_matching_one_accepted():
    tasks = generate_tasks(TaskSpec(size=8), count=2, seed=4)
    grids, vehicles = check_tasks(tasks.inputs, tasks.vehicle.tolist())
    assert vehicles == tasks.vehicle.tolist() and all(g.dtype == np.int32 for g in grids)
    other = (int(tasks.vehicle[1]) + 1) % 4
    with pytest.raises(RouteInputError, match=f"task 1: vehicle {other} .* differs from the START token's"):
        check_tasks(tasks.inputs, [int(tasks.vehicle[0]), other])
    with pytest.raises(RouteInputError, match="segments must be in 1..64"):
        Router(HRM(SMALL), 2, torch.device("cpu")).predict(tasks.inputs, segments=0)


def test_files_that_are_not_a_router_are_named_and_never_unpickled(router_files, tmp_path):
    _, _, directory = router_files
    evil = tmp_path / "weights.pt"

    class Loud:
        def __reduce__(self):
            return (print, ("unpickled!",))

    buffer = io.BytesIO()
    torch.save({"x": Loud()}, buffer, pickle_module=pickle)
    evil.write_bytes(buffer.getvalue())
    with pytest.raises(RouterFileError, match=f"^{evil}: "):
        Router.from_files(evil, directory / "router.json")
    other = tmp_path / "router.json"
    other.write_text('{"format": "something else"}')
    with pytest.raises(RouterFileError, match="not a router config"):
        Router.from_files(directory / "weights.pt", other)
    wide = tmp_path / "wide"
    write_router(wide, final_weights(HRM(SMALL.model_copy(update={"hidden_size": 64}))), SMALL, 2)
    with pytest.raises(RouterFileError, match="size mismatch"):
        Router.from_files(wide / "weights.pt", directory / "router.json")


def test_checkpoint_weights_take_the_ema_only_where_the_run_keeps_one():
    model = HRM(SMALL)
    ema = drifted(model)
    saved = {"model": model.state_dict(), "ema": ema.state_dict()}
    weights, averaged = checkpoint_weights(saved, SMALL.model_copy(update={"ema_decay": 0.9}))
    assert averaged and all(torch.equal(weights[k], v) for k, v in ema.shadow.items())
    weights, averaged = checkpoint_weights({"model": model.state_dict(), "ema": None}, SMALL)
    assert not averaged and all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", ["hrm-router", "router_v2.1", "A"])
def test_registered_model_names_that_fit_a_models_uri_pass(name):
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "x:1", " lead", "-dash", "a b", "é", "n" * 129])
def test_registered_model_names_that_do_not_are_refused_with_the_rule(name):
    with pytest.raises(ValueError, match=NAME_RULE.replace(".", r"\.")):
        check_model_name(name)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--register", "a/b"], "--register: 'a/b' is not a registered model name"),
        (["--register", ""], "--register: '' is not a registered model name"),
        (["--register", "ok", "--no-mlflow"], "cannot go with --no-mlflow"),
    ],
)
def test_evaluate_refuses_a_bad_register_before_reading_the_checkpoint(tmp_path, args, message):
    from curriculum.cli.evaluate import main
    from oracle.cli_errors import UsageError

    with pytest.raises(UsageError, match=message):
        main([str(tmp_path / "no-such-run"), *args])


def test_log_model_is_a_documented_tracking_field_on_by_default():
    field = TrackingConfig.model_fields["log_model"]
    assert field.default is True and "EMA" in field.description and "MLflow" in field.description


def run_smoke(tmp_path, *overrides, stop_requested=lambda: False):
    calls = []
    config = build_config(
        "smoke",
        None,
        ["train.eval_every=5", "train.max_steps=6", "tracking.images_per_eval=0", "model.ema_decay=0.9", *overrides],
    )

    def log_model(weights, run_config, step):
        calls.append((weights, run_config, step))
        return "logged"

    said = []
    ctx = WorkerContext(say=said.append, log_model=log_model, stop_requested=stop_requested)
    outcome = run_curriculum(config, ctx, NullTracker(), tmp_path)
    return outcome, calls, said


def test_the_loop_hands_the_final_ema_weights_to_the_model_logger_once(tmp_path):
    outcome, calls, said = run_smoke(tmp_path)
    assert len(calls) == 1 and "logged" in said
    weights, config, step = calls[0]
    assert step == outcome.step == 6 and config.model.ema_decay == 0.9
    from curriculum.adapters.checkpoint import latest_checkpoint, load_checkpoint

    saved = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    assert saved["step"] == 6
    for name, value in saved["ema"]["shadow"].items():
        assert torch.equal(weights[name], value), name
    differs = [n for n in saved["ema"]["shadow"] if not torch.equal(weights[n], saved["model"][n])]
    assert differs, "the EMA's weights, not the trained ones"
    assert set(weights) == set(saved["model"]), "buffers (z_h_init, z_l_init) travel too"


def test_tracking_log_model_false_hands_nothing_over(tmp_path):
    _, calls, _ = run_smoke(tmp_path, "tracking.log_model=false")
    assert calls == []


def test_a_stopped_run_logs_no_model_it_will_be_resumed(tmp_path):
    asked = iter([False, False, True])
    outcome, calls, _ = run_smoke(tmp_path, stop_requested=lambda: next(asked, True))
    assert outcome.outcome == "killed" and outcome.step < 6
    assert calls == []
