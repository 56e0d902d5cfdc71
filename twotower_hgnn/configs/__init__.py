"""Run configurations: the typed :class:`RunConfig` and its named presets.

Presets are modules of this package with a ``get_config()`` (``paper``, ``demo``, ``demo_faithful``, ``scale``,
``test``); :func:`load` also accepts the path of a Python file defining ``get_config()``. Overrides use
dotted paths (``{"hgnn.fanouts": "10,5"}``; ``--config.hgnn.fanouts=10,5`` on every command line).

    from twotower_hgnn import configs
    cfg = configs.load("demo", {"two_tower.model.temperature": "0.1"})
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Mapping

from twotower_hgnn.configs.base import (
    ConfigError,
    EvalConfig,
    ExportConfig,
    RunConfig,
    SplitConfig,
    TextConfig,
    TopKConfig,
)
from twotower_hgnn.configs.overrides import apply_overrides, field_paths, parse_value

PRESETS: tuple[str, ...] = ("paper", "demo", "demo_faithful", "test", "scale")
ALIASES: dict[str, str] = {"tiny": "test", "cpu_tiny": "test", "cpu_small": "test"}  # the previous round's names

__all__ = [
    "ConfigError",
    "EvalConfig",
    "ExportConfig",
    "PRESETS",
    "RunConfig",
    "SplitConfig",
    "TextConfig",
    "TopKConfig",
    "apply_overrides",
    "field_paths",
    "load",
    "parse_value",
]


def load(spec: str = "demo", overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The configuration of a preset name (or a ``.py`` file with ``get_config()``) with ``overrides``."""
    name = ALIASES.get(spec, spec)
    if name in PRESETS:
        cfg = importlib.import_module(f"twotower_hgnn.configs.{name}").get_config()
    elif spec.endswith(".py"):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"--config: {spec} is not a file")
        mod_spec = importlib.util.spec_from_file_location(f"_run_config_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        try:
            mod_spec.loader.exec_module(module)
        except SyntaxError as e:  # the user's file: one line naming it (other errors keep their traceback)
            raise ConfigError(f"--config: {spec}:{e.lineno}: {e.msg}") from None
        if not hasattr(module, "get_config"):
            raise ConfigError(f"--config: {spec} defines no get_config()")
        cfg = module.get_config()
    else:
        raise ConfigError(f"--config: {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a .py file")
    if not isinstance(cfg, RunConfig):
        raise ConfigError(f"--config: {spec}'s get_config() returned {type(cfg).__name__}, not a RunConfig")
    return apply_overrides(cfg, overrides or {})
