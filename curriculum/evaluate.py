"""``python -m curriculum.evaluate``: the command lives in ``curriculum.cli.evaluate``."""

from curriculum.cli.evaluate import PROG, main
from oracle.cli_errors import run_cli

if __name__ == "__main__":
    run_cli(main, PROG)
