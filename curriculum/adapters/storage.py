"""Where Ray Train keeps checkpoints: a local path on one machine, shared storage across machines.

Ray Train workers write their checkpoints to ``RunConfig(storage_path=...)`` and the controller on the
driver's node reads them back; a restart after a failure may place a worker on another node. A local
path is therefore only safe while every Ray node runs on one host. Pure logic, no Ray import: the Ray
adapter (``curriculum.adapters.ray_backend``) gathers the facts and asks here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Optional

# "s3://bucket/x", "gs://...", "abfss://..."; a one-letter scheme is a Windows drive ("C:\\runs").
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://")


class StorageError(ValueError):
    """The storage setting cannot work on this cluster (one line, names ``scaling.storage``)."""


def storage_scheme(storage: str) -> Optional[str]:
    """The URI scheme of ``storage`` in lower case (None for a plain path; ``file`` for ``file://``)."""
    match = _URI.match(storage)
    return match.group("scheme").lower() if match else None


def is_shared_uri(storage: str) -> bool:
    """True for a remote filesystem URI (s3://, gs://, hdfs://, ...) that every node reaches alike."""
    scheme = storage_scheme(storage)
    return scheme is not None and scheme != "file"


def check_storage(
    storage: Optional[str],
    node_hosts: Sequence[str],
    num_workers: int,
    *,
    local_default: str,
    may_add_nodes: bool = False,
) -> str:
    """The ``storage_path`` for Ray Train, or ``StorageError`` when a local path cannot work.

    ``storage``: the ``scaling.storage`` setting (None = ``local_default``, a directory in the run).
    ``node_hosts``: the host (IP address) of every alive Ray node; several nodes on one host share
    its disk, so they count once. ``may_add_nodes``: the autoscaler will start nodes for this run
    (the alive ones cannot hold its workers), so more hosts are coming than ``node_hosts`` shows.
    URIs with a scheme other than ``file`` are passed through unchanged.
    """
    if storage is not None and not storage.strip():
        raise StorageError("scaling.storage is empty: give a local path (one machine) or an s3:// URI")
    if storage is not None and is_shared_uri(storage):
        return storage
    hosts = sorted(set(node_hosts))
    if len(hosts) > 1 or may_add_nodes:
        where = f"{len(hosts)} host(s)" + (
            " plus nodes yet to join (the alive ones cannot hold them)" if may_add_nodes else ""
        )
        given = f"the local path {storage!r}" if storage is not None else "no storage (a local directory)"
        raise StorageError(
            f"scaling.storage: {num_workers} worker(s) on a cluster of {where} need shared storage "
            f"for checkpoints, but the run has {given}; set scaling.storage=s3://BUCKET/PREFIX"
        )
    return storage if storage is not None else local_default


def workers_fit(
    node_resources: Sequence[Mapping[str, float]], per_worker: Mapping[str, float], num_workers: int
) -> bool:
    """Whether nodes with these total resources hold ``num_workers`` workers (none spans two nodes).

    When they do not, the run waits for the autoscaler to start nodes, that is, other hosts.
    """
    needed = {name: amount for name, amount in per_worker.items() if amount > 0}
    held = 0
    for have in node_resources:
        # The epsilon keeps 0.9 / 0.3 (2.999...) from rounding down to 2 workers.
        held += min((int(have.get(name, 0.0) / amount + 1e-9) for name, amount in needed.items()), default=num_workers)
    return held >= num_workers
