"""Low-level checks shared by the table readers (:mod:`twotower_hgnn.data.readers`).

:class:`DataError` and the helpers that check/convert a table's columns (missing
columns, dtypes, ids, NaN, allowed values), each failure naming the file, the column and the first
offending row. ``readers`` re-exports :class:`DataError`. Reading the file itself (paths, gzip,
encodings) is :mod:`twotower_hgnn.data.files`.

Row numbers: ``row N`` is the 0-based data row of the file (the header is not a row; Parquet and
pandas count the same way); CSV messages add ``(line N+2)``, the 1-based line of the text file as an
editor shows it.
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np
import pandas as pd

from twotower_hgnn import errors

_ID_COLUMNS = ("user_id", "item_id")
_FREE_TEXT = ("title", "description", "language", "genre", "country")
_SOURCE_ATTR = "source"


class DataError(errors.DataError):
    """Invalid input data; the message names the file, the column and the first offending row."""


# --------------------------------------------------------------------------------------- helpers
def _where(source: str, column: str | None = None, row: int | None = None, csv: bool = False) -> str:
    parts = [str(source)]
    if column is not None:
        parts.append(f"column {column!r}")
    if row is not None:
        parts.append(f"row {row}" + (f" (line {row + 2})" if csv else ""))
    return ": ".join(parts)


def _fail(source: str, column: str | None, row: int | None, msg: str, csv: bool = False) -> DataError:
    return DataError(f"{_where(source, column, row, csv)}: {msg}")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _row_label(df: pd.DataFrame, r: int) -> int:
    """The row number to report for position ``r`` of ``df``: its integer index label (a reader's frame
    keeps its file row numbers there when rows were dropped, e.g. exact duplicates), else ``r``."""
    if pd.api.types.is_integer_dtype(df.index.dtype):
        return int(df.index[r])
    return int(r)


def _check_columns(df: pd.DataFrame, required: Mapping[str, str], source: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: column {missing[0]!r}: missing (required columns: {list(required)}; found {list(df.columns)})"
            + _map_hint(missing[0], required, df.columns)
        )


_ALIASES = {
    "user_id": ("uid", "user", "userid"),
    "item_id": ("iid", "item", "movieid", "movie", "trackid", "track", "episodeid", "bookid"),
    "timestamp": ("ts", "time", "datetime", "date", "eventtime"),
    "item_type": ("type", "kind", "category"),
    "genre": ("genres", "category", "categories"),
}


def _map_hint(column: str, required: Mapping[str, str], found) -> str:
    """How the mapping flags would supply a missing column (a column of another name that looks like it,
    event rules, a default item type), or ""."""
    table = "interactions" if "event" in required else "items" if "item_type" in required else "users"
    key = column.replace("_", "").lower()
    names = {key, key + "s", *_ALIASES.get(column, ())}
    alike = [str(c) for c in found if str(c).replace("_", "").lower() in names]
    if alike:
        return f"; to read {alike[0]!r} as {column!r}: --map={table}.{alike[0]}={column}"
    if column == "event":
        return "; to label rows by a column: --events=COLUMN OP VALUE:EVENT,... (e.g. rating>=4:stream)"
    if column == "item_type":
        return "; to give every item one type: --default_item_type=TYPE"
    return ""


def _as_str(col: pd.Series, name: str, source: str, csv: bool, required: bool) -> pd.Series:
    """Validates a string column; ids may be integers (converted). Empty strings allowed iff not required."""
    s = col
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if pd.api.types.is_integer_dtype(s.dtype) and name in _ID_COLUMNS:
        return s.astype(np.int64).astype(str)
    if not (pd.api.types.is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)):
        raise _fail(source, name, 0, f"wrong dtype {s.dtype} (expected strings)", csv)
    isna = s.isna().to_numpy()
    if isna.any():
        if required:
            r = _first(isna)
            raise _fail(source, name, r, "missing value (NaN/None)", csv)
        s = s.where(~isna, "")
    vals = s.to_numpy(dtype=object)
    is_str = np.fromiter((isinstance(v, str) for v in vals), dtype=bool, count=len(vals))
    if not is_str.all():
        r = _first(~is_str)
        if (
            name in _ID_COLUMNS
            and isinstance(vals[r], (int, np.integer))
            and all(isinstance(v, (str, int, np.integer)) for v in vals)
        ):
            return s.astype(str)
        raise _fail(
            source, name, r, f"wrong dtype: value {vals[r]!r} of type {type(vals[r]).__name__} (expected a string)", csv
        )
    if required:
        empty = (s.str.len() == 0).to_numpy()
        if empty.any():
            raise _fail(source, name, _first(empty), "empty value", csv)
    return s.astype(object)


def _as_int(col: pd.Series, name: str, source: str, csv: bool) -> np.ndarray:
    """Validates an integer column (timestamp / age). CSV cells are parsed; floats must be integral."""
    s = col
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        if s.isna().any():
            raise _fail(source, name, _first(s.isna().to_numpy()), "NaN (missing) value", csv)
        ser = s
        if getattr(ser.dt, "tz", None) is not None:
            ser = ser.dt.tz_convert("UTC").dt.tz_localize(None)
        return (ser.astype("datetime64[ns]").to_numpy().astype(np.int64) // 1_000_000_000).astype(np.int64)
    if csv or pd.api.types.is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype):
        raw = s.astype(str).str.strip()
        num = pd.to_numeric(raw, errors="coerce")
        blank = raw.str.lower().isin(["", "nan", "na", "null", "none"]).to_numpy()
        bad = num.isna().to_numpy() & ~blank
        if bad.any():
            r = _first(bad)
            raise _fail(source, name, r, f"wrong dtype: {raw.iloc[r]!r} is not a number", csv)
        if blank.any():
            r = _first(blank)
            raise _fail(source, name, r, f"NaN (missing) value {raw.iloc[r]!r}", csv)
        s = num
    if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
        raise _fail(source, name, 0, f"wrong dtype {s.dtype} (expected integers)", csv)
    if pd.api.types.is_integer_dtype(s.dtype):
        if s.isna().any():  # nullable Int64 with <NA>
            raise _fail(source, name, _first(s.isna().to_numpy()), "NaN (missing) value", csv)
        if pd.api.types.is_unsigned_integer_dtype(s.dtype):
            _check_int64(s.to_numpy(dtype=np.float64), name, source, csv)
        return s.to_numpy(dtype=np.int64)
    v = s.to_numpy(dtype=np.float64)
    nan = ~np.isfinite(v)
    if nan.any():
        r = _first(nan)
        raise _fail(source, name, r, f"NaN or infinite value ({float(v[r])})", csv)
    frac = v != np.round(v)
    if frac.any():
        r = _first(frac)
        raise _fail(source, name, r, f"wrong dtype: {float(v[r])!r} is not an integer", csv)
    _check_int64(v, name, source, csv)
    return v.astype(np.int64)


def _check_int64(v: np.ndarray, name: str, source: str, csv: bool) -> None:
    """DataError at the first value too large for an int64 (it would wrap round silently)."""
    big = np.abs(v) >= 2.0**63
    if big.any():
        r = _first(big)
        raise _fail(source, name, r, f"value {float(v[r]):.6g} is too large for an integer", csv)


def _check_unique(ids: pd.Series, name: str, source: str, csv: bool) -> None:
    dup = ids.duplicated().to_numpy()
    if dup.any():
        r = _first(dup)
        first = int(np.flatnonzero((ids == ids.iloc[r]).to_numpy())[0])
        raise _fail(source, name, r, f"duplicate id {ids.iloc[r]!r} (first seen at row {first})", csv)


def _check_allowed(s: pd.Series, allowed: tuple[str, ...], name: str, source: str, csv: bool) -> None:
    bad = ~s.isin(allowed).to_numpy()
    if bad.any():
        r = _first(bad)
        raise _fail(source, name, r, f"unknown value {s.iloc[r]!r} (allowed: {list(allowed)})", csv)


MAX_ITEM_TYPES = 127  # item type codes are int8
_TYPE_NAME = re.compile(r"[^\W][\w.]*")


def check_item_types(s: pd.Series, source: str, csv: bool) -> None:
    """Item types are names taken from the data: letters, digits, ``_`` and ``.`` (relations are named
    ``a-b``, directed ones ``a<-b``), at most :data:`MAX_ITEM_TYPES` distinct ones."""
    names = pd.unique(s)
    bad = [str(t) for t in names if not _TYPE_NAME.fullmatch(str(t))]
    if bad:
        r = _first((s == bad[0]).to_numpy())
        raise _fail(source, "item_type", r, f"{bad[0]!r} is not a type name (letters, digits, '_' and '.' only)", csv)
    if len(names) > MAX_ITEM_TYPES:
        raise DataError(f"{source}: column 'item_type': {len(names)} distinct types; at most {MAX_ITEM_TYPES}")


def _tag(df: pd.DataFrame, source: str) -> pd.DataFrame:
    df.attrs[_SOURCE_ATTR] = str(source)
    return df


def _source(df: pd.DataFrame, default: str) -> str:
    return str(df.attrs.get(_SOURCE_ATTR, default))
