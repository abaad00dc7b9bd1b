"""Route and timeline pictures render real tasks with real matplotlib, and show what they claim to."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from curriculum.adapters import pictures
from curriculum.adapters.pictures import ILLEGAL_COLOUR, LEGAL_COLOUR, render_routes, render_timeline
from curriculum.core.scheduler import Action, Transition
from oracle import TaskSpec, generate_tasks
from oracle.vocab import PATH


def colour_pixels(image: np.ndarray, colour: str, tol: float = 0.04) -> int:
    """Pixels within ``tol`` (per channel) of ``colour``."""
    return int(np.all(np.abs(image[..., :3] - np.array(to_rgb(colour))) <= tol, axis=-1).sum())


def read_png(path) -> np.ndarray:
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    return imread(path)


@pytest.fixture(scope="module", params=[10, 40])
def tasks(request):
    """Three tasks: prediction = label, label + one forbidden cell next to the route, empty prediction."""
    n = request.param
    batch = generate_tasks(TaskSpec(size=n), 3, seed=5)
    pred = batch.labels.copy()
    route = np.flatnonzero(batch.labels[1] == PATH)
    rows, cols = np.divmod(route, n)
    forbidden = [
        r2 * n + c2
        for r, c in zip(rows, cols)
        for r2, c2 in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
        if 0 <= r2 < n and 0 <= c2 < n and not np.isfinite(batch.costs[1, r2 * n + c2])
    ]
    if not forbidden:  # no forbidden neighbour: any forbidden cell still makes the prediction illegal
        forbidden = np.flatnonzero(~np.isfinite(batch.costs[1])).tolist()
    pred[1, forbidden[0]] = PATH
    pred[2] = batch.inputs[2]
    return batch, pred


def draw(batch, pred, idx, path):
    idx = list(idx)
    return render_routes(
        batch.inputs[idx],
        batch.labels[idx],
        pred[idx],
        batch.costs[idx],
        batch.start[idx],
        batch.end[idx],
        batch.size,
        path,
        title=f"{batch.size}x{batch.size}",
    )


def test_verdicts_follow_the_verifier(tasks):
    batch, pred = tasks
    assert pictures._verdicts(pred, batch.costs, batch.start, batch.end) == ["optimal", "connected", "broken"]


def test_routes_show_legal_and_illegal_cells(tasks, tmp_path):
    batch, pred = tasks
    out = draw(batch, pred, range(3), tmp_path / "all.png")
    assert out == tmp_path / "all.png" and out.is_file()
    image = read_png(out)
    height, width = image.shape[:2]
    assert 250 <= height <= 2000 and 600 <= width <= 3000
    if batch.size == 40:  # large cities get larger panels so cells stay readable
        assert width >= 3 * 500
    assert colour_pixels(image, ILLEGAL_COLOUR) > 0
    assert colour_pixels(image, LEGAL_COLOUR) > 0

    # Without the illegal prediction there is no red anywhere, legend included.
    clean = read_png(draw(batch, pred, [0, 2], tmp_path / "clean.png"))
    assert colour_pixels(clean, ILLEGAL_COLOUR) == 0
    assert colour_pixels(clean, LEGAL_COLOUR) > 0

    # An empty prediction shows neither route colour.
    empty = read_png(draw(batch, pred, [2], tmp_path / "empty.png"))
    assert colour_pixels(empty, ILLEGAL_COLOUR) == 0
    assert colour_pixels(empty, LEGAL_COLOUR) == 0


def test_routes_write_atomically_and_check_shapes(tasks, tmp_path):
    batch, pred = tasks
    target = tmp_path / "nested" / "routes.png"
    draw(batch, pred, [0], target)
    first = target.read_bytes()
    draw(batch, pred, [0, 1], target)  # overwrite in place
    assert target.read_bytes() != first
    assert sorted(p.name for p in target.parent.iterdir()) == ["routes.png"]  # no temp file left behind
    with pytest.raises(ValueError, match="shape"):
        render_routes(
            batch.inputs, batch.labels, pred[:2], batch.costs, batch.start, batch.end, batch.size, tmp_path / "bad.png"
        )
    assert not (tmp_path / "bad.png").exists()


STAGES = [10, 20, 30]
RUN = [
    dict(step=1200, action="promote", from_stage=0, to_stage=1, metric="exact_accuracy", value=0.93),
    dict(step=3400, action="promote", from_stage=1, to_stage=2, metric="exact_accuracy", value=0.91),
    dict(step=7000, action="finish", from_stage=2, to_stage=2, metric="exact_accuracy", value=0.95),
]


def test_timeline_renders_and_marks_a_stall(tmp_path):
    history = [(s, 0.2 + 0.7 * (s % 2000) / 2000) for s in range(0, 7001, 250)]
    out = render_timeline(RUN, STAGES, 8000, tmp_path / "timeline.png", metric_history=history)
    image = read_png(out)
    assert 300 <= image.shape[0] <= 1500 and 600 <= image.shape[1] <= 2000

    finished = read_png(render_timeline(RUN, STAGES, 8000, tmp_path / "finished.png"))
    stall = dict(step=7600, action="stall", from_stage=2, to_stage=2, metric="exact_accuracy", value=0.4)
    stalled = read_png(render_timeline(RUN[:2] + [stall], STAGES, 8000, tmp_path / "stalled.png"))
    assert stalled.shape == finished.shape and not np.array_equal(stalled, finished)
    assert colour_pixels(stalled, pictures.ACTION_STYLE["stall"][1], 0.02) > 0
    assert colour_pixels(finished, pictures.ACTION_STYLE["stall"][1], 0.02) == 0


def test_timeline_accepts_scheduler_transitions(tmp_path):
    records = [Transition(**{**r, "action": Action(r["action"])}) for r in RUN[:2]]
    records += [
        Transition(step=5000, action=Action.BACK_OFF, from_stage=2, to_stage=1, metric="exact_accuracy", value=0.1),
        Transition(step=7600, action=Action.STALL, from_stage=1, to_stage=1, metric="exact_accuracy", value=0.6),
    ]
    out = render_timeline(records, STAGES, 8000, tmp_path / "backoff.png")
    assert read_png(out).shape[0] > 0
    with pytest.raises(ValueError, match="stage"):
        render_timeline([dict(RUN[0], to_stage=5)], STAGES, 8000, tmp_path / "bad.png")
