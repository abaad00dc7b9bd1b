"""``python -m curriculum.replay RUN_DIR``: log a run that trained without MLflow into MLflow.

A run on a machine without MLflow keeps its params, metrics, tags and pictures in
``RUN_DIR/tracking`` (see ``curriculum.adapters.tracking.FileTracker``). Bring the directory back and replay
it: a new MLflow run gets every metric at its original step and time, and ``RUN_DIR/run.json``
records the run id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from curriculum.core.uris import redact_uri
from oracle.cli_errors import OneLineParser, UsageError, run_cli

PROG = "python -m curriculum.replay"


def main(argv: Optional[list[str]] = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run directory with a tracking/ log")
    parser.add_argument("--tracking-uri", help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--experiment", help="MLflow experiment (default: the run's own)")
    args = parser.parse_args(argv)
    config_path, tracking = args.run_dir / "config.json", args.run_dir / "tracking"
    if not tracking.is_dir() or not config_path.is_file():
        raise UsageError(f"{args.run_dir} is not a run directory with a tracking/ log")
    from curriculum.adapters.mlflow_store import create_run, resolve_tracking_uri
    from curriculum.adapters.mlflow_tracker import MlflowTracker
    from curriculum.adapters.tracking import replay_into

    try:
        uri = resolve_tracking_uri(args.tracking_uri)
    except ValueError as exc:
        raise UsageError(f"--tracking-uri: {exc}") from None
    config = json.loads(config_path.read_text())
    experiment = args.experiment or config.get("tracking", {}).get("experiment", "hrm-curriculum")
    name = config.get("tracking", {}).get("run_name") or f"{config.get('preset', 'run')}-{args.run_dir.name}"
    run_id = create_run(uri, experiment, name, {"curriculum.replayed_from": str(args.run_dir.absolute())})
    lines = replay_into(args.run_dir, MlflowTracker(uri, run_id))
    record_path = args.run_dir / "run.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record.update({"run_id": run_id, "tracking_uri": redact_uri(uri), "experiment": experiment})
    record_path.write_text(json.dumps(record, indent=2))
    print(
        f"replayed {lines} metric records of {args.run_dir} into MLflow run {run_id} ({redact_uri(uri)}, {experiment})"
    )
    return 0


if __name__ == "__main__":
    run_cli(main, PROG)
