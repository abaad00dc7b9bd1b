"""Command-line error handling shared by every CLI: one clear line and exit 2 for bad input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from pydantic import ValidationError

USAGE_EXIT = 2


class UsageError(Exception):
    """Bad arguments, config values or files: reported as one line, exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` that reports a usage error as a single line (and exit 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """The first problem of a pydantic error as ``field.path: message``."""
    first = exc.errors()[0]
    location = ".".join(str(part) for part in first["loc"] if part != "__root__")
    message = first["msg"].removeprefix("Value error, ")
    where = ".".join(part for part in (prefix, location) if part)
    return f"{where}: {message}" if where else message


def run_cli(main: Callable[[], int], prog: str) -> NoReturn:
    """Run ``main`` and turn usage problems into ``prog: error: ...`` on stderr with exit 2."""
    try:
        code = main()
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(USAGE_EXIT)
    except ValidationError as exc:
        print(f"{prog}: error: {describe_validation_error(exc)}", file=sys.stderr)
        sys.exit(USAGE_EXIT)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code)
