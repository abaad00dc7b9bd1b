"""Reading and writing a run's files at a location that is a local path or a URI (s3://, gs://, file://),
through ``pyarrow.fs`` (a dependency of Ray), so every kind of storage takes one code path.

Every failure to reach a location (an unknown scheme, no credentials, a path under a file) becomes a
``RunStorageError`` whose one-line message names the location. Which checkpoint is newest and how a
location maps to a run is pure logic in ``curriculum.core.run_location``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from curriculum.core.run_location import RAY_CHECKPOINT_DIR, checkpoints_in_listing, is_uri, join


class RunStorageError(RuntimeError):
    """A location that cannot be read or written; the message (one line) names it."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def _reaching(location: str, doing: str) -> Iterator[None]:
    try:
        yield
    except RunStorageError:
        raise
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid and ArrowIOError are among them
        raise RunStorageError(f"{location}: cannot {doing}: {_first_line(exc)}") from None


def _filesystem(location: str):
    """``(pyarrow filesystem, path on it)`` of a location; a plain path is made absolute."""
    from pyarrow import fs

    if is_uri(location):
        return fs.FileSystem.from_uri(location)
    return fs.LocalFileSystem(), os.path.abspath(location)


def read_text(location: str, name: str) -> Optional[str]:
    """The text of ``location/name``, or None when there is no such file."""
    from pyarrow import fs

    target = join(location, name)
    with _reaching(target, "read it"):
        filesystem, path = _filesystem(target)
        if filesystem.get_file_info(path).type == fs.FileType.NotFound:
            return None
        with filesystem.open_input_stream(path) as stream:
            return stream.read().decode("utf-8")


def write_text(location: str, name: str, text: str) -> None:
    """Write ``location/name`` (the directory made as needed) so that readers never see half of it: a
    temporary name first, then a rename (on object stores, a single upload)."""
    target = join(location, name)
    with _reaching(target, "write it"):
        filesystem, path = _filesystem(target)
        parent = path.rsplit("/", 1)[0]
        filesystem.create_dir(parent, recursive=True)
        temporary = f"{parent}/.{name}.tmp"
        with filesystem.open_output_stream(temporary) as stream:
            stream.write(text.encode("utf-8"))
        filesystem.move(temporary, path)


def list_checkpoints(location: str) -> list[str]:
    """Every checkpoint file of the run at ``location`` (``checkpoints/`` of a run directory and Ray Train's
    ``checkpoint_*/`` directories), named from ``location`` as given; [] when the location does not exist."""
    from pyarrow import fs

    with _reaching(location, "list its checkpoints"):
        filesystem, base = _filesystem(location)
        entries = []
        top = filesystem.get_file_info(fs.FileSelector(base, allow_not_found=True))
        for info in top:
            if info.type != fs.FileType.Directory:
                continue
            if info.base_name != "checkpoints" and not RAY_CHECKPOINT_DIR.match(info.base_name):
                continue
            for inner in filesystem.get_file_info(fs.FileSelector(info.path, allow_not_found=True)):
                entries.append((f"{info.base_name}/{inner.base_name}", inner.type == fs.FileType.Directory))
        return checkpoints_in_listing(location, entries)


def fetch(location: str, directory: Path) -> Path:
    """A local file holding the checkpoint at ``location``: the path itself where it is a plain path, else a
    copy downloaded into ``directory``."""
    if not is_uri(location):
        return Path(location)
    with _reaching(location, "download it"):
        filesystem, path = _filesystem(location)
        target = Path(directory) / path.rsplit("/", 1)[-1]
        with filesystem.open_input_stream(path) as stream, open(target, "wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
        return target


@contextmanager
def local_copy(location: str) -> Iterator[Path]:
    """``fetch`` into a temporary directory that is removed afterwards."""
    if not is_uri(location):
        yield Path(location)
        return
    directory = Path(tempfile.mkdtemp(prefix="checkpoint-"))
    try:
        yield fetch(location, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
