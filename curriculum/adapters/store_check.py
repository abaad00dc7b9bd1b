"""Can the MLflow store be used? Asked before a run or a search creates anything, so that a wrong
``tracking.mlflow_uri`` costs one line (exit 2), not a traceback and a half-made run directory."""

from __future__ import annotations

import os
import tempfile
from urllib.parse import urlparse

from curriculum.core.uris import redact_uri


class UnusableStore(ValueError):
    """The store cannot be written; the message names it and why."""


def check_store(uri: str) -> None:
    """Raise ``UnusableStore`` unless runs can be written to ``uri`` (a SQLite file or an MLflow server)."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        _check_sqlite(uri)
    elif scheme in ("http", "https"):
        _check_server(uri)


def _check_sqlite(uri: str) -> None:
    from curriculum.adapters.mlflow_store import sqlite_path

    database = sqlite_path(uri)
    if database is None:
        raise UnusableStore(
            f"{uri!r} is an in-memory database, gone when the run ends (nothing for `mlflow ui` to show); "
            "give a file, e.g. sqlite:///mlflow.db"
        )
    folder = database.parent
    if not folder.is_dir():
        raise UnusableStore(f"{uri}: the folder {folder} does not exist")
    # A real write beside the database (where its lock file goes): permissions, read-only mounts, /proc.
    try:
        handle, probe = tempfile.mkstemp(prefix=".store-check-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        raise UnusableStore(f"{uri}: cannot write in {folder}: {exc.strerror or exc}") from None
    if database.exists() and not os.access(database, os.R_OK | os.W_OK):
        raise UnusableStore(f"{uri}: the database file {database} is not readable and writable")


def _check_server(uri: str) -> None:
    from curriculum.adapters.mlflow_store import make_client  # short timeouts, no retries

    try:
        make_client(uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure means the same: no usable server there
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(first) > 200:
            first = first[:200] + "..."
        userinfo = urlparse(uri).netloc.rpartition("@")[0]
        if userinfo:  # the client's message may quote the URL it called
            first = first.replace(userinfo + "@", "***@")
        raise UnusableStore(f"{redact_uri(uri)}: no MLflow server answers there ({first})") from None
