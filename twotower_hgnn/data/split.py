"""Global temporal split and warm/cold user segments (PAPER.md §5.1).

One cut time for everybody: training interactions are those before the cut (inside an optional
history window, 90 days in the paper), test interactions those at/after it (up to an optional test
window, 14 days in the paper). Test users are labelled **warm** if their training interactions (the
history the model can see) contain any audiobook interaction of any event, **cold** otherwise.

Dataset defaults (``Dataset.meta["split"]``, used when the caller gives neither a cut date nor a
quantile): synthetic data cuts 14 days before its end with a 90-day history; MovieLens-1M cuts at the
0.8 interaction quantile with no history window, because 90 % of its ratings fall in the first 8 of
34 months and a day-based cut leaves almost no test users (DATA.md).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import logging

import numpy as np
import pandas as pd

from twotower_hgnn.data.schema import EVENTS, Dataset

DAY = 86_400
_log = logging.getLogger(__name__)


class SplitError(ValueError):
    """A split that cannot be used (bad arguments, or a segment below the minimum size)."""


class _Auto:
    def __repr__(self) -> str:  # shows in signatures/docs
        return "AUTO"


AUTO = _Auto()


@dataclasses.dataclass
class Split:
    """A temporal split of ``Dataset.interactions``.

    Attributes:
      train: interactions with ``history_start <= timestamp < cut_time`` (same columns as the dataset).
      test: interactions with ``cut_time <= timestamp < test_end`` (all events; evaluation picks streams).
      cut_time: int Unix seconds of the cut.
      history_start: first training second, or None (no history window).
      test_end: first second after the test window, or None (to the end of the log).
      warm_users: int32 ``[n_warm]`` sorted user_idx of test users with an audiobook interaction in ``train``.
      cold_users: int32 ``[n_cold]`` sorted user_idx of the other test users.
      segment_sizes: counts of every segment (see :func:`temporal_split`), JSON-serialisable.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    cut_time: int
    history_start: int | None
    warm_users: np.ndarray
    cold_users: np.ndarray
    segment_sizes: dict
    test_end: int | None = None

    def summary(self) -> str:
        s = self.segment_sizes
        iso = lambda t: _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M") if t is not None else "-"  # noqa: E731
        return (
            f"cut {iso(self.cut_time)} UTC (history from {iso(self.history_start)}, test until {iso(self.test_end)}): "
            f"train {s['train_interactions']:,} interactions / {s['train_users']:,} users; "
            f"test {s['test_interactions']:,} interactions / {s['test_users']:,} users "
            f"(warm {s['warm_users']:,}, cold {s['cold_users']:,}; with audiobook streams in test: "
            f"warm {s['warm_users_ab_test']:,}, cold {s['cold_users_ab_test']:,})"
        )


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


def temporal_split(
    ds: Dataset,
    *,
    cut_date=None,
    cut_quantile: float | None = None,
    history_days=AUTO,
    test_days=AUTO,
    min_segment_users: int = 1,
) -> Split:
    """Splits ``ds.interactions`` at one global time.

    Args:
      ds: the dataset.
      cut_date: cut as Unix seconds, an ISO date string or a datetime (UTC if naive).
      cut_quantile: cut at this quantile of interaction timestamps (e.g. 0.8).
        Neither given: the dataset default (``ds.meta["split"]``), else 14 days before the log's end.
      history_days: training window length before the cut; None = no window. AUTO = dataset default
        (90 if unset).
      test_days: test window length after the cut; None = to the end. AUTO = dataset default (None).
      min_segment_users: minimum number of warm and of cold test users (and of train/test rows).

    Raises:
      SplitError: both or an invalid cut given, or a segment below ``min_segment_users``.

    ``segment_sizes`` keys: train_interactions, train_users, test_interactions, test_users, warm_users,
    cold_users, warm_users_ab_test / cold_users_ab_test (test users with an audiobook stream in the
    test window: the users audiobook metrics are computed on), dropped_before_history.
    """
    defaults = dict(ds.meta.get("split", {}) or {})
    inter = ds.interactions
    ts = inter["timestamp"].to_numpy()
    if len(ts) == 0:
        raise SplitError(f"{ds.name}: no interactions to split")
    if cut_date is not None and cut_quantile is not None:
        raise SplitError("give cut_date or cut_quantile, not both")
    if cut_date is None and cut_quantile is None:
        cut_quantile = defaults.get("cut_quantile")
        if cut_quantile is None:
            days = float(defaults.get("test_days_from_end", 14))
            cut_date = int(ts.max()) + 1 - int(days * DAY)
    if cut_quantile is not None:
        if not 0.0 < float(cut_quantile) < 1.0:
            raise SplitError(f"cut_quantile must be in (0, 1), got {cut_quantile}")
        cut = int(np.quantile(ts, float(cut_quantile), method="lower"))
    else:
        cut = _to_seconds(cut_date)
    if history_days is AUTO:
        history_days = defaults.get("history_days", 90)
    if test_days is AUTO:
        test_days = defaults.get("test_days")
    hist = None if history_days is None else cut - int(round(float(history_days) * DAY))
    test_end = None if test_days is None else cut + int(round(float(test_days) * DAY))

    # ts is sorted (Dataset contract): slice by binary search, no boolean masks over the log
    lo = 0 if hist is None else int(np.searchsorted(ts, hist, side="left"))
    mid = int(np.searchsorted(ts, cut, side="left"))
    hi = len(ts) if test_end is None else int(np.searchsorted(ts, test_end, side="left"))
    train = inter.iloc[lo:mid].reset_index(drop=True)
    test = inter.iloc[mid:hi].reset_index(drop=True)

    n_ab = int(ds.item_type_counts.get("audiobook", 0))
    tr_u = train["user_idx"].to_numpy()
    tr_ab = train["item_idx"].to_numpy() < n_ab
    has_ab = np.zeros(ds.num_users, bool)
    has_ab[tr_u[tr_ab]] = True
    te_u = test["user_idx"].to_numpy()
    test_users = np.unique(te_u).astype(np.int32)
    warm = test_users[has_ab[test_users]]
    cold = test_users[~has_ab[test_users]]
    te_ab_stream = (test["item_idx"].to_numpy() < n_ab) & (test["event_code"].to_numpy() == EVENTS.index("stream"))
    ab_test = np.zeros(ds.num_users, bool)
    ab_test[te_u[te_ab_stream]] = True
    sizes = {
        "train_interactions": int(len(train)),
        "train_users": int(np.unique(tr_u).shape[0]),
        "test_interactions": int(len(test)),
        "test_users": int(test_users.shape[0]),
        "warm_users": int(warm.shape[0]),
        "cold_users": int(cold.shape[0]),
        "warm_users_ab_test": int(ab_test[warm].sum()),
        "cold_users_ab_test": int(ab_test[cold].sum()),
        "dropped_before_history": int(lo),
        "after_test_window": int(len(ts) - hi),
    }
    split = Split(train, test, cut, hist, warm, cold, sizes, test_end)
    _log.info("%s: %s", ds.name, split.summary())
    small = [k for k in ("train_interactions", "test_interactions", "warm_users", "cold_users") if sizes[k] < min_segment_users]
    if small:
        raise SplitError(
            f"{ds.name}: split at {cut} leaves segment(s) {', '.join(f'{k}={sizes[k]}' for k in small)} below "
            f"min_segment_users={min_segment_users}; move the cut (cut_date/cut_quantile) or widen the windows. "
            f"All sizes: {sizes}"
        )
    return split
