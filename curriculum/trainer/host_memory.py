"""Keep freed tensor memory in the process instead of handing it back to the kernel (glibc only).

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and
returns it with ``munmap`` when freed, so each step at 40x40 and batch 64 maps its large activations
anew and the kernel zero-fills every page on first touch: on a 2-core CPU a fifth of a training
step's CPU time went to the kernel (nearer a third with other work beside it). Serving them from
the heap and never trimming it reuses the same pages every step, at the price of a higher resident
peak (the largest step's working set stays mapped). Elsewhere than glibc nothing changes.
"""

from __future__ import annotations

import ctypes
import platform
from typing import Any, Optional

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # the largest value mallopt's int takes

# The same settings read at process start. A Ray Train worker runs the loop on a thread of its own, whose
# own arena still maps large blocks whatever mallopt says later, so its processes also share one arena.
ALLOCATOR_ENV: dict[str, str] = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(_NEVER_TRIM),
    "MALLOC_ARENA_MAX": "1",
}


def is_glibc() -> bool:
    """True where the C library is glibc (the settings mean nothing elsewhere)."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Serve large blocks of this process from the heap and never trim it; True when glibc took both."""
    if not is_glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))


def ray_runtime_env(keep: bool) -> Optional[dict[str, Any]]:
    """``runtime_env`` for ``ray.init``: the settings in every worker's environment (None when ``keep`` is off
    or not glibc). They must be there when a worker process starts, hence the job's environment."""
    return {"env_vars": dict(ALLOCATOR_ENV)} if keep and is_glibc() else None
