"""Building a ``RunConfig``: preset, then an optional YAML file, then dotted ``key=value`` overrides.

Overrides use HRM's Hydra habit: ``train.lr=3e-4``, ``curriculum.stages.0.gate.threshold=0.9``,
``model.backprop=last_h_cycle``. Values are parsed as YAML scalars (numbers, booleans, null, lists).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from curriculum.core.config import RunConfig
from curriculum.core.presets import PRESET_NAMES, preset_config
from oracle.cli_errors import UsageError, describe_validation_error


def deep_merge(base: dict, update: dict) -> dict:
    """``update`` laid over ``base``: mappings merge key by key, everything else is replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.0=1e-3"`` -> (["a", "b", "0"], 0.001)."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise UsageError(f"override {text!r} is not of the form key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError):
        raise UsageError(f"override {key}: cannot parse value {raw[:40]!r}") from None
    if nesting_depth(value) > MAX_DEPTH:
        raise UsageError(f"override {key}: a value nested deeper than {MAX_DEPTH} levels")
    return key.split("."), value


def apply_override(config: dict, path: list[str], value: Any) -> None:
    """Set ``value`` at ``path`` inside ``config`` (list items by index); UsageError names a bad path."""
    node: Any = config
    for depth, part in enumerate(path[:-1]):
        where = ".".join(path[: depth + 1])
        if isinstance(node, list):
            node = node[_index(part, node, where)]
        elif isinstance(node, dict):
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
        else:
            raise UsageError(f"override {'.'.join(path)}: {'.'.join(path[:depth])} is not a mapping")
    last = path[-1]
    if isinstance(node, list):
        node[_index(last, node, ".".join(path))] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise UsageError(f"override {'.'.join(path)}: {'.'.join(path[:-1])} is not a mapping")


def _index(part: str, items: list, where: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise UsageError(f"{where}: no such list item (there are {len(items)})")
    return int(part)


def load_yaml_config(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except RecursionError:
        raise UsageError(
            f"config file {path}: nested too deeply to read (a config is {MAX_DEPTH} levels at most)"
        ) from None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {path}: not valid YAML ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {path}: top level must be a mapping, not {type(data).__name__}")
    if nesting_depth(data) > MAX_DEPTH:
        raise UsageError(f"config file {path}: nested deeper than {MAX_DEPTH} levels, which no config field is")
    return data


MAX_DEPTH = 16  # the run config is 5 levels deep (curriculum.stages.N.gate.threshold); room for values


def nesting_depth(value: object) -> int:
    """Levels of mappings and lists in ``value`` (counted without recursion, so any depth is safe)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def build_config(
    preset: Optional[str] = None, config_file: Optional[Path] = None, overrides: Sequence[str] = ()
) -> RunConfig:
    """Validate preset + file + overrides into a ``RunConfig``; every problem is a one-line UsageError."""
    file_data = load_yaml_config(config_file) if config_file else {}
    name = preset or file_data.get("preset") or "tiny"
    if name not in PRESET_NAMES:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    # Overrides work on the raw form: the preset's full dump, every field present.
    raw = deep_merge(preset_config(name).model_dump(), file_data)
    raw["preset"] = name
    return config_from_raw(raw, overrides)


def config_from_raw(raw: dict, overrides: Sequence[str] = ()) -> RunConfig:
    """Apply ``overrides`` to a raw config mapping (in place) and validate it; UsageError names the field."""
    for text in overrides:
        apply_override(raw, *parse_override(text))
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "extra_forbidden":  # a misspelled key: name the nearest real one
            from curriculum.core.describe import unknown_key_message

            raise UsageError(unknown_key_message(first["loc"])) from None
        raise UsageError(describe_validation_error(exc)) from None
