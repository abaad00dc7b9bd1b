"""The local Ray instance in a process group of its own, so that a signal to the driver's group spares it.

``timeout``, batch schedulers and ``kill -TERM -PGID`` signal a whole process group. The processes
``ray.init`` starts for a local instance (GCS, raylet, workers) would be in the driver's group and die
at once, leaving the driver nothing to stop gracefully with: no checkpoint at the stop step, and a
60 s wait for a GCS that is gone. Started from a group of their own, they live on while the driver
asks the workers to stop, write the checkpoint and close the MLflow run; they end with the driver
(Ray ties them to it), or at ``ray.shutdown``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def children_in_their_own_group() -> Iterator[bool]:
    """Processes started inside the block get a new process group; yields whether they do.

    The driver steps into a new group for the block and back into its own afterwards, so it still
    receives its group's signals itself. A driver that leads its group already (started by an
    interactive shell, whose job control signals the group for Ctrl-C, which Ray's processes block)
    keeps its children in its group.
    """
    if os.name != "posix" or os.getpgrp() == os.getpid():
        yield False
        return
    original = os.getpgrp()
    os.setpgid(0, 0)
    try:
        yield True
    finally:
        os.setpgid(0, original)
