"""Shared test helpers: an independent shortest-path reference (SciPy), not the oracle's A*; real Ray
nodes and a real MLflow server on loopback for integration tests."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

# Neighbour order of the documented canonical tie-break: up, left, down, right.
CANONICAL_ORDER = ((-1, 0), (0, -1), (1, 0), (0, 1))
ALTERNATIVE_ORDER = ((0, 1), (1, 0), (0, -1), (-1, 0))  # right, down, left, up: the canonical rule reversed


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


def distances_to(costs: np.ndarray, n: int, end: int) -> np.ndarray:
    """Cheapest cost from every cell to ``end`` (Dijkstra on the reversed graph)."""
    return dijkstra(grid_graph(np.asarray(costs, np.float64), n).T.tocsr(), indices=int(end))


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
    distances_to = staticmethod(distances_to)
    grid_graph = staticmethod(grid_graph)
    walk_back = staticmethod(walk_back)
    canonical_order = CANONICAL_ORDER


@pytest.fixture(scope="session")
def reference() -> Reference:
    return Reference()


@pytest.fixture(scope="session")
def two_optimal_routes(reference) -> tuple:
    """(batch of one real 10x10 task, its label route, another optimal route of the same length), the
    routes as bool masks over the cells."""
    import torch

    from oracle import TaskSpec, generate_tasks
    from oracle.dataset import select
    from oracle.vocab import PATH
    from routing.batch import task_tensors

    tasks = generate_tasks(TaskSpec(size=10), 64, seed=11)
    for i in range(len(tasks)):
        costs = tasks.costs[i].astype(np.float64)
        dist = reference.distances_from(costs, 10, tasks.start[i])
        other = reference.walk_back(costs, dist, 10, tasks.start[i], tasks.end[i], ALTERNATIVE_ORDER)
        label = tasks.labels[i] == PATH
        if not np.array_equal(other, label) and other.sum() == label.sum():
            return task_tensors(select(tasks, np.array([i]))), torch.from_numpy(label), torch.from_numpy(other)
    raise AssertionError("no task with a second optimal route of the same length")


# ---------------------------------------------------------------- real Ray nodes for integration tests
_issued_ports: set[int] = set()


def free_port() -> int:
    """A loopback port free now and never handed out before in this test process.

    The OS may offer a port it just offered again once the probing socket is closed, and a node given the same port
    for two of its listeners refuses to start; remembering what was handed out keeps every port distinct.
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _issued_ports:
            _issued_ports.add(port)
            return port


def ray_env() -> dict:
    # Token auth off (test cluster only); no 30 s drain on SIGTERM, so stopping a node is quick.
    return dict(os.environ, RAY_AUTH_MODE="disabled", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", PYTHONUNBUFFERED="1")


def start_node(args: list[str], temp: Path, log: Path, cpus: int = 1) -> subprocess.Popen:
    """A Ray node in the foreground (``--block``) with ``cpus`` CPUs, ports and temp dir of its own."""
    command = [
        "ray",
        "start",
        "--block",
        "--num-cpus",
        str(cpus),
        "--num-gpus",
        "0",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        *args,
    ]
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


@dataclass
class RayHead:
    address: str
    process: subprocess.Popen  # the ``ray start --block`` process: every Ray process of the cluster descends from it


@pytest.fixture(scope="module")
def ray_head(ray_nodes, tmp_path_factory) -> RayHead:
    """A local 2-CPU Ray head on loopback for one test module (token authentication off: test cluster)."""
    short = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # socket paths must stay short
    port = ray_nodes.free_port()
    address = f"127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("ray") / "head.log"
    head = ray_nodes.start(
        [
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            f"--dashboard-port={ray_nodes.free_port()}",
        ],
        short / "h",
        log,
        cpus=2,
    )
    try:
        ray_nodes.wait(address, 1, [head], [log])
        yield RayHead(address, head)
    finally:
        ray_nodes.stop(head)
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_address(ray_head) -> str:
    return ray_head.address


# ---------------------------------------------------------------- a real MLflow server on loopback
def start_mlflow_server(db: Path, port: int, log: Path) -> subprocess.Popen:
    """``mlflow server`` on 127.0.0.1 (never all interfaces) with its runs in the SQLite file ``db``."""
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no background job workers
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        cwd=db.parent,
    )


def wait_for_mlflow_server(
    proc: subprocess.Popen, port: int, log: Path, limit_s: float = 45.0, path: str = "/health"
) -> None:
    """Until ``http://127.0.0.1:<port><path>`` answers 200 (``/ping`` for ``mlflow models serve``)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.args[:4]} exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise AssertionError(f"{proc.args[:4]} did not answer {path} in {limit_s} s: {log.read_text()[-3000:]}")


def stop_mlflow_server(proc: subprocess.Popen) -> None:
    # The server runs uvicorn in child processes: end the whole process group it was started in.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@pytest.fixture(scope="session")
def mlflow_server() -> SimpleNamespace:
    """Start, await and stop real ``mlflow server`` processes."""
    return SimpleNamespace(
        free_port=free_port, start=start_mlflow_server, wait=wait_for_mlflow_server, stop=stop_mlflow_server
    )
