"""Determinism across runs and thread counts, diversity, and the task distribution's knobs."""

import hashlib
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from pydantic import ValidationError

from oracle import TaskSpec, generate_tasks
from oracle.vocab import CLOSED, JAM, LARGE, TOKEN_MARKER, TOKEN_TERRAIN, TOKEN_TRAFFIC, TRUCK, VAN

FIELDS = ("inputs", "labels", "costs", "start", "end", "vehicle", "optimal_cost", "hour")

DIGEST_SCRIPT = f"""
import hashlib, numba, sys
from oracle import TaskSpec, generate_tasks
b = generate_tasks(TaskSpec(size=int(sys.argv[1])), 700, seed=99)
h = hashlib.sha256()
for f in {FIELDS!r}:
    h.update(getattr(b, f).tobytes())
print(numba.get_num_threads(), h.hexdigest())
"""


def digest(batch) -> str:
    h = hashlib.sha256()
    for field in FIELDS:
        h.update(getattr(batch, field).tobytes())
    return h.hexdigest()


def test_same_seed_same_bytes_on_one_and_all_threads():
    spec = TaskSpec(size=20)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = digest(generate_tasks(spec, 500, seed=5))
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = digest(generate_tasks(spec, 500, seed=5))
    finally:
        numba.set_num_threads(before)
    assert one == many
    assert digest(generate_tasks(spec, 500, seed=5)) == one


@pytest.mark.parametrize("size", [10, 40])
def test_same_bytes_in_fresh_processes_with_different_thread_counts(size):
    outputs = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        result = subprocess.run(
            [sys.executable, "-c", DIGEST_SCRIPT, str(size)], env=env, capture_output=True, text=True, check=True
        )
        outputs.append(result.stdout.split())
    assert [o[0] for o in outputs] == ["1", "2"]
    assert outputs[0][1] == outputs[1][1]


def test_task_depends_only_on_seed_and_index():
    spec = TaskSpec(size=16)
    whole = generate_tasks(spec, 100, seed=3)
    tail = generate_tasks(spec, 40, seed=3, first_index=60)
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(whole, field)[60:], getattr(tail, field))


def test_different_seeds_give_different_tasks():
    spec = TaskSpec(size=10)
    a, b = generate_tasks(spec, 200, seed=1), generate_tasks(spec, 200, seed=2)
    assert (a.inputs != b.inputs).any(axis=1).mean() > 0.99


def test_ten_thousand_inputs_are_at_least_95_percent_unique():
    batch = generate_tasks(TaskSpec(size=10), 10_000, seed=7)
    unique = len({row.tobytes() for row in batch.inputs})
    assert unique / len(batch) >= 0.95


def test_cities_differ_between_tasks():
    batch = generate_tasks(TaskSpec(size=20), 500, seed=8)
    plans = {(TOKEN_TERRAIN[row] == 0).tobytes() for row in batch.inputs}
    assert len(plans) > 490


def test_all_vehicles_and_traffic_states_occur():
    batch = generate_tasks(TaskSpec(size=20), 3000, seed=11)
    assert set(np.unique(batch.vehicle)) == {0, 1, 2, 3}
    traffic = TOKEN_TRAFFIC[batch.inputs]
    assert (traffic == JAM).any() and (traffic == CLOSED).any()
    assert set(np.unique(batch.hour)) == set(range(24))
    closed_hours = np.unique(batch.hour[(traffic == CLOSED).any(axis=1)])
    assert closed_hours.max() <= 5, "closures happen only at 0-5h"
    # A jam keeps the road type visible: jammed cells of every road type exist.
    terrain = TOKEN_TERRAIN[batch.inputs]
    assert {1, 2, 3} <= set(np.unique(terrain[traffic == JAM]))


