"""``python -m curriculum.compare``: the command lives in ``curriculum.cli.compare``."""

from curriculum.cli.compare import PROG, main
from oracle.cli_errors import run_cli

if __name__ == "__main__":
    run_cli(main, PROG)
