"""The fault matrix drives the real CLI in real processes; the fixtures here start it, wait on it and read
what it left behind (checkpoints, outcome, the MLflow run), and list every field of the run config."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import annotated_types
import pytest
from mlflow.tracking import MlflowClient
from pydantic import BaseModel

from curriculum.adapters.checkpoint import CHECKPOINT_PATTERN
from curriculum.core.config import RunConfig


class Runs:
    """``python -m curriculum.run`` as a subprocess, and what its run directory holds."""

    # Overrides of the smoke preset for a run that never ends on its own: the stage-0 gate cannot pass and
    # the step caps are far away. (Options such as --run-dir go before the overrides.)
    ENDLESS = [
        "curriculum.stages.0.gate.threshold=1.0",
        "curriculum.stages.0.max_steps=100000",
        "train.max_steps=100000",
        "tracking.images_per_eval=0",
    ]

    @staticmethod
    def env(test_cluster: bool = False) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if test_cluster:  # the test's own Ray cluster runs without token authentication
            env.update(RAY_AUTH_MODE="disabled", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
        return env

    @staticmethod
    def run(
        args: list[str], cwd: Path, timeout: int = 300, test_cluster: bool = False, module: str = "curriculum.run"
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=Runs.env(test_cluster),
            timeout=timeout,
        )

    @staticmethod
    def start(
        args: list[str], cwd: Path, test_cluster: bool = False, log: str = "driver.log", wrapper: tuple = ()
    ) -> subprocess.Popen:
        """The driver in a process group of its own (as in a terminal: a signal to the group reaches it alone),
        or ``wrapper`` (e.g. ``timeout``) leading that group with the driver inside it.
        Output goes to a file, so a long run never blocks on a full pipe."""
        with (cwd / log).open("w") as out:
            proc = subprocess.Popen(
                [*wrapper, sys.executable, "-m", "curriculum.run", *args],
                cwd=cwd,
                env=Runs.env(test_cluster),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        proc.log = cwd / log
        return proc

    @staticmethod
    @contextlib.contextmanager
    def driver(
        args: list[str], cwd: Path, test_cluster: bool = False, wrapper: tuple = ()
    ) -> Iterator[subprocess.Popen]:
        """``start``, and whatever happens in the block, no driver is left running after it."""
        proc = Runs.start(args, cwd, test_cluster, wrapper=wrapper)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    @staticmethod
    def stop_cleanly(proc: subprocess.Popen, run_dir: Path, signum: int = signal.SIGINT) -> dict:
        """Send ``signum`` to the driver's process group, as a terminal's Ctrl-C does, and check that the run
        stopped as promised: exit 128 + signum, outcome ``killed`` with a checkpoint at the step it stopped
        on, MLflow KILLED, a hint to resume. Returns the outcome."""
        os.killpg(proc.pid, signum)
        assert Runs.finish(proc, timeout=60) == 128 + signum, Runs.output(proc)[-3000:]
        outcome = Runs.outcome(run_dir)
        assert outcome["outcome"] == "killed"
        assert Runs.checkpoint_steps(run_dir)[-1] == outcome["step"], "a checkpoint at the step it stopped on"
        _, run = Runs.mlflow_run(run_dir)
        assert run.info.status == "KILLED" and run.data.tags["curriculum.outcome"] == "killed"
        assert f"--resume {run_dir.name}" in Runs.output(proc)
        return outcome

    @staticmethod
    def output(proc: subprocess.Popen) -> str:
        return proc.log.read_text()

    @staticmethod
    def wait_until(
        condition: Callable[[], bool], proc: Optional[subprocess.Popen], what: str, timeout: float = 180
    ) -> None:
        """Poll ``condition``; fail with the driver's output if it ends first or time runs out."""
        deadline = time.monotonic() + timeout
        while not condition():
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"the run ended (exit {proc.returncode}) before {what}:\n{Runs.output(proc)[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout} s")
            time.sleep(0.1)

    @staticmethod
    def checkpoint_steps(run_dir: Path) -> list[int]:
        folder = run_dir / "checkpoints"
        names = [CHECKPOINT_PATTERN.match(p.name) for p in folder.iterdir()] if folder.is_dir() else []
        return sorted(int(m.group(1)) for m in names if m)

    @staticmethod
    def wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, at_least: int, timeout: float = 180) -> int:
        Runs.wait_until(
            lambda: any(s >= at_least for s in Runs.checkpoint_steps(run_dir)),
            proc,
            f"checkpoint at step >= {at_least}",
            timeout,
        )
        return Runs.checkpoint_steps(run_dir)[-1]

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float = 180) -> int:
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the driver did not end within {timeout} s:\n{Runs.output(proc)[-3000:]}")

    @staticmethod
    def mlflow_run(run_dir: Path):
        record = json.loads((run_dir / "run.json").read_text())
        client = MlflowClient(record["tracking_uri"])
        return client, client.get_run(record["run_id"])

    @staticmethod
    def outcome(run_dir: Path) -> dict:
        return json.loads((run_dir / "outcome.json").read_text())

    @staticmethod
    def one_line(stderr: str) -> str:
        """The single line a failed command must print (asserted), for the caller to check."""
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, f"expected one line, got:\n{stderr[-3000:]}"
        return lines[0]


