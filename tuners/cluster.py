"""The Ray cluster a search runs on."""

from __future__ import annotations

import os
from typing import Optional

from curriculum.trainer.host_memory import ray_runtime_env


def start_ray(address: Optional[str], base: dict) -> None:
    """Join the cluster at ``address`` (None: RAY_ADDRESS or a new local instance).

    Trials' workers start inside this job, so the base run's worker environment (its allocator settings) is
    given here; a trial's own ``ray.init`` is skipped, Ray being up already.
    """
    import ray

    ray.init(
        address=address or os.environ.get("RAY_ADDRESS") or "local",
        logging_level="WARNING",
        log_to_driver=False,
        include_dashboard=False,
        runtime_env=ray_runtime_env(base["train"]["keep_freed_memory"]),
    )
