"""The trained router as a plain predictor: two files in (weights, config), routes out.

What a trained run hands on is ``weights.pt`` (a plain ``state_dict``: tensors only, read with
``torch.load(weights_only=True)``, so no pickled code runs) and ``router.json`` (the model's config,
the ACT segments to run, the vocabulary and where the weights came from). ``final_weights`` makes
the state dict the way evaluation sees the model: with the EMA's averages in place of the trained
parameters when the run keeps an EMA.

``Router.predict`` takes tasks as the dataset holds them: each a row-major grid of N*N input tokens
(``all__inputs.npy``) and, optionally, its vehicle (``all__vehicle.npy``; the START token names it
too, and the two must agree). It returns, per task, the cells the model marks PATH (flat row-major
indices, row = i // N, column = i % N) and its halting confidence, sigmoid(q_halt) after the last
segment. Input that is not a task (a grid that is not square or outside 8..64, a token outside the
vocabulary, not exactly one START and one END, a vehicle that is not the START token's) raises
``RouteInputError`` with one line naming the task and what is wrong.

MLflow never appears here: ``curriculum/adapters/mlflow_model.py`` logs these files as an MLflow
model, and ``curriculum/adapters/mlflow_model_code.py`` is the code MLflow runs to load them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import torch

from hrm.config import ModelConfig
from hrm.ema import EMA
from hrm.model import HRM
from oracle import vocab
from oracle.spec import MAX_SIZE, MIN_SIZE

FORMAT = "hrm-router/1"
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "router.json"
CHUNK = 256  # tasks per forward pass, as curriculum.evaluate batches them
MAX_SEGMENTS = 64


class RouteInputError(ValueError):
    """Input that is not a routing task; the message is one line naming the task and the problem."""


class RouterFileError(ValueError):
    """A weights or config file that does not make a router; the message names the file."""


class Route(NamedTuple):
    cells: np.ndarray  # int64 flat row-major indices of the cells predicted PATH, ascending
    halt_confidence: float  # sigmoid(q_halt) after the last segment


def final_weights(model: torch.nn.Module, ema: Optional[EMA] = None) -> dict[str, torch.Tensor]:
    """``model``'s state dict on the CPU, with ``ema``'s averages in place of the parameters it averages."""
    state = {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}
    if ema is not None:
        for name, value in ema.shadow.items():
            state[name] = value.detach().to("cpu", state[name].dtype).clone()
    return state


def checkpoint_weights(saved: dict[str, Any], model_config: ModelConfig) -> tuple[dict[str, torch.Tensor], bool]:
    """The weights evaluation uses from a checkpoint's dicts (EMA averages where the run keeps an EMA),
    and whether they are the EMA's."""
    state = {name: value.detach().cpu().clone() for name, value in saved["model"].items()}
    ema = saved.get("ema")
    if ema is None or not model_config.ema_decay:
        return state, False
    for name, value in ema["shadow"].items():
        state[name] = value.detach().to("cpu", state[name].dtype).clone()
    return state, True


