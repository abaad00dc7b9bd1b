"""The config keys a researcher can set: the resolved config as commented YAML (``--show-config``), and
the nearest known key for a misspelled one ("did you mean ...").

Both read the pydantic models themselves, so a new field shows up, described, without a list to keep.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Optional, Union

import yaml
from pydantic import BaseModel

from curriculum.core.config import RunConfig


def _model_of(annotation: Any) -> Optional[type[BaseModel]]:
    """The model class inside ``annotation`` (``X``, ``Optional[X]``, ``list[X]``), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType, list, tuple):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).removesuffix("\n...\n").strip()


def _describe(field_name: str, model: type[BaseModel]) -> str:
    info = model.model_fields[field_name]
    if info.description:
        return info.description
    nested = _model_of(info.annotation)
    return (nested.__doc__ or "").strip().splitlines()[0] if nested is not None and nested.__doc__ else ""


def _emit(model: type[BaseModel], data: dict, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for name in model.model_fields:
        value = data[name]
        about = _describe(name, model)
        if about:
            lines.append(f"{pad}# {' '.join(about.split())}")
        nested = _model_of(model.model_fields[name].annotation)
        if nested is not None and isinstance(value, dict):
            lines.append(f"{pad}{name}:")
            _emit(nested, value, indent + 2, lines)
        elif nested is not None and isinstance(value, list) and value:
            lines.append(f"{pad}{name}:")
            for index, item in enumerate(value):
                lines.append(f"{pad}- # {name}.{index}")
                _emit(nested, item, indent + 2, lines)
        else:
            lines.append(f"{pad}{name}: {_scalar(value)}")


def config_yaml(config: RunConfig) -> str:
    """``config`` as YAML with every field's description above it; it loads back as ``--config`` file."""
    lines: list[str] = []
    _emit(RunConfig, config.model_dump(mode="json"), 0, lines)
    return "\n".join(lines) + "\n"


def known_keys(location: tuple) -> list[str]:
    """The field names of the model at ``location`` (a pydantic error location; list indexes skipped)."""
    model: Optional[type[BaseModel]] = RunConfig
    for part in location:
        if isinstance(part, int) or str(part).isdigit():
            continue
        if model is None or part not in model.model_fields:
            return []
        model = _model_of(model.model_fields[part].annotation)
    return list(model.model_fields) if model is not None else []


def unknown_key_message(location: tuple) -> str:
    """``train.lrr: unknown key; did you mean train.lr?`` (or the keys known there, when none is close)."""
    *parent, key = [str(part) for part in location]
    where = ".".join([*parent, key])
    known = known_keys(tuple(parent))
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"{where}: unknown key; did you mean {'.'.join([*parent, close[0]])}?"
    return f"{where}: unknown key (known here: {', '.join(known)})" if known else f"{where}: unknown key"
