"""Workers of a tuner trial fit beside the trial's driver (pure logic; the search itself is in test_tuner)."""

import pytest

from tuners.resources import base_beside_driver, worker_cpus_beside_driver

SLIVER = 0.01


@pytest.mark.parametrize(
    "nodes, per_worker, workers, expected",
    [
        ([2.0], 2.0, 1, 2.0 - SLIVER),  # tiny on a 2-core laptop: the driver's sliver left no room
        ([2.0], 1.0, 2, 1.0 - SLIVER),  # two 1-CPU workers filling the laptop
        ([4.0], 2.0, 1, 2.0),  # room to spare
        ([2.0, 2.0], 2.0, 1, 2.0),  # the driver sits on the other node
        ([2.0, 2.0], 2.0, 2, 2.0 - SLIVER),  # both nodes full
        ([1.0], 2.0, 1, 2.0),  # does not fit at all: waits for an autoscaler, unchanged
        ([2.0], 0.005, 1, 0.005),  # smaller than the sliver: left alone
    ],
)
def test_workers_give_up_a_sliver_only_where_the_driver_leaves_no_room(nodes, per_worker, workers, expected):
    assert worker_cpus_beside_driver(nodes, per_worker, workers, SLIVER) == pytest.approx(expected)


def test_a_squeezed_worker_keeps_the_threads_the_preset_meant():
    base = {"scaling": {"num_workers": 1, "cpus_per_worker": 2.0}, "train": {"torch_threads": None}}
    adjusted = base_beside_driver(base, [2.0], SLIVER)
    assert adjusted["scaling"]["cpus_per_worker"] == pytest.approx(1.99)
    assert adjusted["train"]["torch_threads"] == 2
    assert base["scaling"]["cpus_per_worker"] == 2.0, "the search's own base is not changed"
    assert base_beside_driver(base, [8.0], SLIVER) is base
    explicit = {**base, "train": {"torch_threads": 1}}
    assert base_beside_driver(explicit, [2.0], SLIVER)["train"]["torch_threads"] == 1
