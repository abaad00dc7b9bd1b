"""A PNG comparing the trials' curriculum scores over training steps."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from curriculum.adapters.atomic_file import atomic_write


def render_scores(
    histories: dict[str, list[tuple[int, float]]], path: Path, best: str | None = None, stage_count: int | None = None
) -> Path:
    """One line per trial (step -> score); the best trial drawn bold. Written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(8, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for name, points in sorted(histories.items()):
        if not points:
            continue
        steps, scores = zip(*sorted(points))
        bold = name == best
        axes.plot(
            steps,
            scores,
            marker="o",
            markersize=3 if not bold else 5,
            linewidth=2.8 if bold else 1.2,
            alpha=1.0 if bold else 0.7,
            label=f"{name} (best)" if bold else name,
        )
    if stage_count:
        for k in range(1, stage_count + 1):
            axes.axhline(k, color="grey", linewidth=0.6, linestyle=":")
    axes.set_xlabel("training step")
    axes.set_ylabel("curriculum score (stages passed + gate metric)")
    axes.set_title("trials: curriculum score over steps")
    axes.grid(alpha=0.3)
    if histories:
        axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    atomic_write(path, lambda handle: figure.savefig(handle, format="png"))
    return path
