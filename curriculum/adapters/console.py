"""The console of whichever process faces the researcher: on a terminal, one live bar per stage with the
run's lines printed above it; elsewhere (a pipe, a log file) the lines alone.

The in-process backend feeds it straight from the training loop; on Ray the driver feeds it with what
rank 0 sends through a queue, since a Ray worker never has a terminal of its own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TextIO

from curriculum.core.progress import Progress, describe_progress

FALLBACK_SIZE = {"ncols": 120, "nrows": 24}


def _size(stream: TextIO) -> dict[str, object]:
    """tqdm's size arguments: the terminal's own, or a fallback where it reports none (a bare
    pseudo-terminal), on which tqdm would otherwise hide the bar."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        return FALLBACK_SIZE
    return {"dynamic_ncols": True} if size.columns and size.lines else FALLBACK_SIZE


class LiveBar:
    """``say`` prints a line, ``show`` moves the bar (a no-op unless ``stream`` is a terminal)."""

    def __init__(self, say: Callable[[str], None] = print, stream: TextIO = sys.stderr) -> None:
        self._say, self.stream = say, stream
        self.enabled = stream.isatty()
        self._bar = None
        self._stage = None

    def waiting(self, what: str) -> None:
        """Until the first snapshot: what the run waits for, and for how long (``tick`` redraws it)."""
        if not self.enabled or self._bar is not None:
            return
        from tqdm import tqdm

        self._bar = tqdm(total=None, desc=what, bar_format="{desc}... {elapsed}", file=self.stream, leave=False)

    def tick(self) -> None:
        if self._bar is not None and self._stage is None:
            self._bar.refresh()

    def show(self, progress: Progress) -> None:
        if not self.enabled:
            return
        if progress.stage != self._stage:
            from tqdm import tqdm

            self.close()
            self._bar = tqdm(
                total=progress.stage_max_steps,
                desc=f"stage {progress.stage} {progress.size}x{progress.size}",
                bar_format="{desc} |{bar:12}| {n_fmt}/{total_fmt}{postfix}",
                file=self.stream,
                leave=False,
                **_size(self.stream),
            )
            self._stage = progress.stage
        self._bar.n = progress.steps_in_stage
        self._bar.set_postfix_str(describe_progress(progress), refresh=False)
        self._bar.refresh()

    def say(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)  # above the bar, which is redrawn below it
        else:
            self._say(line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar, self._stage = None, None
