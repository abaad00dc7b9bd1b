"""Datasets on disk in the HRM puzzle-dataset layout, with sidecars that let anyone check labels.

``DIR/{train,test}/`` hold ``all__inputs.npy``, ``all__labels.npy``, ``all__puzzle_identifiers.npy``,
``all__puzzle_indices.npy``, ``all__group_indices.npy`` and ``dataset.json`` (readable by the
public HRM code: every task is its own puzzle and group; its puzzle identifier is vehicle + 1, so
HRM's puzzle embedding sees the vehicle too), plus the sidecars ``all__costs.npy``,
``all__start.npy``, ``all__end.npy``, ``all__vehicle.npy``, ``all__optimal_cost.npy`` and
``all__hour.npy``, and the dense oracle fields ``all__from_start.npy`` and ``all__to_end.npy`` (the
cheapest route cost from the start to every cell and from every cell to the end; see
``oracle.fields``). ``DIR/identifiers.json`` names the puzzle identifiers.

Writes are atomic: everything goes to a temporary directory beside ``DIR`` that is renamed into
place at the end, so an interrupted or failed write leaves no partial dataset.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from oracle import vocab
from oracle.generator import TaskBatch, generate_tasks
from oracle.spec import TaskSpec, grid_side

GENERATOR_VERSION = "1.0.0"
SET_NAME = "all"
HRM_FILES = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")
SIDECARS = ("costs", "start", "end", "vehicle", "optimal_cost", "hour")
FIELDS = ("from_start", "to_end")  # derived from the sidecars; optional on load (older datasets lack them)
TEST_STREAM_OFFSET = 1 << 40  # test tasks come from a task-index range training never reaches
IDENTIFIERS = ["<blank>", "bike", "car", "van", "truck"]


class DatasetError(ValueError):
    """A dataset directory that cannot be read; the message names the file."""


@dataclass
class DatasetSplit:
    """One split as read from disk; sidecars are None for plain HRM-layout directories."""

    metadata: dict
    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray
    sidecars: dict[str, np.ndarray] = field(default_factory=dict)
    fields: dict[str, np.ndarray] = field(default_factory=dict)  # from_start / to_end where present

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def size(self) -> int:
        return grid_side(self.inputs.shape[1])

    def tasks(self) -> TaskBatch:
        """The split as a ``TaskBatch`` (needs the sidecars)."""
        missing = [name for name in SIDECARS if name not in self.sidecars]
        if missing:
            raise DatasetError(f"split has no sidecar {', '.join('all__' + m + '.npy' for m in missing)}")
        return TaskBatch(size=self.size, inputs=self.inputs, labels=self.labels, **self.sidecars)


def draw_splits(
    spec: TaskSpec,
    count: int,
    seed: int,
    test_fraction: float,
    progress: Optional[Callable[[int], None]] = None,
    block: int = 8192,
) -> tuple[TaskBatch, TaskBatch]:
    """Train and test tasks from disjoint task streams; test inputs never repeat a training input."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n_test = int(round(count * test_fraction))
    n_train = count - n_test
    if n_train <= 0:
        raise ValueError(f"count {count} with test_fraction {test_fraction} leaves no training tasks")
    train = _draw_blocks(spec, n_train, seed, 0, block, progress)
    if n_test == 0:
        return train, _empty_like(train)
    seen = {row.tobytes() for row in train.inputs}
    kept: list[TaskBatch] = []
    have, next_index = 0, TEST_STREAM_OFFSET
    while have < n_test:
        need = n_test - have
        batch = _draw_blocks(spec, need, seed, next_index, block, progress)
        next_index += need
        keep = unseen_rows(batch.inputs, seen)
        kept.append(select(batch, np.flatnonzero(keep)))
        have += int(keep.sum())
    return train, concat(kept)


def unseen_rows(inputs: np.ndarray, seen: set[bytes]) -> np.ndarray:
    """Mask of rows not in ``seen`` (nor repeated earlier in ``inputs``); adds the kept rows to ``seen``."""
    keep = np.zeros(len(inputs), bool)
    for i, row in enumerate(inputs):
        key = row.tobytes()
        if key not in seen:
            seen.add(key)
            keep[i] = True
    return keep


def _draw_blocks(spec, count, seed, first_index, block, progress) -> TaskBatch:
    parts = []
    for offset in range(0, count, block):
        parts.append(generate_tasks(spec, min(block, count - offset), seed, first_index + offset))
        if progress is not None:
            progress(len(parts[-1]))
    return concat(parts)


def select(batch: TaskBatch, index: np.ndarray) -> TaskBatch:
    """The tasks of ``batch`` at ``index``."""
    return TaskBatch(size=batch.size, **{k: getattr(batch, k)[index] for k in _ARRAY_FIELDS})