@pytest.fixture(scope="session")
def runs() -> Runs:
    return Runs()


def processes_below(pid: int, marker: str) -> list[int]:
    """Descendants of ``pid`` whose command line contains ``marker`` (read from /proc: Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # the name may hold spaces
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        todo.extend(children.get(child, []))
        try:
            if marker in Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(child)
        except OSError:
            continue
    return found


@pytest.fixture(scope="session")
def find_processes() -> Callable[[int, str], list[int]]:
    return processes_below


# ---------------------------------------------------------------- every field of the run config, and values it refuses
def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kept = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return kept[0] if len(kept) == 1 else annotation
    return annotation


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def kind_of(field: Any) -> Any:
    """The field's type without Optional."""
    return _strip_optional(field.annotation)


def config_leaves(model: type[BaseModel] = RunConfig, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, field) of every leaf of the config; list items by index, as overrides write them (stages 0
    and 1: the smoke preset has two, and a later stage is checked against earlier ones)."""
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        inner = _strip_optional(field.annotation)
        if typing.get_origin(inner) is list and _is_model(typing.get_args(inner)[0]):
            for index in (0, 1):
                yield from config_leaves(typing.get_args(inner)[0], f"{path}.{index}.")
        elif _is_model(inner):
            yield from config_leaves(inner, f"{path}.")
        else:
            yield path, field


def refused_values(field: Any) -> list[tuple[str, str]]:
    """(what, override value) pairs the field must refuse: past each bound, a wrong type, NaN."""
    kind = kind_of(field)
    if kind is bool:
        return [("type", "maybe")]
    if typing.get_origin(kind) is typing.Literal:
        return [("choice", "nonsense")]
    if kind is str:
        short = any(isinstance(bound, annotated_types.MinLen) for bound in field.metadata)
        return [("type", "[1, 2]")] + ([("min_length", "''")] if short else [])
    if kind not in (int, float):
        return [("type", "abc")]  # tuples and lists
    step = 1 if kind is int else 0.5
    cases = [("type", "abc")] + ([("type", "1.5")] if kind is int else [("nan", ".nan")])
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            cases.append(("ge", repr(bound.ge - step)))
        elif isinstance(bound, annotated_types.Gt):
            cases.append(("gt", repr(bound.gt)))
        elif isinstance(bound, annotated_types.Le):
            cases.append(("le", repr(bound.le + step)))
        elif isinstance(bound, annotated_types.Lt):
            cases.append(("lt", repr(bound.lt)))
    return cases


def accepted_values(field: Any) -> list[str]:
    """Override texts the field accepts on its own: small values near its lower bound (cheap to run)."""
    kind = kind_of(field)
    texts = ["null"] if kind is not field.annotation else []  # Optional
    limits = {
        name: getattr(bound, name)
        for bound in field.metadata
        for name in ("ge", "gt", "le", "lt")
        if hasattr(bound, name)
    }
    if kind is bool:
        return texts + ["true", "false"]
    if typing.get_origin(kind) is typing.Literal:
        return texts + [str(choice) for choice in typing.get_args(kind)]
    if kind is int:
        low = limits.get("ge", limits.get("gt", -1) + 1)
        high = min(limits.get("le", limits.get("lt", 10**9) - 1), low + 3)
        return texts + [str(value) for value in range(low, high + 1)]
    if kind is float:
        low = limits.get("ge", limits.get("gt", -1e-3) + 1e-3)
        high = limits.get("le", limits.get("lt", low + 2.001) - 1e-3)
        return texts + [repr(round(value, 3)) for value in (low, (low + high) / 2, high)]
    if kind is str:
        return texts + ["abc"]
    return texts + (["[]", "[2]"] if typing.get_origin(kind) is list else ["[1, 0, 2, 1]", "[0, 0, 0, 1]"])


@pytest.fixture(scope="session")
def accepted_overrides() -> dict[str, list[str]]:
    """For every leaf path of the run config, override values the field accepts on its own."""
    return {path: accepted_values(field) for path, field in config_leaves()}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``refused_override``: one (field path, override) case per field and refused value, generated from the
    config models themselves, so a field added later is covered without touching the tests."""
    if "refused_override" in metafunc.fixturenames:
        cases = [(path, f"{path}={value}") for path, field in config_leaves() for _, value in refused_values(field)]
        ids = [f"{path}:{what}" for path, field in config_leaves() for what, _ in refused_values(field)]
        metafunc.parametrize("refused_override", cases, ids=ids)
