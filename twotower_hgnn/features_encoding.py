"""Encoding raw attributes into the feature bundles: vocabularies, age buckets, user bundles, the item table.

Encodings (the paper's §9 leaves them open):
* age -> bucket id: 0 unknown (age < 0), 1 "<18", 2 "18-24", 3 "25-34", 4 "35-44", 5 "45-54",
  6 "55-64", 7 "65+" (:data:`AGE_EDGES`).
* country, language, genre -> id: 0 is the OOV/unknown bucket (empty string or a value not in the
  vocabulary), 1.. are the vocabulary values sorted by descending frequency (ties by value), built
  from the training dataset.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from twotower_hgnn.data.schema import EVENTS, Dataset
from twotower_hgnn.features_bundles import (
    AGE_EDGES,
    DEFAULT_HISTORY_EVENTS,
    MAX_AGE,
    FeatureError,
    FeatureVocab,
    ItemFeatures,
    UserFeatures,
)


# ----------------------------------------------------------------------------------------------
# Encoders
# ----------------------------------------------------------------------------------------------
def _frequency_vocab(values: Iterable[str]) -> tuple[str, ...]:
    s = pd.Series(list(values), dtype=object).astype(str)
    s = s[s != ""]
    if s.empty:
        return ()
    counts = s.value_counts()
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(k for k, _ in order)


def encode_vocab(vocab: Sequence[str], values: Iterable[Any]) -> np.ndarray:
    """Strings -> int32 ids (1 + position in ``vocab``; 0 for "" / unseen)."""
    lookup = pd.Index(list(vocab))
    arr = pd.Index(pd.Series(list(values), dtype=object).fillna("").astype(str))
    pos = lookup.get_indexer(arr) if len(lookup) else np.full(len(arr), -1)
    return (np.asarray(pos, dtype=np.int64) + 1).astype(np.int32)


def age_buckets(ages: Any) -> np.ndarray:
    """int ages (-1 = unknown) -> int32 bucket ids (see module docstring)."""
    a = np.asarray(ages)
    if a.dtype.kind not in "iu":
        raise FeatureError(f"age must be integers (-1 = unknown), got dtype {a.dtype}")
    bad = np.flatnonzero(a > MAX_AGE)
    if bad.size:
        raise FeatureError(f"age {int(a[bad[0]])} at row {int(bad[0])} is above {MAX_AGE}; use -1 for unknown")
    b = np.searchsorted(np.asarray(AGE_EDGES), a, side="right") + 1
    return np.where(a < 0, 0, b).astype(np.int32)


def build_vocab(
    ds: Dataset,
    target_type: str,
    d_hist: int,
    history_days: float | None = 90.0,
    history_events: Sequence[str] = DEFAULT_HISTORY_EVENTS,
    id_history_len: int = 0,
) -> FeatureVocab:
    """Vocabularies from the dataset (countries of all users; language/genre of target-type items)."""
    _check_target_type(target_type, ds.item_types)
    items = ds.items[ds.items["item_type"] == target_type]
    bad = [e for e in history_events if e not in EVENTS]
    if bad:
        raise FeatureError(f"history_events {bad} not in {EVENTS}")
    return FeatureVocab(
        countries=_frequency_vocab(ds.users["country"]),
        languages=_frequency_vocab(items["language"]),
        genres=_frequency_vocab(items["genre"]),
        d_music=0 if ds.music is None else int(ds.music.shape[1]),
        d_hist=int(d_hist),
        history_days=None if history_days is None else float(history_days),
        history_events=tuple(history_events),
        id_history_len=int(id_history_len),
    )


def _check_target_type(target_type: str, types: Sequence[str]) -> None:
    """``target_type`` must be one of ``types`` (the data's item types)."""
    if target_type not in types:
        raise FeatureError(f"target_type must be one of the data's item types {list(types)}, got {target_type!r}")


def _interactions_frame(interactions: Any) -> pd.DataFrame:
    """Accepts an interactions DataFrame or anything with an ``.interactions`` DataFrame (Dataset)."""
    df = getattr(interactions, "interactions", interactions)
    if not isinstance(df, pd.DataFrame):
        raise FeatureError(f"expected an interactions DataFrame or Dataset, got {type(interactions).__name__}")
    missing = [c for c in ("user_idx", "item_idx", "timestamp", "event_code") if c not in df.columns]
    if missing:
        raise FeatureError(f"interactions table lacks columns {missing} (need an index-coded Dataset table)")
    return df


def assemble_user_features(
    vocab: FeatureVocab,
    ages: Any,
    countries: Any,
    music: np.ndarray,
    has_music: np.ndarray,
    means: np.ndarray,
    counts: np.ndarray,
    ids: np.ndarray | None = None,
) -> UserFeatures:
    """Encodes raw demographics + history means (+ id tokens ``[B, T, L]``) into a :class:`UserFeatures`."""
    if ids is None:
        ids = np.zeros(counts.shape + (vocab.id_history_len,), np.int32)
    return UserFeatures(
        age_bucket=age_buckets(np.asarray(ages, np.int64)),
        country=encode_vocab(vocab.countries, countries),
        music=np.asarray(music, np.float32).reshape(len(counts), vocab.d_music),
        has_music=np.asarray(has_music, np.float32),
        history_mean=np.asarray(means, np.float32),
        has_history=(counts > 0).astype(np.float32),
        history_count=np.log1p(counts).astype(np.float32),
        history_ids=np.asarray(ids, np.int32),
    )


# ----------------------------------------------------------------------------------------------
# Item table
# ----------------------------------------------------------------------------------------------
def target_item_range(ds: Dataset, target_type: str) -> tuple[int, int]:
    """[start, stop) global ids of the target type (items are ordered by type)."""
    _check_target_type(target_type, ds.item_types)
    off = ds.item_type_offsets()
    k = ds.item_type_index(target_type)
    return int(off[k]), int(off[k + 1])


def item_feature_table(
    ds: Dataset,
    content_emb: np.ndarray,
    hgnn_emb: np.ndarray | None,
    target_type: str,
    vocab: FeatureVocab,
    known_items: np.ndarray | None = None,
) -> ItemFeatures:
    """Item-tower inputs of every target-type item; ``hgnn_emb=None`` gives ``d_hgnn = 0`` (2T).

    ``known_items`` (global ids with a training interaction) get an id token when the vocabulary has
    item-id features; the others get token 0 (no id vector: content/HGNN inputs only).
    """
    start, stop = target_item_range(ds, target_type)
    for name, e in (("content_emb", content_emb), ("hgnn_emb", hgnn_emb)):
        if e is None:
            continue
        if np.ndim(e) != 2 or np.shape(e)[0] != ds.num_items:
            raise FeatureError(f"{name} has shape {np.shape(e)}, expected ({ds.num_items}, d): one row per item")
        if not np.isfinite(np.asarray(e[start:stop])).all():
            raise FeatureError(f"{name} has non-finite values among the {target_type} rows")
    rows = ds.items.iloc[start:stop]
    hg = np.zeros((stop - start, 0), np.float32) if hgnn_emb is None else np.asarray(hgnn_emb[start:stop], np.float32)
    return ItemFeatures(
        item_idx=np.arange(start, stop, dtype=np.int32),
        language=encode_vocab(vocab.languages, rows["language"]),
        genre=encode_vocab(vocab.genres, rows["genre"]),
        content=np.asarray(content_emb[start:stop], np.float32),
        hgnn=hg,
        id_token=_id_tokens(np.arange(start, stop), vocab, known_items),
        log_prior=np.zeros(stop - start, np.float32),
    )


def _id_tokens(item_idx: np.ndarray, vocab: FeatureVocab, known_items: np.ndarray | None) -> np.ndarray:
    if vocab.n_items == 0:
        return np.zeros(len(item_idx), np.int32)
    ok = np.ones(len(item_idx), bool) if known_items is None else np.isin(item_idx, known_items)
    return np.where(ok, np.asarray(item_idx, np.int64) + 1, 0).astype(np.int32)
