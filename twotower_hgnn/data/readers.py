"""Readers and validation for the three input tables (see :mod:`twotower_hgnn.data.schema`).

Every source ends in :func:`build_dataset`, which checks referential integrity and index-codes the
tables. File readers (:func:`read_interactions`, :func:`read_items`, :func:`read_users`) accept CSV,
TSV (optionally gzip'd) or Parquet, chosen by suffix (:mod:`twotower_hgnn.data.files`: paths,
encodings, BOM/CRLF), and raise one :class:`DataError` naming the file, the column and the first
offending row for: an empty file, a missing column, a wrong dtype, an unknown event, an item_type that
is not a name (:func:`~twotower_hgnn.data.readers_checks.check_item_types`), a duplicate id, a missing (NaN/None) value, a negative or out-of-range timestamp, an age outside
``[-1, MAX_AGE]``. A missing, unreadable or directory path is a ``PathError`` (also a DataError).

Options of :func:`read_interactions` (and :func:`load_files`, the external-split readers):

* ``timestamp_unit`` "s" (default) | "ms" | "iso" — the rule of :mod:`twotower_hgnn.data.timestamps`
  (values outside 1990..2100 after conversion refused with the unit hint);
* ``duplicates`` "drop" (default) | "keep" — exact duplicate interaction rows are counted and reported
  in one log line either way; dropped rows are counted in ``Dataset.dropped["duplicate_rows"]``;
* ``encoding`` of a CSV (default "utf-8"; an undecodable byte names its offset).

Documented conversions (never silent drops):

* Parquet ``user_id``/``item_id`` columns may be integers; they are converted to strings.
* Parquet ``timestamp`` may be ``datetime64``; it is converted to Unix seconds.
* ``None`` in the free-text columns (title, description, language, genre, country) becomes ``""``.
* ``age`` -1 means unknown; other negative ages and ages above ``MAX_AGE`` are an error.
* The optional music vector (columns ``music_0 .. music_{d-1}``) moves from the users table into
  ``Dataset.music`` (float32 ``[n_users, d]``).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Mapping

import numpy as np
import pandas as pd

from twotower_hgnn import errors
from twotower_hgnn.data.readers_checks import (  # DataError re-exported
    DataError,
    _as_int,
    _as_str,
    _check_allowed,
    _check_columns,
    _check_unique,
    _fail,
    check_item_types,
    _first,
    _row_label,
    _source,
    _tag,
)
from twotower_hgnn.data.formats import read_frame
from twotower_hgnn.data.mapping import ColumnMapping, as_mapping, items_from_interactions, users_from_interactions
from twotower_hgnn.data.timestamps import check_range, check_unit, parse_iso, to_seconds
from twotower_hgnn.data.schema import (
    EVENTS,
    INTERACTION_COLUMNS,
    ITEM_COLUMNS,
    MAX_AGE,
    MUSIC_PREFIX,
    USER_COLUMNS,
    Dataset,
    order_items,
)

DUPLICATES: tuple[str, ...] = ("drop", "keep")
_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------- table checks
def _timestamps(col: pd.Series, source: str, csv: bool, unit: str | None) -> np.ndarray:
    """int64 Unix seconds of the timestamp column (see :mod:`twotower_hgnn.data.timestamps`); ``unit``
    None = an in-memory table: integers as given, no range check."""
    if unit == "iso" and not pd.api.types.is_datetime64_any_dtype(col.dtype):
        return parse_iso(col, source, csv)
    try:
        ts = _as_int(col, "timestamp", source, csv)
    except DataError as e:
        raw = col.astype(str).str.strip()
        looks_iso = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601").notna().any()
        if unit is not None and looks_iso:
            raise DataError(f"{e}; looks like ISO dates: set timestamp_unit=iso") from None
        raise
    neg = ts < 0
    if neg.any():
        r = _first(neg)
        raise _fail(source, "timestamp", r, f"negative timestamp {int(ts[r])}", csv)
    if unit is None:
        return ts
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        check_range(ts, ts, "s", source, csv)
        return ts
    return to_seconds(ts, unit, source, csv)


def _duplicates(out: pd.DataFrame, source: str, csv: bool, duplicates: str) -> pd.DataFrame:
    """Exact duplicate rows counted and reported in one log line; dropped (``"drop"``: the first of each
    kept, file row numbers kept in the index) or kept (``"keep"``). The count is ``attrs["duplicate_rows"]``."""
    if duplicates not in DUPLICATES:
        raise errors.ConfigError(f"duplicates: {duplicates!r} is not one of {list(DUPLICATES)}")
    dup = out.duplicated(keep="first").to_numpy()
    n = int(dup.sum())
    if n:
        r = _first(dup)
        where = f"row {r}" + (f" (line {r + 2})" if csv else "")
        action = "dropped (duplicates=keep keeps them)" if duplicates == "drop" else "kept (duplicates=keep)"
        _log.warning("%s: %d exact duplicate interaction row(s), first at %s: %s", source, n, where, action)
        if duplicates == "drop":
            out = out[~dup]
    out.attrs["duplicate_rows"] = n
    return out


def validate_interactions(
    df: pd.DataFrame,
    source: str = "<interactions>",
    csv: bool = False,
    *,
    timestamp_unit: str | None = None,
    duplicates: str | None = "keep",
) -> pd.DataFrame:
    """Validates and normalises an interactions table (see module docstring). Returns a new frame.

    Args:
      timestamp_unit: "s" | "ms" | "iso" (files; converted to seconds and range-checked, see
        :mod:`twotower_hgnn.data.timestamps`), or None (in-memory tables: integer seconds as given).
      duplicates: "drop" | "keep" exact duplicate rows; either way they are counted and reported (None:
        not looked for; the caller does it).
    """
    _check_columns(df, INTERACTION_COLUMNS, source)
    if len(df) == 0:
        raise DataError(f"{source}: no rows")
    if timestamp_unit is not None:
        check_unit(timestamp_unit)
    df = df.reset_index(drop=True)
    out = pd.DataFrame(
        {
            "user_id": _as_str(df["user_id"], "user_id", source, csv, required=True),
            "item_id": _as_str(df["item_id"], "item_id", source, csv, required=True),
            "timestamp": _timestamps(df["timestamp"], source, csv, timestamp_unit),
            "event": _as_str(df["event"], "event", source, csv, required=True),
        }
    )
    _check_allowed(out["event"], EVENTS, "event", source, csv)
    if duplicates is not None:
        out = _duplicates(out, source, csv, duplicates)
    return _tag(out, source)


def validate_items(df: pd.DataFrame, source: str = "<items>", csv: bool = False) -> pd.DataFrame:
    _check_columns(df, ITEM_COLUMNS, source)
    if len(df) == 0:
        raise DataError(f"{source}: no rows")
    out = pd.DataFrame(
        {c: _as_str(df[c], c, source, csv, required=c in ("item_id", "item_type")) for c in ITEM_COLUMNS}
    )
    check_item_types(out["item_type"], source, csv)
    _check_unique(out["item_id"], "item_id", source, csv)
    return _tag(out, source)


def _music_columns(df: pd.DataFrame, source: str) -> list[str]:
    cols = [c for c in df.columns if str(c).startswith(MUSIC_PREFIX)]
    if not cols:
        return []
    idx = []
    for c in cols:
        m = re.fullmatch(re.escape(MUSIC_PREFIX) + r"(\d+)", str(c))
        if not m:
            raise DataError(
                f"{source}: column {c!r}: music columns must be named {MUSIC_PREFIX}0 .. {MUSIC_PREFIX}<d-1>"
            )
        idx.append(int(m.group(1)))
    if sorted(idx) != list(range(len(idx))):
        missing = sorted(set(range(max(idx) + 1)) - set(idx))
        raise DataError(
            f"{source}: column '{MUSIC_PREFIX}{missing[0]}': missing (music columns must be contiguous from 0)"
        )
    return [f"{MUSIC_PREFIX}{i}" for i in range(len(idx))]


def validate_users(
    df: pd.DataFrame, source: str = "<users>", csv: bool = False
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Returns (users table with user_id/age/country, music float32 [n, d] or None)."""
    _check_columns(df, USER_COLUMNS, source)
    if len(df) == 0:
        raise DataError(f"{source}: no rows")
    out = pd.DataFrame(
        {
            "user_id": _as_str(df["user_id"], "user_id", source, csv, required=True),
            "age": _as_int(df["age"], "age", source, csv),
            "country": _as_str(df["country"], "country", source, csv, required=False),
        }
    )
    bad_age = out["age"].to_numpy() < -1
    if bad_age.any():
        r = _first(bad_age)
        raise _fail(source, "age", r, f"negative age {int(out['age'].iloc[r])} (use -1 for unknown)", csv)
    old = out["age"].to_numpy() > MAX_AGE
    if old.any():
        r = _first(old)
        raise _fail(source, "age", r, f"age {int(out['age'].iloc[r])} is above {MAX_AGE} (use -1 for unknown)", csv)
    _check_unique(out["user_id"], "user_id", source, csv)
    music = None
    cols = _music_columns(df, source)
    if cols:
        mats = []
        for c in cols:
            col = df[c]
            if csv or not pd.api.types.is_numeric_dtype(col.dtype):
                num = pd.to_numeric(col.astype(str).str.strip(), errors="coerce").to_numpy(dtype=np.float64)
            elif pd.api.types.is_bool_dtype(col.dtype):
                raise _fail(source, c, 0, f"wrong dtype {col.dtype} (expected floats)", csv)
            else:
                num = col.to_numpy(dtype=np.float64)
            bad = ~np.isfinite(num) | (np.abs(np.nan_to_num(num)) > np.finfo(np.float32).max)  # inf as float32
            if bad.any():
                r = _first(bad)
                big = " (too large for float32)" if np.isfinite(num[r]) else ""
                raise _fail(source, c, r, f"not a finite number ({col.iloc[r]!r}){big}", csv)
            mats.append(num.astype(np.float32))
        music = np.stack(mats, axis=1)
    return _tag(out, source), music


