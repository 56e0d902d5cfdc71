"""The data model: three tables every dataset source (MovieLens, synthetic, a user's files) ends in.

Nothing past ``twotower_hgnn.data`` knows where rows came from. Validation and readers live in
``twotower_hgnn.data.readers``; this module holds the contract.

Tables (pandas DataFrames; column -> dtype):

* **interactions** — ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int64, Unix seconds, >= 0),
  ``event`` (str, one of :data:`EVENTS`). ``stream`` is the strong signal; ``follow``, ``preview``,
  ``intent_to_pay`` are the paper's weak signals (:data:`WEAK_EVENTS`).
* **items** — ``item_id`` (str, unique), ``item_type`` (str, any non-empty name: the data's item types,
  see :func:`item_type_order`), ``title``, ``description``, ``language``, ``genre`` (str; empty string
  allowed for description/language/genre).
* **users** — ``user_id`` (str, unique), ``age`` (int in ``[0, MAX_AGE]``; -1 = unknown), ``country``
  (str; "" = unknown),
  and optionally a fixed-length music vector in columns ``music_0 .. music_{d-1}`` (float).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np
import pandas as pd

from twotower_hgnn.arrays import sorted_unique
from twotower_hgnn.data.events import EVENTS, WEAK_EVENTS  # noqa: F401  (re-exported)


def event_mask(event_code: np.ndarray, codes) -> np.ndarray:
    """bool, shape of ``event_code``: whether each (int8) event code is one of ``codes``. One comparison
    per code, 1 byte per row: ``np.isin`` casts the column to int64 first (~3 GB for a 270M-row log)."""
    event_code = np.asarray(event_code)
    out = np.zeros(event_code.shape, bool)
    for c in sorted_unique(np.asarray(codes, np.int64)):
        out |= event_code == c
    return out


# The paper's item types, in the paper's order (audiobooks are global ids [0, n_audiobooks)). Data whose
# types are a subset of these keep exactly this order (both listed, a type without items counts 0).
ITEM_TYPES: tuple[str, ...] = ("audiobook", "podcast")

INTERACTION_COLUMNS: dict[str, str] = {"user_id": "str", "item_id": "str", "timestamp": "int64", "event": "str"}
ITEM_COLUMNS: dict[str, str] = {
    "item_id": "str",
    "item_type": "str",
    "title": "str",
    "description": "str",
    "language": "str",
    "genre": "str",
}
USER_COLUMNS: dict[str, str] = {"user_id": "str", "age": "int64", "country": "str"}
MUSIC_PREFIX = "music_"
MAX_AGE = 130  # oldest age a users table may give (features bucket ages up to this; -1 = unknown)


def item_type_order(names) -> tuple[str, ...]:
    """The item types of a dataset, in global node-id order, from the type names its items carry.

    Types that are a subset of the paper's (:data:`ITEM_TYPES`) give exactly ``ITEM_TYPES`` (a type
    without items is kept with count 0: the paper-shaped layout, history axes and relations of every
    earlier run stay the same). Otherwise the paper's types present come first in the paper's order
    (audiobooks stay global ids ``[0, n_audiobooks)``), then every other type **sorted by name**
    (deterministic: the order does not depend on the order of the rows).
    """
    present = {str(t) for t in names}
    if present <= set(ITEM_TYPES):
        return ITEM_TYPES
    return tuple(t for t in ITEM_TYPES if t in present) + tuple(sorted(present - set(ITEM_TYPES)))


def order_items(
    items: pd.DataFrame, item_vectors: np.ndarray | None, name: str
) -> tuple[pd.DataFrame, np.ndarray | None, dict[str, int]]:
    """(items stably ordered by type (:func:`item_type_order`) so row i == global node id i, item_vectors
    reordered with them, item count per type in that order)."""
    from twotower_hgnn.errors import DataError

    types = item_type_order(pd.unique(items["item_type"]))
    type_code = pd.Categorical(items["item_type"], categories=list(types)).codes.astype(np.int8)
    order = np.argsort(type_code, kind="stable")
    items = items.iloc[order].reset_index(drop=True)
    if item_vectors is not None:
        item_vectors = np.asarray(item_vectors, dtype=np.float32)
        if item_vectors.ndim != 2 or item_vectors.shape[0] != len(order):
            raise DataError(f"{name}: item_vectors shape {item_vectors.shape} does not match {len(order)} items")
        item_vectors = item_vectors[order]
    counts = np.bincount(type_code, minlength=len(types))
    return items, item_vectors, {t: int(c) for t, c in zip(types, counts)}


def is_paper_types(types) -> bool:
    """Whether the types include both of the paper's (audiobook and podcast: Table 1, ablations C-F)."""
    return set(ITEM_TYPES) <= set(types)


@dataclasses.dataclass
class Dataset:
    """A validated, index-coded dataset.

    Attributes:
      name: source name ("movielens1m", "synthetic-tiny", "files", ...).
      items: items table, **ordered by item_type in ``item_types`` order** so that row ``i`` is global
        graph node id ``i`` (the HeteroCSR convention); index is a RangeIndex.
      users: users table; row ``j`` is user index ``j``.
      interactions: interactions table sorted by (timestamp, user_idx, item_idx) with extra columns
        ``user_idx`` (int32 row in ``users``), ``item_idx`` (int32 row in ``items``) and ``event_code``
        (int8 index into EVENTS).
      item_type_counts: item_type -> number of items, in the data's type order (:func:`item_type_order`;
        types with 0 items allowed). Its keys are :attr:`item_types`.
      music: float32 ``[n_users, d_music]`` or None.
      item_vectors: float32 ``[n_items, d]`` content vectors supplied by the source instead of text
        (large synthetic scales), or None (then text is encoded by ``twotower_hgnn.text``).
      dropped: rule name -> number of rows removed by a documented rule (e.g. MovieLens ratings 1-2).
      meta: free-form JSON-serialisable provenance (paths, seeds, scale).
      truth: generator ground truth for diagnostics and tests (synthetic only; e.g. ``item_topic``
        int32 ``[n_items]``); never a model input. None for real data.
    """

    name: str
    items: pd.DataFrame
    users: pd.DataFrame
    interactions: pd.DataFrame
    item_type_counts: Mapping[str, int]
    music: np.ndarray | None = None
    item_vectors: np.ndarray | None = None
    dropped: Mapping[str, int] = dataclasses.field(default_factory=dict)
    meta: Mapping[str, object] = dataclasses.field(default_factory=dict)
    truth: Mapping[str, np.ndarray] | None = None

    @property
    def num_items(self) -> int:
        return int(len(self.items))

    @property
    def num_users(self) -> int:
        return int(len(self.users))

    @property
    def item_types(self) -> tuple[str, ...]:
        """The data's item types in global node-id order (the keys of ``item_type_counts``)."""
        return tuple(self.item_type_counts)

    def item_type_index(self, item_type: str) -> int:
        """Position of ``item_type`` in :attr:`item_types` (a ValueError naming the data's types otherwise)."""
        if item_type not in self.item_type_counts:
            raise ValueError(f"item type {item_type!r} is not in the data (types: {list(self.item_types)})")
        return self.item_types.index(item_type)

    def item_type_offsets(self) -> np.ndarray:
        """int64 ``[len(item_types) + 1]`` global-id offsets per item type."""
        counts = [int(self.item_type_counts[t]) for t in self.item_types]
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def item_type_codes(self) -> np.ndarray:
        """int8 ``[n_items]`` index into :attr:`item_types` of every item."""
        off = self.item_type_offsets()
        return np.repeat(np.arange(len(self.item_types), dtype=np.int8), np.diff(off))
