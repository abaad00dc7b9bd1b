"""A damaged dataset directory: ``oracle.load_dataset`` raises ``DatasetError`` naming the file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from oracle import DatasetError, TaskSpec, draw_splits, load_dataset, save_dataset
from oracle.dataset import HRM_FILES, SIDECARS

ALL_FILES = [f"all__{name}.npy" for name in (*HRM_FILES, *SIDECARS)]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    spec = TaskSpec(size=8)
    train, test = draw_splits(spec, 40, seed=3, test_fraction=0.25)
    return save_dataset(tmp_path_factory.mktemp("data") / "city8", train, test, spec, seed=3)


@pytest.fixture
def dataset(pristine, tmp_path):
    copy = tmp_path / "city8"
    shutil.copytree(pristine, copy)
    assert set(load_dataset(copy)) == {"train", "test"}
    return copy


def refused(directory, file_name: str, needle: str = "") -> str:
    with pytest.raises(DatasetError) as caught:
        load_dataset(directory)
    message = str(caught.value)
    assert file_name in message and needle in message and "\n" not in message, message
    return message


@pytest.mark.parametrize("name", ALL_FILES)
def test_a_missing_file_is_named(dataset, name):
    (dataset / "train" / name).unlink()
    refused(dataset, name, "missing")


@pytest.mark.parametrize("name", ALL_FILES)
def test_a_truncated_file_is_named(dataset, name):
    path = dataset / "test" / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    refused(dataset, name, "cannot read")


@pytest.mark.parametrize("name", ALL_FILES)
def test_an_array_of_the_wrong_shape_is_named(dataset, name):
    path = dataset / "train" / name
    array = np.load(path)
    np.save(path, array[:-1])  # one row (or index entry) short
    refused(dataset, name)


@pytest.mark.parametrize(
    "name,bad",
    [
        ("all__inputs.npy", lambda a: a.astype(np.float32)),
        ("all__labels.npy", lambda a: a.astype(np.float64)),
        ("all__costs.npy", lambda a: np.ones(a.shape, np.int64)),
        ("all__start.npy", lambda a: a.astype(np.float32)),
        ("all__end.npy", lambda a: a + 10_000),
        ("all__puzzle_indices.npy", lambda a: a[::-1].copy()),
        ("all__group_indices.npy", lambda a: a * 2),
    ],
)
def test_wrong_types_and_values_are_named(dataset, name, bad):
    path = dataset / "train" / name
    np.save(path, bad(np.load(path)))
    refused(dataset, name)


def test_a_pickled_array_is_refused_not_unpickled(dataset):
    path = dataset / "train" / "all__inputs.npy"
    np.save(path, np.array([object()], dtype=object), allow_pickle=True)
    refused(dataset, "all__inputs.npy", "cannot read")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_broken_dataset_json_is_named(dataset, content):
    (dataset / "test" / "dataset.json").write_text(content)
    refused(dataset, "dataset.json")


def test_a_seq_len_that_disagrees_with_the_arrays_is_named(dataset):
    meta_path = dataset / "train" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    meta["seq_len"] = 100
    meta_path.write_text(json.dumps(meta))
    refused(dataset, "all__inputs.npy", "seq_len 100")


def test_no_split_or_no_directory_is_named(dataset, tmp_path):
    refused(tmp_path / "nowhere", "nowhere", "does not exist")
    shutil.rmtree(dataset / "train")
    shutil.rmtree(dataset / "test")
    refused(dataset, "city8", "neither a train/ nor a test/")
