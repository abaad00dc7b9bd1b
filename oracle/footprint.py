"""How much memory a batch of tasks takes, checked before drawing it: a count too large for this
machine is one line naming it, not a MemoryError after minutes of generation."""

from __future__ import annotations

from typing import Optional

# Per cell: inputs and labels (1 byte each), entry costs (float32), the two route fields (float32 each),
# and the generator's working arrays while drawing (about as much again).
BYTES_PER_CELL = 24
BYTES_PER_TASK = 64  # start, end, vehicle, hour, optimal cost


def tasks_bytes(count: int, size: int) -> int:
    """Bytes that ``count`` tasks of ``size``×``size`` take while drawn and held."""
    return count * (size * size * BYTES_PER_CELL + BYTES_PER_TASK)


def available_bytes() -> Optional[int]:
    """Memory the kernel says a new allocation can have (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_fits(count: int, size: int, available: Optional[int] = None) -> None:
    """ValueError naming the count when ``count`` tasks of ``size``×``size`` need more than 80% of the
    available memory."""
    available = available_bytes() if available is None else available
    need = tasks_bytes(count, size)
    if available is not None and need > 0.8 * available:
        raise ValueError(
            f"{count:,} tasks of {size}x{size} need about {need / 2**30:.1f} GiB, more than this machine has "
            f"free ({available / 2**30:.1f} GiB available); draw fewer"
        )