# ------------------------------------------------------------------------------------ file readers
def read_interactions(
    path: str | os.PathLike,
    *,
    timestamp_unit: str = "s",
    duplicates: str = "drop",
    encoding: str = "utf-8",
    mapping: ColumnMapping | dict | None = None,
) -> pd.DataFrame:
    """Reads and validates an interactions file (a format of :mod:`twotower_hgnn.data.formats`).

    ``timestamp_unit``: "s" (default) | "ms" | "iso"; ``duplicates``: "drop" (default) | "keep" exact
    duplicate rows (counted and reported either way; ``attrs["duplicate_rows"]``); ``encoding`` of a CSV;
    ``mapping``: columns and event rules (:mod:`twotower_hgnn.data.mapping`): rows matching no rule are
    dropped, counted in one log line and in ``attrs["unmatched_event_rows"]``.
    """
    check_unit(timestamp_unit)
    m = as_mapping(mapping)
    df, csv, known = read_frame(path, encoding)
    src = str(path)
    df = m.prepare(df, "interactions", src, known)
    if not m.events:
        return validate_interactions(df, src, csv, timestamp_unit=timestamp_unit, duplicates=duplicates)
    events = m.event_column(df, src, csv)  # file rows: checked before any row is dropped
    out = validate_interactions(df.assign(event="stream"), src, csv, timestamp_unit=timestamp_unit, duplicates=None)
    out["event"] = events
    miss = pd.isna(events)
    if miss.any():
        r = _first(miss)
        where = f"row {r}" + (f" (line {r + 2})" if csv else "")
        _log.warning("%s: %d row(s) match no --events rule, first at %s: dropped", src, int(miss.sum()), where)
        if miss.all():
            raise DataError(f"{src}: no row matches an --events rule ({', '.join(r.text for r in m.events)})")
    out = _duplicates(out[~miss], src, csv, duplicates)
    out.attrs["unmatched_event_rows"] = int(miss.sum())
    return _tag(out, src)