def test_rush_hour_is_busier_than_night():
    batch = generate_tasks(TaskSpec(size=30), 3000, seed=12)
    traffic = TOKEN_TRAFFIC[batch.inputs]
    roads = TOKEN_TERRAIN[batch.inputs] > 0
    jam_share = (traffic == JAM).sum(1) / roads.sum(1)
    rush = np.isin(batch.hour, [17, 18, 19])
    quiet = np.isin(batch.hour, [20, 21, 22, 23])
    assert jam_share[rush].mean() > 2.5 * jam_share[quiet].mean()


@pytest.mark.parametrize("size,lo,hi", [(10, 3, 5), (20, 15, 20), (40, 60, 78), (8, 1, 2)])
def test_distance_range_is_respected(size, lo, hi):
    batch = generate_tasks(TaskSpec(size=size, min_distance=lo, max_distance=hi), 500, seed=size)
    sr, sc = np.divmod(batch.start, size)
    er, ec = np.divmod(batch.end, size)
    distance = np.abs(sr - er) + np.abs(sc - ec)
    assert distance.min() >= lo and distance.max() <= hi
    assert distance.max() > distance.min(), "distances should vary inside the range"


def test_vehicle_mix_is_respected_and_vehicle_is_visible_in_the_input():
    batch = generate_tasks(TaskSpec(size=12, vehicle_mix=(0, 0, 1, 3)), 2000, seed=4)
    assert set(np.unique(batch.vehicle)) == {VAN, TRUCK}
    assert 0.65 < (batch.vehicle == TRUCK).mean() < 0.85
    rows = np.arange(len(batch))
    start_tokens = batch.inputs[rows, batch.start].astype(int)
    assert (TOKEN_MARKER[start_tokens] == 1).all()
    np.testing.assert_array_equal((start_tokens - 18) // 6, batch.vehicle)
    # Trucks only ever use large roads.
    trucks = batch.vehicle == TRUCK
    route_terrain = TOKEN_TERRAIN[batch.inputs[trucks]][batch.labels[trucks] == 1]
    assert (route_terrain == LARGE).all()


def test_traffic_scale_zero_means_no_jams():
    batch = generate_tasks(TaskSpec(size=20, traffic_scale=0.0), 300, seed=2)
    assert not np.isin(TOKEN_TRAFFIC[batch.inputs], [JAM, CLOSED]).any()


def test_parks_scale_with_obstacle_density():
    sparse = generate_tasks(TaskSpec(size=30, obstacle_density=0.0), 300, seed=2)
    dense = generate_tasks(TaskSpec(size=30, obstacle_density=0.3), 300, seed=2)
    assert (TOKEN_TERRAIN[dense.inputs] == 0).mean() > (TOKEN_TERRAIN[sparse.inputs] == 0).mean() + 0.1


@pytest.mark.parametrize(
    "fields,needle",
    [
        ({"size": 7}, "size"),
        ({"size": 65}, "size"),
        ({"size": 10, "min_distance": 19}, "min_distance"),
        ({"size": 10, "min_distance": 8, "max_distance": 4}, "distance range"),
        ({"size": 10, "vehicle_mix": (0, 0, 0, 0)}, "vehicle_mix"),
        ({"size": 10, "traffic_scale": -0.5}, "traffic_scale"),
        ({"size": 10, "colour": "red"}, "colour"),
    ],
)
def test_bad_specs_are_rejected_with_the_field_named(fields, needle):
    with pytest.raises(ValidationError) as info:
        TaskSpec(**fields)
    assert needle in str(info.value)


@pytest.mark.parametrize("count", [0, -3])
def test_non_positive_count_is_rejected(count):
    with pytest.raises(ValueError, match="count"):
        generate_tasks(TaskSpec(size=10), count, seed=0)


def test_default_spec_scales_with_size():
    small, large = TaskSpec(size=10), TaskSpec(size=40)
    assert small.resolved_min_distance == 5 and large.resolved_min_distance == 20
    assert small.resolved_max_distance == 18 and large.resolved_max_distance == 78
    assert large.block_gap[1] > small.block_gap[1]