def concat(batches: list[TaskBatch]) -> TaskBatch:
    """Tasks of several same-size batches, in order."""
    return TaskBatch(
        size=batches[0].size, **{k: np.concatenate([getattr(b, k) for b in batches]) for k in _ARRAY_FIELDS}
    )


def _empty_like(batch: TaskBatch) -> TaskBatch:
    return select(batch, np.zeros(0, np.int64))


_ARRAY_FIELDS = ("inputs", "labels", "costs", "start", "end", "vehicle", "optimal_cost", "hour")


def split_metadata(batch: TaskBatch, spec: TaskSpec, seed: int, split: str) -> dict:
    """``dataset.json`` for one split: HRM's metadata fields plus everything needed to check labels."""
    n = len(batch)
    return {
        # HRM PuzzleDatasetMetadata
        "pad_id": vocab.PAD,
        "ignore_label_id": vocab.PAD,
        "blank_identifier_id": 0,
        "vocab_size": vocab.VOCAB_SIZE,
        "seq_len": batch.size * batch.size,
        "num_puzzle_identifiers": len(IDENTIFIERS),
        "total_groups": n,
        "mean_puzzle_examples": 1.0,
        "sets": [SET_NAME],
        # The task
        "grid_size": batch.size,
        "split": split,
        "count": n,
        "seed": seed,
        "generator": {"name": "oracle", "version": GENERATOR_VERSION},
        "spec": spec.model_dump(mode="json"),
        "puzzle_identifiers": "vehicle + 1 (see identifiers.json)",
        "sidecars": {
            "costs": "float32 [n, N*N]: cost of entering each cell for the example's vehicle, +inf where forbidden",
            "start": "int32 [n]: flat index of the start cell",
            "end": "int32 [n]: flat index of the end cell",
            "vehicle": "uint8 [n]: 0 bike, 1 car, 2 van, 3 truck",
            "optimal_cost": "float32 [n]: cost of an optimal route (start cell excluded)",
            "hour": "uint8 [n]: hour of day of the traffic",
            "from_start": "float32 [n, N*N]: cheapest route cost from the start to each cell, +inf if unreachable",
            "to_end": "float32 [n, N*N]: cheapest route cost from each cell to the end, +inf if unreachable; "
            "a cell is on some optimal route iff from_start + to_end == optimal_cost",
        },
        "canonical_path": "see oracle/astar.py: backward walk from the end, neighbours in order up, left, down, right",
        **vocab.describe(),
    }


def _write_split(directory: Path, batch: TaskBatch, spec: TaskSpec, seed: int, split: str) -> None:
    directory.mkdir(parents=True)
    n = len(batch)
    arrays = {
        "inputs": batch.inputs,
        "labels": batch.labels,
        "puzzle_identifiers": (batch.vehicle.astype(np.int32) + 1),
        "puzzle_indices": np.arange(n + 1, dtype=np.int32),
        "group_indices": np.arange(n + 1, dtype=np.int32),
        **{name: getattr(batch, name) for name in SIDECARS},
        **dict(zip(FIELDS, batch.route_fields())),
    }
    for name, array in arrays.items():
        np.save(directory / f"{SET_NAME}__{name}.npy", array)
    (directory / "dataset.json").write_text(json.dumps(split_metadata(batch, spec, seed, split), indent=2))


