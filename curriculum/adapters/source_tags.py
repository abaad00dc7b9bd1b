"""MLflow's source tags for a run: which command started it, and from which git commit of this checkout.

``MlflowClient.create_run`` sets none of them (only MLflow's fluent API does), so the runs table's
Source and Version columns stay empty unless they are given here. Git is asked, never required: a
checkout without git, or a copy without ``.git``, simply has no git tags.
"""

from __future__ import annotations

import getpass
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> Optional[str]:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def source_tags(entry_point: str, argv: Sequence[str]) -> dict[str, str]:
    """``mlflow.source.*`` and ``mlflow.user`` tags, plus the full command as ``curriculum.command``."""
    tags = {
        "mlflow.source.name": entry_point,
        "mlflow.source.type": "LOCAL",
        "curriculum.command": " ".join([entry_point, shlex.join(argv)]).strip(),
    }
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        pass
    commit = _git("rev-parse", "HEAD")
    if commit is not None:
        tags["mlflow.source.git.commit"] = commit
        branch = _git("rev-parse", "--abbrev-ref", "HEAD")
        if branch and branch != "HEAD":
            tags["mlflow.source.git.branch"] = branch
        remote = _git("config", "--get", "remote.origin.url")
        if remote:
            tags["mlflow.source.git.repoURL"] = remote
        # Uncommitted changes mean the commit alone does not say what ran.
        tags["curriculum.git_dirty"] = "true" if _git("status", "--porcelain", "--untracked-files=no") else "false"
    return tags
