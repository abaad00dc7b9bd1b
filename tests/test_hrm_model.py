"""HRM model: shapes, parameter counts, one-step gradient, ACT halting, the batch carry, 2-D rotary."""

from __future__ import annotations

import pytest
import torch

from hrm.config import MODEL_PRESETS, ModelConfig, model_preset
from hrm.layers import Rotary2D, apply_rotary
from hrm.model import HRM, count_parameters

VOCAB = 42


def tiny_config(**overrides) -> ModelConfig:
    base = dict(
        hidden_size=32, num_heads=2, expansion=2.0, h_layers=1, l_layers=1, h_cycles=2, l_cycles=2, halt_max_steps=5
    )
    return ModelConfig(**{**base, **overrides})


def make_batch(batch_size: int, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "inputs": torch.randint(2, VOCAB, (batch_size, n * n), generator=g),
        "vehicle": torch.randint(0, 4, (batch_size,), generator=g),
        "labels": torch.randint(0, VOCAB, (batch_size, n * n), generator=g),
    }


@pytest.fixture(scope="module")
def cpu_model() -> HRM:
    torch.manual_seed(0)
    return HRM(model_preset("cpu")).eval()


# ---------------------------------------------------------------- config and size
def test_config_validation_and_presets():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(hidden_size=130, num_heads=4)
    with pytest.raises(ValueError, match="multiple of 4"):
        ModelConfig(hidden_size=24, num_heads=4)  # head dim 6
    with pytest.raises(ValueError):
        ModelConfig(h_cycles=0)
    with pytest.raises(ValueError):
        ModelConfig(halt_exploration_prob=1.5)
    with pytest.raises(ValueError, match="nope"):
        model_preset("nope")
    assert model_preset("paper").halt_max_steps == 16
    assert model_preset("cpu", backprop="last_h_cycle").backprop == "last_h_cycle"
    assert model_preset("cpu", full_backprop=True).backprop == "full"
    assert set(MODEL_PRESETS) >= {"cpu", "paper"}


def test_parameter_counts():
    cpu = count_parameters(HRM(model_preset("cpu")))
    assert 0.5e6 <= cpu <= 2e6
    with torch.device("meta"):  # no memory or init cost for the 27M model
        paper = count_parameters(HRM(model_preset("paper")))
    assert abs(paper - 27e6) <= 3e6
    model = HRM(tiny_config())
    line = model.describe()
    assert "\n" not in line and f"{count_parameters(model) / 1e6:.2f}M" in line


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("n", [10, 20, 40])
def test_output_shapes_eval(cpu_model: HRM, n: int):
    batch = make_batch(1 if n == 40 else 2, n)
    carry = cpu_model.initial_carry(batch)
    with torch.no_grad():
        carry, out = cpu_model(carry, batch)
    B = batch["inputs"].shape[0]
    assert out["logits"].shape == (B, n * n, VOCAB) and out["logits"].dtype == torch.float32
    assert out["q_halt_logits"].shape == (B,) and out["q_halt_logits"].dtype == torch.float32
    assert out["q_continue_logits"].shape == (B,)
    assert "target_q_continue" not in out  # only in training
    assert carry.z_h.shape == (B, n * n + 1, 128)  # one prefix token, not a padded 40x40 canvas
    assert torch.isfinite(out["logits"]).all()


def test_output_shapes_train_and_q_init():
    torch.manual_seed(0)
    model = HRM(model_preset("cpu")).train()
    batch = make_batch(3, 10)
    carry, out = model(model.initial_carry(batch), batch)
    assert out["target_q_continue"].shape == (3,)
    assert ((out["target_q_continue"] > 0) & (out["target_q_continue"] < 1)).all()
    # Q-head starts strongly negative (HRM: bias -5): no early halting before Q has learned.
    assert torch.allclose(out["q_halt_logits"], torch.full((3,), -5.0))
    assert not carry.halted.any()


