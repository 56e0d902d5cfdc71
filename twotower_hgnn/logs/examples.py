"""Two-tower training examples and their as-of history as queries over ``inter`` and ``items``.

The relational form of ``features_examples._positives`` (the positive examples) and of the index part
of ``history.history_means`` / ``history.history_id_tokens`` (which history rows each query reads):

* :func:`positives` -- ``(user, time, item)`` of the positive rows of one item-id range (one item
  type), in (time, user, item, row) order; ``first_only`` keeps each (user, item) pair's first row.
* :func:`history_ranges` -- the queried users' counted history rows sorted by (type, user, time, row)
  as one item sequence, and per query (user ``u``, time ``t``) and type ``k`` the half-open range ``[lo, hi)`` of
  that sequence holding ``u``'s type-``k`` rows with time in ``[t - window, t)``. A query's range is
  ``block_start(k, u)`` plus the user's rows before the bound: a running count over the rows and the
  query's probes of each (type, user), probes ordered before rows of the same second (strictly before
  ``t``; a row at exactly ``t - window`` is inside), and the blocks' starts a running sum of the
  (type, user) row counts. Only windows partitioned by (type, user) touch the rows; the one global
  window runs over (type, user) groups.

The embeddings stay in NumPy: :func:`means_from_ranges` and :func:`id_tokens_from_ranges` turn the
ranges into the per-type mean embeddings and most-recent item tokens of ``history_means`` /
``history_id_tokens``, streamed over chunks of queries (float64 sums, never a prefix sum of the whole
sequence: 300M rows x 128 dims would be ~300 GB). :func:`history_features` does both per chunk of
users, so neither the engine's result nor the ranges are ever held for every query at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from twotower_hgnn.logs.colisten import _in_list


def positives_sql(codes: Sequence[int], start: int, stop: int, first_only: bool) -> str:
    """(r, u, t, i): the rows of ``inter`` with an event in ``codes`` and an item in ``[start, stop)``;
    ``first_only``: each (user, item) pair's earliest row (time, then row order)."""
    rows = (
        "SELECT row_id AS r, user_idx AS u, timestamp AS t, item_idx AS i FROM inter "
        f"WHERE event_code IN ({_in_list(codes)}) AND item_idx >= {int(start)} AND item_idx < {int(stop)}"
    )
    if not first_only:
        return rows
    ranked = f"SELECT r, u, t, i, ROW_NUMBER() OVER (PARTITION BY u, i ORDER BY t, r) AS n FROM ({rows}) AS p"
    return f"SELECT r, u, t, i FROM ({ranked}) AS q WHERE n = 1"


def positives(
    engine, codes: Sequence[int], start: int, stop: int, first_only: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user int32, time int64, item int32)`` of :func:`positives_sql`, ordered by (time, user, item,
    row): ``features_examples._positives`` (global item ids)."""
    got = engine.fetch(
        f"SELECT u, t, i FROM ({positives_sql(codes, start, stop, first_only)}) AS x ORDER BY t, u, i, r"
    )
    return got["u"].astype(np.int32), got["t"].astype(np.int64), got["i"].astype(np.int32)


def counted_sql(codes: Sequence[int], queries: str | None = None) -> str:
    """(k, u, t, r, i): the rows of ``inter`` whose event counts as history, with their item's type ``k``;
    ``queries``: a table with a user column ``u`` -- only those users' rows (a semi-join: a step budget's
    few thousand users read their own rows, not every user's)."""
    only = f" AND x.user_idx IN (SELECT u FROM {queries})" if queries else ""
    return (
        "SELECT it.type_code AS k, x.user_idx AS u, x.timestamp AS t, x.row_id AS r, x.item_idx AS i "
        f"FROM inter AS x JOIN items AS it ON it.item_idx = x.item_idx WHERE x.event_code IN ({_in_list(codes)}){only}"
    )


def probes_sql(n_types: int, window_s: float | None, queries: str = "h_q") -> str:
    """(q, side, k, u, t): per query of ``queries`` (q, u, t) and type ``k < n_types`` a probe at its
    as-of time (side 1: the range's end) and, with a window, one at ``t - ceil(window)`` (side 0: its
    start). One SELECT per type and side (no engine-specific row generator)."""
    sides = [(1, "t")] + ([] if window_s is None else [(0, f"t - {int(math.ceil(window_s))}")])
    parts = [
        f"SELECT q, {s} AS side, {k} AS k, u, {t} AS t FROM {queries}" for k in range(int(n_types)) for s, t in sides
    ]
    return " UNION ALL ".join(parts)


