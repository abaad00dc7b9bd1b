"""Safe defaults: no credentials in any file; a run on its own local Ray instance, started as a user starts
it, keeps Ray's token authentication on, what Ray starts of its dashboard listens on loopback only, and
Ctrl-C stops it cleanly (the Ray workers are not in the terminal's process group: the driver tells them)."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    "runs",
    "data",
    "tune",
    "mlruns",
    "mlartifacts",
    "hrm_curriculum.egg-info",
}
# Written so that no pattern matches its own source text.
SECRETS = {
    "AWS access key id": r"\bAKIA[0-9A-Z]{16}\b",
    "AWS secret key": r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+]{30,}",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "password, secret or token in quotes": r"(?i)\b(password|passwd|secret|token)\s*[:=]\s*['\"][^'\"\s]{6,}['\"]",
    "credentials in a URL": r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:[^/\s@'\"]+@",
    "GitHub token": r"\bgh[pousr]_[A-Za-z0-9]{30,}",
}


def repository_files() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        found += [Path(folder) / name for name in files]
    return found


def test_no_file_holds_credentials():
    files = repository_files()
    assert any(path.name == "cluster.yaml" for path in files) and len(files) > 50
    leaks = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files (pictures) hold no text secrets
        leaks += [f"{path.relative_to(ROOT)}: {what}" for what, pattern in SECRETS.items() if re.search(pattern, text)]
    assert not leaks, leaks


LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as /proc/net/tcp{,6} write them


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets process ``pid`` listens on, read from /proc (addresses in hex)."""
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return set()
    inodes = {link[8:-1] for link in links if link.startswith("socket:[")}
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].rsplit(":", 1)
                found.add((address, int(port, 16)))
    return found


def test_a_local_ray_run_keeps_token_auth_a_loopback_dashboard_and_stops_on_ctrl_c(
    runs, find_processes, tmp_path, monkeypatch
):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # Ray's own default, as a user gets it
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    run_dir = tmp_path / "run"
    with runs.driver(["--preset", "smoke", "--run-dir", "run", *runs.ENDLESS], tmp_path) as proc:  # a new local Ray
        runs.wait_for_checkpoint(run_dir, proc, at_least=20)
        raylets = find_processes(proc.pid, "raylet")
        assert raylets, "the run started its own Ray instance"
        environ = Path(f"/proc/{raylets[0]}/environ").read_bytes().split(b"\0")
        assert b"RAY_AUTH_MODE=token" in environ, "Ray's token authentication is on"
        # Without the dashboard, Ray still runs a minimal dashboard head (and an agent): loopback, if anything.
        heads = find_processes(proc.pid, "dashboard/dashboard.py")
        assert heads and all(b"--host=127.0.0.1" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in heads)
        dashboards = heads + find_processes(proc.pid, "DashboardAgent")
        listening = set().union(*(listening_addresses(pid) for pid in dashboards))
        assert {address for address, _ in listening} <= LOOPBACK, listening
        assert runs.stop_cleanly(proc, run_dir, signal.SIGINT)["step"] > 20


def test_the_cluster_dashboard_listens_on_loopback_and_the_open_mlflow_server_is_documented():
    cluster = (ROOT / "cluster.yaml").read_text()
    starts = [line for line in cluster.splitlines() if "ray start --head" in line]
    assert starts and all("--dashboard-host=127.0.0.1" in line for line in starts), starts
    assert "0.0.0.0" not in "\n".join(starts)
    readme = (ROOT / "README.md").read_text()
    # What cannot be bound to loopback, and why, is said where users look for it.
    assert "resolve_ip_for_localhost" in readme and "--app-name basic-auth" in readme
