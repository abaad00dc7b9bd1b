"""``hrm-curriculum COMMAND [ARGS]``: the installed entry point for every command of the service.

``hrm-curriculum run ...`` is ``python -m curriculum.run ...``; likewise evaluate, compare, replay,
and ``tune`` (``python -m tuners.penalties``). The module form keeps working everywhere.
"""

from __future__ import annotations

import importlib
import sys
from typing import NoReturn, Optional

from oracle.cli_errors import USAGE_EXIT, run_cli

COMMANDS = {
    "run": "curriculum.cli.run",
    "evaluate": "curriculum.cli.evaluate",
    "compare": "curriculum.cli.compare",
    "replay": "curriculum.cli.replay",
    "tune": "tuners.penalties",
}
PROG = "hrm-curriculum"


def usage() -> str:
    return f"usage: {PROG} {{{','.join(COMMANDS)}}} [ARGS ...]  ({PROG} COMMAND --help for a command's options)"


def main(argv: Optional[list[str]] = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else USAGE_EXIT)
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"{PROG}: error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(USAGE_EXIT)
    module = importlib.import_module(COMMANDS[command])
    run_cli(lambda: module.main(rest), module.PROG)


if __name__ == "__main__":
    main()