def write_router(
    directory: Path,
    weights: dict[str, torch.Tensor],
    model_config: ModelConfig,
    segments: Optional[int],
    source: Optional[dict[str, Any]] = None,
) -> tuple[Path, Path]:
    """``directory/weights.pt`` and ``directory/router.json``; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    segments = model_config.halt_max_steps if segments is None else int(segments)
    weights_path, config_path = directory / WEIGHTS_FILE, directory / CONFIG_FILE
    torch.save({name: value.detach().cpu().contiguous() for name, value in weights.items()}, weights_path)
    record = {
        "format": FORMAT,
        "model": model_config.model_dump(mode="json"),
        "segments": segments,
        "vocab": vocab.VOCAB,
        "vehicles": [name.lower() for name in vocab.VEHICLE_NAMES],
        "source": source or {},
    }
    config_path.write_text(json.dumps(record, indent=2) + "\n")
    return weights_path, config_path


class Router:
    """An HRM in evaluation mode that routes tasks; build it with ``from_files``."""

    def __init__(self, model: HRM, segments: int, device: torch.device) -> None:
        self.model, self.segments, self.device = model.eval(), segments, device

    @classmethod
    def from_files(cls, weights_path: Path | str, config_path: Path | str, device: Optional[str] = None) -> Router:
        """Load ``router.json`` and ``weights.pt``; ``RouterFileError`` naming the file if either is not one."""
        config_path, weights_path = Path(config_path), Path(weights_path)
        try:
            record = json.loads(config_path.read_text())
            if not isinstance(record, dict) or record.get("format") != FORMAT:
                raise ValueError(f"not a router config (format {FORMAT})")
            # max_grid only bounds the inputs; the weights hold no per-size table (as in curriculum.evaluate).
            model_config = ModelConfig.model_validate(record["model"]).model_copy(update={"max_grid": MAX_SIZE})
            segments = int(record["segments"])
            if not 1 <= segments <= MAX_SEGMENTS:
                raise ValueError(f"segments {segments} outside 1..{MAX_SEGMENTS}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RouterFileError(f"{config_path}: {_first_line(exc)}") from None
        chosen = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        try:
            state = torch.load(weights_path, map_location=chosen, weights_only=True)
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise ValueError("not a state dict of tensors")
            model = HRM(model_config).to(chosen)
            model.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt or foreign files
            raise RouterFileError(f"{weights_path}: {_first_line(exc)}") from None
        return cls(model, segments, chosen)

    def predict(
        self,
        inputs: Sequence[Sequence[int]] | np.ndarray,
        vehicle: Optional[Sequence[Optional[int]]] = None,
        segments: Optional[int] = None,
    ) -> list[Route]:
        """One ``Route`` per task, in order. Tasks of several grid sizes may come together."""
        segments = self.segments if segments is None else segments
        if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)):
            raise RouteInputError(f"segments must be an integer in 1..{MAX_SEGMENTS}, got {segments!r}")
        if not 1 <= segments <= MAX_SEGMENTS:
            raise RouteInputError(f"segments must be in 1..{MAX_SEGMENTS}, got {segments}")
        grids, vehicles = check_tasks(inputs, vehicle)
        routes: list[Optional[Route]] = [None] * len(grids)
        by_size: dict[int, list[int]] = {}
        for index, grid in enumerate(grids):
            by_size.setdefault(len(grid), []).append(index)
        for members in by_size.values():
            for start in range(0, len(members), CHUNK):
                chosen = members[start : start + CHUNK]
                batch = {
                    "inputs": torch.from_numpy(np.stack([grids[i] for i in chosen])).to(self.device),
                    "vehicle": torch.from_numpy(np.array([vehicles[i] for i in chosen], np.int64)).to(self.device),
                }
                with torch.no_grad():
                    _, outputs = self.model.predict(batch, int(segments))
                tokens = outputs["logits"].argmax(-1).cpu().numpy()
                halts = torch.sigmoid(outputs["q_halt_logits"]).cpu().numpy()
                for row, i in enumerate(chosen):
                    routes[i] = Route(np.flatnonzero(tokens[row] == vocab.PATH).astype(np.int64), float(halts[row]))
        return routes  # type: ignore[return-value]


def check_tasks(
    inputs: Sequence[Sequence[int]] | np.ndarray, vehicle: Optional[Sequence[Optional[int]]] = None
) -> tuple[list[np.ndarray], list[int]]:
    """Each task's int32 tokens and its vehicle; ``RouteInputError`` for the first task that is not one."""
    if inputs is None or len(inputs) == 0:
        raise RouteInputError("no tasks: give at least one grid of input tokens")
    if vehicle is not None and len(vehicle) != len(inputs):
        raise RouteInputError(f"{len(inputs)} grids but {len(vehicle)} vehicles")
    grids, vehicles = [], []
    for index, row in enumerate(inputs):
        grid = _tokens(row, index)
        marker = vocab.TOKEN_MARKER[grid]
        road = vocab.TOKEN_TERRAIN[grid] >= 0
        if not road.all():
            bad = int(grid[np.argmin(road)])
            name = "PATH" if bad == vocab.PATH else "PAD" if bad == vocab.PAD else str(bad)
            raise RouteInputError(f"task {index}: token {name} is never an input cell (only labels mark PATH)")
        starts, ends = int((marker == 1).sum()), int((marker == 2).sum())
        if starts != 1 or ends != 1:
            raise RouteInputError(f"task {index}: {starts} START and {ends} END tokens; a task has one of each")
        named = int(vocab.vehicle_of_start_token(grid[np.argmax(marker == 1)]))
        given = _vehicle(vehicle[index] if vehicle is not None else None, index)
        if given is not None and given != named:
            raise RouteInputError(
                f"task {index}: vehicle {given} ({vocab.VEHICLE_NAMES[given].lower()}) differs from the START "
                f"token's {named} ({vocab.VEHICLE_NAMES[named].lower()})"
            )
        grids.append(grid)
        vehicles.append(named)
    return grids, vehicles


def _tokens(row: Any, index: int) -> np.ndarray:
    try:
        array = np.asarray(row)
    except ValueError:  # ragged nesting
        raise RouteInputError(f"task {index}: inputs must be one flat row-major list of N*N tokens") from None
    if array.ndim != 1:
        raise RouteInputError(
            f"task {index}: inputs must be one flat row-major list of N*N tokens, got shape {array.shape}"
        )
    if array.dtype.kind not in "iu" and not (array.dtype.kind == "f" and np.all(np.mod(array, 1) == 0)):
        raise RouteInputError(f"task {index}: tokens must be integers, got {array.dtype}")
    n = math.isqrt(array.size)
    if n * n != array.size or not MIN_SIZE <= n <= MAX_SIZE:
        raise RouteInputError(
            f"task {index}: {array.size} tokens is not an N x N grid with N in {MIN_SIZE}..{MAX_SIZE} "
            f"({MIN_SIZE * MIN_SIZE} to {MAX_SIZE * MAX_SIZE} tokens, a square)"
        )
    outside = (array < 0) | (array >= vocab.VOCAB_SIZE)
    if outside.any():
        cell = int(np.argmax(outside))
        raise RouteInputError(
            f"task {index}: token {array[cell]} at cell {cell} is outside the vocabulary 0..{vocab.VOCAB_SIZE - 1}"
        )
    return array.astype(np.int32)


def _vehicle(value: Any, index: int) -> Optional[int]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        number = None if isinstance(value, (bool, np.bool_, str, bytes)) else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not number.is_integer() or not 0 <= number < vocab.NUM_VEHICLES:
        raise RouteInputError(
            f"task {index}: vehicle {value!r} is not one of 0..{vocab.NUM_VEHICLES - 1} "
            f"({', '.join(v.lower() for v in vocab.VEHICLE_NAMES)})"
        )
    return int(number)


def _first_line(exc: BaseException) -> str:
    """One line: torch's first line only says "Error(s) in loading state_dict"; the second names the tensor."""
    text = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])
    return text[:300] or type(exc).__name__
