"""CPUs a trial's Ray Train workers may reserve beside the trial's own driver.

A trial of the ASHA/Optuna search is a Tune function that drives a ``TorchTrainer``; it holds a sliver
of a CPU (``TRIAL_DRIVER_CPU``) for as long as its workers train. Where the workers fill their nodes
exactly (``tiny`` asks for one 2-CPU worker, and a laptop has 2 CPUs), that sliver leaves no node
with room for a worker and the trial waits for ever. Such workers reserve a sliver less each; torch
keeps the thread count the preset meant. Pure logic: the tuner gathers the nodes' CPUs and asks here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from curriculum.adapters.storage import workers_fit


def worker_cpus_beside_driver(
    node_cpus: Sequence[float], cpus_per_worker: float, num_workers: int, driver_cpu: float
) -> float:
    """``cpus_per_worker``, or a sliver less where the driver would otherwise leave no room.

    Unchanged when the workers fit beside the driver on some node, and when they do not fit the nodes
    at all (then they wait for an autoscaler, as a plain run does).
    """
    nodes = [{"CPU": float(cpus)} for cpus in node_cpus]
    need = {"CPU": cpus_per_worker}
    if not workers_fit(nodes, need, num_workers) or cpus_per_worker <= driver_cpu:
        return cpus_per_worker
    for i, node in enumerate(nodes):
        beside = [*nodes[:i], {"CPU": node["CPU"] - driver_cpu}, *nodes[i + 1 :]]
        if workers_fit(beside, need, num_workers):
            return cpus_per_worker
    return cpus_per_worker - driver_cpu


def base_beside_driver(base: dict[str, Any], node_cpus: Sequence[float], driver_cpu: float) -> dict[str, Any]:
    """The search's base config (as a dict) with workers that fit beside their trial's driver."""
    scaling = base["scaling"]
    per_worker = worker_cpus_beside_driver(node_cpus, scaling["cpus_per_worker"], scaling["num_workers"], driver_cpu)
    if per_worker == scaling["cpus_per_worker"]:
        return base
    adjusted = copy.deepcopy(base)
    adjusted["scaling"]["cpus_per_worker"] = per_worker
    # The threads the preset meant: 2 for a 2-CPU worker, not int(1.99).
    adjusted["train"]["torch_threads"] = base["train"].get("torch_threads") or max(1, int(scaling["cpus_per_worker"]))
    return adjusted