def read_items(
    path: str | os.PathLike, *, encoding: str = "utf-8", mapping: ColumnMapping | dict | None = None
) -> pd.DataFrame:
    """Reads and validates an items file (a format of :mod:`twotower_hgnn.data.formats`; ``mapping`` applied)."""
    df, csv, known = read_frame(path, encoding)
    return validate_items(as_mapping(mapping).prepare(df, "items", str(path), known), str(path), csv)


def read_users(
    path: str | os.PathLike, *, encoding: str = "utf-8", mapping: ColumnMapping | dict | None = None
) -> pd.DataFrame:
    """Reads and validates a users file. The music vector, if any, is kept in ``df.attrs['music']``."""
    df, csv, known = read_frame(path, encoding)
    users, music = validate_users(as_mapping(mapping).prepare(df, "users", str(path), known), str(path), csv)
    users.attrs["music"] = music
    return users


# ------------------------------------------------------------------------------------ assembly
def _codes(col: pd.Series, ids: pd.Index) -> np.ndarray:
    """int64 row of each value of ``col`` in ``ids`` (-1 if absent). Categorical columns map categories only."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        cat_rows = ids.get_indexer(col.cat.categories)
        codes = col.cat.codes.to_numpy()
        out = np.where(codes >= 0, cat_rows[np.maximum(codes, 0)], -1)
        return out.astype(np.int64)
    return ids.get_indexer(col).astype(np.int64)


def _time_order(ts: np.ndarray, u: np.ndarray, i: np.ndarray, n_users: int, n_items: int) -> np.ndarray:
    """Permutation sorting by (timestamp, user, item): one int64 key sort when it fits, else lexsort."""
    if ts.size == 0:
        return np.zeros(0, np.int64)
    t0 = int(ts.min())
    span = int(ts.max()) - t0 + 1
    if span * max(n_users, 1) * max(n_items, 1) < 2**63:
        key = ((ts - t0) * np.int64(n_users) + u) * np.int64(n_items) + i
        return np.argsort(key)  # ties only between identical (ts, user, item) rows
    return np.lexsort((i, u, ts))


def _checked_tables(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    music: np.ndarray | None,
    validate: bool,
    sources: tuple[str, str, str],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray | None]:
    """The three tables validated (or only column-checked) and the music array, from an argument, the
    users' ``attrs`` or their ``music_*`` columns (given two ways is an error)."""
    src_i, src_it, src_u = sources
    if music is None and "music" in users.attrs:
        music = users.attrs["music"]
    if validate:
        interactions = validate_interactions(interactions, src_i)
        items = validate_items(items, src_it)
        extra_music = _music_columns(users, src_u)
        users_v, music_cols = validate_users(users, src_u)
        if extra_music:
            if music is not None:
                raise DataError(f"{src_u}: music given both as columns and as an array")
            music = music_cols
        users = users_v
    else:
        for df, req, src in (
            (interactions, INTERACTION_COLUMNS, src_i),
            (items, ITEM_COLUMNS, src_it),
            (users, USER_COLUMNS, src_u),
        ):
            _check_columns(df, req, src)
    return interactions, items, users, music


