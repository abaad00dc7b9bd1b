"""One driver per run directory: a lock that the kernel releases the moment its holder dies.

``--resume`` marks a run that MLflow still shows RUNNING as KILLED, which is only true when the
run's driver is gone. The driver holds an exclusive ``flock`` on ``DIR/driver.lock`` for its whole
life; the kernel drops it when the process exits, however it exits (SIGKILL included). A second
driver that cannot take the lock knows the first one is alive and leaves the run alone.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_NAME = "driver.lock"


class RunLockedError(RuntimeError):
    """The run directory's driver is still alive."""


def hold_run_lock(run_dir: Path) -> IO[str]:
    """Take the run's lock for this process; keep the returned file open as long as the run goes on."""
    path = Path(run_dir) / LOCK_NAME
    handle = open(path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunLockedError(
            f"{run_dir} is still being trained by a live driver (pid {holder}); stop that process first"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def live_driver(run_dir: Path) -> str | None:
    """The pid a live driver of ``run_dir`` wrote in its lock, or None when no driver holds the lock.
    Only looks: creates nothing, takes nothing."""
    path = Path(run_dir) / LOCK_NAME
    if not path.is_file():
        return None
    with open(path) as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown"
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None
