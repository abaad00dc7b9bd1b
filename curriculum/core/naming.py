"""Run names that say what differs between runs: the preset, the config file and the overrides given.

``tiny``, ``tiny lr=5e-4``, ``gpu my_run stages.0.gate.threshold=0.9``: two curricula started from the
same preset with different overrides are told apart in the MLflow runs table by name alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

# Sections whose name adds nothing to a key (``train.lr`` reads as ``lr``); kept where it does.
_IMPLIED_SECTIONS = ("train.", "model.", "curriculum.", "scaling.", "tracking.")
MAX_NAME_CHARS = 120


def short_override(text: str) -> str:
    """``train.lr=5e-4`` -> ``lr=5e-4``; ``curriculum.stages.0.gate.threshold=0.9`` ->
    ``stages.0.gate.threshold=0.9``."""
    for section in _IMPLIED_SECTIONS:
        if text.startswith(section) and "=" in text[len(section) :]:
            return text[len(section) :]
    return text


def run_name(preset: str, config_file: Optional[Path] = None, overrides: Sequence[str] = ()) -> str:
    """The preset, the config file's stem and the overrides, shortened, at most ``MAX_NAME_CHARS`` long."""
    parts = [preset]
    if config_file is not None:
        parts.append(Path(config_file).stem)
    parts.extend(short_override(text) for text in overrides if not text.startswith("tracking.run_name="))
    name = " ".join(parts)
    return name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 3] + "..."
