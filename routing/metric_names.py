"""The names of the path metrics (``routing.metrics`` computes them), with no torch behind them: run configs
check a gate's metric name without importing the metrics."""

from __future__ import annotations

# Metrics of a single-chain route read beside the argmax, in evaluation only (see ``routing.decode``).
CHAIN_METRICS = ("optimal", "cost_ratio", "excess")
DECODED_METRICS = tuple(f"decoded_{name}" for name in CHAIN_METRICS)
FEWEST_CELLS_METRICS = tuple(f"fewest_cells_{name}" for name in CHAIN_METRICS)
METRIC_NAMES = (
    "path_ratio",
    "excess",
    "valid",
    "connectivity",
    "valid_route",
    "cost_ratio",
    "optimal",
    "exact",
    "path_f1",
    "q_halt_accuracy",
    "act_steps",
    *DECODED_METRICS,
    *FEWEST_CELLS_METRICS,
)
