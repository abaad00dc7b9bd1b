"""Typed presets: each resolves to exactly the config it had as a raw dict, and ladders are built, not copied.

``tests/golden/presets.json`` holds every preset's raw dict as the old ``preset_dict(name)`` returned it
(generated from the code at commit c978dbe, not typed by hand; `tiny` and `gpu` regenerated from their
functions when they were retuned to gate the last stage on optimal routes and to remember earlier
stages; `tiny` again when it was narrowed to width 96 and when its batch went to 64; `tiny` and `gpu`
when they took local mixing; `tiny` when its first stage was gated on optimal routes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curriculum.core.config import RunConfig
from curriculum.core.overrides import build_config
from curriculum.core.presets import PRESET_NAMES, ROUTE_PENALTIES, ladder, preset_config
from routing.penalties import PenaltyWeights

GOLDEN = json.loads((Path(__file__).parent / "golden" / "presets.json").read_text())


def leaves(raw, prefix=""):
    """(dotted path, value) of every leaf of a raw config mapping, list items by index."""
    if isinstance(raw, dict):
        for key, value in raw.items():
            yield from leaves(value, f"{prefix}{key}.")
    elif isinstance(raw, list) and raw and isinstance(raw[0], dict):
        for index, value in enumerate(raw):
            yield from leaves(value, f"{prefix}{index}.")
    else:
        yield prefix[:-1], raw


def at(dump, path: str):
    for part in path.split("."):
        dump = dump[int(part)] if isinstance(dump, list) else dump[part]
    return dump


def test_the_presets_are_the_golden_ones():
    assert PRESET_NAMES == tuple(GOLDEN)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_each_preset_resolves_to_the_config_its_raw_dict_gave(name):
    config = preset_config(name)
    assert isinstance(config, RunConfig) and config.preset == name
    assert config.model_dump() == RunConfig.model_validate(GOLDEN[name]).model_dump()
    # Every value the raw dict spelled out is there as it was, not only after defaults filled the rest.
    dump = config.model_dump(mode="json")
    for path, value in leaves(GOLDEN[name]):
        if path == "model.full_backprop":  # the older spelling of model.backprop
            path, value = "model.backprop", "full" if value else "one_step"
        assert at(dump, path) == value, path


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_build_config_without_file_or_overrides_is_the_preset(name):
    assert build_config(name) == preset_config(name)


def test_each_call_builds_a_fresh_config():
    first = preset_config("tiny")
    first.train.lr = 0.5
    first.curriculum.stages[1].gate.threshold = 0.1
    again = preset_config("tiny")
    assert again.train.lr == 1e-3 and again.curriculum.stages[1].gate.threshold == 0.8


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(KeyError, match="smoke, tiny, gpu, paper"):
        preset_config("huge")


def test_ladder_replays_from_the_second_stage_on_with_one_gate():
    stages = ladder((10, 20, 30), 0.7, 500, penalties=ROUTE_PENALTIES, replay=0.2)
    assert [s.size for s in stages] == [10, 20, 30]
    assert [s.replay for s in stages] == [0.0, 0.2, 0.2]
    assert {(s.gate.metric, s.gate.threshold, s.gate.patience, s.max_steps, s.min_steps) for s in stages} == {
        ("valid_route", 0.7, 2, 500, 0)
    }
    assert all(s.penalties == ROUTE_PENALTIES for s in stages)
    assert all(s.penalties == PenaltyWeights() for s in ladder((10, 20), 0.7, 500))  # the default weights


def test_ladder_gives_the_first_rung_its_own_penalties_where_asked():
    first = PenaltyWeights(connectivity=3.0, detour=1.0)
    stages = ladder((10, 20, 30), 0.7, 500, penalties=ROUTE_PENALTIES, first_penalties=first)
    assert [s.penalties for s in stages] == [first, ROUTE_PENALTIES, ROUTE_PENALTIES]
    assert [s.penalties for s in ladder((10,), 0.7, 500, first_penalties=first)] == [first]


def test_ladder_gates_the_first_and_last_rungs_on_optimal_routes_where_asked():
    stages = ladder((10, 20, 30), 0.7, 500, first_optimal=0.8, final_optimal=0.5)
    gates = [(s.gate.metric, s.gate.threshold, s.gate.guard_max_cost_ratio) for s in stages]
    assert gates == [("optimal", 0.8, 1.05), ("valid_route", 0.7, None), ("optimal", 0.5, 1.05)]
    only_first = ladder((10, 20), 0.7, 500, first_optimal=0.8)
    assert [s.gate.metric for s in only_first] == ["optimal", "valid_route"]
    assert [s.gate.metric for s in ladder((10,), 0.7, 500, first_optimal=0.8)] == ["optimal"]
    tiny = preset_config("tiny").curriculum.stages
    assert [(s.size, s.gate.metric) for s in tiny] == [
        (10, "optimal"),
        (20, "valid_route"),
        (30, "valid_route"),
        (40, "optimal"),
    ]