def check_writable_target(out_dir: Path, overwrite: bool) -> None:
    """Raise ``OSError``/``FileExistsError`` naming ``out_dir`` before any work is done."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"--out {out_dir} already exists (pass --overwrite to replace it)")
    parent = out_dir.absolute().parent
    if not parent.is_dir():
        raise OSError(f"--out {out_dir}: parent directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OSError(f"--out {out_dir}: directory {parent} is not writable")


def save_dataset(
    out_dir: Path, train: TaskBatch, test: TaskBatch, spec: TaskSpec, seed: int, overwrite: bool = False
) -> Path:
    """Write both splits atomically to ``out_dir``; returns the final path."""
    out_dir = Path(out_dir)
    check_writable_target(out_dir, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.absolute().parent))
    try:
        _write_split(tmp / "train", train, spec, seed, "train")
        _write_split(tmp / "test", test, spec, seed, "test")
        (tmp / "identifiers.json").write_text(json.dumps(IDENTIFIERS))
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None


def load_split(directory: Path) -> DatasetSplit:
    """Read one split directory (``train`` or ``test``)."""
    directory = Path(directory)
    meta_path = directory / "dataset.json"
    if not meta_path.is_file():
        raise DatasetError(f"missing file {meta_path}")
    try:
        metadata = json.loads(meta_path.read_text())
    except (ValueError, OSError) as exc:
        raise DatasetError(f"cannot read {meta_path}: {exc}") from None
    if not isinstance(metadata, dict):
        raise DatasetError(f"{meta_path} is not a JSON object")
    arrays = {name: _load_npy(directory / f"{SET_NAME}__{name}.npy") for name in HRM_FILES}
    _check_hrm_arrays(directory, arrays, metadata)
    n, cells = arrays["inputs"].shape
    sidecars = _load_sidecars(directory, n=n, cells=cells)
    return DatasetSplit(metadata=metadata, sidecars=sidecars, fields=_load_fields(directory, n, cells), **arrays)


def _file(directory: Path, name: str) -> Path:
    return directory / f"{SET_NAME}__{name}.npy"


def _fail_unless(condition: bool, path: Path, problem: str) -> None:
    if not condition:
        raise DatasetError(f"{path} {problem}")


def _check_hrm_arrays(directory: Path, arrays: dict[str, np.ndarray], metadata: dict) -> None:
    """Shapes, dtypes and index structure of HRM's files, so a damaged file is named before it is used."""
    inputs, labels = arrays["inputs"], arrays["labels"]
    _fail_unless(
        inputs.ndim == 2 and inputs.dtype.kind in "iu",
        _file(directory, "inputs"),
        f"must be a 2-D integer array [examples, cells], got {inputs.dtype} {inputs.shape}",
    )
    _fail_unless(
        labels.shape == inputs.shape and labels.dtype.kind in "iu",
        _file(directory, "labels"),
        f"has {labels.dtype} {labels.shape}, expected integers shaped like all__inputs.npy {inputs.shape}",
    )
    seq_len = metadata.get("seq_len")
    _fail_unless(
        seq_len is None or inputs.shape[1] == seq_len,
        _file(directory, "inputs"),
        f"rows have {inputs.shape[1]} cells, dataset.json says seq_len {seq_len}",
    )
    # HRM's layout: puzzle p holds examples puzzle_indices[p]:puzzle_indices[p+1]; group g holds puzzles
    # group_indices[g]:group_indices[g+1].
    _check_index(directory, "puzzle_indices", arrays["puzzle_indices"], len(inputs))
    puzzles = len(arrays["puzzle_indices"]) - 1
    _fail_unless(
        arrays["puzzle_identifiers"].shape == (puzzles,),
        _file(directory, "puzzle_identifiers"),
        f"has shape {arrays['puzzle_identifiers'].shape}, expected ({puzzles},)",
    )
    _check_index(directory, "group_indices", arrays["group_indices"], puzzles)


def _check_index(directory: Path, name: str, index: np.ndarray, ends_at: int) -> None:
    _fail_unless(
        index.ndim == 1
        and index.dtype.kind in "iu"
        and len(index) >= 1
        and index[0] == 0
        and index[-1] == ends_at
        and bool(np.all(np.diff(index) >= 0)),
        _file(directory, name),
        f"must rise from 0 to {ends_at} (got {index.dtype} {index.shape})",
    )


def _load_sidecars(directory: Path, n: int, cells: int) -> dict[str, np.ndarray]:
    """The sidecars, all or none (a plain HRM directory); each checked for shape, dtype and range."""
    sidecars = {}
    for name in SIDECARS:
        path = _file(directory, name)
        if path.exists():
            array = _load_npy(path)
            want = (n, cells) if name == "costs" else (n,)
            kinds = "f" if name in ("costs", "optimal_cost") else "iu"
            _fail_unless(
                array.shape == want and array.dtype.kind in kinds,
                path,
                f"has {array.dtype} {array.shape}, expected {'float' if kinds == 'f' else 'integer'} {want}",
            )
            if name in ("start", "end"):
                _fail_unless(bool(np.all((array >= 0) & (array < cells))), path, f"holds cells outside 0..{cells - 1}")
            sidecars[name] = array
    if sidecars and len(sidecars) != len(SIDECARS):
        missing = [_file(directory, name).name for name in SIDECARS if name not in sidecars]
        raise DatasetError(f"{directory} is missing sidecar file(s) {', '.join(missing)}")
    return sidecars


def _load_fields(directory: Path, n: int, cells: int) -> dict[str, np.ndarray]:
    """The dense oracle fields where present, each checked for shape and dtype."""
    fields = {}
    for name in FIELDS:
        path = _file(directory, name)
        if path.exists():
            array = _load_npy(path)
            _fail_unless(
                array.shape == (n, cells) and array.dtype == np.float32,
                path,
                f"has {array.dtype} {array.shape}, expected float32 {(n, cells)}",
            )
            fields[name] = array
    return fields


def load_dataset(directory: Path) -> dict[str, DatasetSplit]:
    """Read every split (``train``, ``test``) present under ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"dataset directory {directory} does not exist")
    splits = {name: load_split(directory / name) for name in ("train", "test") if (directory / name).is_dir()}
    if not splits:
        raise DatasetError(f"{directory} has neither a train/ nor a test/ split")
    return splits
