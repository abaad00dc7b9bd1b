"""An MLflow store no run can be written to: one line naming it, exit 2, nothing created (no run
directory, no driver.lock left to block a rerun), for a run and for a search."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

pytestmark = pytest.mark.slow  # subprocesses that import MLflow and torch


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder no process may write to: a read-only tmpfs where this process may mount one."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)]).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def refused(uri: str, cwd, module: str = "curriculum.run", extra=()) -> str:
    args = ["--preset", "smoke", *extra, f"tracking.mlflow_uri={uri}"]
    if module == "curriculum.run":
        args[2:2] = ["--backend", "local", "--run-dir", "run"]
    else:
        args[2:2] = ["--out", "out"]
    result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"python -m {module}: error: "), lines
    assert sorted(p.name for p in cwd.iterdir() if p.name != "ro") == [], "nothing may be created"
    return lines[0]


def test_unusable_stores_are_refused_before_anything_exists(tmp_path, silent_server):
    work = tmp_path / "work"
    work.mkdir()
    port = _closed_port()
    line = refused(f"http://127.0.0.1:{port}", work)
    assert "tracking.mlflow_uri: " in line and "no MLflow server answers there" in line
    assert "no MLflow server answers there" in refused(silent_server, work)  # bounded by a short timeout
    assert "cannot write in /proc" in refused("sqlite:////proc/x.db", work)
    assert "in-memory database" in refused("sqlite:///", work)
    assert "no MLflow server answers there" in refused(f"http://127.0.0.1:{port}", work, module="tuners.penalties")


def test_a_read_only_database_folder_is_refused(tmp_path, read_only_folder):
    work = tmp_path / "work"
    work.mkdir()
    assert "read-only file system" in refused(f"sqlite:///{read_only_folder}/mlflow.db", work).lower()