def range_bounds_sql(rows: str = "h_rows", probes: str = "h_probe") -> str:
    """(q, side, k, pos, start): each probe's position in the sequence of ``rows`` sorted by (k, u, t, r)
    -- the rows of its (type, user) before its time (probes sort before rows of the same second) plus
    its block's start -- and that block's start (the range's start without a window)."""
    both = f"SELECT q, side, k, u, t, 0 AS row FROM {probes} UNION ALL SELECT -1 AS q, -1 AS side, k, u, t, 1 AS row FROM {rows}"
    local = (
        "SELECT q, side, k, u, row, SUM(row) OVER (PARTITION BY k, u ORDER BY t, row "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS before FROM ({both}) AS b"
    )
    groups = (
        f"SELECT k, u, SUM(n) AS n FROM (SELECT k, u, COUNT(*) AS n FROM {rows} GROUP BY k, u "
        f"UNION ALL SELECT DISTINCT k, u, 0 AS n FROM {probes}) AS g GROUP BY k, u"
    )
    starts = (
        "SELECT k, u, SUM(n) OVER (ORDER BY k, u ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) - n AS start "
        f"FROM ({groups}) AS c"
    )
    return (
        "SELECT l.q AS q, l.side AS side, l.k AS k, s.start + l.before AS pos, s.start AS start "
        f"FROM ({local}) AS l JOIN ({starts}) AS s ON s.k = l.k AND s.u = l.u WHERE l.row = 0"
    )


@dataclass
class HistoryRanges:
    """Where each query's history lies in the sorted history sequence.

    Attributes:
      items: int32 ``[M]`` the items of the queried users' counted history rows, sorted by (type, user,
        time, row).
      lo, hi: int64 ``[Q, n_types]``: query ``q``'s type-``k`` history is ``items[lo[q, k]:hi[q, k]]``
        (oldest first).
    """

    items: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        """int64 ``[Q, n_types]`` history rows per query and type."""
        return self.hi - self.lo


def history_ranges(
    engine, q_user: np.ndarray, q_time: np.ndarray, codes: Sequence[int], window_s: float | None, n_types: int
) -> HistoryRanges:
    """The history ranges (:class:`HistoryRanges`) of the queries (``q_user`` int ``[Q]``, ``q_time``
    int64 ``[Q]`` exclusive) over the rows of ``inter`` with an event in ``codes`` (``items`` gives the
    types); ``window_s``: seconds before ``q_time`` (None = every earlier row)."""
    q_user = np.asarray(q_user, np.int64).reshape(-1)
    q_time = np.broadcast_to(np.asarray(q_time, np.int64), q_user.shape)
    n_q, n_types = len(q_user), int(n_types)
    engine.register_frame("h_q", pd.DataFrame({"q": np.arange(n_q, dtype=np.int64), "u": q_user, "t": q_time}))
    try:
        engine.materialize("h_rows", counted_sql(codes, "h_q"))
        engine.materialize("h_probe", probes_sql(n_types, window_s))
        got = engine.fetch(range_bounds_sql())
        items = engine.fetch("SELECT i FROM h_rows ORDER BY k, u, t, r")["i"].astype(np.int32)
    finally:
        for t in ("h_probe", "h_rows"):
            engine.drop(t)
    q, k = got["q"].astype(np.int64), got["k"].astype(np.int64)
    side, pos, start = got["side"].astype(np.int64), got["pos"].astype(np.int64), got["start"].astype(np.int64)
    lo = np.zeros((n_q, n_types), np.int64)
    hi = np.zeros((n_q, n_types), np.int64)
    end = side == 1
    hi[q[end], k[end]] = pos[end]
    if window_s is None:
        lo[q[end], k[end]] = start[end]
    else:
        lo[q[~end], k[~end]] = pos[~end]
    return HistoryRanges(items, lo, hi)


def user_chunks(q_user: np.ndarray, users_per_chunk: int | None) -> list[np.ndarray]:
    """Query indices (int64) grouped by runs of ``users_per_chunk`` distinct users of ``q_user`` ``[Q]``
    in user order (a user's queries are never split; each group in query order within a user);
    None: one group of every query."""
    q_user = np.asarray(q_user).reshape(-1)
    if users_per_chunk is None or q_user.size == 0:
        return [np.arange(q_user.size, dtype=np.int64)]
    if int(users_per_chunk) < 1:
        raise ValueError(f"users_per_chunk must be >= 1 or None, got {users_per_chunk}")
    order = np.argsort(q_user, kind="stable")
    su = q_user[order]
    first = np.flatnonzero(np.concatenate([[True], su[1:] != su[:-1]]))  # each distinct user's first query
    bounds = np.concatenate([first[:: int(users_per_chunk)], [su.size]])
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass
class HistoryFeatures:
    """Per query and item type: ``counts`` int64 ``[Q, n_types]`` history rows, ``ids`` int32 ``[Q,
    n_types, length]`` the most recent item tokens (:func:`id_tokens_from_ranges`), ``means`` float32
    ``[Q, n_types, d]`` the mean item embedding (:func:`means_from_ranges`)."""

    counts: np.ndarray
    ids: np.ndarray
    means: np.ndarray