def test_rejects_bad_grids(cpu_model: HRM):
    with pytest.raises(ValueError, match="square"):
        cpu_model.segment(
            cpu_model.z_h_init.expand(1, 11, -1),
            cpu_model.z_l_init.expand(1, 11, -1),
            {"inputs": torch.zeros(1, 10, dtype=torch.long), "vehicle": torch.zeros(1, dtype=torch.long)},
        )
    with pytest.raises(ValueError, match="max_grid"):
        big = make_batch(1, 41)
        cpu_model(cpu_model.initial_carry(big), big)
    carry = cpu_model.initial_carry(make_batch(2, 10))
    with pytest.raises(ValueError, match="initial_carry"):
        cpu_model(carry, make_batch(2, 12))


def test_vehicle_conditions_the_prediction(cpu_model: HRM):
    batch = make_batch(1, 8)
    other = dict(batch, vehicle=(batch["vehicle"] + 1) % 4)
    with torch.no_grad():
        carry_a, a = cpu_model(cpu_model.initial_carry(batch), batch)
        carry_b, b = cpu_model(cpu_model.initial_carry(other), other)
    assert not torch.allclose(a["logits"], b["logits"])
    # The prefix position, which the Q-head reads, carries the vehicle.
    assert not torch.allclose(carry_a.z_h[:, 0], carry_b.z_h[:, 0])


# ---------------------------------------------------------------- gradients
def test_backprop_reads_the_older_full_backprop_spelling():
    assert ModelConfig(full_backprop=True).backprop == "full"
    assert ModelConfig(full_backprop=False).backprop == "one_step"
    assert "full_backprop" not in ModelConfig(full_backprop=True).model_dump()
    # An override laid over a preset's dump (which says backprop="one_step") wins ...
    assert ModelConfig(**{**model_preset("cpu").model_dump(), "full_backprop": True}).backprop == "full"
    assert ModelConfig(backprop="full", full_backprop=True).backprop == "full"
    # ... but never silently replaces another explicit choice.
    with pytest.raises(ValueError, match="contradicts"):
        ModelConfig(backprop="last_h_cycle", full_backprop=True)
    with pytest.raises(ValueError, match="contradicts"):
        ModelConfig(backprop="full", full_backprop=False)
    with pytest.raises(ValueError, match="true or false"):
        ModelConfig(full_backprop="last_h_cycle")
    with pytest.raises(ValueError):
        ModelConfig(backprop="two_step")


def _carry_leaf_grads(backprop: str, h_cycles: int, l_cycles: int) -> tuple[torch.Tensor | None, int, int]:
    """Gradient reaching the carried z_h, and the number of L and H calls that kept their graph."""
    torch.manual_seed(0)
    model = HRM(tiny_config(backprop=backprop, h_cycles=h_cycles, l_cycles=l_cycles)).eval()
    batch = make_batch(2, 6)
    carry = model.initial_carry(batch)
    carry.halted = torch.zeros(2, dtype=torch.bool)  # keep the (leaf) state instead of resetting it
    carry.current_data = {k: v.clone() for k, v in batch.items()}
    z_h = torch.randn_like(carry.z_h, requires_grad=True)
    z_l = torch.randn_like(carry.z_l, requires_grad=True)
    carry.z_h, carry.z_l = z_h, z_l
    l_calls, h_calls = [], []
    model.l_level.register_forward_hook(lambda *_: l_calls.append(torch.is_grad_enabled()))
    model.h_level.register_forward_hook(lambda *_: h_calls.append(torch.is_grad_enabled()))
    new_carry, out = model(carry, batch)
    out["logits"].square().mean().backward()
    assert not new_carry.z_h.requires_grad and not new_carry.z_l.requires_grad  # carry is detached
    assert model.lm_head.weight.grad is not None and model.l_level.layers[0].mlp.down.weight.grad.abs().sum() > 0
    assert len(l_calls) == h_cycles * l_cycles and len(h_calls) == h_cycles  # eval: no bootstrap segment
    return z_h.grad, sum(l_calls), sum(h_calls)