def _checked_music(music: np.ndarray | None, n_users: int, src_u: str) -> np.ndarray | None:
    """The music array as float32 ``[n_users, d]`` (None stays None); any other shape is an error."""
    if music is not None:
        music = np.asarray(music, dtype=np.float32)
        if music.ndim != 2 or music.shape[0] != n_users:
            raise DataError(f"{src_u}: music shape {music.shape} does not match {n_users} users")
    return music


def _codes_checked(
    interactions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, src_i: str, src_it: str, src_u: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user_idx, item_idx, event_code) of every row; an unknown user, item or event is an error naming
    ``src_i`` and the row (the frame's own row number: a reader's file row, see ``_row_label``)."""
    u_idx = _codes(interactions["user_id"], pd.Index(users["user_id"]))
    i_idx = _codes(interactions["item_id"], pd.Index(items["item_id"]))
    ev = pd.Categorical(interactions["event"], categories=list(EVENTS)).codes.astype(np.int8)
    for bad, col, what in (
        (u_idx < 0, "user_id", lambda v: f"user {v!r} is not in the users table ({src_u})"),
        (i_idx < 0, "item_id", lambda v: f"item {v!r} is not in the items table ({src_it})"),
        (ev < 0, "event", lambda v: f"unknown value {v!r} (allowed: {list(EVENTS)})"),
    ):
        if bad.any():
            r = _first(bad)
            raise _fail(src_i, col, _row_label(interactions, r), what(interactions[col].iloc[r]))
    return u_idx, i_idx, ev


def check_references(interactions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame) -> None:
    """Raises :class:`DataError` at the first row of ``interactions`` (a validated table from one file)
    whose user, item or event is unknown, naming that file and its own row."""
    _codes_checked(
        interactions,
        items,
        users,
        _source(interactions, "<interactions>"),
        _source(items, "<items>"),
        _source(users, "<users>"),
    )


def _indexed_interactions(
    interactions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame, src_i: str, src_it: str, src_u: str
) -> pd.DataFrame:
    """Interactions with ``user_idx``/``item_idx`` (int32) and ``event_code`` (int8), sorted by
    (timestamp, user_idx, item_idx); an unknown user, item or event is an error."""
    u_idx, i_idx, ev = _codes_checked(interactions, items, users, src_i, src_it, src_u)
    ts = interactions["timestamp"].to_numpy(dtype=np.int64)
    order = _time_order(ts, u_idx, i_idx, len(users), len(items))
    inter = interactions.iloc[order].reset_index(drop=True).copy()
    inter["timestamp"] = ts[order]
    inter["user_idx"] = u_idx[order].astype(np.int32)
    inter["item_idx"] = i_idx[order].astype(np.int32)
    inter["event_code"] = ev[order]
    return inter


def build_dataset(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    *,
    name: str,
    dropped: Mapping[str, int] | None = None,
    item_vectors: np.ndarray | None = None,
    music: np.ndarray | None = None,
    meta: Mapping[str, object] | None = None,
    validate: bool = True,
) -> Dataset:
    """Checks referential integrity and index-codes the three tables into a :class:`Dataset`.

    Items are stably reordered by ``item_type`` (the data's type order, ``schema.item_type_order``) so row
    ``i`` is graph node ``i``;
    ``item_vectors`` (rows aligned with the *given* items order) are reordered with them. Interactions
    get ``user_idx``/``item_idx`` (int32) and ``event_code`` (int8) and are sorted by
    (timestamp, user_idx, item_idx). A dataset whose items are all of one type is accepted
    (homogeneous mode; with the paper's types the other one has 0 items).

    Args:
      validate: run the per-table checks (file readers already did; generators that build valid
        tables by construction may pass False to skip the per-cell string checks at scale).
    """
    src_i = _source(interactions, "<interactions>")
    src_it = _source(items, "<items>")
    src_u = _source(users, "<users>")
    interactions, items, users, music = _checked_tables(
        interactions, items, users, music, validate, (src_i, src_it, src_u)
    )
    items, item_vectors, type_counts = order_items(items, item_vectors, name)
    users = users.reset_index(drop=True)
    music = _checked_music(music, len(users), src_u)
    inter = _indexed_interactions(interactions, items, users, src_i, src_it, src_u)
    for df in (inter, items, users):
        df.attrs.pop("music", None)
    return Dataset(
        name=name,
        items=items,
        users=users,
        interactions=inter,
        item_type_counts=type_counts,
        music=music,
        item_vectors=item_vectors,
        dropped=dict(dropped or {}),
        meta=dict(meta or {}),
    )


def load_files(
    interactions_path: str | os.PathLike,
    items_path: str | os.PathLike | None,
    users_path: str | os.PathLike | None,
    *,
    name: str = "files",
    meta: Mapping[str, object] | None = None,
    timestamp_unit: str = "s",
    duplicates: str = "drop",
    encoding: str = "utf-8",
    mapping: ColumnMapping | dict | None = None,
) -> Dataset:
    """A user's own files as a :class:`Dataset` (options: :func:`read_interactions`). Without an items
    table the items are the interactions' (typed by the mapping's ``items.item_type``, no text); without a
    users table the users are the interactions' (age and country unknown). Rows dropped by a rule are
    counted in ``Dataset.dropped`` (``duplicate_rows``, ``unmatched_event_rows``)."""
    from twotower_hgnn.tracking import Progress  # console only (a terminal): per file read and validated

    m = as_mapping(mapping)
    prog = Progress(4, desc="[data] read+validate", unit="steps", enabled=None, final="shown")
    inter = read_interactions(
        interactions_path, timestamp_unit=timestamp_unit, duplicates=duplicates, encoding=encoding, mapping=m
    )
    prog.update(1, done="interactions")
    items = read_items(items_path, encoding=encoding, mapping=m) if items_path else None
    if items is None:
        items = validate_items(items_from_interactions(inter, m, str(interactions_path)), "<interactions' items>")
    prog.update(1, done="items")
    users = read_users(users_path, encoding=encoding, mapping=m) if users_path else users_from_interactions(inter)
    prog.update(1, done="users")
    paths = {"interactions": interactions_path, "items": items_path, "users": users_path}
    m_ = {"paths": {k: str(v) for k, v in paths.items() if v}, **(meta or {})}
    keys = ("duplicate_rows", "unmatched_event_rows") if duplicates == "drop" else ("unmatched_event_rows",)
    dropped = {k: int(inter.attrs[k]) for k in keys if inter.attrs.get(k)}
    ds = build_dataset(
        inter, items, users, name=name, music=users.attrs.get("music"), meta=m_, validate=False, dropped=dropped
    )
    prog.update(1, done="dataset")
    prog.close()
    return ds
