"""``python -m curriculum.compare``: the curriculum runs of an MLflow experiment side by side, best first.

For each run: name, status, outcome, the gates, the first stage's penalty weights, the step at which each
stage was first reached (read from the run's transition tags, so a promotion at step 80 reads 80 even
though stage metrics are logged only at evaluations), and the final held-out connectivity, valid_route
and optimal. Runs are ranked within their ladder of grid sizes, one table per ladder: stage k of one
ladder is not stage k of another. Best first = finished, then furthest stage reached, then fewest steps
to reach it, then highest final eval/valid_route.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Optional

from curriculum.adapters.mlflow_store import make_client, resolve_tracking_uri, sqlite_path
from curriculum.core.transitions import stage_changes
from curriculum.core.uris import redact_uri
from oracle.cli_errors import OneLineParser, UsageError, run_cli

PROG = "python -m curriculum.compare"
STAGE_METRIC = "curriculum/stage"
EVAL_COLUMNS = ("connectivity", "valid_route", "optimal")
_STAGE_SIZE = re.compile(r"^curriculum\.stages\.(\d+)\.size$")
_PENALTY_PREFIX = "curriculum.stages.0.penalties."
_GATE = re.compile(r"^curriculum\.stages\.(\d+)\.gate\.(metric|threshold|patience|guard_max_excess)$")


def ladder_sizes(params: dict[str, str]) -> list[int]:
    """Grid sizes of the stages, in stage order, from the flattened-config params."""
    found = {int(m.group(1)): int(float(v)) for k, v in params.items() if (m := _STAGE_SIZE.match(k))}
    return [found[i] for i in sorted(found)]


def penalty_weights(params: dict[str, str]) -> str:
    """The first stage's penalty weights as ``name=value`` pairs, by name."""
    pairs = sorted((k[len(_PENALTY_PREFIX) :], v) for k, v in params.items() if k.startswith(_PENALTY_PREFIX))
    return " ".join(f"{name}={_compact(value)}" for name, value in pairs)


def gate_settings(params: dict[str, str]) -> str:
    """Each stage's gate as ``metric>=threshold xpatience`` (with ``excess<=g`` when guarded); one entry
    when every stage has the same gate, else ``s0: ...; s1: ...``."""
    found: dict[int, dict[str, str]] = {}
    for key, value in params.items():
        if m := _GATE.match(key):
            found.setdefault(int(m.group(1)), {})[m.group(2)] = value
    gates = []
    for stage in sorted(found):
        gate = found[stage]
        text = f"{gate.get('metric', '?')}>={_compact(gate.get('threshold', '?'))} x{gate.get('patience', '?')}"
        guard = gate.get("guard_max_excess")
        if guard not in (None, "None", ""):
            text += f" excess<={_compact(guard)}"
        gates.append(text)
    if len(set(gates)) == 1:
        return gates[0]
    return "; ".join(f"s{stage}: {gate}" for stage, gate in zip(sorted(found), gates))


def transition_history(tags: dict[str, str]) -> list[tuple[int, float]]:
    """(step, stage entered) for each stage change in the run's transition tags, plus (0, 0): the exact
    steps of promotions and back-offs, which the evaluation-time stage metric only brackets."""
    return [(0, 0.0)] + [(change.step, float(change.to_stage)) for change in stage_changes(tags)]


def stage_reach_steps(history: Sequence[tuple[int, float]], stages: int) -> list[Optional[int]]:
    """``result[k]`` = the first step at which the stage index was at least k (None if never), k < ``stages``."""
    reached: list[Optional[int]] = [None] * stages
    for step, value in sorted(history):
        for k in range(stages):
            if value >= k and (reached[k] is None or step < reached[k]):
                reached[k] = step
    return reached


def rank_runs(rows: list[dict]) -> list[dict]:
    """Rows of one ladder ordered best first: finished (``outcome``), then furthest ``stage``, then fewest
    steps to reach it (``reached[stage]``), then highest ``valid_route``. Rows without a stage (nothing
    logged) come last; ties keep their order.
    """

    def key(row: dict) -> tuple:
        stage = row.get("stage")
        if stage is None:
            return (1, 1, 0, 0.0, 0.0)
        reached = row.get("reached") or []
        steps = reached[stage] if stage < len(reached) and reached[stage] is not None else math.inf
        valid_route = row.get("valid_route")
        score = -valid_route if valid_route is not None and math.isfinite(valid_route) else math.inf
        return (0, 0 if row.get("outcome") == "finished" else 1, -stage, steps, score)

    return sorted(rows, key=key)