@pytest.mark.parametrize("cycles", [(2, 2), (1, 1)])
def test_one_step_gradient_cuts_earlier_cycles(cycles):
    grad, l_calls_with_grad, h_calls_with_grad = _carry_leaf_grads("one_step", *cycles)
    assert grad is None  # no gradient reaches the carried state or the no-grad cycles
    assert l_calls_with_grad == 1 and h_calls_with_grad == 1  # only the final L and H call are in the graph


@pytest.mark.parametrize("cycles", [(2, 2), (3, 2), (1, 3)])
def test_last_h_cycle_keeps_only_the_last_h_cycle(cycles):
    grad, l_calls_with_grad, h_calls_with_grad = _carry_leaf_grads("last_h_cycle", *cycles)
    assert grad is None
    assert l_calls_with_grad == cycles[1] and h_calls_with_grad == 1  # l_cycles L calls and one H call


def test_full_backprop_reaches_every_cycle():
    grad, l_calls_with_grad, h_calls_with_grad = _carry_leaf_grads("full", 2, 2)
    assert grad is not None and grad.abs().sum() > 0
    assert l_calls_with_grad == 4 and h_calls_with_grad == 2  # h_cycles * l_cycles L calls, h_cycles H calls


def _segment_grads(backprop: str, h_cycles: int, l_cycles: int, reference: bool = False) -> dict[str, torch.Tensor]:
    """Parameter gradients of one segment from fixed states; ``reference``: TRM's recursion written out."""
    torch.manual_seed(0)
    model = HRM(tiny_config(backprop=backprop, h_cycles=h_cycles, l_cycles=l_cycles))
    batch = make_batch(3, 6, seed=4)
    g = torch.Generator().manual_seed(5)
    z_h, z_l = (torch.randn(3, 37, 32, generator=g) for _ in range(2))
    if reference:
        x = model._embed(batch["inputs"], batch["vehicle"])
        cos_sin = model.rotary(6)
        with torch.no_grad():  # the first h_cycles - 1 H-cycles
            for _ in range(h_cycles - 1):
                for _ in range(l_cycles):
                    z_l = model.l_level(z_l, z_h + x, cos_sin)
                z_h = model.h_level(z_h, z_l, cos_sin)
        for _ in range(l_cycles):  # the last H-cycle, in the graph
            z_l = model.l_level(z_l, z_h + x, cos_sin)
        z_h = model.h_level(z_h, z_l, cos_sin)
        logits, q = model.lm_head(z_h[:, 1:]), model.q_head(z_h[:, 0])
        q_halt, q_continue = q[:, 0], q[:, 1]
    else:
        _, _, logits, q_halt, q_continue, _ = model.segment(z_h, z_l, batch)
    (logits.square().mean() + q_halt.sum() + 0.5 * q_continue.sum()).backward()
    return {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("backprop", ["one_step", "last_h_cycle", "full"])
def test_every_parameter_gets_a_gradient(backprop):
    grads = _segment_grads(backprop, 2, 2)
    for name, grad in grads.items():
        assert grad is not None and grad.abs().sum() > 0, name


def test_last_h_cycle_gradient_is_trms_and_neither_one_step_nor_full():
    last = _segment_grads("last_h_cycle", 3, 2)
    reference = _segment_grads("last_h_cycle", 3, 2, reference=True)
    for name in last:
        torch.testing.assert_close(last[name], reference[name], rtol=0, atol=0, msg=name)
    for other in ("one_step", "full"):
        grads = _segment_grads(other, 3, 2)
        assert not torch.allclose(grads["l_level.layers.0.mlp.down.weight"], last["l_level.layers.0.mlp.down.weight"])
        assert not torch.allclose(grads["embed_tokens"], last["embed_tokens"])
        # The lm_head sees only the final z_h, which no backprop mode changes.
        torch.testing.assert_close(grads["lm_head.weight"], last["lm_head.weight"], rtol=0, atol=0)


@pytest.mark.parametrize("cycles, same_as", [((1, 3), "full"), ((3, 1), "one_step")])
def test_last_h_cycle_is_full_with_one_h_cycle_and_one_step_with_one_l_cycle(cycles, same_as):
    last, other = _segment_grads("last_h_cycle", *cycles), _segment_grads(same_as, *cycles)
    for name in last:
        torch.testing.assert_close(last[name], other[name], rtol=0, atol=0, msg=name)


# ---------------------------------------------------------------- ACT halting
def _eager_model(**overrides) -> HRM:
    torch.manual_seed(0)
    model = HRM(tiny_config(**overrides))
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor([5.0, -5.0]))  # q_halt > q_continue everywhere
    return model


