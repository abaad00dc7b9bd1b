"""The run's files at a location through pyarrow.fs: plain paths and ``file://`` URIs take the same code
path as s3:// and gs://, so they stand in for them here. Errors are one line naming the location."""

import pytest

from curriculum.adapters.run_storage import (
    RunStorageError,
    fetch,
    list_checkpoints,
    local_copy,
    read_text,
    write_text,
)


@pytest.fixture(params=["path", "uri"])
def location(request, tmp_path) -> str:
    """A storage location that does not exist yet, as a plain path or as a file:// URI."""
    where = tmp_path / "shared" / "run"
    return str(where) if request.param == "path" else f"file://{where}"


def test_text_written_is_read_back_and_a_missing_file_is_none(location, tmp_path):
    assert read_text(location, "run.json") is None, "nothing there yet (the location does not even exist)"
    write_text(location, "run.json", '{"run_id": "abc"}')
    write_text(location, "run.json", '{"run_id": "def"}')  # replaced whole
    assert read_text(location, "run.json") == '{"run_id": "def"}'
    assert sorted(p.name for p in (tmp_path / "shared" / "run").iterdir()) == ["run.json"], "no temporary left"


def test_checkpoints_are_listed_from_ray_train_directories_and_a_run_directory(location, tmp_path):
    base = tmp_path / "shared" / "run"
    assert list_checkpoints(location) == [], "a location that does not exist holds no checkpoint"
    for relative in (
        "checkpoint_2026-01-01_10-00-00.100/checkpoint-000000020.pt",
        "checkpoint_2026-01-01_10-00-09.900/checkpoint-000000040.pt",
        "checkpoints/checkpoint-000000060.pt",
        "checkpoints/.checkpoint-000000080.pt.x.tmp",
        "pictures/checkpoint-000000100.pt",
        "checkpoint-000000120.pt",
        "config.json",
    ):
        (base / relative).parent.mkdir(parents=True, exist_ok=True)
        (base / relative).write_bytes(b"x")
    assert sorted(list_checkpoints(location)) == [
        f"{location}/checkpoint_2026-01-01_10-00-00.100/checkpoint-000000020.pt",
        f"{location}/checkpoint_2026-01-01_10-00-09.900/checkpoint-000000040.pt",
        f"{location}/checkpoints/checkpoint-000000060.pt",
    ]


def test_a_relative_path_is_listed_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "checkpoint-000000020.pt").write_bytes(b"x")
    assert list_checkpoints("run") == ["run/checkpoints/checkpoint-000000020.pt"]


def test_a_checkpoint_at_a_uri_is_downloaded_and_a_plain_path_used_as_it_is(tmp_path):
    source = tmp_path / "shared" / "run" / "checkpoint_1" / "checkpoint-000000020.pt"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"weights" * 1000)
    into = tmp_path / "here"
    into.mkdir()
    copied = fetch(f"file://{source}", into)
    assert copied == into / source.name and copied.read_bytes() == source.read_bytes()
    assert fetch(str(source), into) == source
    with local_copy(f"file://{source}") as path:
        assert path.read_bytes() == source.read_bytes() and path.parent != source.parent
    assert not path.exists(), "the temporary copy is removed"
    with local_copy(str(source)) as path:
        assert path == source
    assert source.exists()


def test_an_unreachable_location_is_one_line_naming_it(tmp_path):
    (tmp_path / "afile").write_text("")
    under_a_file = f"file://{tmp_path}/afile/run"
    for attempt, where, needle in (
        (lambda: list_checkpoints("nosuchfs://bucket/run"), "nosuchfs://bucket/run", "Unrecognized filesystem type"),
        (lambda: write_text(under_a_file, "config.json", "{}"), f"{under_a_file}/config.json", "Not a directory"),
    ):
        with pytest.raises(RunStorageError) as caught:
            attempt()
        message = str(caught.value)
        assert message.startswith(where) and needle in message and "\n" not in message, message


def test_a_file_that_cannot_be_read_fails_naming_it(tmp_path):
    (tmp_path / "run" / "config.json").mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(RunStorageError, match=r"run/config.json: cannot read it"):
        read_text(str(tmp_path / "run"), "config.json")
