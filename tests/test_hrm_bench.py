"""benchmarks/hrm_bench.py: the model it times, for model presets and run presets alike."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from curriculum.core.presets import preset_config
from hrm.config import model_preset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # device_check imports it by name the same way
_spec = importlib.util.spec_from_file_location("hrm_bench", ROOT / "benchmarks" / "hrm_bench.py")
hrm_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hrm_bench)


def test_a_run_preset_is_timed_with_its_own_model_and_the_overrides():
    tiny = preset_config("tiny").model
    timed = hrm_bench.bench_model("tiny", attention_pool=2)
    assert timed.attention_pool == 2 and tiny.attention_pool == 1
    assert timed.model_dump() == {**tiny.model_dump(), "attention_pool": 2}
    assert hrm_bench.bench_model("cpu", cpu_dtype="auto") == model_preset("cpu", cpu_dtype="auto")
    with pytest.raises(KeyError, match="unknown preset"):
        hrm_bench.bench_model("huge")


def test_training_steps_run_on_the_pooled_model(capsys):
    times = hrm_bench.bench_training("tiny", torch.device("cpu"), batch=2, sizes=[8, 9], steps=1, attention_pool=2)
    assert sorted(times) == [8, 9] and all(t > 0 for t in times.values())
    printed = capsys.readouterr().out
    assert "tiny preset" in printed and "\n  8 |" in printed and "\n  9 |" in printed
