"""``python -m curriculum.run``: the command lives in ``curriculum.cli.run``."""

from curriculum.cli.run import PROG, main
from oracle.cli_errors import run_cli

if __name__ == "__main__":
    run_cli(main, PROG)
