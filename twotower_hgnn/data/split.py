"""Splits of the interaction log, warm/cold user segments (the paper, §5.1), and validation splits.

**Temporal split** (:func:`temporal_split`): one cut time for everybody: training interactions are
those before the cut (inside an optional history window, 90 days in the paper), test interactions
those at/after it (up to an optional test window, 14 days in the paper). Every user's features are
computed as of the cut.

**External split** (:func:`split_from_files`, :func:`external_split`): the train and test parts are
given (files of ``launch/evaluate.py``); no cut and no history window. Each user's features are
computed as of *their own* last training interaction + 1 s (:meth:`Split.user_as_of`), so a per-user
random (non-temporal) split still gives every user with training rows a history.

**Validation split** (:func:`validation_split`): the training part of a split split once more, for
early stopping and tuning: the last ``frac`` of the training time range (temporal splits), a given
validation file, or a seeded per-user random ``frac`` of each user's training rows (external splits).

Test users are labelled **warm** if their training interactions (the history the model can see)
contain any audiobook interaction of any event, **cold** otherwise (data without audiobooks: the data's
first item type, :func:`segment_type`).

Dataset defaults (``Dataset.meta["split"]``, used when the caller gives neither a cut date nor a
quantile): synthetic data cuts 14 days before its end with a 90-day history; MovieLens-1M cuts at the
0.8 interaction quantile with no history window, because 90 % of its ratings fall in the first 8 of
34 months and a day-based cut leaves almost no test users.

Splits persist with ``split_io.save_split`` / ``split_io.load_split`` (a reloaded split behaves the same,
per-user as-of times included).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
from typing import Any

import numpy as np
import pandas as pd

from twotower_hgnn.arrays import count_distinct_ids, distinct_ids
from twotower_hgnn.data.schema import EVENTS, Dataset
from twotower_hgnn.data.split_rules import (  # noqa: F401 (AUTO, DAY: the module's public names)
    AUTO,
    DAY,
    SplitError,
    check_given_parts,
    check_segments,
    cut_bounds,
)
from twotower_hgnn.rng import np_rng

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class Split:
    """A train/test split of ``Dataset.interactions``.

    Attributes:
      train: the training interactions (same columns as the dataset, sorted by time): temporal splits
        ``history_start <= timestamp < cut_time``; external splits the given training rows.
      test: the test interactions (all events; evaluation picks streams): temporal splits
        ``cut_time <= timestamp < test_end``; external splits the given test rows.
      cut_time: int Unix seconds of the cut (external splits: the earliest test second, informative
        only; features use :meth:`user_as_of`).
      history_start: first training second, or None (no history window).
      test_end: first second after the test window, or None (to the end of the log).
      warm_users: int32 ``[n_warm]`` sorted user_idx of test users with a ``segment_type`` interaction in
        ``train``.
      cold_users: int32 ``[n_cold]`` sorted user_idx of the other test users.
      segment_sizes: counts of every segment (see :func:`segments`), JSON-serialisable.
      as_of_times: int64 ``[num_users]`` per-user as-of second (external splits: the user's last
        training second + 1, 0 without training rows), or None: everybody as of ``cut_time``.
      notes: what the segments rule reported (e.g. an empty warm segment; :mod:`.split_rules`).
      segment_type: the item type that makes a user warm (:func:`segment_type`; "audiobook" for the
        paper's data).
      rows: ``(lo, mid, hi)`` when ``train`` / ``test`` are the rows ``[lo, mid)`` / ``[mid, hi)`` of
        ``Dataset.interactions`` (temporal splits: the log is time-sorted), else None. The parts are then
        views of the dataset's columns, not copies (:func:`rows_view`), and ``split_io.load_split`` given
        the dataset rebuilds them as views: at the paper's 300M rows a copy of the training part is ~5 GB.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    cut_time: int
    history_start: int | None
    warm_users: np.ndarray
    cold_users: np.ndarray
    segment_sizes: dict
    test_end: int | None = None
    as_of_times: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    segment_type: str = "audiobook"
    rows: tuple[int, int, int] | None = None

    @property
    def external(self) -> bool:
        """True for a split with per-user as-of times (given parts), False for one global cut."""
        return self.as_of_times is not None

    def user_as_of(self, user_idx: Any) -> np.ndarray:
        """int64 ``[U]``: the second each user's features are computed at (exclusive): ``cut_time`` for
        a temporal split; the user's last training second + 1 for an external one (0 = no history)."""
        u = np.asarray(user_idx, np.int64).reshape(-1)
        if self.as_of_times is None:
            return np.full(u.shape, int(self.cut_time), np.int64)
        return np.asarray(self.as_of_times, np.int64)[u]

    def summary(self) -> str:
        s = self.segment_sizes

        def iso(t):
            return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M") if t is not None else "-"

        head = (
            "given parts, features as of each user's last training interaction"
            if self.external
            else f"cut {iso(self.cut_time)} UTC (history from {iso(self.history_start)}, test until {iso(self.test_end)})"
        )
        return (
            f"{head}: "
            f"train {s['train_interactions']:,} interactions / {s['train_users']:,} users; "
            f"test {s['test_interactions']:,} interactions / {s['test_users']:,} users "
            f"(warm {s['warm_users']:,}, cold {s['cold_users']:,}; with {self.segment_type} streams in test: "
            f"warm {s['warm_users_ab_test']:,}, cold {s['cold_users_ab_test']:,})"
            + "".join(f"; note: {n}" for n in self.notes)
        )


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
      min_segment_users: minimum number of train/test rows and of users in a non-empty warm or cold
        segment (an empty segment is a note; see :mod:`twotower_hgnn.data.split_rules`).

    Raises:
      SplitError: both or an invalid cut given, a part or segment below ``min_segment_users``, or no
        scorable test user.

    ``segment_sizes`` keys: train_interactions, train_users, test_interactions, test_users, warm_users,
    cold_users, warm_users_ab_test / cold_users_ab_test (test users with an audiobook stream in the
    test window: the users audiobook metrics are computed on), dropped_before_history.
    """
    inter = ds.interactions
    ts = inter["timestamp"].to_numpy()
    if len(ts) == 0:
        raise SplitError(f"{ds.name}: no interactions to split")
    cut, hist, test_end = cut_bounds(
        ds.meta.get("split"),
        len(ts),
        int(ts.max()),
        lambda p: int(ts[p]),
        cut_date,
        cut_quantile,
        history_days,
        test_days,
    )

    # ts is sorted (Dataset contract): slice by binary search, no boolean masks over the log
    lo = 0 if hist is None else int(np.searchsorted(ts, hist, side="left"))
    mid = int(np.searchsorted(ts, cut, side="left"))
    hi = len(ts) if test_end is None else int(np.searchsorted(ts, test_end, side="left"))
    train, test = rows_view(inter, lo, mid), rows_view(inter, mid, hi)

    warm, cold, sizes = segments(ds, train, test)
    sizes.update(dropped_before_history=int(lo), after_test_window=int(len(ts) - hi))
    hint = "; move the cut (cut_date/cut_quantile) or widen the windows"
    label = (ds.meta.get("paths") or {}).get("interactions") or ds.name  # a user's file, named
    seg_t = segment_type(ds)
    n_seg = int(ds.item_type_counts.get(seg_t, 0))
    notes = check_segments(f"{label}: split at {cut}", sizes, test, min_segment_users, n_seg, hint, seg_t)
    split = Split(
        train, test, cut, hist, warm, cold, sizes, test_end, notes=tuple(notes), segment_type=seg_t, rows=(lo, mid, hi)
    )
    _log.info("%s: %s", ds.name, split.summary())
    return split


def rows_view(frame: pd.DataFrame, a: int, b: int) -> pd.DataFrame:
    """Rows ``[a, b)`` of ``frame`` with a fresh ``RangeIndex``, sharing ``frame``'s column arrays (a
    positional slice is a view; only the index is new). Read-only use: the parts of a split are never
    written to."""
    view = frame.iloc[a:b]
    view.index = pd.RangeIndex(b - a)
    return view


# ---------------------------------------------------------------------------------- segments
def segment_type(ds: Dataset) -> str:
    """The item type whose training history makes a test user warm: ``audiobook`` (the paper's §5.1)
    when the data has that type, else the data's first type (``Dataset.item_types`` order)."""
    types = tuple(ds.item_types)
    return "audiobook" if "audiobook" in types or not types else types[0]


def segments(ds: Dataset, train: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(warm, cold, sizes)`` of a train/test pair (index-coded tables).

    warm / cold: int32 sorted user_idx of the test users with / without an interaction (any event) of
    the :func:`segment_type` (audiobooks for the paper's data) in ``train``. ``sizes`` keys:
    train_interactions, train_users, test_interactions, test_users, warm_users, cold_users,
    warm_users_ab_test / cold_users_ab_test (test users with a stream of that type in ``test``: the
    users its metrics are computed on; the keys keep the paper's name).
    """
    seg_t = segment_type(ds)
    off = ds.item_type_offsets()
    k = list(ds.item_types).index(seg_t) if seg_t in ds.item_types else None
    lo_id, hi_id = (int(off[k]), int(off[k + 1])) if k is not None else (0, 0)  # that type's global ids
    tr_u = train["user_idx"].to_numpy()
    has_ab = np.zeros(ds.num_users, bool)
    tr_i = train["item_idx"].to_numpy()
    has_ab[tr_u[(tr_i >= lo_id) & (tr_i < hi_id)]] = True
    te_u = test["user_idx"].to_numpy()
    test_users = distinct_ids(te_u, ds.num_users)
    warm = test_users[has_ab[test_users]]
    cold = test_users[~has_ab[test_users]]
    te_i = test["item_idx"].to_numpy()
    te_ab_stream = (te_i >= lo_id) & (te_i < hi_id) & (test["event_code"].to_numpy() == EVENTS.index("stream"))
    ab_test = np.zeros(ds.num_users, bool)
    ab_test[te_u[te_ab_stream]] = True
    sizes = {
        "train_interactions": int(len(train)),
        "train_users": count_distinct_ids(tr_u, ds.num_users),
        "test_interactions": int(len(test)),
        "test_users": int(test_users.shape[0]),
        "warm_users": int(warm.shape[0]),
        "cold_users": int(cold.shape[0]),
        "warm_users_ab_test": int(ab_test[warm].sum()),
        "cold_users_ab_test": int(ab_test[cold].sum()),
    }
    return warm, cold, sizes


def last_train_times(num_users: int, train: pd.DataFrame) -> np.ndarray:
    """int64 ``[num_users]``: each user's last training second + 1 (0 for users without training rows)."""
    out = np.zeros(num_users, np.int64)
    np.maximum.at(out, train["user_idx"].to_numpy(np.int64), train["timestamp"].to_numpy(np.int64) + 1)
    return out


# ---------------------------------------------------------------------------------- external splits
def encode_interactions(ds: Dataset, df: pd.DataFrame, name: str = "part") -> pd.DataFrame:
    """A validated raw interactions table (``user_id``, ``item_id``, ``timestamp``, ``event``)
    index-coded against ``ds`` (``user_idx``, ``item_idx``, ``event_code`` added; sorted by time),
    exactly as :func:`~twotower_hgnn.data.readers.build_dataset` codes ``ds.interactions``. A table
    that already carries ``user_idx`` is returned as is. Unknown ids raise ``DataError``."""
    from twotower_hgnn.data.readers import build_dataset

    if "user_idx" in df.columns:
        return df
    return build_dataset(df, ds.items, ds.users, name=name, validate=False).interactions


def external_dataset(
    train: str | os.PathLike,
    test: str | os.PathLike,
    items: str | os.PathLike,
    users: str | os.PathLike,
    valid: str | os.PathLike | None = None,
    **read_opts,
) -> Dataset:
    """The dataset of an external split: every interactions file (train, optional validation, test)
    read, validated (schema, ids present in ``items``/``users``, each file's errors naming that file
    and its own row) and index-coded together. The parts are given to :func:`split_from_files`; the
    dataset itself carries no part labels. ``read_opts``: ``timestamp_unit``, ``duplicates``,
    ``encoding``, ``mapping`` (:func:`~twotower_hgnn.data.readers.read_interactions`)."""
    from twotower_hgnn.data.readers import build_dataset, check_references, read_interactions, read_items, read_users

    enc = {k: read_opts[k] for k in ("encoding", "mapping") if k in read_opts}
    its, us = read_items(items, **enc), read_users(users, **enc)
    parts = [read_interactions(p, **read_opts) for p in (train, valid, test) if p is not None]
    for part in parts:
        check_references(part, its, us)
    meta = {"train": str(train), "test": str(test), **({"valid": str(valid)} if valid is not None else {})}
    # each table was validated by its reader and checked against items/users above
    return build_dataset(pd.concat(parts, ignore_index=True), its, us, name="files-external", validate=False, meta=meta)


def split_from_files(
    ds: Dataset,
    train: str | os.PathLike,
    test: str | os.PathLike,
    *,
    valid: str | os.PathLike | None = None,
    min_segment_users: int = 1,
    **read_opts,
) -> Split:
    """The external split of ``ds`` (:func:`external_dataset`) given by its files (``read_opts`` as there).

    The training part is ``train`` plus ``valid`` (validation rows are training data the final models
    may see; :func:`validation_split` with the same file holds them out again); the test part is
    ``test``.
    """
    from twotower_hgnn.data.readers import read_interactions

    tr = [read_interactions(p, **read_opts) for p in (train, valid) if p is not None]
    tr_all = pd.concat(tr, ignore_index=True) if len(tr) > 1 else tr[0]
    return external_split(ds, tr_all, read_interactions(test, **read_opts), min_segment_users=min_segment_users)


def external_split(ds: Dataset, train: pd.DataFrame, test: pd.DataFrame, *, min_segment_users: int = 1) -> Split:
    """A split with given train/test parts (raw validated tables or index-coded ones): no cut, no
    history window; each user's features as of their last training second + 1.

    Raises:
      SplitError: an empty part, a test part equal to (or contained in) the training part, a part or
        non-empty segment below ``min_segment_users``, or no scorable test user (:mod:`.split_rules`).
    """
    src_tr, src_te = str(train.attrs.get("source", "train")), str(test.attrs.get("source", "test"))
    train, test = _by_time(encode_interactions(ds, train, "train")), _by_time(encode_interactions(ds, test, "test"))
    if len(train) == 0 or len(test) == 0:
        raise SplitError(f"external split: train has {len(train)} rows and test {len(test)}; both must be non-empty")
    check_given_parts(train, test, src_tr, src_te)
    warm, cold, sizes = segments(ds, train, test)
    seg_t = segment_type(ds)
    n_seg = int(ds.item_type_counts.get(seg_t, 0))
    notes = check_segments(f"external split (test {src_te})", sizes, test, min_segment_users, n_seg, type_name=seg_t)
    split = Split(
        train=train,
        test=test,
        cut_time=int(test["timestamp"].min()),
        history_start=None,
        warm_users=warm,
        cold_users=cold,
        segment_sizes=sizes,
        test_end=None,
        as_of_times=last_train_times(ds.num_users, train),
        notes=tuple(notes),
        segment_type=seg_t,
    )
    _log.info("%s: %s", ds.name, split.summary())
    return split


def _by_time(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` sorted by timestamp (stable; the Dataset order), with a fresh index."""
    if not df["timestamp"].is_monotonic_increasing:
        df = df.sort_values("timestamp", kind="stable")
    return df.reset_index(drop=True)


def known_at_cut(ds: Dataset, split: Split) -> Dataset:
    """The dataset as the system knows it at the split: interactions before the cut (temporal), the
    training part (external). Exported models serve from this snapshot."""
    if split.external:
        return dataclasses.replace(ds, interactions=split.train.reset_index(drop=True))
    # the log is time-sorted (Dataset contract): the rows before the cut are a prefix, taken as a view (a
    # boolean row filter would copy every column: ~5 GB of the paper's 275M rows before the cut)
    end = int(np.searchsorted(ds.interactions["timestamp"].to_numpy(), split.cut_time, side="left"))
    return dataclasses.replace(ds, interactions=rows_view(ds.interactions, 0, end))


# ---------------------------------------------------------------------------------- validation
def validation_split(
    ds: Dataset, split: Split, *, valid_interactions: pd.DataFrame | None = None, frac: float = 0.1, seed: int = 0
) -> Split:
    """The training part of ``split`` split again: ``train`` = training rows minus the validation
    rows, ``test`` = the validation rows; warm/cold segments against the reduced ``train``.

    * ``valid_interactions`` given (a validated raw table, e.g. ``read_interactions(path)``, or an
      index-coded one): those rows are the validation part; they are removed from the training part
      (as a multiset: each validation row removes at most one identical training row). Features as
      of each user's last reduced-training second + 1.
    * temporal ``split``: a temporal split of the training part at its ``1 - frac`` timestamp quantile
      (``cut_time`` = that second, ``test_end`` = the original cut, same history window).
    * external ``split``: a seeded per-user random ``frac`` of each user's training rows (stochastic
      rounding of ``frac * n``, so ``frac`` of the rows in expectation; a user keeps >= 1 row in train).

    Raises:
      SplitError: ``frac`` outside (0, 1), or an empty validation or reduced training part.
    """
    if not 0.0 < float(frac) < 1.0:
        raise SplitError(f"validation frac must be in (0, 1), got {frac}")
    tr = split.train
    if valid_interactions is not None:
        test = _by_time(encode_interactions(ds, valid_interactions, "valid"))
        train = tr[~_multiset_member(tr, test)].reset_index(drop=True)
    elif not split.external:
        ts = tr["timestamp"].to_numpy()
        if len(ts) == 0:
            raise SplitError("validation split: the training part is empty")
        vcut = int(np.quantile(ts, 1.0 - float(frac), method="lower"))
        mid = int(np.searchsorted(ts, vcut, side="left"))  # train is time-sorted
        train, test = rows_view(tr, 0, mid), rows_view(tr, mid, len(tr))
        rows = None if split.rows is None else (split.rows[0], split.rows[0] + mid, split.rows[1])
        return _make_validation(ds, train, test, vcut, split.history_start, split.cut_time, None, rows)
    else:
        hold = _random_holdout(tr["user_idx"].to_numpy(np.int64), ds.num_users, float(frac), seed)
        train, test = tr[~hold].reset_index(drop=True), tr[hold].reset_index(drop=True)
    return _make_validation(
        ds,
        train,
        test,
        int(test["timestamp"].min()) if len(test) else 0,
        None,
        None,
        last_train_times(ds.num_users, train),
    )


def _make_validation(
    ds: Dataset,
    train: pd.DataFrame,
    test: pd.DataFrame,
    cut: int,
    hist: int | None,
    end: int | None,
    as_of: np.ndarray | None,
    rows: tuple[int, int, int] | None = None,
) -> Split:
    if len(train) == 0 or len(test) == 0:
        raise SplitError(
            f"validation split: reduced train has {len(train)} rows and validation {len(test)}; "
            "both must be non-empty (change frac or the validation file)"
        )
    warm, cold, sizes = segments(ds, train, test)
    sp = Split(train, test, cut, hist, warm, cold, sizes, end, as_of, segment_type=segment_type(ds), rows=rows)
    _log.info("%s validation: %s", ds.name, sp.summary())
    return sp


def _random_holdout(users: np.ndarray, num_users: int, frac: float, seed: int) -> np.ndarray:
    """bool ``[n]``: a seeded random ``floor(frac * n_u + U[0, 1))`` (at most ``n_u - 1``) of each user's rows."""
    rng = np_rng(seed, "validation-split")
    key = rng.random(users.size)
    counts = np.bincount(users, minlength=num_users)
    n_val = np.minimum(np.floor(frac * counts + rng.random(num_users)), np.maximum(counts - 1, 0)).astype(np.int64)
    order = np.lexsort((key, users))  # by user, random within user
    starts = np.cumsum(counts) - counts
    pos = np.arange(users.size) - starts[users[order]]
    hold = np.zeros(users.size, bool)
    hold[order] = pos < n_val[users[order]]
    return hold


def _multiset_member(rows: pd.DataFrame, remove: pd.DataFrame) -> np.ndarray:
    """bool ``[len(rows)]``: row matched by a row of ``remove`` on (user, item, timestamp, event),
    each row of ``remove`` matching at most one row (the k-th duplicate matches the k-th)."""
    cols = ["user_idx", "item_idx", "timestamp", "event_code"]
    a, b = rows[cols].copy(), remove[cols].copy()
    a["_k"], b["_k"] = a.groupby(cols, sort=False).cumcount(), b.groupby(cols, sort=False).cumcount()
    a["_row"] = np.arange(len(a))
    hit = a.merge(b, on=cols + ["_k"], how="inner")["_row"].to_numpy()
    out = np.zeros(len(rows), bool)
    out[hit] = True
    return out
