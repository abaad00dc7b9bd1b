"""PNG pictures for reports: predicted routes on held-out cities, and the curriculum's stage timeline.

Everything renders through ``matplotlib.figure.Figure`` and the Agg canvas directly, never through
pyplot, so importing this module neither changes the global backend nor keeps figures alive in
pyplot's registry (safe in training workers and tests). Files are written atomically: a temp file
in the target directory, then ``os.replace``, so a reader never sees a half-written PNG.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from curriculum.adapters.atomic_file import atomic_write
from oracle.verify import optimal_costs, verify_paths
from oracle.vocab import (
    CLOSED,
    DIAGONAL,
    JAM,
    LARGE,
    OBSTACLE,
    PATH,
    SMALL,
    TOKEN_MARKER,
    TOKEN_TERRAIN,
    TOKEN_TRAFFIC,
    VEHICLE_NAMES,
    vehicle_of_start_token,
)

PathLike = Union[str, "os.PathLike[str]"]

# Terrain fills are light so that route colours, jam and closure marks stay readable on top.
TERRAIN_COLOURS = {OBSTACLE: "#4d4d4d", SMALL: "#f7f7f2", LARGE: "#c6dbf2", DIAGONAL: "#ecd9a8"}
TERRAIN_LABELS = {OBSTACLE: "obstacle", SMALL: "small road", LARGE: "large road", DIAGONAL: "diagonal road"}
UNKNOWN_COLOUR = "#ffffff"
JAM_COLOUR = "#e07b00"
CLOSED_COLOUR = "#111111"
LABEL_COLOUR = "#1a3fd1"
LEGAL_COLOUR = "#2ca02c"  # predicted cell the vehicle may enter
ILLEGAL_COLOUR = "#d62728"  # predicted cell the vehicle may not enter

SUB = 10  # image pixels per grid cell: lets a predicted cell be an inset square with a terrain frame
INSET = slice(2, 8)  # inset of a predicted cell inside its SUB x SUB block
PANELS_PER_ROW = 4
DPI = 100


def _save_atomic(fig: Figure, path: PathLike) -> Path:
    """Render ``fig`` to a PNG at ``path`` via a temp file in the same directory and ``os.replace``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # attaches the Agg canvas; no pyplot state involved
    atomic_write(target, lambda handle: fig.savefig(handle, format="png", dpi=DPI))
    return target


def _vehicle_name(token: int) -> str:
    """Lower-case vehicle named by a START token, or '?' when the cell holds no START token."""
    token = int(token)
    if not 0 <= token < len(TOKEN_MARKER) or TOKEN_MARKER[token] != 1:
        return "?"
    return VEHICLE_NAMES[vehicle_of_start_token(token)].lower()


def _verdicts(predictions: np.ndarray, costs: np.ndarray, start: np.ndarray, end: np.ndarray) -> list[str]:
    """'optimal', 'connected' or 'broken' per task, by the reference verifier."""
    verdict = verify_paths(np.asarray(predictions) == PATH, costs, start, end)
    return ["optimal" if o else "connected" if c else "broken" for o, c in zip(verdict.optimal, verdict.connected)]


def _cell_image(terrain: np.ndarray, predicted: np.ndarray, legal: np.ndarray) -> np.ndarray:
    """RGB image [N*SUB, N*SUB, 3]: terrain fill, predicted cells as opaque inset squares.

    Opaque insets keep the route colours exact (readable in print and checkable in tests) while
    the frame left around them still shows the terrain underneath.
    """
    n = terrain.shape[0]
    palette = np.array([to_rgb(TERRAIN_COLOURS.get(t, UNKNOWN_COLOUR)) for t in range(-1, 4)])
    cells = palette[terrain.astype(np.int64) + 1]  # index -1 (PAD/PATH) -> unknown colour
    image = np.repeat(np.repeat(cells, SUB, axis=0), SUB, axis=1).reshape(n, SUB, n, SUB, 3)
    for mask, colour in ((predicted & legal, LEGAL_COLOUR), (predicted & ~legal, ILLEGAL_COLOUR)):
        rows, cols = np.nonzero(mask)
        image[rows, INSET, cols, INSET] = to_rgb(colour)
    return image.reshape(n * SUB, n * SUB, 3)


