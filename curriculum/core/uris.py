"""Tracking URIs that may carry credentials (a user name and password before ``@host``): printed and stored only
with the credentials replaced, used with them.

The console, ``run.json``, ``search.json`` and links hold the redacted form. A run whose URI had
credentials takes them, when it is resumed or evaluated, from ``MLFLOW_TRACKING_URI`` (MLflow's own
variable, whose redacted form must match the stored one); MLflow's ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD`` keep them out of the URI altogether.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"


def has_credentials(uri: str) -> bool:
    parts = urlsplit(uri)
    return bool(parts.username or parts.password)


def redact_uri(uri: str) -> str:
    """``uri`` with any user name and password replaced by ``***`` (``http://***@host:5000``)."""
    if not uri or not has_credentials(uri):
        return uri
    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{HIDDEN}@{host}"))


def usable_uri(stored: str, environ: Mapping[str, str]) -> str:
    """The URI to track with, from a stored (possibly redacted) one; ValueError when its credentials
    are needed and ``MLFLOW_TRACKING_URI`` does not supply them."""
    if not stored or f"{HIDDEN}@" not in stored:
        return stored
    given = environ.get("MLFLOW_TRACKING_URI", "")
    if given and redact_uri(given) == stored:
        return given
    raise ValueError(
        f"the tracking URI {stored} had credentials, which are stored nowhere: set MLFLOW_TRACKING_URI to it "
        "with them (or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD with a URI without them)"
    )
