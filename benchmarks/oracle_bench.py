"""Oracle speed: tasks/s for generate+solve per grid size on 1 and all threads, and µs per A*
solve next to SciPy's Dijkstra on the same grids.

    python benchmarks/oracle_bench.py [--count 40000] [--sizes 10,20,30,40]

Targets (2-core machine): 40×40 generate+solve >= 50,000 tasks/s on 2 threads; one A* solve at
40×40 <= 20 µs on one thread.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from numba import njit
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from oracle import TaskSpec, generate_tasks
from oracle.astar import make_workspace, solve


@njit(cache=True)
def _solve_all(costs, n, starts, ends, g, settled, heads, entry_cell, entry_next, out):
    for i in range(costs.shape[0]):
        out[i] = solve(costs[i], n, starts[i], ends[i], g, settled, heads, entry_cell, entry_next)


def _graph(costs: np.ndarray, n: int) -> csr_matrix:
    r, c = np.divmod(np.arange(n * n), n)
    rows, cols, weights = [], [], []
    for dr, dc in ((-1, 0), (0, -1), (1, 0), (0, 1)):
        rr, cc = r + dr, c + dc
        inside = (rr >= 0) & (rr < n) & (cc >= 0) & (cc < n)
        u, v = np.flatnonzero(inside), rr[inside] * n + cc[inside]
        ok = np.isfinite(costs[u]) & np.isfinite(costs[v])
        rows.append(u[ok]), cols.append(v[ok]), weights.append(costs[v[ok]])
    return csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n * n,) * 2)


def tasks_per_second(spec: TaskSpec, count: int, threads: int, repeats: int = 3) -> float:
    numba.set_num_threads(threads)
    generate_tasks(spec, 64, seed=0)  # compile / warm up
    best = np.inf
    for r in range(repeats):
        t0 = time.perf_counter()
        generate_tasks(spec, count, seed=1000 + r)
        best = min(best, time.perf_counter() - t0)
    return count / best


def solve_microseconds(spec: TaskSpec, count: int, scipy_count: int) -> tuple[float, float]:
    numba.set_num_threads(1)
    batch = generate_tasks(spec, count, seed=77)
    n = spec.size
    icost = np.where(np.isfinite(batch.costs), batch.costs, -1).astype(np.int32)
    out = np.empty(count, np.int64)
    ws = make_workspace(n * n)
    _solve_all(icost[:8], n, batch.start, batch.end, *ws, out)
    t0 = time.perf_counter()
    _solve_all(icost, n, batch.start, batch.end, *ws, out)
    astar_us = (time.perf_counter() - t0) / count * 1e6
    assert np.array_equal(out, batch.optimal_cost.astype(np.int64))
    graphs = [_graph(batch.costs[i].astype(np.float64), n) for i in range(scipy_count)]
    t0 = time.perf_counter()
    for i, graph in enumerate(graphs):
        dijkstra(graph, indices=int(batch.start[i]))
    scipy_us = (time.perf_counter() - t0) / scipy_count * 1e6
    return astar_us, scipy_us


def fields_microseconds(spec: TaskSpec, count: int) -> float:
    """Both dense fields (Dijkstra from the start and to the end) per task, on one thread."""
    numba.set_num_threads(1)
    batch = generate_tasks(spec, count, seed=78)
    batch.route_fields()  # compile / warm up
    t0 = time.perf_counter()
    batch.route_fields()
    return (time.perf_counter() - t0) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40_000)
    parser.add_argument("--sizes", default="10,20,30,40")
    args = parser.parse_args()
    all_threads = numba.config.NUMBA_NUM_THREADS
    print(f"numba {numba.__version__}, {all_threads} threads available")
    print(
        f"{'N':>3} | {'gen+solve 1 thr':>16} | {f'gen+solve {all_threads} thr':>16} | "
        f"{'A* µs/solve':>11} | {'SciPy Dijkstra µs':>17} | {'fields µs/task':>14}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        spec = TaskSpec(size=size)
        one = tasks_per_second(spec, args.count, 1)
        many = tasks_per_second(spec, args.count, all_threads)
        astar_us, scipy_us = solve_microseconds(spec, min(args.count, 20_000), 500)
        fields_us = fields_microseconds(spec, min(args.count, 20_000))
        print(
            f"{size:>3} | {one:>12,.0f} t/s | {many:>12,.0f} t/s | {astar_us:>11.2f} | {scipy_us:>17.1f}"
            f" | {fields_us:>14.1f}"
        )


if __name__ == "__main__":
    main()
