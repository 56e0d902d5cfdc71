"""Training examples of the two-tower model (one per positive interaction) and the popularity priors.

:func:`build_training_examples` (user features as of each example, or leave-one-out), the
time-aware popularity prior :func:`prior_table` and the static one :func:`smoothed_log_q`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from twotower_hgnn.data.schema import Dataset, EVENTS, event_mask
from twotower_hgnn.features_bundles import DAY_S, FeatureError, FeatureVocab, PriorTable, TrainingExamples
from twotower_hgnn.features_encoding import _interactions_frame, target_item_range
from twotower_hgnn.history import _leave_one_out_features, user_features_as_of


# ----------------------------------------------------------------------------------------------
# Training examples
# ----------------------------------------------------------------------------------------------
def build_training_examples(
    ds: Dataset,
    split: Any,
    target_type: str,
    item_emb: np.ndarray,
    vocab: FeatureVocab,
    positive_events: Sequence[str] = ("stream",),
    first_only: bool = False,
    chunk_rows: int = 1 << 18,
    example_history: str = "as_of",
    budget_rows: Callable[[int], np.ndarray | None] | None = None,
) -> TrainingExamples:
    """One example per positive (user, target-type item) interaction of ``split.train``.

    Positives are ``positive_events`` of target-type items (streams by default: the paper's "user-
    audiobook pairs the user listened to"). ``first_only`` keeps the first such interaction of each
    (user, item) pair — the discovery we want to predict; later re-streams would add duplicate pairs.

    ``example_history`` is the history each example's user features are built from:
      * ``"as_of"`` — everything in ``split.train`` strictly before the example's timestamp (the
        next-item view; the paper's real-time setting).
      * ``"leave_one_out"`` — the user's whole training history (as of the end of ``split.train``)
        without the target item (every row of it removed): the held-out-item view, whose features
        match those the model sees at evaluation/serving time (a full history), and which does not
        learn the within-session rating order of logs such as MovieLens. Uses only training rows.

    ``budget_rows(n_examples)``: the sorted example rows a training budget reads (or None: all). Only
    their user features are built (``TrainingExamples.built_rows``): 200 steps of
    128 read 25,600 examples, while the ``large`` scale has ~25M, whose features would need ~13 GB.
    """
    train = _interactions_frame(getattr(split, "train", split))
    start, stop = target_item_range(ds, target_type)
    codes = np.asarray([EVENTS.index(e) for e in positive_events], np.int64)
    u, ts, row = _positives(train, codes, start, stop, ds.num_items, first_only)
    row -= np.int32(start)  # in place (int32): global item ids -> rows of the item table, no second [E] column
    only = None if budget_rows is None else budget_rows(len(u))
    fu, fts, frow = (u, ts, row) if only is None else (u[only], ts[only], row[only])
    fu = fu.astype(np.int64)
    if example_history == "as_of":
        feats = user_features_as_of(ds, train, fu, fts, item_emb, vocab, chunk_rows=chunk_rows)
    elif example_history == "leave_one_out":
        feats = _leave_one_out_features(ds, train, fu, frow.astype(np.int64) + start, item_emb, vocab, target_type)
    else:
        raise FeatureError(f"example_history must be 'as_of' or 'leave_one_out', got {example_history!r}")
    return TrainingExamples(
        user=feats,
        user_idx=u,
        item_row=row,
        timestamp=ts,
        item_counts=np.bincount(row, minlength=stop - start).astype(np.int64),
        built_rows=None if only is None else np.asarray(only, np.int64),
    )


def _positives(
    train: Any, codes: np.ndarray, start: int, stop: int, n_items: int, first_only: bool, chunk: int = 1 << 24
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user int32, time int64, item int32)`` of the rows of ``train`` with an event in ``codes`` and an
    item in ``[start, stop)``, ordered by (time, user, item) (stable); ``first_only``: the first row of each
    (user, item) pair. Two passes over ``chunk`` rows at a time (count, then fill): no temporary the size
    of the log, and the outputs at the log's own widths (250M podcast positives at the paper's scale are
    4 GB so, ~14 GB with int64 copies and whole-log masks). The log is already in (time, user, item)
    order (the ``Dataset`` contract), checked in one pass, so the sort runs only for a table that is not."""
    item, ev = train["item_idx"].to_numpy(), train["event_code"].to_numpy()
    user, tcol = train["user_idx"].to_numpy(), train["timestamp"].to_numpy()
    bounds = [(a, min(a + chunk, len(item))) for a in range(0, len(item), chunk)]

    def keep(a: int, b: int) -> np.ndarray:
        it = item[a:b]
        return event_mask(ev[a:b], codes) & (it >= start) & (it < stop)

    counts = [int(np.count_nonzero(keep(a, b))) for a, b in bounds]
    u = np.empty(sum(counts), np.int32)
    ts = np.empty(sum(counts), np.int64)
    it = np.empty(sum(counts), np.int32)
    o = 0
    for (a, b), c in zip(bounds, counts):
        m = keep(a, b)
        u[o : o + c], ts[o : o + c], it[o : o + c] = user[a:b][m], tcol[a:b][m], item[a:b][m]
        o += c
    if not _is_sorted(ts, u, it, chunk):
        order = np.lexsort((it, u, ts))
        u, ts, it = u[order], ts[order], it[order]
    if first_only and len(u):
        _, first = np.unique(u.astype(np.int64) * int(n_items) + it, return_index=True)
        first.sort()
        u, ts, it = u[first], ts[first], it[first]
    return u, ts, it


def _is_sorted(ts: np.ndarray, u: np.ndarray, it: np.ndarray, chunk: int = 1 << 24) -> bool:
    """Whether rows are in non-decreasing (ts, u, it) order (checked ``chunk`` rows at a time; ids are
    non-negative, so int32 differences cannot overflow)."""
    for a in range(0, max(len(ts) - 1, 0), chunk):
        b = min(a + chunk + 1, len(ts))  # one row of overlap: the pair across the chunk boundary
        dt, du, di = np.diff(ts[a:b]), np.diff(u[a:b]), np.diff(it[a:b])
        if not np.all((dt > 0) | ((dt == 0) & ((du > 0) | ((du == 0) & (di >= 0))))):
            return False
    return True


# ----------------------------------------------------------------------------------------------
# Popularity priors
# ----------------------------------------------------------------------------------------------
def prior_table(
    timestamps: np.ndarray,
    item_row: np.ndarray,
    n_items: int,
    window_days: float,
    alpha: float = 1.0,
    max_cells: int = 1 << 25,
) -> PriorTable:
    """:class:`PriorTable` of examples (``timestamps`` int64 ``[E]`` seconds, ``item_row`` ``[E]``).

    Slots are one day unless ``n_slots * n_items`` would exceed ``max_cells`` (then the slot widens so
    that the table stays under it); the window is ``ceil(window_days / slot_days)`` slots.
    """
    ts = np.asarray(timestamps, np.int64)
    if ts.size == 0:
        return PriorTable(np.full((1, n_items), -np.log(max(n_items, 1)), np.float32), np.zeros(0, np.int32), 1.0)
    span_days = (int(ts.max()) - int(ts.min())) / DAY_S + 1
    slot_days = max(1.0, float(np.ceil(span_days * n_items / max_cells)))
    slot = ((ts - ts.min()) // int(slot_days * DAY_S)).astype(np.int64)
    n_slots = int(slot.max()) + 1
    counts = np.zeros((n_slots + 1, n_items), np.float64)
    np.add.at(counts, (slot + 1, np.asarray(item_row, np.int64)), 1.0)
    cum = np.cumsum(counts, axis=0)  # cum[s] = examples in slots < s
    w = max(1, int(np.ceil(window_days / slot_days)))
    lagged = np.concatenate([np.zeros((w, n_items)), cum[:-w]]) if w <= n_slots else np.zeros_like(cum)
    window = cum - lagged  # examples in slots [s - w, s)
    log_prior = np.log((window + alpha) / (window.sum(1, keepdims=True) + alpha * n_items)).astype(np.float32)
    return PriorTable(log_prior, slot.astype(np.int32), slot_days)


def smoothed_log_q(item_counts: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """log of the additively smoothed training frequency q_i = (c_i + a) / (sum c + a N), float32 [N]."""
    c = np.asarray(item_counts, np.float64)
    return np.log((c + alpha) / (c.sum() + alpha * len(c))).astype(np.float32)
