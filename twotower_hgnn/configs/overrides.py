"""``--config.<path>=value`` overrides of a frozen dataclass configuration, typed by its annotations.

``apply_overrides(cfg, {"hgnn.fanouts": "10,5", "two_tower.model.temperature": "0.1"})`` returns a new
configuration (``dataclasses.replace`` along the path, so every section's own validation runs again).
String values are parsed by the field's annotation: ints, floats, booleans (true/false/1/0/yes/no),
strings, ``none`` for optional fields, comma-separated tuples (``10,5``) and JSON objects for mappings.
Every failure is a :class:`~twotower_hgnn.configs.base.ConfigError` naming the override.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import sys
import types
import typing
from typing import Any, Mapping

from twotower_hgnn.configs.base import ConfigError

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def apply_overrides(cfg: Any, overrides: Mapping[str, Any]) -> Any:
    """``cfg`` with each ``{dotted.path: value}`` applied (values: strings or Python objects).

    Overrides apply in order; one that the configuration refuses only in combination with fields still to
    be overridden (e.g. ``two_tower.example_history=leave_many_out`` before ``two_tower.prior_as_of=false``)
    is retried after the others, so the order on the command line does not matter. The first error of an
    override that no order can apply is raised."""
    pending = list(overrides.items())
    while pending:
        failed: list[tuple[str, Any, ConfigError]] = []
        for path, value in pending:
            try:
                cfg = _set(cfg, path.split("."), value, path)
            except ConfigError as e:
                failed.append((path, value, e))
        if len(failed) == len(pending):  # no progress: report the first refusal
            raise failed[0][2]
        pending = [(p, v) for p, v, _ in failed]
    return cfg


def field_paths(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf field of a nested dataclass configuration: ``{dotted.path: value}``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out.update(field_paths(v, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = v
    return out


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))


def _set(obj: Any, parts: list[str], value: Any, full: str) -> Any:
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"--config.{full}: {'.'.join(parts)!r} reaches into a value that has no fields")
    names = [f.name for f in dataclasses.fields(obj)]
    name = parts[0]
    if name not in names:
        raise ConfigError(f"--config.{full}: {type(obj).__name__} has no field {name!r} (fields: {', '.join(names)})")
    if len(parts) > 1:
        new = _set(getattr(obj, name), parts[1:], value, full)
    else:
        hint = _hints(type(obj))[name]
        if dataclasses.is_dataclass(getattr(obj, name)):
            raise ConfigError(f"--config.{full}: is a section; set one of its fields (--config.{full}.<field>=...)")
        new = parse_value(value, hint, full) if isinstance(value, str) else value
    try:
        return dataclasses.replace(obj, **{name: new})
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--config.{full}={value}: {e}") from None


def parse_value(text: str, hint: Any, full: str) -> Any:
    """Parses ``text`` as a value of type ``hint`` (see the module docstring)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in ("none", "null", ""):
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return parse_value(text, a, full)
            except ConfigError as e:
                errors.append(str(e).split(": ", 1)[-1])
        raise ConfigError(f"--config.{full}={text}: {'; '.join(errors)}")
    t = text.strip()
    if hint is Any:
        return t
    if hint is bool:
        if t.lower() in _TRUE:
            return True
        if t.lower() in _FALSE:
            return False
        raise ConfigError(f"--config.{full}={text}: not a boolean (true/false)")
    if hint in (int, float):
        try:
            return hint(t)
        except ValueError:
            raise ConfigError(f"--config.{full}={text}: not {'an int' if hint is int else 'a float'}") from None
    if hint is str:
        return t
    if origin in (tuple, list):
        inner = args[0] if args else str
        items = [s for s in t.strip("()[]").split(",") if s.strip()]
        return tuple(parse_value(s, inner, full) for s in items)
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping):
        try:
            value = json.loads(t)
        except json.JSONDecodeError:
            raise ConfigError(f"--config.{full}={text}: not a JSON object") from None
        if not isinstance(value, dict):
            raise ConfigError(f"--config.{full}={text}: not a JSON object")
        return value
    raise ConfigError(f"--config.{full}: fields of type {hint} cannot be set from the command line")