def _outline_segments(mask: np.ndarray) -> np.ndarray:
    """Edges [m, 2, 2] (x, y) of the region's boundary: cell sides not shared with another region cell."""
    padded = np.pad(mask, 1)
    segments = []
    # (neighbour offset, edge endpoints relative to the cell centre) for up, down, left, right.
    for (dr, dc), ((x0, y0), (x1, y1)) in (
        ((-1, 0), ((-0.5, -0.5), (0.5, -0.5))),
        ((1, 0), ((-0.5, 0.5), (0.5, 0.5))),
        ((0, -1), ((-0.5, -0.5), (-0.5, 0.5))),
        ((0, 1), ((0.5, -0.5), (0.5, 0.5))),
    ):
        neighbour = padded[1 + dr : padded.shape[0] - 1 + dr, 1 + dc : padded.shape[1] - 1 + dc]
        rows, cols = np.nonzero(mask & ~neighbour)
        segments.append(np.stack([np.stack([cols + x0, rows + y0], -1), np.stack([cols + x1, rows + y1], -1)], 1))
    return np.concatenate(segments).astype(float)


def render_routes(
    inputs: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    costs: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    size: int,
    path: PathLike,
    title: Optional[str] = None,
) -> Path:
    """Draw k held-out tasks side by side (at most 4 per row) and write them as a PNG; returns the path.

    inputs/labels/predictions: int tokens [k, N*N] (predictions are the model's argmax tokens);
    costs: float [k, N*N] entry costs, +inf where the vehicle may not go; start/end: [k] flat
    indices; size: N. Each panel shows the city, the label route as a blue outline, predicted
    cells as green (enterable) or red (illegal) squares, S and E, and the title
    "<vehicle>: optimal | connected | broken" with the route cost against the optimum.
    """
    inputs, labels, predictions = (np.atleast_2d(np.asarray(a)) for a in (inputs, labels, predictions))
    costs = np.atleast_2d(np.asarray(costs, dtype=np.float64))
    start = np.asarray(start, dtype=np.int64).reshape(-1)
    end = np.asarray(end, dtype=np.int64).reshape(-1)
    n, k = int(size), len(inputs)
    if k == 0:
        raise ValueError("render_routes needs at least one task")
    for name, array in (("inputs", inputs), ("labels", labels), ("predictions", predictions), ("costs", costs)):
        if array.shape != (k, n * n):
            raise ValueError(f"{name} has shape {array.shape}, expected {(k, n * n)} for {k} tasks of size {n}")
    if len(start) != k or len(end) != k:
        raise ValueError(f"start and end need one entry per task ({k})")

    verdicts = _verdicts(predictions, costs, start, end)
    best = optimal_costs(costs, start, end)
    route_cost = verify_paths(predictions == PATH, costs, start, end, best).cost

    # Panels grow with N up to a cap, so a 40x40 city keeps ~11 pt cells and an 8x8 one is not tiny.
    panel = float(np.clip(0.15 * n, 2.8, 6.0))
    cell_pt = panel * 72.0 / n
    ncols = min(k, PANELS_PER_ROW)
    nrows = math.ceil(k / PANELS_PER_ROW)
    legend_rows = 3 if ncols * panel < 7 else 2
    fig = Figure(
        figsize=(ncols * panel, nrows * (panel + 0.45) + 0.25 * legend_rows + (0.3 if title else 0.05)),
        layout="constrained",
    )
    axes = fig.subplots(nrows, ncols, squeeze=False)
    font = float(np.clip(cell_pt * 0.95, 8.0, 12.0))  # may spill over neighbours; the white halo keeps it legible
    outline = patheffects.withStroke(linewidth=2.5, foreground="white")
    present: set[str] = set()

    for i, ax in enumerate(axes.ravel()):
        if i >= k:
            ax.set_axis_off()
            continue
        terrain = TOKEN_TERRAIN[inputs[i]].reshape(n, n)
        traffic = TOKEN_TRAFFIC[inputs[i]].reshape(n, n)
        predicted = (predictions[i] == PATH).reshape(n, n)
        legal = np.isfinite(costs[i]).reshape(n, n)
        label_route = (labels[i] == PATH).reshape(n, n)
        ax.imshow(
            _cell_image(terrain, predicted, legal),
            extent=(-0.5, n - 0.5, n - 0.5, -0.5),
            interpolation="nearest",
            origin="upper",
        )
        present.update(f"terrain{t}" for t in np.unique(terrain) if t in TERRAIN_COLOURS)
        if (predicted & legal).any():
            present.add("legal")
        if (predicted & ~legal).any():
            present.add("illegal")

        # Jams and closures as marks rather than fills: the road type under them stays visible.
        mark = (0.42 * cell_pt) ** 2
        for code, marker, colour, key in ((JAM, "^", JAM_COLOUR, "jam"), (CLOSED, "x", CLOSED_COLOUR, "closed")):
            rows, cols = np.nonzero(traffic == code)
            if rows.size:
                present.add(key)
                ax.scatter(
                    cols,
                    rows,
                    s=mark,
                    marker=marker,
                    c=colour,
                    linewidths=max(0.8, cell_pt / 10),
                    edgecolors="white" if marker == "^" else None,
                    zorder=3,
                )

        if label_route.any():
            present.add("label")
            ax.add_collection(
                LineCollection(
                    _outline_segments(label_route),
                    colors=LABEL_COLOUR,
                    linewidths=max(1.2, cell_pt / 7),
                    capstyle="projecting",
                    zorder=4,
                )
            )

        for cell, letter in ((start[i], "S"), (end[i], "E")):
            r, c = divmod(int(cell), n)
            ax.text(
                c,
                r,
                letter,
                ha="center",
                va="center",
                fontsize=font,
                fontweight="bold",
                color="black",
                path_effects=[outline],
                zorder=5,
            )

        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        cost = "no route" if not np.isfinite(route_cost[i]) else f"cost {route_cost[i]:g}"
        illegal = int((predicted & ~legal).sum())
        detail = f"{cost} / optimal {best[i]:g}" + (f", {illegal} illegal" if illegal else "")
        ax.set_title(f"#{i} {_vehicle_name(inputs[i, start[i]])}: {verdicts[i]}\n{detail}", fontsize=10)

    # The legend lists only what is drawn, so a colour in the picture always means that thing is there.
    entries = [
        (f"terrain{t}", Patch(facecolor=TERRAIN_COLOURS[t], edgecolor="#888888", label=TERRAIN_LABELS[t]))
        for t in (OBSTACLE, SMALL, LARGE, DIAGONAL)
    ]
    entries += [
        ("jam", Line2D([], [], ls="", marker="^", color=JAM_COLOUR, mec="white", ms=8, label="jam")),
        ("closed", Line2D([], [], ls="", marker="x", color=CLOSED_COLOUR, mew=1.5, ms=7, label="closed")),
        ("label", Patch(facecolor="none", edgecolor=LABEL_COLOUR, linewidth=2, label="oracle route")),
        ("legal", Patch(facecolor=LEGAL_COLOUR, label="predicted, allowed")),
        ("illegal", Patch(facecolor=ILLEGAL_COLOUR, label="predicted, illegal")),
    ]
    handles = [h for key, h in entries if key in present]
    handles.append(Line2D([], [], ls="", marker="$S$", color="black", ms=8, label="start / end (S, E)"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=math.ceil(len(handles) / legend_rows),
        fontsize=9,
        frameon=False,
        handlelength=1.4,
        columnspacing=1.2,
    )
    if title:
        fig.suptitle(title, fontsize=12)
    return _save_atomic(fig, path)


ACTION_STYLE = {  # action -> (marker, colour, legend text)
    "promote": ("^", "#2ca02c", "promotion"),
    "finish": ("*", "#d4a000", "finished"),
    "back_off": ("v", "#e07b00", "back-off"),
    "stall": ("X", "#d62728", "stalled"),
}


def _field(record: Any, name: str) -> Any:
    """A transition field from either a mapping or an object (pydantic ``Transition`` or similar)."""
    value = record[name] if isinstance(record, Mapping) else getattr(record, name)
    return getattr(value, "value", value)  # Action enum -> its string


def render_timeline(
    transitions: Sequence[Any],
    stage_sizes: Sequence[int],
    total_steps: int,
    path: PathLike,
    metric_history: Optional[Sequence[tuple[float, float]]] = None,
) -> Path:
    """Draw the curriculum stage (as grid size) over training steps and write it as a PNG; returns the path.

    transitions: records with step, action ("promote" / "finish" / "back_off" / "stall"),
    from_stage, to_stage, metric, value. Promotions and the finish are annotated with their step
    and gate value; back-offs and stalls get their own marks. metric_history: optional
    (step, value) points of the gate metric, drawn on a second y axis.
    """
    sizes = [int(s) for s in stage_sizes]
    if not sizes:
        raise ValueError("stage_sizes must name at least one stage")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    records = sorted(
        (
            {f: _field(t, f) for f in ("step", "action", "from_stage", "to_stage", "metric", "value")}
            for t in transitions
        ),
        key=lambda r: r["step"],
    )
    for r in records:
        if r["action"] not in ACTION_STYLE:
            raise ValueError(f"unknown transition action {r['action']!r}")
        if not (0 <= r["from_stage"] < len(sizes) and 0 <= r["to_stage"] < len(sizes)):
            raise ValueError(f"transition at step {r['step']} names a stage outside 0..{len(sizes) - 1}")

    # Stage path: start where the first transition left from; finish / stall end the run early.
    stage = records[0]["from_stage"] if records else 0
    xs, ys = [0], [sizes[stage]]
    end_step = total_steps
    for r in records:
        if r["to_stage"] != stage:
            stage = r["to_stage"]
            xs.append(r["step"])
            ys.append(sizes[stage])
        if r["action"] in ("finish", "stall"):
            end_step = r["step"]
            break
    xs.append(end_step)
    ys.append(ys[-1])

    fig = Figure(figsize=(9.0, 4.8), layout="constrained")
    ax = fig.add_subplot()
    handles = [ax.step(xs, ys, where="post", color="#1f3a93", linewidth=2.2, label="stage (grid size)")[0]]
    ax.set_xlim(0, max(total_steps, end_step) * 1.02)
    span = max(sizes) - min(sizes)
    # Extra room on top: the three-line labels of the highest stage must stay inside the axes.
    ax.set_ylim(min(sizes) - max(2.0, 0.18 * span), max(sizes) + max(3.0, 0.4 * span))
    unique = sorted(set(sizes))
    ax.set_yticks(
        unique, [f"{s}×{s} (stage {', '.join(str(i) for i, z in enumerate(sizes) if z == s)})" for s in unique]
    )
    ax.set_xlabel("training step")
    ax.set_ylabel("grid size")
    ax.grid(axis="y", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)

    seen: set[str] = set()
    for r in records:
        marker, colour, text = ACTION_STYLE[r["action"]]
        y = sizes[r["to_stage"]]
        ax.plot(
            [r["step"]],
            [y],
            ls="",
            marker=marker,
            color=colour,
            ms=12 if marker == "*" else 10,
            mec="black",
            mew=0.6,
            zorder=4,
        )
        if r["action"] not in seen:
            seen.add(r["action"])
            handles.append(Line2D([], [], ls="", marker=marker, color=colour, mec="black", mew=0.6, ms=9, label=text))
        value = r["value"]
        shown = f"{value:.3g}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"
        head = {"promote": f"→ stage {r['to_stage']}", "back_off": f"back-off → stage {r['to_stage']}"}.get(
            r["action"], text
        )
        # Labels near the right edge go to the left of their mark so they stay inside the plot.
        right = r["step"] > 0.75 * total_steps
        ax.annotate(
            f"{head}\nstep {r['step']:,}\n{r['metric']} {shown}",
            (r["step"], y),
            xytext=(-8 if right else 8, 10 if r["action"] != "back_off" else -12),
            textcoords="offset points",
            ha="right" if right else "left",
            va="bottom" if r["action"] != "back_off" else "top",
            fontsize=8.5,
            color="#222222",
            bbox=dict(boxstyle="round,pad=0.25", facecolor="white", edgecolor=colour, alpha=0.9),
            zorder=5,
        )

    if metric_history:
        history = np.asarray(sorted(metric_history), dtype=np.float64).reshape(-1, 2)
        metric_name = records[0]["metric"] if records else "gate metric"
        twin = ax.twinx()
        handles.append(
            twin.plot(
                history[:, 0],
                history[:, 1],
                color="#8c8c8c",
                linewidth=1.2,
                marker=".",
                ms=4,
                alpha=0.9,
                label=metric_name,
            )[0]
        )
        finite = history[np.isfinite(history[:, 1]), 1]
        if finite.size and finite.min() >= 0 and finite.max() <= 1:
            twin.set_ylim(-0.02, 1.02)  # a share: keep its scale fixed so pictures compare across runs
        twin.set_ylabel(metric_name, color="#666666")
        twin.tick_params(axis="y", colors="#666666")
        ax.set_zorder(twin.get_zorder() + 1)  # stage line and labels above the metric curve
        ax.patch.set_visible(False)

    status = next((ACTION_STYLE[r["action"]][2] for r in records if r["action"] in ("finish", "stall")), "running")
    ax.set_title(f"Curriculum timeline: {len(sizes)} stages, {status}", fontsize=12)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9, frameon=False)
    return _save_atomic(fig, path)
