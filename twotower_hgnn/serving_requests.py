"""Request validation for serving: every malformed value becomes one :class:`ServingError` naming the field.

Nothing here trusts its input: types are checked before any conversion (so pandas / NumPy never see a
value they would turn into a ``TypeError``, ``ValueError`` or ``OverflowError``), numbers are range-checked
(timestamps are Unix seconds within 1990-2100, the same rule as the data readers), and sizes are bounded
(ids, country codes, history length), so no request can make the service allocate or compile without
bound. ``k`` is capped at the catalogue size by the caller and compiled in a few buckets
(``retrieval.k_bucket``).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from twotower_hgnn.data.schema import EVENTS
from twotower_hgnn.data.timestamps import MAX_SECONDS as MAX_TIMESTAMP
from twotower_hgnn.data.timestamps import MIN_SECONDS as MIN_TIMESTAMP
from twotower_hgnn.errors import UserError
from twotower_hgnn.features import MAX_AGE

MAX_INTERACTIONS = 10_000  # history rows per request
MAX_ID_LEN = 256  # characters of a user or item id
MAX_COUNTRY_LEN = 64
FIELDS = ("item_id", "event", "timestamp")
REQUEST_FIELDS = ("user_id", "age", "country", "music", "interactions", "k", "exclude_consumed", "as_of")


class ServingError(UserError):
    """A request or a model directory that cannot be served; the one-line message names the field or file."""


class UnknownUserError(ServingError):
    """A ``user_id`` not in the user store (HTTP 404)."""


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_fields(fields: Mapping[str, Any] | Sequence[str], allowed: Sequence[str] = REQUEST_FIELDS) -> None:
    """Unknown request fields are refused (a typo must not be served as "no value")."""
    bad = [f for f in fields if not isinstance(f, str) or f not in allowed]
    if bad:
        names = ", ".join(b[:40] if isinstance(b, str) else _short(b, 40) for b in bad[:5])
        raise ServingError(f"unknown request field(s) {names}; expected some of {', '.join(allowed)}")


def check_int(value: Any, field: str, lo: int | None = None, hi: int | None = None) -> int:
    """A Python or NumPy integer (never a bool, float or string) within ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ServingError(f"{field} must be an integer, got {_short(value)}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ServingError(
            f"{field} {v} is out of range [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        )
    return v


def check_k(k: Any) -> int:
    """``k`` must be an integer >= 1 (capped at the catalogue size by the recommender, not here)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ServingError(f"k must be a positive integer, got {_short(k)}")
    return int(k)


def check_bool(value: Any, field: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ServingError(f"{field} must be true or false, got {_short(value)}")
    return bool(value)


def check_id(value: Any, field: str) -> str:
    """A non-empty string id of at most ``MAX_ID_LEN`` characters."""
    if not isinstance(value, str):
        raise ServingError(f"{field} must be a string, got {type(value).__name__} {_short(value)}")
    if not value or len(value) > MAX_ID_LEN:
        raise ServingError(f"{field} must be 1 to {MAX_ID_LEN} characters, got {len(value)}")
    return str(value)


def check_timestamp(value: Any, field: str) -> int:
    """Unix seconds: an integer (or an integral float) within 1990-2100."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise ServingError(f"{field} must be integer Unix seconds, got {type(value).__name__} {_short(value)}")
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or value != math.floor(value):
            raise ServingError(f"{field} must be integer Unix seconds, got {_short(value)}")
    t = int(value)
    if not MIN_TIMESTAMP <= t <= MAX_TIMESTAMP:
        hint = " (milliseconds? give Unix seconds)" if MIN_TIMESTAMP <= t // 1000 <= MAX_TIMESTAMP else ""
        raise ServingError(f"{field} {_short(value)} is outside 1990-2100 in Unix seconds{hint}")
    return t


def parse_demographics(age: Any, country: Any, music: Any, d_music: int) -> tuple[int, str, np.ndarray, float]:
    """-> (age, country, music float32 ``[d_music]``, has_music) of a raw request (None = unknown)."""
    age = -1 if age is None else check_int(age, "age", -1, MAX_AGE)
    if country is None:
        country = ""
    if not isinstance(country, str) or len(country) > MAX_COUNTRY_LEN:
        raise ServingError(
            f"country must be a string of at most {MAX_COUNTRY_LEN} characters (e.g. 'SE'), got {_short(country)}"
        )
    if music is None:
        return age, str(country), np.zeros(d_music, np.float32), 0.0
    if isinstance(music, (str, bytes, Mapping)) or not isinstance(music, (Sequence, np.ndarray)):
        raise ServingError(f"music must be a list of {d_music} floats, got {type(music).__name__}")
    if len(music) != d_music:
        raise ServingError(f"music must have {d_music} values, got {len(music)}")
    if isinstance(music, np.ndarray):
        if music.ndim != 1 or not (np.issubdtype(music.dtype, np.floating) or np.issubdtype(music.dtype, np.integer)):
            raise ServingError(f"music must be a 1-D vector of {d_music} floats, got {music.dtype} {music.shape}")
    elif not all(isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) for x in music):
        raise ServingError(f"music must be {d_music} numbers, got {_short(list(music))}")
    with np.errstate(over="ignore", invalid="ignore"):
        m = np.asarray(music, np.float64).astype(np.float32)
    if not np.isfinite(m).all():
        raise ServingError(f"music must be {d_music} finite float32 values (no NaN, inf or overflow)")
    return age, str(country), m, 1.0


