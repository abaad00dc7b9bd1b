"""``python -m oracle.generate``: write a routing dataset in the HRM puzzle-dataset layout."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError

from oracle.cli_errors import USAGE_EXIT, OneLineParser, UsageError, describe_validation_error, run_cli
from oracle.dataset import check_writable_target, draw_splits, save_dataset
from oracle.footprint import check_fits
from oracle.spec import MAX_SIZE, MIN_SIZE, TaskSpec

PROG = "python -m oracle.generate"
PROGRESS_FROM = 20_000  # counts at least this large get a progress bar

_SPEC_FLAGS = {
    "size": "--size",
    "min_distance": "--min-distance",
    "max_distance": "--max-distance",
    "traffic_scale": "--traffic-scale",
    "vehicle_mix": "--vehicle-mix",
    "obstacle_density": "--obstacle-density",
}


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog=PROG, description=__doc__)
    parser.add_argument("--size", type=int, required=True, help=f"grid side N ({MIN_SIZE}-{MAX_SIZE})")
    parser.add_argument("--count", type=int, required=True, help="total tasks (train + test)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (must not exist)")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of tasks in test/ (default 0.1)")
    parser.add_argument("--min-distance", type=int, help="smallest start-end Manhattan distance (default N//2)")
    parser.add_argument("--max-distance", type=int, help="largest start-end Manhattan distance (default 2(N-1))")
    parser.add_argument("--traffic-scale", type=float, help="multiplier on jam/closure probabilities (default 1)")
    parser.add_argument("--vehicle-mix", type=str, help="weights bike,car,van,truck (default 1,1,1,1)")
    parser.add_argument("--obstacle-density", type=float, help="share of the area covered by parks")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return parser


def spec_from_args(args) -> TaskSpec:
    """A ``TaskSpec`` from the parsed flags; a bad value is reported under its flag's name."""
    fields = {name: getattr(args, name) for name in _SPEC_FLAGS if getattr(args, name) is not None}
    if "vehicle_mix" in fields:
        try:
            fields["vehicle_mix"] = tuple(float(x) for x in fields["vehicle_mix"].split(","))
        except ValueError:
            raise UsageError(f"--vehicle-mix {args.vehicle_mix!r}: expected four numbers like 1,1,1,1") from None
        if len(fields["vehicle_mix"]) != 4:
            raise UsageError(f"--vehicle-mix {args.vehicle_mix!r}: expected four weights (bike,car,van,truck)")
    try:
        return TaskSpec(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if field in _SPEC_FLAGS:
            message = first["msg"].removeprefix("Value error, ")
            raise UsageError(f"{_SPEC_FLAGS[field]} {getattr(args, field)}: {message}") from None
        raise UsageError(describe_validation_error(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.count <= 0:
        raise UsageError(f"--count must be positive, got {args.count}")
    if args.seed < 0:
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    if not 0.0 <= args.test_fraction < 1.0:
        raise UsageError(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    spec = spec_from_args(args)
    try:
        check_writable_target(args.out, args.overwrite)
    except OSError as exc:
        raise UsageError(str(exc)) from None

    try:
        check_fits(args.count, spec.size)
    except ValueError as exc:
        raise UsageError(f"--count {exc}") from None
    started = time.perf_counter()
    bar = None
    if args.count >= PROGRESS_FROM:
        from tqdm import tqdm

        bar = tqdm(total=args.count, unit="task", desc=f"{spec.size}x{spec.size}", file=sys.stderr)
    try:
        train, test = draw_splits(spec, args.count, args.seed, args.test_fraction, progress=bar.update if bar else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if bar:
            bar.close()
    try:
        out = save_dataset(args.out, train, test, spec, args.seed, overwrite=args.overwrite)
    except OSError as exc:
        raise UsageError(f"cannot write --out {args.out}: {exc}") from None
    elapsed = time.perf_counter() - started
    print(
        f"wrote {out}: {len(train)} train + {len(test)} test tasks on {spec.size}x{spec.size} "
        f"(seed {args.seed}) in {elapsed:.1f}s"
    )
    return 0


def entry_point() -> NoReturn:
    """``hrm-oracle generate [ARGS]``: the installed form of ``python -m oracle.generate``."""
    args = sys.argv[1:]
    if args[:1] != ["generate"]:
        print(
            "usage: hrm-oracle generate [ARGS ...]  (hrm-oracle generate --help for the options)",
            file=sys.stderr if args[:1] not in ([], ["-h"], ["--help"]) else sys.stdout,
        )
        sys.exit(0 if args[:1] in (["-h"], ["--help"]) else USAGE_EXIT)
    run_cli(lambda: main(args[1:]), PROG)


if __name__ == "__main__":
    run_cli(main, PROG)