def _run(model: HRM, batch, calls: int):
    carry = model.initial_carry(batch)
    history = []
    for _ in range(calls):
        with torch.no_grad():
            carry, _ = model(carry, batch)
        history.append((carry.steps.clone(), carry.halted.clone(), carry.min_steps.clone()))
    return history


def test_eager_q_halts_after_one_step_without_exploration():
    model = _eager_model(halt_exploration_prob=0.0).train()
    ((steps, halted, _),) = _run(model, make_batch(4, 6), 1)
    assert halted.all() and (steps == 1).all()


def test_lazy_q_halts_exactly_at_max_steps():
    torch.manual_seed(0)
    # Fresh Q-head: q_halt == q_continue, so it never halts early.
    model = HRM(tiny_config(halt_exploration_prob=0.0, halt_max_steps=4)).train()
    history = _run(model, make_batch(3, 6), 4)
    assert [bool(h.any()) for _, h, _ in history] == [False, False, False, True]
    assert (history[-1][0] == 4).all()


@pytest.mark.parametrize("q_halt_bias, halts", [(5.0, True), (-5.0, False)])
def test_without_q_continue_a_sample_halts_on_the_sign_of_q_halt(q_halt_bias, halts):
    torch.manual_seed(0)
    model = HRM(tiny_config(q_continue=False, halt_exploration_prob=0.0, halt_max_steps=3)).train()
    with torch.no_grad():
        model.q_head.bias.copy_(torch.tensor([q_halt_bias, 50.0]))  # q_continue ignored, however large
    calls = []
    original = model.segment
    model.segment = lambda *args: calls.append(1) or original(*args)
    carry, out = model(model.initial_carry(make_batch(4, 6)), make_batch(4, 6))
    assert carry.halted.tolist() == [halts] * 4
    assert "target_q_continue" not in out and len(calls) == 1  # no bootstrap segment


def test_exploration_forces_random_minimum_steps():
    max_steps = 6
    model = _eager_model(halt_exploration_prob=1.0, halt_max_steps=max_steps).train()
    torch.manual_seed(1)
    B = 16
    history = _run(model, make_batch(B, 6), max_steps)
    min_steps = history[0][2]
    assert ((min_steps >= 2) & (min_steps <= max_steps)).all()
    assert len(set(min_steps.tolist())) > 1  # really drawn at random
    for b in range(B):
        halt_at = next(i + 1 for i, (_, h, _) in enumerate(history) if h[b])
        assert halt_at == int(min_steps[b])  # eager Q halts exactly at the sample's minimum, never before


def test_halt_max_steps_is_respected_in_training():
    model = _eager_model(halt_exploration_prob=1.0, halt_max_steps=3).train()
    for steps, halted, _ in _run(model, make_batch(8, 6), 10):
        assert (steps <= 3).all()
        assert halted[steps == 3].all()


def test_eval_runs_every_segment_even_with_eager_q():
    model = _eager_model(halt_max_steps=5).eval()
    history = _run(model, make_batch(4, 6), 5)
    for i, (steps, halted, _) in enumerate(history, start=1):
        assert (steps == i).all()
        assert halted.all() == (i == 5) and halted.any() == (i == 5)
    carry, out = model.predict(make_batch(4, 6))
    assert model.training is False and (carry.steps == 5).all() and carry.halted.all()
    model.train()
    model.predict(make_batch(4, 6))
    assert model.training  # predict restores the mode