def _bounded_list(values: Any, field: str, limit: int) -> list:
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
        raise ServingError(f"{field} must be a list, got {type(values).__name__}")
    if hasattr(values, "__len__") and len(values) > limit:
        raise ServingError(f"{field} has {len(values)} rows; at most {limit} per request")
    rows = list(itertools.islice(values, limit + 1))
    if len(rows) > limit:
        raise ServingError(f"{field} has more than {limit} rows; at most {limit} per request")
    return rows


def _interaction_columns(interactions: Any, limit: int) -> list[list]:
    """[item ids, events, timestamps] from a DataFrame, a dict of columns, or rows (triples or dicts)."""
    if isinstance(interactions, pd.DataFrame):
        check_fields(list(interactions.columns), FIELDS)
        missing = [c for c in FIELDS if c not in interactions.columns]
        if missing:
            raise ServingError(f"interactions lack field(s) {missing}; expected {list(FIELDS)}")
        if len(interactions) > limit:
            raise ServingError(f"interactions has {len(interactions)} rows; at most {limit} per request")
        return [interactions[c].tolist() for c in FIELDS]
    if isinstance(interactions, Mapping):
        check_fields(list(interactions), FIELDS)
        missing = [c for c in FIELDS if c not in interactions]
        if missing:
            raise ServingError(f"interactions lack field(s) {missing}; expected {list(FIELDS)}")
        cols = [_bounded_list(interactions[c], f"interactions.{c}", limit) for c in FIELDS]
        if len({len(c) for c in cols}) != 1:
            raise ServingError(f"interactions columns differ in length: {[len(c) for c in cols]}")
        return cols
    rows = _bounded_list(interactions, "interactions", limit)
    out: list[list] = [[], [], []]
    for i, r in enumerate(rows):
        if isinstance(r, Mapping):
            check_fields(list(r), FIELDS)
            if any(c not in r for c in FIELDS):
                raise ServingError(f"interactions[{i}] = {_short(r)}: expected item_id, event, timestamp")
            r = [r[c] for c in FIELDS]
        if not isinstance(r, (tuple, list)) or len(r) != 3:
            raise ServingError(f"interactions[{i}] = {_short(r)}: expected (item_id, event, timestamp)")
        for col, v in zip(out, r):
            col.append(v)
    return out


def parse_interactions(
    interactions: Any, item_pos: pd.Index, limit: int = MAX_INTERACTIONS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (global item idx int64, event code int64, timestamp int64), each ``[n]``, validated."""
    if interactions is None:
        return (np.zeros(0, np.int64),) * 3
    items, events, times = _interaction_columns(interactions, limit)
    for i, v in enumerate(items):
        check_id(v, f"interactions[{i}].item_id")
    idx = item_pos.get_indexer(items) if items else np.zeros(0, np.int64)
    if (idx < 0).any():
        i = int(np.flatnonzero(idx < 0)[0])
        raise ServingError(f"interactions[{i}].item_id {_short(items[i])} is not in the catalogue")
    codes = np.zeros(len(events), np.int64)
    for i, e in enumerate(events):
        if not isinstance(e, str) or e not in EVENTS:
            raise ServingError(f"interactions[{i}].event {_short(e)} is not one of {list(EVENTS)}")
        codes[i] = EVENTS.index(e)
    ts = np.array([check_timestamp(t, f"interactions[{i}].timestamp") for i, t in enumerate(times)], np.int64)
    return np.asarray(idx, np.int64), codes, ts.reshape(-1)
