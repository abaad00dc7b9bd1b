"""``python -m curriculum.replay``: the command lives in ``curriculum.cli.replay``."""

from curriculum.cli.replay import PROG, main
from oracle.cli_errors import run_cli

if __name__ == "__main__":
    run_cli(main, PROG)
