"""Shared test helpers: an independent shortest-path reference (SciPy), not the oracle's A*."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

# Neighbour order of the documented canonical tie-break: up, left, down, right.
CANONICAL_ORDER = ((-1, 0), (0, -1), (1, 0), (0, 1))


def grid_graph(costs: np.ndarray, n: int) -> csr_matrix:
    """Directed 4-neighbour graph; the edge u->v weighs the cost of entering v."""
    rows, cols, weights = [], [], []
    r, c = np.divmod(np.arange(n * n), n)
    for dr, dc in CANONICAL_ORDER:
        rr, cc = r + dr, c + dc
        inside = (rr >= 0) & (rr < n) & (cc >= 0) & (cc < n)
        u = np.flatnonzero(inside)
        v = rr[inside] * n + cc[inside]
        ok = np.isfinite(costs[u]) & np.isfinite(costs[v])
        rows.append(u[ok])
        cols.append(v[ok])
        weights.append(costs[v[ok]])
    return csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n * n, n * n))


def distances_from(costs: np.ndarray, n: int, start: int) -> np.ndarray:
    return dijkstra(grid_graph(np.asarray(costs, np.float64), n), indices=int(start))


def walk_back(costs, dist, n, start, end, order=CANONICAL_ORDER) -> np.ndarray:
    """Mask of the optimal path read backwards from ``end`` with the given neighbour order."""
    mask = np.zeros(n * n, bool)
    v = int(end)
    mask[v] = True
    while v != start:
        r, c = divmod(v, n)
        for dr, dc in order:
            rr, cc = r + dr, c + dc
            if 0 <= rr < n and 0 <= cc < n:
                u = rr * n + cc
                if np.isfinite(dist[u]) and dist[u] + costs[v] == dist[v]:
                    v = u
                    break
        else:
            raise AssertionError("no predecessor on an optimal path")
        mask[v] = True
    return mask


class Reference:
    distances_from = staticmethod(distances_from)
    walk_back = staticmethod(walk_back)
    canonical_order = CANONICAL_ORDER


@pytest.fixture(scope="session")
def reference() -> Reference:
    return Reference()


# ---------------------------------------------------------------- real Ray nodes for integration tests
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict:
    # Token auth off (test cluster only); no 30 s drain on SIGTERM, so stopping a node is quick.
    return dict(os.environ, RAY_AUTH_MODE="disabled", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
                PYTHONUNBUFFERED="1")


def start_node(args: list[str], temp: Path, log: Path, cpus: int = 1) -> subprocess.Popen:
    """A Ray node in the foreground (``--block``) with ``cpus`` CPUs, ports and temp dir of its own."""
    command = ["ray", "start", "--block", "--num-cpus", str(cpus), "--num-gpus", "0", "--disable-usage-stats",
               f"--temp-dir={temp}", f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
               f"--metrics-export-port={free_port()}", *args]
    with log.open("w") as out:  # the node keeps its own copy of the descriptor
        return subprocess.Popen(command, env=ray_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_node(node: subprocess.Popen) -> None:
    node.terminate()
    try:
        node.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()


def active_nodes(address: str) -> set[str]:
    """Ids of the cluster's active nodes, as ``ray status`` lists them (``1 node_<id>``)."""
    status = subprocess.run(["ray", "status", f"--address={address}"], env=ray_env(), capture_output=True, text=True)
    if status.returncode:
        return set()
    return set(re.findall(r"^\s*1 node_([0-9a-f]+)\s*$", status.stdout, re.M))


def wait_for_nodes(address: str, count: int, nodes: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.time() + 120
    while len(active_nodes(address)) < count:
        for node, log in zip(nodes, logs):
            assert node.poll() is None, f"Ray node exited: {log.read_text()[-2000:]}"
        assert time.time() < deadline, f"{count} Ray nodes did not come up"
        time.sleep(1)


class RayNodes:
    """Start and stop real Ray nodes (``ray start --block``) on loopback, each with its own ports."""

    free_port = staticmethod(free_port)
    env = staticmethod(ray_env)
    start = staticmethod(start_node)
    stop = staticmethod(stop_node)
    active = staticmethod(active_nodes)
    wait = staticmethod(wait_for_nodes)


@pytest.fixture(scope="session")
def ray_nodes() -> RayNodes:
    return RayNodes()
