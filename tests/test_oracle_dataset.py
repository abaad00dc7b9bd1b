"""``python -m oracle.generate`` and ``oracle.load_dataset``: layout, round trip, bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

import oracle.dataset as dataset_module
from oracle import DatasetError, TaskSpec, draw_splits, load_dataset, save_dataset, verify_paths
from oracle.vocab import PATH, VOCAB, costs_from_inputs


def run_generate(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "oracle.generate", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "city12"
    result = run_generate("--size", 12, "--count", 600, "--seed", 5, "--out", out, "--test-fraction", 0.25)
    assert result.returncode == 0, result.stderr
    assert "450 train + 150 test" in result.stdout
    return out


def test_hrm_layout_and_metadata(generated):
    assert json.loads((generated / "identifiers.json").read_text())[0] == "<blank>"
    for split, n in (("train", 450), ("test", 150)):
        d = generated / split
        meta = json.loads((d / "dataset.json").read_text())
        for key in (
            "pad_id",
            "ignore_label_id",
            "blank_identifier_id",
            "vocab_size",
            "seq_len",
            "num_puzzle_identifiers",
            "total_groups",
            "mean_puzzle_examples",
            "sets",
        ):
            assert key in meta
        assert meta["seq_len"] == 144 and meta["grid_size"] == 12 and meta["sets"] == ["all"]
        assert meta["vocab"]["PATH"] == PATH and meta["vocab"] == VOCAB
        assert meta["vocab_size"] == len(VOCAB) and meta["seed"] == 5
        assert meta["generator"]["version"] and meta["base_cost"] == {"small": 3, "large": 1, "diagonal": 2}
        assert meta["access"]["truck"] == ["large"]
        inputs = np.load(d / "all__inputs.npy")
        assert inputs.shape == (n, 144) and inputs.max() < meta["vocab_size"]
        np.testing.assert_array_equal(np.load(d / "all__puzzle_indices.npy"), np.arange(n + 1))
        np.testing.assert_array_equal(np.load(d / "all__group_indices.npy"), np.arange(n + 1))
        ids = np.load(d / "all__puzzle_identifiers.npy")
        np.testing.assert_array_equal(ids, np.load(d / "all__vehicle.npy") + 1)
        assert ids.max() < meta["num_puzzle_identifiers"]
        assert np.load(d / "all__costs.npy").dtype == np.float32


def test_round_trip_and_labels_check_without_our_generator(generated):
    splits = load_dataset(generated)
    assert set(splits) == {"train", "test"}
    for split in splits.values():
        tasks = split.tasks()
        np.testing.assert_array_equal(costs_from_inputs(split.inputs), tasks.costs)
        v = verify_paths(split.labels == PATH, tasks.costs, tasks.start, tasks.end, tasks.optimal_cost)
        assert v.optimal.all()


def test_test_split_is_disjoint_from_train(generated):
    splits = load_dataset(generated)
    train = {row.tobytes() for row in splits["train"].inputs}
    assert not any(row.tobytes() in train for row in splits["test"].inputs)


def test_same_seed_same_files(generated, tmp_path):
    again = tmp_path / "again"
    assert (
        run_generate("--size", 12, "--count", 600, "--seed", 5, "--out", again, "--test-fraction", 0.25).returncode == 0
    )
    for split in ("train", "test"):
        for f in (generated / split).glob("*.npy"):
            assert f.read_bytes() == (again / split / f.name).read_bytes(), f.name


def test_test_split_is_disjoint_and_full_size_on_the_smallest_grid():
    spec = TaskSpec(size=8, min_distance=1, max_distance=1, traffic_scale=0.0, obstacle_density=0.0)
    train, test = draw_splits(spec, 4000, seed=1, test_fraction=0.5)
    assert len(train) == len(test) == 2000
    seen = {row.tobytes() for row in train.inputs}
    assert not any(row.tobytes() in seen for row in test.inputs)
    assert len({row.tobytes() for row in test.inputs}) == len(test)


def test_unseen_rows_drops_training_inputs_and_repeats():
    rows = np.array([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4]], np.uint8)
    seen = {np.array([5, 6], np.uint8).tobytes()}
    keep = dataset_module.unseen_rows(rows, seen)
    assert keep.tolist() == [True, True, False, False, False]
    assert len(seen) == 3


def test_plain_hrm_directory_without_sidecars_loads(generated, tmp_path):
    plain = tmp_path / "plain"
    (plain / "train").mkdir(parents=True)
    for f in (generated / "train").iterdir():
        if f.name in ("dataset.json",) or f.name.split("__")[1].removesuffix(".npy") in dataset_module.HRM_FILES:
            (plain / "train" / f.name).write_bytes(f.read_bytes())
    split = load_dataset(plain)["train"]
    assert split.sidecars == {} and split.inputs.shape == (450, 144)
    with pytest.raises(DatasetError, match="sidecar"):
        split.tasks()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--size", 7, "--count", 10], "--size 7"),
        (["--size", 65, "--count", 10], "--size 65"),
        (["--size", 10, "--count", 0], "--count"),
        (["--size", 10, "--count", -4], "--count"),
        (["--size", 10, "--count", 10, "--min-distance", 25], "min_distance 25"),
        (["--size", 10, "--count", 10, "--min-distance", 9, "--max-distance", 3], "distance range"),
        (["--size", 10, "--count", 10, "--vehicle-mix", "1,2"], "--vehicle-mix"),
        (["--size", 10, "--count", 10, "--test-fraction", 1.5], "--test-fraction"),
        (["--size", "ten", "--count", 10], "--size"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, needle):
    out = tmp_path / "out"
    result = run_generate(*args, "--out", out)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_unwritable_out_exits_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_generate("--size", 10, "--count", 10, "--out", blocker / "data")
    assert result.returncode == 2 and "--out" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_existing_out_is_kept_unless_overwrite(generated, tmp_path):
    out = tmp_path / "data"
    assert run_generate("--size", 10, "--count", 20, "--out", out).returncode == 0
    before = (out / "train" / "all__inputs.npy").read_bytes()
    result = run_generate("--size", 10, "--count", 20, "--seed", 9, "--out", out)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (out / "train" / "all__inputs.npy").read_bytes() == before
    assert run_generate("--size", 10, "--count", 20, "--seed", 9, "--out", out, "--overwrite").returncode == 0
    assert (out / "train" / "all__inputs.npy").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_failed_write_leaves_no_partial_dataset(tmp_path, monkeypatch):
    spec = TaskSpec(size=10)
    train, test = draw_splits(spec, 50, seed=0, test_fraction=0.2)
    calls = {"n": 0}
    real_save = np.save

    def failing_save(path, array):
        calls["n"] += 1
        if calls["n"] == 7:
            raise OSError(28, "No space left on device")
        real_save(path, array)

    monkeypatch.setattr(dataset_module.np, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        save_dataset(tmp_path / "out", train, test, spec, seed=0)
    assert list(tmp_path.iterdir()) == []


def test_large_counts_show_progress(tmp_path):
    result = run_generate("--size", 8, "--count", 20000, "--out", tmp_path / "big")
    assert result.returncode == 0
    assert "20000/20000" in result.stderr
