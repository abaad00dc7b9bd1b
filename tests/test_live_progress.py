"""What a run shows while it trains: the live bar (in-process and on Ray, on a real pseudo-terminal) and
training metrics in MLflow on a wall-clock cadence, before any evaluation."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from curriculum.adapters.console import LiveBar
from curriculum.adapters.mlflow_store import create_run
from curriculum.adapters.mlflow_tracker import MlflowTracker
from curriculum.core.overrides import build_config
from curriculum.core.progress import Cadence, Progress, describe_progress, format_duration, steps_to_eval
from curriculum.trainer.context import local_context
from curriculum.trainer.loop import run_curriculum

# A bar frame: "stage 0 8x8 |####  | 7/160, step 7 | 3.10 steps/s | connectivity - (gate 0.4) | eval in 13 steps ~4s"
BAR = re.compile(
    r"stage 0 8x8 \|.*\| \d+/160, step \d+ \| (?:[\d.]+|\?) steps/s \| connectivity \S+/0.4 \| eval in \d+ ~"
)


def snapshot(**changes) -> Progress:
    values = dict(
        step=37,
        stage=0,
        size=10,
        steps_in_stage=37,
        stage_max_steps=8000,
        steps_per_s=0.2,
        gate_metric="valid_route",
        gate_value=None,
        gate_threshold=0.8,
        steps_to_eval=63,
    )
    values.update(changes)
    return Progress(**values)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cadence_is_due_at_once_then_every_interval():
    clock = FakeClock()
    cadence = Cadence(30.0, clock)
    assert cadence.due()
    clock.now = 29.0
    assert not cadence.due()
    clock.now = 30.0
    assert cadence.due()
    clock.now = 45.0
    assert not cadence.due()


def test_next_evaluation_counts_the_run_end_too():
    assert steps_to_eval(37, 100, 20_000) == 63
    assert steps_to_eval(100, 100, 20_000) == 100
    assert steps_to_eval(230, 100, 240) == 10


def test_the_bar_text_names_rate_gate_and_time_to_the_evaluation():
    text = describe_progress(snapshot())
    assert "step 37" in text and "0.20 steps/s" in text and "valid_route -/0.8" in text
    assert "eval in 63 ~5m15s" in text
    text = describe_progress(snapshot(steps_per_s=0.0, gate_value=0.512))
    assert "? steps/s" in text and "valid_route 0.512/0.8" in text and "~?" in text
    assert format_duration(7325) == "2h02m"


def read_all(fd: int, quiet_s: float = 0.3) -> str:
    chunks = []
    while select.select([fd], [], [], quiet_s)[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("rows, columns", [(0, 0), (24, 160)])  # 0: a pseudo-terminal that reports no size
def test_the_bar_draws_on_a_terminal(rows, columns):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    with open(slave, "w", closefd=True) as terminal:
        bar = LiveBar(say=print, stream=terminal)
        assert bar.enabled
        bar.show(snapshot(gate_value=0.5))
        terminal.flush()
        drawn = read_all(master)
        assert "stage 0 10x10" in drawn and "37/8000" in drawn and "valid_route 0.500/0.8 | eval in 63 ~5m15s" in drawn
        bar.close()
    os.close(master)


def test_no_bar_off_a_terminal(tmp_path):
    lines: list[str] = []
    with open(tmp_path / "log", "w") as log:
        bar = LiveBar(say=lines.append, stream=log)
        bar.show(snapshot())
        bar.say("step 100 | ...")
    assert not bar.enabled and (tmp_path / "log").read_text() == "" and lines == ["step 100 | ..."]


def history_steps(client: MlflowClient, run_id: str, name: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, name))


@pytest.mark.parametrize("every_s, expected", [(3600.0, [1, 12]), (1e-6, list(range(1, 13)))])
def test_training_metrics_reach_mlflow_on_the_cadence_before_any_evaluation(tmp_path, every_s, expected):
    # No evaluation until the run's last step (12): every earlier point comes from the cadence, the
    # first one right after step 1.
    config = build_config(
        "smoke",
        None,
        [
            "train.max_steps=12",
            "train.eval_every=1000",
            f"tracking.metrics_every_s={every_s}",
            "tracking.images_per_eval=0",
        ],
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "cadence", "cadence")
    shown: list[Progress] = []
    said: list[str] = []
    ctx = local_context("cpu", say=said.append, show_progress=shown.append)
    outcome = run_curriculum(config, ctx, MlflowTracker(uri, run_id), tmp_path / "run", run_id)
    assert outcome.step == 12
    # The evaluation's console line carries the mean loss of its 12 steps, even when the cadence logged
    # every one of them on its own.
    assert any(re.match(r"step +12 \| .* \| loss \d+\.\d{3} \|", line) for line in said), said
    client = MlflowClient(uri)
    for name in ("train/loss", "perf/steps_per_s", "curriculum/stage", "curriculum/grid_size"):
        assert history_steps(client, run_id, name) == expected, name
    assert history_steps(client, run_id, "eval/valid_route") == [12]
    # The bar got a snapshot before the first step and after the evaluation.
    assert shown[0].step == 0 and shown[-1].step == 12 and shown[-1].gate_value is not None


@pytest.mark.slow  # a training subprocess on real Ray
def test_a_terminal_run_on_ray_shows_the_live_bar_before_the_first_evaluation(tmp_path):
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "curriculum.run", "--preset", "smoke", "--run-dir", "run", "train.max_steps=40"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=tmp_path,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    output, deadline = [], time.monotonic() + 600
    while time.monotonic() < deadline:
        chunk = read_all(master, quiet_s=1.0)
        output.append(chunk)
        if proc.poll() is not None and not chunk:
            break
    os.close(master)
    assert proc.wait(timeout=60) == 0, "".join(output)[-3000:]
    text = "".join(output)
    first_eval = text.index("step     20 |")
    assert BAR.search(text[:first_eval]), text[:first_eval][-2000:]
    assert "outcome: budget at step 40" in text
    record = (tmp_path / "run" / "run.json").read_text()
    assert '"run_id"' in record
    client = MlflowClient(f"sqlite:///{Path(tmp_path) / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("hrm-curriculum").experiment_id])[0]
    assert history_steps(client, run.info.run_id, "train/loss")[0] == 1, "a training point right after step 1"