# ---------------------------------------------------------------- the batch carry
def test_carry_swaps_exactly_the_halted_samples():
    torch.manual_seed(0)
    model = HRM(tiny_config(halt_max_steps=8)).eval()
    a, b = make_batch(4, 6, seed=1), make_batch(4, 6, seed=2)
    with torch.no_grad():
        carry, _ = model(model.initial_carry(a), a)
        carry.halted = torch.tensor([True, False, True, False])
        carry, out = model(carry, b)
        _, fresh_b = model(model.initial_carry(b), b)  # one segment on b from scratch
        ref_a = model.initial_carry(a)
        for _ in range(2):
            ref_a, two_a = model(ref_a, a)  # two segments on a
    swapped, kept = torch.tensor([0, 2]), torch.tensor([1, 3])
    for k in a:
        assert torch.equal(carry.current_data[k][swapped], b[k][swapped])
        assert torch.equal(carry.current_data[k][kept], a[k][kept])
    assert carry.steps.tolist() == [1, 2, 1, 2]
    # Swapped slots restart from the initial state; kept slots continue their own reasoning.
    assert torch.allclose(out["logits"][swapped], fresh_b["logits"][swapped], atol=1e-5)
    assert torch.allclose(out["logits"][kept], two_a["logits"][kept], atol=1e-5)


# ---------------------------------------------------------------- 2-D rotary
def test_rotary_scores_depend_only_on_2d_offset():
    rot = Rotary2D(head_dim=16)
    n = 7
    cos, sin = rot(n)
    assert cos.shape == (n * n + 1, 16)
    assert torch.equal(cos[0], torch.ones(16)) and torch.equal(sin[0], torch.zeros(16))  # prefix: identity
    torch.manual_seed(0)
    q, k = torch.randn(16), torch.randn(16)

    def score(p1, p2):
        i, j = 1 + p1[0] * n + p1[1], 1 + p2[0] * n + p2[1]
        return (apply_rotary(q, cos[i], sin[i]) * apply_rotary(k, cos[j], sin[j])).sum()

    assert torch.allclose(score((1, 2), (3, 5)), score((2, 0), (4, 3)), atol=1e-5)  # same (dr, dc)
    assert not torch.allclose(score((1, 2), (3, 5)), score((1, 2), (5, 3)), atol=1e-3)  # rows vs columns differ
    # The same offset gives the same score on a different grid size: one model for every N.
    cos9, sin9 = rot(9)
    i, j = 1 + 1 * 9 + 2, 1 + 3 * 9 + 5
    s9 = (apply_rotary(q, cos9[i], sin9[i]) * apply_rotary(k, cos9[j], sin9[j])).sum()
    assert torch.allclose(s9, score((1, 2), (3, 5)), atol=1e-5)
    assert rot(n)[0] is cos  # cached per N