def by_ladder(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """Rows grouped by ladder, each group ranked; groups in the order their first run appears."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row.get("ladder") or "", []).append(row)
    return [(ladder, rank_runs(group)) for ladder, group in groups.items()]


def run_row(client, run) -> dict:
    """The comparison row of one MLflow run. Stage changes come from the transition tags; the stage
    metric's history (one extra request) only tells whether the run logged any evaluation."""
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    sizes = ladder_sizes(params)
    history = transition_history(tags)
    if len(history) == 1 and not client.get_metric_history(run.info.run_id, STAGE_METRIC):
        history = []  # nothing logged yet: no stage to rank by
    stage = int(max(value for _, value in history)) if history else None
    stages = max(len(sizes), (stage or 0) + 1)
    return {
        "name": run.info.run_name or run.info.run_id,
        "run_id": run.info.run_id,
        "status": run.info.status,
        "outcome": tags.get("curriculum.outcome", ""),
        "ladder": "-".join(str(s) for s in sizes),
        "gates": gate_settings(params),
        "penalties": penalty_weights(params),
        "stage": stage,
        "reached": stage_reach_steps(history, stages) if history else [],
        **{name: metrics.get(f"eval/{name}") for name in EVAL_COLUMNS},
    }


def format_table(rows: list[dict]) -> str:
    """Rows as plain text with aligned columns; steps to reach stage k are in the column ``to sK``."""
    most = max((len(r["reached"]) for r in rows), default=0)
    headers = ["#", "run", "status", "outcome", "ladder", "gates", "penalties (stage 0)", "stage"]
    headers += [f"to s{k}" for k in range(1, most)] + list(EVAL_COLUMNS)
    lines = [headers]
    for rank, row in enumerate(rows, start=1):
        reached = row["reached"] + [None] * (most - len(row["reached"]))
        lines.append(
            [
                str(rank),
                row["name"],
                row["status"],
                row["outcome"] or "-",
                row["ladder"] or "-",
                row.get("gates") or "-",
                row["penalties"] or "-",
                _text(row["stage"]),
            ]
            + [_text(s) for s in reached[1:]]
            + [_text(row[name]) for name in EVAL_COLUMNS]
        )
    numeric = {0, 7} | set(range(8, len(headers)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    out = []
    for n, line in enumerate(lines):
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _text(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _compact(value: str) -> str:
    try:
        return f"{float(value):g}"
    except ValueError:
        return value


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--experiment", default=None, help="MLflow experiment (default: tracking.experiment of the run config)"
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )
    parser.add_argument("--max-runs", type=int, default=100, help="Compare at most this many latest runs")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_runs < 1:
        raise UsageError(f"--max-runs must be at least 1, not {args.max_runs}")
    experiment = args.experiment
    if experiment is None:
        # Imported only here: the config pulls in torch, and the default must not drift from it.
        from curriculum.core.config import TrackingConfig

        experiment = TrackingConfig.model_fields["experiment"].default
    try:
        uri = resolve_tracking_uri(args.tracking_uri)
    except ValueError as exc:
        raise UsageError(f"--tracking-uri: {exc}") from None
    db = sqlite_path(uri)
    if db is not None and not db.is_file():  # opening it would create an empty database
        raise UsageError(f"no MLflow database at {db}")
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # keep stdout a table and stderr one line

    from mlflow.exceptions import MlflowException

    try:
        client = make_client(uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise UsageError(f"no experiment {experiment!r} at {redact_uri(uri)}")
        runs = client.search_runs(
            [found.experiment_id], max_results=args.max_runs, order_by=["attributes.start_time DESC"]
        )
        rows = [run_row(client, run) for run in runs]
    except MlflowException as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{redact_uri(uri)}: {message}") from None
    if not rows:
        print(f"experiment {experiment!r} at {redact_uri(uri)} has no runs")
        return 0
    groups = by_ladder(rows)
    print(
        f"experiment {experiment!r} at {redact_uri(uri)}: {len(rows)} run{'s' if len(rows) > 1 else ''}, best first"
        + (f", ranked within each of {len(groups)} ladders" if len(groups) > 1 else "")
    )
    for n, (ladder, group) in enumerate(groups):
        if len(groups) > 1:
            print(("\n" if n else "") + f"ladder {ladder or '(unknown)'}:")
        print(format_table(group))
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
