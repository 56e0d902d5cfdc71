"""The rules every split obeys (temporal and external; :mod:`twotower_hgnn.data.split` applies them).

**Segments.** Test users are warm (an audiobook interaction in the training part; on data without
audiobooks, an interaction of the data's first item type) or cold. An empty
warm or cold segment is *not* an error: it is reported with a note (in the log, in
``Split.notes`` and in :meth:`Split.summary`), and its metrics are not computed — a podcast-only
catalogue has no warm user, an audiobook-only one may have no cold user. A non-empty segment below
``min_segment_users``, or a training or test part below it, is an error. A split with **no scorable
user** in any segment — no test user with a ``stream`` (the strong signal every metric is computed
on) — is an error, one line: e.g. a test file of weak events only.

**Given parts** (external splits): a test part identical to the training part, or whose every row is
also a training row, is an error (it would score the training data and print an empty table).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from twotower_hgnn.arrays import sorted_unique
from twotower_hgnn import errors
from twotower_hgnn.data.schema import EVENTS, WEAK_EVENTS

_log = logging.getLogger("twotower_hgnn.data.split")
_STREAM = EVENTS.index("stream")
_ROW = ["user_idx", "item_idx", "timestamp", "event_code"]
DAY = 86_400


class _Auto:
    def __repr__(self) -> str:  # shows in signatures/docs
        return "AUTO"


AUTO = _Auto()


class SplitError(errors.DataError):
    """A split that cannot be used (bad arguments, or a segment below the minimum size)."""


def scorable_users(test: pd.DataFrame) -> int:
    """Number of distinct test users with at least one ``stream`` row in ``test`` (index-coded)."""
    strong = test["event_code"].to_numpy() == _STREAM
    return int(sorted_unique(test["user_idx"].to_numpy()[strong]).size)


def _empty_notes(sizes: dict, n_items: int, type_name: str) -> list[str]:
    notes = []
    if sizes["test_users"] and sizes["warm_users"] == 0:
        why = f"the catalogue has no {type_name}s" if n_items == 0 else f"no test user has {type_name} history"
        notes.append(f"warm segment empty ({why}): warm metrics are not computed")
    if sizes["test_users"] and sizes["cold_users"] == 0:
        notes.append(f"cold segment empty (every test user has {type_name} history): cold metrics are not computed")
    return notes


def check_segments(
    name: str,
    sizes: dict,
    test: pd.DataFrame,
    min_segment_users: int,
    n_items: int,
    hint: str = "",
    type_name: str = "audiobook",
) -> list[str]:
    """Applies the segments rule (module docstring) to a split's ``segment_sizes`` and test part.

    Returns the notes (each logged as a warning). Raises :class:`SplitError` (one line) for a part or a
    non-empty segment below ``min_segment_users`` or for no scorable user; ``hint`` ends the message.
    """
    small = [k for k in ("train_interactions", "test_interactions") if sizes[k] < min_segment_users]
    small += [k for k in ("warm_users", "cold_users") if 0 < sizes[k] < min_segment_users]
    if small:
        raise SplitError(
            f"{name}: segment(s) {', '.join(f'{k}={sizes[k]}' for k in small)} below "
            f"min_segment_users={min_segment_users}{hint}. All sizes: {sizes}"
        )
    if sizes["test_interactions"] > 0 and scorable_users(test) == 0:
        ev = sorted(set(test["event_code"].map(lambda c: EVENTS[int(c)]).unique()))
        weak = "weak events only " if set(ev) <= set(WEAK_EVENTS) else ""
        raise SplitError(
            f"{name}: no scorable test user in any segment: the test part's {sizes['test_interactions']:,} rows of "
            f"{sizes['test_users']:,} users are {weak}({', '.join(ev)}); metrics are computed on streams{hint}"
        )
    notes = _empty_notes(sizes, n_items, type_name)
    for n in notes:
        _log.warning("%s: note: %s", name, n)
    return notes


def check_given_parts(train: pd.DataFrame, test: pd.DataFrame, train_src: str, test_src: str) -> None:
    """SplitError if the test part equals the training part, or every test row is also a training row.

    Rows are compared by 64-bit hashes of (user, item, timestamp, event) (linear time; a false match
    needs a hash collision on every test row)."""
    ha = pd.util.hash_pandas_object(train[_ROW].astype(np.int64), index=False)
    hb = pd.util.hash_pandas_object(test[_ROW].astype(np.int64), index=False)
    if len(hb) == 0 or not hb.isin(ha).all():
        return
    if len(ha) == len(hb) and (np.sort(ha.to_numpy()) == np.sort(hb.to_numpy())).all():
        raise SplitError(
            f"{test_src}: the test part is identical to the training part ({train_src}): "
            "give held-out interactions as the test file"
        )
    raise SplitError(
        f"{test_src}: every one of its {len(hb):,} rows is also in the training part ({train_src}): "
        "the test file must hold interactions the model has not seen"
    )


# ---------------------------------------------------------------------------------- the cut
def _to_seconds(cut_date) -> int:
    if isinstance(cut_date, (int, np.integer)):
        return int(cut_date)
    if isinstance(cut_date, float):
        return int(cut_date)
    try:
        ts = pd.Timestamp(cut_date)
    except (ValueError, TypeError) as e:
        raise SplitError(f"cut_date {cut_date!r}: not a date ({e})") from None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.timestamp())


def cut_bounds(
    defaults, n: int, max_ts: int, ts_at, cut_date=None, cut_quantile=None, history_days=AUTO, test_days=AUTO
) -> tuple[int, int | None, int | None]:
    """(cut, history start or None, test end or None) of a temporal split (arguments as
    :func:`temporal_split`) of a time-sorted log of ``n >= 1`` rows whose last second is ``max_ts``;
    ``ts_at(p)`` is the timestamp of sorted row ``p`` (a quantile cut reads one row). Shared by the NumPy
    split and the log queries (``twotower_hgnn.logs``)."""
    defaults = dict(defaults or {})
    if cut_date is not None and cut_quantile is not None:
        raise SplitError("give cut_date or cut_quantile, not both")
    if cut_date is None and cut_quantile is None:
        cut_quantile = defaults.get("cut_quantile")
        if cut_quantile is None:
            days = float(defaults.get("test_days_from_end", 14))
            cut_date = int(max_ts) + 1 - int(days * DAY)
    if cut_quantile is not None:
        if not 0.0 < float(cut_quantile) < 1.0:
            raise SplitError(f"cut_quantile must be in (0, 1), got {cut_quantile}")
        cut = int(ts_at(int(np.floor(float(cut_quantile) * (n - 1)))))  # np.quantile(method="lower")
    else:
        cut = _to_seconds(cut_date)
    if history_days is AUTO:
        history_days = defaults.get("history_days", 90)
    if test_days is AUTO:
        test_days = defaults.get("test_days")
    hist = None if history_days is None else cut - int(round(float(history_days) * DAY))
    test_end = None if test_days is None else cut + int(round(float(test_days) * DAY))
    return cut, hist, test_end