def history_features(
    engine,
    q_user: np.ndarray,
    q_time: np.ndarray,
    codes: Sequence[int],
    window_s: float | None,
    n_types: int,
    item_emb: np.ndarray,
    id_length: int,
    users_per_chunk: int | None = None,
    chunk_rows: int = 1 << 20,
) -> HistoryFeatures:
    """:func:`history_ranges` turned into :class:`HistoryFeatures`, one chunk of ``users_per_chunk``
    users' queries at a time (:func:`user_chunks`): each chunk is its own set of queries (its users'
    rows only, by the semi-join of :func:`counted_sql`), so the engine's result and the ranges held
    in this process are one chunk's, never every query's (the probe rows alone are ``2 * n_types``
    per query: ~24 GB for 150M queries). The same answers for any chunking: a query's range covers
    its own user's rows only, in the same order. None: every query at once."""
    q_user = np.asarray(q_user, np.int64).reshape(-1)
    q_time = np.broadcast_to(np.asarray(q_time, np.int64), q_user.shape)
    n_q, n_types, d = len(q_user), int(n_types), int(item_emb.shape[1])
    out = HistoryFeatures(
        np.zeros((n_q, n_types), np.int64),
        np.zeros((n_q, n_types, int(id_length)), np.int32),
        np.zeros((n_q, n_types, d), np.float32),
    )
    for idx in user_chunks(q_user, users_per_chunk):
        if idx.size == 0:
            continue
        r = history_ranges(engine, q_user[idx], q_time[idx], codes, window_s, n_types)
        out.counts[idx] = r.counts
        out.ids[idx] = id_tokens_from_ranges(r, id_length)
        out.means[idx] = means_from_ranges(r, item_emb, chunk_rows)
    return out


def _query_chunks(counts: np.ndarray, chunk_rows: int) -> list[tuple[int, int]]:
    """[a, b) runs of queries (``counts`` ``[Q, n_types]``) whose history rows (all types) add up to about ``chunk_rows`` (a query's
    rows are never split; a run has at least one query)."""
    per_q = counts.sum(1)
    cum = np.concatenate([[0], np.cumsum(per_q)])
    bounds, a = [], 0
    while a < len(per_q):
        b = max(a + 1, int(np.searchsorted(cum, cum[a] + chunk_rows, side="right")) - 1)
        bounds.append((a, b))
        a = b
    return bounds


def means_from_ranges(r: HistoryRanges, item_emb: np.ndarray, chunk_rows: int = 1 << 20) -> np.ndarray:
    """float32 ``[Q, n_types, d]``: the mean of ``item_emb`` ``[n_items, d]`` over each query's and type's
    history rows (zeros where there are none): ``history_means``. Streamed over chunks of queries of
    about ``chunk_rows`` history rows: each chunk's rows are gathered and summed per range in float64."""
    n_q, n_types = r.lo.shape
    d = int(item_emb.shape[1])
    out = np.zeros((n_q, n_types, d), np.float32)
    counts = r.counts
    for a, b in _query_chunks(counts, chunk_rows):
        lo, c = r.lo[a:b].reshape(-1), counts[a:b].reshape(-1)
        nz = np.flatnonzero(c)
        if nz.size == 0:
            continue
        offs = np.concatenate([[0], np.cumsum(c[nz])])
        # every row position of the chunk's non-empty ranges, range after range
        pos = np.repeat(lo[nz] - offs[:-1], c[nz]) + np.arange(offs[-1], dtype=np.int64)
        rows = np.asarray(item_emb)[r.items[pos]].astype(np.float64)  # gather, then widen: never the table
        sums = np.add.reduceat(rows, offs[:-1], axis=0)
        out[a:b].reshape(-1, d)[nz] = (sums / c[nz, None]).astype(np.float32)  # a view of out's rows
    return out


def id_tokens_from_ranges(r: HistoryRanges, length: int) -> np.ndarray:
    """int32 ``[Q, n_types, length]``: per query and type the ``length`` most recent history items as
    tokens (id + 1), newest first, 0-padded: ``history_id_tokens``."""
    back = np.arange(1, int(length) + 1, dtype=np.int64)
    pos = r.hi[:, :, None] - back
    ok = pos >= r.lo[:, :, None]
    if r.items.size == 0:
        return np.zeros(pos.shape, np.int32)
    return np.where(ok, r.items[np.clip(pos, 0, r.items.size - 1)].astype(np.int64) + 1, 0).astype(np.int32)
