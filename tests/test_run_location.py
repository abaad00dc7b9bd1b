"""Where a run's state lives: locations as paths or URIs, the newest checkpoint of several places, and
whether ``--resume`` was given a run directory or a storage location. Pure functions, no I/O."""

from pathlib import Path

import pytest

from curriculum.core.run_location import (
    RunPlaces,
    checkpoint_step,
    checkpoints_in_listing,
    is_uri,
    join,
    newest_checkpoint,
    normal,
    run_places,
    same_location,
    split_location,
)


def test_join_keeps_a_uri_scheme_and_a_relative_path_relative():
    assert join("s3://bucket/ray", "run") == "s3://bucket/ray/run"
    assert join("s3://bucket/ray/", "run", "config.json") == "s3://bucket/ray/run/config.json"
    assert join("gs://b", "run") == "gs://b/run"
    assert join("/shared/", "run") == "/shared/run"
    assert join("runs/x", "checkpoints") == "runs/x/checkpoints"
    assert join("file:///shared", "run") == "file:///shared/run"


@pytest.mark.parametrize(
    "location,expected",
    [
        ("s3://bucket/ray/run-1", ("s3://bucket/ray", "run-1")),
        ("s3://bucket/ray/run-1/", ("s3://bucket/ray", "run-1")),
        ("s3://bucket/run-1", ("s3://bucket", "run-1")),
        ("/tmp/shared/run", ("/tmp/shared", "run")),
        ("/run", ("/", "run")),
        ("shared/run", ("shared", "run")),
        ("run", (".", "run")),
        ("file:///tmp/shared/run", ("file:///tmp/shared", "run")),
    ],
)
def test_a_storage_location_splits_into_storage_and_run_name(location, expected):
    assert split_location(location) == expected


@pytest.mark.parametrize("location", ["s3://bucket", "s3://bucket/", "/", "s3://", ".."])
def test_a_location_without_a_run_name_is_refused(location):
    with pytest.raises(ValueError, match="names no run"):
        split_location(location)


def test_uris_and_paths():
    assert is_uri("s3://b/x") and is_uri("gs://b") and is_uri("file:///x") and is_uri("hdfs://nn:8020/x")
    assert not is_uri("/abs") and not is_uri("rel/x") and not is_uri("C:\\runs") and not is_uri("weird:name")


def test_locations_compare_after_normalising(tmp_path):
    assert same_location("S3://bucket/ray/run/", "s3://bucket/ray/run")
    assert same_location("shared/run", str(tmp_path / "shared" / "run"), cwd=tmp_path)
    assert same_location(str(tmp_path / "a" / ".." / "b"), str(tmp_path / "b"))
    assert not same_location("s3://bucket/ray/run", "s3://bucket/ray/run2")
    assert not same_location(None, "s3://b/x") and not same_location("s3://b/x", None)
    assert normal("run", cwd=Path("/work")) == "/work/run"


def test_checkpoint_step_reads_the_file_name_wherever_it_lies():
    assert checkpoint_step("s3://b/ray/run/checkpoint_2026-01-01_10-00-00.123/checkpoint-000000040.pt") == 40
    assert checkpoint_step("run/checkpoints/checkpoint-000001200.pt") == 1200
    assert checkpoint_step("run/checkpoints/checkpoint-40.pt") is None
    assert checkpoint_step("run/checkpoints/.checkpoint-000000040.pt.abc.tmp") is None
    assert checkpoint_step("run/config.json") is None


def test_the_newest_checkpoint_is_the_highest_step_from_any_place():
    local = ["run/checkpoints/checkpoint-000000020.pt", "run/checkpoints/checkpoint-000000040.pt"]
    shared = [
        "s3://b/ray/run/checkpoint_2/checkpoint-000000060.pt",
        "s3://b/ray/run/checkpoint_1/checkpoint-000000040.pt",
    ]
    assert newest_checkpoint(shared + local) == shared[0]
    assert newest_checkpoint(local) == local[1]
    assert newest_checkpoint([]) is None and newest_checkpoint([None, "run/config.json"]) is None
    # Ray's directory names sort by time, not step: the step in the file name decides.
    assert newest_checkpoint(["x/checkpoint_9/checkpoint-000000020.pt", "x/checkpoint_1/checkpoint-000000100.pt"]) == (
        "x/checkpoint_1/checkpoint-000000100.pt"
    )


def test_a_tie_goes_to_the_first_place_given():
    same_step = ["s3://b/ray/run/checkpoint_1/checkpoint-000000040.pt", "run/checkpoints/checkpoint-000000040.pt"]
    assert newest_checkpoint(same_step) == same_step[0]
    assert newest_checkpoint(list(reversed(same_step))) == same_step[1]
    assert newest_checkpoint([None, same_step[1]]) == same_step[1]


def test_checkpoints_in_a_listing_are_those_of_a_run_directory_and_of_ray_train():
    entries = [
        ("checkpoints/checkpoint-000000020.pt", False),
        ("checkpoints/.checkpoint-000000040.pt.x.tmp", False),
        ("checkpoint_2026-01-01_10-00-00.123/checkpoint-000000040.pt", False),
        ("checkpoint_2026-01-01_10-00-00.123/checkpoint-000000060.pt", True),  # a directory, not a file
        ("pictures/checkpoint-000000080.pt", False),
        ("config.json", False),
        ("checkpoint_x/deeper/checkpoint-000000100.pt", False),
    ]
    assert checkpoints_in_listing("s3://b/ray/run", entries) == [
        "s3://b/ray/run/checkpoints/checkpoint-000000020.pt",
        "s3://b/ray/run/checkpoint_2026-01-01_10-00-00.123/checkpoint-000000040.pt",
    ]


RECORD = {"run_id": "abc", "tracking_uri": "sqlite:///x.db", "run_dir": "/head/runs/run", "storage": "/shared/run"}


def test_a_uri_is_a_storage_location_whose_run_directory_is_made_here():
    places = run_places("s3://bucket/ray/run/", {**RECORD, "storage": "s3://bucket/ray/run"}, Path("runs"))
    assert places == RunPlaces(Path("runs/run"), "s3://bucket/ray/run/", True)
    # Also when the record names another storage location (the bucket was copied): the run goes on where found.
    assert run_places("gs://other/run", RECORD, Path("runs")) == RunPlaces(Path("runs/run"), "gs://other/run", True)


def test_the_recorded_storage_path_is_a_storage_location():
    places = run_places("/shared/run/", RECORD, Path("runs"), cwd=Path("/elsewhere"))
    assert places == RunPlaces(Path("runs/run"), "/shared/run/", True)
    relative = run_places("../shared/run", RECORD, Path("runs"), cwd=Path("/work"))
    assert relative.from_storage and relative.run_dir == Path("runs/run")


def test_anything_else_is_a_run_directory_with_the_recorded_storage():
    assert run_places("runs/run", RECORD, Path("runs"), cwd=Path("/head")) == RunPlaces(
        Path("runs/run"), "/shared/run", False
    )
    moved = run_places("/backup/run", RECORD, Path("runs"))
    assert moved == RunPlaces(Path("/backup/run"), "/shared/run", False)
    no_storage = {"run_id": "abc", "tracking_uri": None}  # a run without scaling.storage, or from before it
    assert run_places("run", no_storage, Path("runs")) == RunPlaces(Path("run"), None, False)


def test_a_run_directory_that_is_also_its_storage_location_stays_a_run_directory():
    both = {**RECORD, "run_dir": "/shared/run"}
    assert run_places("/shared/run", both, Path("runs")) == RunPlaces(Path("/shared/run"), "/shared/run", False)
