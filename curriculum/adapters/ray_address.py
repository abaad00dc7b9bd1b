"""Is there a Ray cluster at ``--address``? Asked before ``ray.init``, which waits a long time for a
GCS that does not answer, so that a wrong address costs seconds and one line, not a hang."""

from __future__ import annotations

import socket
from typing import Optional

REACH_TIMEOUT_S = 3.0


class UnreachableAddress(ValueError):
    """No Ray cluster answers at the address given; the message names it."""


def split_address(address: str) -> Optional[tuple[str, int]]:
    """``host:port`` or ``ray://host:port`` -> (host, port); ``local`` and ``auto`` -> None (nothing to
    dial: a new local instance, or the cluster Ray finds on this machine). ValueError for anything else."""
    text = address.strip()
    if text in ("local", "auto"):
        return None
    if text.startswith("ray://"):
        text = text[len("ray://") :]
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port (e.g. 10.0.0.5:6379, ray://head:10001, auto or local)")
    return host, int(port)


def auto_address() -> Optional[str]:
    """The address of the cluster ``auto`` means (the last ``ray start`` on this machine), if any."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address("auto")
    except Exception:  # noqa: BLE001 - no cluster recorded: ray.init says so itself, at once
        return None


def check_reachable(address: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Raise ``UnreachableAddress`` unless something accepts a TCP connection at ``address`` within
    ``timeout_s`` (``auto``: at the cluster it resolves to)."""
    try:
        target = split_address(auto_address() or "auto") if address.strip() == "auto" else split_address(address)
    except ValueError as exc:
        raise UnreachableAddress(str(exc)) from None
    if target is None:
        return
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except socket.gaierror:
        raise UnreachableAddress(f"{address}: host {host!r} is not known (no DNS entry)") from None
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc)).lower()
        raise UnreachableAddress(
            f"{address}: no Ray cluster at {host}:{port} ({why} within {timeout_s:g} s); "
            "is its head running (`ray status` there)?"
        ) from None