def test_rotary_turns_each_pair_by_its_own_angle():
    # Dim i of each half (row / column block) is paired with dim i + d/4: (a, b) -> (a cos - b sin, b cos + a sin).
    torch.manual_seed(0)
    d, q = 16, 4
    x = torch.randn(3, 5, d)
    angles = torch.rand(5, d) * 6.0  # any table, not only Rotary2D's (whose pairs share an angle)
    cos, sin = angles.cos(), angles.sin()
    want = torch.empty_like(x)
    for block in (0, d // 2):
        for i in range(block, block + q):
            a, b = x[..., i], x[..., i + q]
            want[..., i] = a * cos[:, i] - b * sin[:, i]
            want[..., i + q] = b * cos[:, i + q] + a * sin[:, i + q]
    torch.testing.assert_close(apply_rotary(x, cos, sin), want)
    # Tables that broadcast: positions first, heads after, as attention rotates queries and keys.
    heads = x.unflatten(0, (3, 1)).expand(3, 2, 5, d).permute(0, 2, 1, 3)  # [3, L, 2, d]
    torch.testing.assert_close(apply_rotary(heads, cos[:, None], sin[:, None]), want[:, :, None].expand(3, 5, 2, d))
    assert apply_rotary(x.bfloat16(), cos, sin).dtype == torch.bfloat16


def test_attention_rotates_every_heads_queries_and_keys_by_the_cells_position():
    from hrm.layers import Attention

    torch.manual_seed(0)
    D, H, n = 32, 2, 4
    attention, (cos, sin) = Attention(D, H), Rotary2D(D // H)(n)
    x = torch.randn(2, 1 + n * n, D)
    with torch.no_grad():
        q, k, v = (t.unflatten(-1, (H, D // H)).transpose(1, 2) for t in attention.qkv(x).chunk(3, dim=-1))
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # [B, H, L, d] against [L, d] tables
        weights = torch.softmax(q @ k.transpose(-1, -2) / (D // H) ** 0.5, dim=-1)
        want = attention.out((weights @ v).transpose(1, 2).flatten(2))
        torch.testing.assert_close(attention(x, (cos, sin)), want, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- CPU precision
def test_cpu_dtype_auto_follows_the_hardware(monkeypatch):
    from hrm import model as model_module

    cpu = torch.device("cpu")
    assert model_module.autocast_dtype(tiny_config(), cpu) == torch.float32  # the default
    assert model_module.autocast_dtype(tiny_config(cpu_dtype="bfloat16"), cpu) == torch.bfloat16
    monkeypatch.setattr(model_module, "cpu_has_native_bf16", lambda: True)
    assert model_module.autocast_dtype(tiny_config(cpu_dtype="auto"), cpu) == torch.bfloat16
    monkeypatch.setattr(model_module, "cpu_has_native_bf16", lambda: False)
    assert model_module.autocast_dtype(tiny_config(cpu_dtype="auto"), cpu) == torch.float32
    assert model_module.autocast_dtype(tiny_config(cpu_dtype="bfloat16"), torch.device("meta")) == torch.float32


@pytest.mark.parametrize("n", [10, 20])  # explicit attention at 10x10, the fused kernel at 20x20
def test_cpu_bfloat16_matches_float32(n: int):
    torch.manual_seed(0)
    exact = HRM(tiny_config(hidden_size=64, num_heads=4, halt_max_steps=2)).eval()
    fast = HRM(tiny_config(hidden_size=64, num_heads=4, halt_max_steps=2, cpu_dtype="bfloat16")).eval()
    fast.load_state_dict(exact.state_dict())
    batch = make_batch(4, n)
    _, want = exact.predict(batch)
    _, got = fast.predict(batch)
    assert got["logits"].dtype == torch.float32  # the heads' outputs are float32 either way
    # bfloat16 keeps 8 bits of mantissa, and the recurrence compounds the rounding: close, not equal,
    # and far from the logits of another model on the same input.
    error = (got["logits"] - want["logits"]).abs().mean()
    other = HRM(tiny_config(hidden_size=64, num_heads=4, halt_max_steps=2)).eval()
    _, unrelated = other.predict(batch)
    assert 0 < error < 0.2 * (unrelated["logits"] - want["logits"]).abs().mean()


def test_explicit_attention_equals_the_fused_kernel(monkeypatch):
    import hrm.layers as layers

    torch.manual_seed(0)
    attention, rotary = layers.Attention(64, 4), layers.Rotary2D(16)
    x = torch.randn(3, 101, 64)
    assert 101 <= layers.EXPLICIT_ATTENTION_MAX_TOKENS
    with torch.autocast("cpu", dtype=torch.bfloat16):
        explicit = attention(x, rotary(10))
    monkeypatch.setattr(layers, "EXPLICIT_ATTENTION_MAX_TOKENS", 0)  # the fused kernel, same input
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = attention(x, rotary(10))
    assert explicit.dtype == fused.dtype == torch.bfloat16
    torch.testing.assert_close(explicit.float(), fused.float(), atol=3e-2, rtol=3e-2)


def test_a_torch_capped_at_avx2_does_not_count_as_native_bfloat16(monkeypatch):
    from hrm import model as model_module

    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    model_module.cpu_has_native_bf16.cache_clear()
    try:
        assert model_module.cpu_has_native_bf16() is False
        assert model_module.autocast_dtype(tiny_config(cpu_dtype="auto"), torch.device("cpu")) == torch.float32
    finally:
        monkeypatch.delenv("ATEN_CPU_CAPABILITY")
        model_module.cpu_has_native_bf16.cache_clear()
