"""The timestamp rule for input files (shared by the readers and the column mapping).

A file's ``timestamp`` column is read in one of three units (``timestamp_unit``):

* ``"s"`` (default) — integer Unix seconds;
* ``"ms"`` — integer Unix milliseconds (floored to seconds);
* ``"iso"`` — ISO 8601 strings (``2023-05-01``, ``2023-05-01T12:00:00Z``, ``...+02:00``); naive times
  are UTC.

A Parquet ``datetime64`` column is converted whatever the unit. After conversion every value must lie
in [1990-01-01, 2100-01-01) UTC; a value outside is refused with a hint at the unit it looks like
("looks like milliseconds: set timestamp_unit=ms"). In-memory tables built by code
(``build_dataset``) are not range-checked: their builder knows its unit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from twotower_hgnn.data.readers_checks import _fail, _first

TIMESTAMP_UNITS: tuple[str, ...] = ("s", "ms", "iso")
MIN_SECONDS = 631_152_000  # 1990-01-01T00:00:00Z
MAX_SECONDS = 4_102_444_800  # 2100-01-01T00:00:00Z (exclusive)
_RANGE = "1990-01-01 .. 2100-01-01"


def check_unit(unit: str) -> str:
    """``unit`` if it is one of :data:`TIMESTAMP_UNITS`, else a ConfigError naming the option."""
    from twotower_hgnn.errors import ConfigError

    if unit not in TIMESTAMP_UNITS:
        raise ConfigError(f"timestamp_unit: {unit!r} is not one of {list(TIMESTAMP_UNITS)}")
    return unit


def _in_range(v: float) -> bool:
    return MIN_SECONDS <= v < MAX_SECONDS


def _hint(raw: float, unit: str) -> str:
    """Which unit a raw value outside the range looks like."""
    secs = raw / 1000.0 if unit == "ms" else float(raw)
    for factor, name, opt in ((1e3, "milliseconds", "ms"), (1e6, "microseconds", None), (1e9, "nanoseconds", None)):
        if _in_range(secs / factor):
            if opt is not None and unit != opt:
                return f"looks like {name}: set timestamp_unit={opt}"
            if opt is None:
                return f"looks like {name}: convert the column to seconds or milliseconds (timestamp_unit=s|ms)"
    if unit == "ms" and _in_range(secs * 1000.0):
        return "looks like seconds: set timestamp_unit=s"
    return "check the column's unit (timestamp_unit=s|ms|iso)"


def check_range(secs: np.ndarray, raw: np.ndarray, unit: str, source: str, csv: bool) -> None:
    """DataError at the first value outside [1990, 2100) after conversion, with the unit hint."""
    bad = (secs < MIN_SECONDS) | (secs >= MAX_SECONDS)
    if bad.any():
        r = _first(bad)
        if unit == "iso":
            msg = f"{raw[r]!r} is outside {_RANGE}"
        else:
            unit_name = {"s": "Unix seconds", "ms": "Unix milliseconds"}[unit]
            msg = f"{raw[r]} read as {unit_name} is outside {_RANGE}; {_hint(float(raw[r]), unit)}"
        raise _fail(source, "timestamp", r, msg, csv)


def parse_iso(col: pd.Series, source: str, csv: bool) -> np.ndarray:
    """int64 Unix seconds of ISO 8601 strings (naive = UTC); DataError at the first unparsable cell."""
    raw = col.astype(str).str.strip()
    parsed = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        r = _first(bad)
        msg = f"{raw.iloc[r]!r} is not an ISO 8601 date (timestamp_unit=iso)"
        num = pd.to_numeric(raw.iloc[r], errors="coerce")
        if pd.notna(num):
            unit = "s" if _in_range(float(num)) else "ms" if _in_range(float(num) / 1000.0) else None
            msg += (
                f"; looks like Unix {'seconds' if unit == 's' else 'milliseconds'}: set timestamp_unit={unit}"
                if unit
                else ""
            )
        raise _fail(source, "timestamp", r, msg, csv)
    secs = parsed.dt.tz_localize(None).astype("datetime64[s]").to_numpy().astype(np.int64)
    check_range(secs, raw.to_numpy(dtype=object), "iso", source, csv)
    return secs


def to_seconds(ints: np.ndarray, unit: str, source: str, csv: bool) -> np.ndarray:
    """int64 Unix seconds of integer ``ints`` in ``unit`` ("s" or "ms"), range-checked."""
    ints = np.asarray(ints, np.int64)
    secs = ints // 1000 if unit == "ms" else ints
    check_range(secs, ints, unit, source, csv)
    return secs
