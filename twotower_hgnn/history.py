"""As-of user history, the core shared by training, evaluation and serving.

Per query (user u, time t) and item type: the mean item embedding (:func:`history_means`) and the most
recent item-id tokens (:func:`history_id_tokens`) of u's counted interactions in ``[t - window, t)``
(strictly before t; semantics in :mod:`twotower_hgnn.features`), the user bundle built from them
(:func:`user_features_as_of`), and the leave-one-out variant of training examples (whole training
history minus the target item).

**How (vectorised).** The log is sorted by (user, timestamp); a per-type running sum of embeddings
and counts turns every window sum into ``C[hi] - C[lo]`` with ``hi``/``lo`` found by one
``np.searchsorted`` on a composite (user, time) key. Running sums are float64 and restart every
``chunk_rows`` log rows (chunks end on user boundaries) so that memory stays bounded and the
difference of two large prefix sums does not lose precision.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from twotower_hgnn.arrays import sorted_unique
from twotower_hgnn.data.schema import Dataset, EVENTS, ITEM_TYPES, event_mask
from twotower_hgnn.features_bundles import DAY_S, FeatureError, FeatureVocab, UserFeatures, take_users
from twotower_hgnn.features_encoding import _interactions_frame, assemble_user_features


# ----------------------------------------------------------------------------------------------
# As-of history means (the core; shared by training, evaluation and serving)
# ----------------------------------------------------------------------------------------------
def _prefix_sum(x: np.ndarray, block: int = 256) -> np.ndarray:
    """float64 ``[m + 1, d]`` prefix sums of ``x`` ``[m, d]`` (row 0 = 0).

    Blocked: NumPy's cumsum along axis 0 of a wide C-order array was measured 4-8x slower than a
    cumsum inside blocks of ``block`` rows plus a cumsum of the block totals.
    """
    m, d = x.shape
    nb = -(-m // block)
    out = np.zeros((nb * block + 1, d), np.float64)
    body = out[1:].reshape(nb, block, d)
    body.reshape(-1, d)[:m] = x
    np.cumsum(body, axis=1, out=body)
    body[1:] += np.cumsum(body[:-1, -1, :], axis=0)[:, None, :]
    return out[: m + 1]


def _sorted_log(log_user, log_time, log_item, log_type, q_user: np.ndarray):
    """The log sorted by (user, time) as int64 arrays, plus ``t0`` and ``span`` of the composite key.

    Composite key ``user * span + (time - t0)``: sorted because rows are sorted by (user, time). Query
    times are clipped into ``[0, span - 1]``, which keeps "strictly before" exact (span > t_max - t0 + 1).
    """
    order = np.lexsort((np.asarray(log_time), np.asarray(log_user)))
    u, t, it, ty = (np.asarray(a, np.int64)[order] for a in (log_user, log_time, log_item, log_type))
    t0 = int(t.min())
    span = int(t.max()) - t0 + 2
    if (int(max(u.max(), q_user.max())) + 1) * span >= 2**62:
        raise FeatureError("user count x time span overflows the int64 (user, time) key")
    return u, t, it, ty, t0, span


def _check_types(log_type: np.ndarray, n_types: int) -> None:
    if len(log_type) and int(np.max(log_type)) >= n_types:
        raise FeatureError(
            f"history: item type code {int(np.max(log_type))} with n_types={n_types} (pass len(Dataset.item_types))"
        )


def history_means(
    log_user: np.ndarray,
    log_time: np.ndarray,
    log_item: np.ndarray,
    log_type: np.ndarray,
    item_emb: np.ndarray,
    q_user: np.ndarray,
    q_time: np.ndarray,
    window_s: float | None,
    n_types: int = len(ITEM_TYPES),
    chunk_rows: int = 1 << 18,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-query, per-type mean embedding of the log rows of ``q_user`` with time in [q_time - w, q_time).

    Args:
      log_user/log_time/log_item/log_type: ``[M]`` interaction rows (any order; only counted rows).
      item_emb: float ``[n_items, d]`` (indexed by ``log_item``).
      q_user: int ``[Q]``; q_time: int64 ``[Q]`` (as-of times, exclusive).
      window_s: window length in seconds; None = everything before ``q_time``.
      n_types: the data's number of item types (``len(Dataset.item_types)``; a ``log_type`` at or above it
        is a FeatureError, never a silently dropped row).

    Returns:
      means float32 ``[Q, n_types, d]`` (zeros where count is 0) and counts int64 ``[Q, n_types]``.
    """
    q_user = np.asarray(q_user, np.int64)
    q_time = np.asarray(q_time, np.int64)
    d = int(item_emb.shape[1])
    Q = q_user.shape[0]
    _check_types(log_type, n_types)
    means = np.zeros((Q, n_types, d), np.float32)
    counts = np.zeros((Q, n_types), np.int64)
    if Q == 0 or len(log_user) == 0:
        return means, counts
    u, t, it, ty, t0, span = _sorted_log(log_user, log_time, log_item, log_type, q_user)
    q_order = np.argsort(q_user, kind="stable")
    qs_user = q_user[q_order]
    hi_t = np.clip(q_time[q_order] - t0, 0, span - 1)
    if window_s is None:
        lo_t = np.zeros_like(hi_t)
    else:
        lo_t = np.clip(q_time[q_order] - int(np.ceil(window_s)) - t0, 0, span - 1)
    # Chunks of whole users of about chunk_rows rows (at most chunk_rows + the largest user's rows).
    m = len(u)
    ustart = np.concatenate([[0], np.flatnonzero(np.diff(u)) + 1, [m]])
    cuts = ustart[np.searchsorted(ustart, np.arange(chunk_rows, m, chunk_rows), side="left")]
    bounds = sorted_unique(np.concatenate([[0], cuts, [m]]))
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        cu, ct, ci, cty = u[r0:r1], t[r0:r1], it[r0:r1], ty[r0:r1]
        qa = int(np.searchsorted(qs_user, cu[0], side="left"))
        qb = int(np.searchsorted(qs_user, cu[-1], side="right"))
        if qb <= qa:
            continue
        key = cu * span + (ct - t0)
        qu = qs_user[qa:qb]
        hi = np.searchsorted(key, qu * span + hi_t[qa:qb], side="left")
        lo = np.searchsorted(key, qu * span + lo_t[qa:qb], side="left")
        dst = q_order[qa:qb]
        for k in range(n_types):
            is_k = cty == k
            cnt = np.concatenate([[0], np.cumsum(is_k)])  # type-k rows among the first r rows
            c_hi, c_lo = cnt[hi], cnt[lo]
            c = c_hi - c_lo
            # prefix sums over this type's rows only; float64 so the difference of two prefixes is exact
            # enough (float32 would lose ~1e-3 after 1e5 rows). Gather first, then widen: never the table.
            csum = _prefix_sum(item_emb[ci[is_k]])
            counts[dst, k] = c
            means[dst, k] = ((csum[c_hi] - csum[c_lo]) / np.maximum(c, 1)[:, None]).astype(np.float32)
    return means, counts


def history_id_tokens(
    log_user: np.ndarray,
    log_time: np.ndarray,
    log_item: np.ndarray,
    log_type: np.ndarray,
    q_user: np.ndarray,
    q_time: np.ndarray,
    window_s: float | None,
    length: int,
    n_types: int = len(ITEM_TYPES),
) -> np.ndarray:
    """int32 ``[Q, n_types, length]``: per query and type, the ``length`` most recent log items with time
    in ``[q_time - window, q_time)`` as tokens (global id + 1), newest first, 0-padded.

    Same as-of rule as :func:`history_means` (strictly before ``q_time``); ties in time keep log order.
    """
    q_user = np.asarray(q_user, np.int64)
    q_time = np.asarray(q_time, np.int64)
    _check_types(log_type, n_types)
    out = np.zeros((q_user.shape[0], n_types, int(length)), np.int32)
    if length == 0 or q_user.size == 0 or len(log_user) == 0:
        return out
    u, t, it, ty, t0, span = _sorted_log(log_user, log_time, log_item, log_type, q_user)
    hi_q = q_user * span + np.clip(q_time - t0, 0, span - 1)
    lo_t = np.zeros_like(q_time) if window_s is None else np.clip(q_time - int(np.ceil(window_s)) - t0, 0, span - 1)
    lo_q = q_user * span + lo_t
    back = np.arange(1, int(length) + 1, dtype=np.int64)
    for k in range(n_types):
        rows = np.flatnonzero(ty == k)
        if rows.size == 0:
            continue
        key = u[rows] * span + (t[rows] - t0)
        hi = np.searchsorted(key, hi_q, side="left")
        lo = np.searchsorted(key, lo_q, side="left")
        pos = hi[:, None] - back[None, :]
        ok = pos >= lo[:, None]
        out[:, k, :] = np.where(ok, it[rows][np.maximum(pos, 0)] + 1, 0)
    return out


def _counted_log(
    df: pd.DataFrame, ds: Dataset, history_events: Sequence[str], users: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """int64 ``(user, time, item, item type)`` of the rows of ``df`` whose event counts as history, only
    of the users flagged in ``users`` (bool ``[num_users]``; None = every user). Columns are read as
    arrays and only the kept rows are copied: a frame-level row filter would copy every column of the
    log (~5 GB of a 250M-row training part) to keep four."""
    codes = np.asarray([EVENTS.index(e) for e in history_events], np.int64)
    u = df["user_idx"].to_numpy()
    keep = event_mask(df["event_code"].to_numpy(), codes)
    if users is not None:
        keep &= users[u]
    rows = np.flatnonzero(keep)
    item = df["item_idx"].to_numpy()[rows].astype(np.int64)
    return (
        u[rows].astype(np.int64),
        df["timestamp"].to_numpy()[rows].astype(np.int64),
        item,
        ds.item_type_codes()[item].astype(np.int64),
    )


def _music_rows(ds: Dataset, user_idx: np.ndarray, d_music: int) -> tuple[np.ndarray, np.ndarray]:
    if d_music == 0 or ds.music is None:
        return np.zeros((len(user_idx), d_music), np.float32), np.zeros(len(user_idx), np.float32)
    m = np.asarray(ds.music, np.float32)[user_idx]
    ok = np.isfinite(m).all(axis=1)  # a NaN row means "no music vector" for that user
    return np.where(ok[:, None], m, 0.0).astype(np.float32), ok.astype(np.float32)


def user_features_as_of(
    ds: Dataset,
    interactions: Any,
    user_idx: Any,
    as_of_time: Any,
    item_emb: np.ndarray,
    vocab: FeatureVocab,
    chunk_rows: int = 1 << 18,
) -> UserFeatures:
    """User features of ``user_idx`` ``[Q]`` as of ``as_of_time`` (scalar or ``[Q]``; exclusive).

    ``interactions`` is the log the history is read from (the training part of a split at
    evaluation time, the full log at serving time); ``item_emb`` ``[n_items, d]`` over all items.
    """
    df = _interactions_frame(interactions)
    user_idx = np.asarray(user_idx, np.int64).reshape(-1)
    if user_idx.size and (user_idx.min() < 0 or user_idx.max() >= ds.num_users):
        raise FeatureError(f"user_idx out of range [0, {ds.num_users})")
    item_emb = np.asarray(item_emb)
    if item_emb.shape != (ds.num_items, vocab.d_hist):
        raise FeatureError(f"item_emb has shape {item_emb.shape}, expected ({ds.num_items}, {vocab.d_hist})")
    as_of = np.broadcast_to(np.asarray(as_of_time, np.int64), user_idx.shape)
    member = None
    if user_idx.size < ds.num_users // 2:  # few users (a step budget, a user sample): only their log rows
        member = np.zeros(ds.num_users, bool)
        member[user_idx] = True
    lu, lt, li, lty = _counted_log(df, ds, vocab.history_events, member)
    window = None if vocab.history_days is None else vocab.history_days * DAY_S
    n_types = len(ds.item_types)
    means, counts = history_means(lu, lt, li, lty, item_emb, user_idx, as_of, window, n_types, chunk_rows=chunk_rows)
    ids = history_id_tokens(lu, lt, li, lty, user_idx, as_of, window, vocab.id_history_len, n_types)
    music, has_music = _music_rows(ds, user_idx, vocab.d_music)
    users = ds.users
    return assemble_user_features(
        vocab,
        users["age"].to_numpy()[user_idx],
        users["country"].to_numpy()[user_idx],
        music,
        has_music,
        means,
        counts,
        ids,
    )


# ----------------------------------------------------------------------------------------------
# Leave-one-out history (training examples)
# ----------------------------------------------------------------------------------------------
def _leave_one_out_features(
    ds: Dataset,
    train: pd.DataFrame,
    users: np.ndarray,
    items: np.ndarray,
    item_emb: np.ndarray,
    vocab: FeatureVocab,
    target_type: str,
) -> UserFeatures:
    """Features of ``users[e]`` from their whole training history minus every row of ``items[e]`` ``[E]``."""
    end = int(train["timestamp"].max()) + 1 if len(train) else 0
    uniq, inv = np.unique(users, return_inverse=True)
    f = take_users(user_features_as_of(ds, train, uniq, end, item_emb, vocab), inv)
    keys, counts = history_pair_counts(ds, train, vocab, end)
    items = np.asarray(items, np.int64)[:, None]
    n_ui = pair_multiplicity(keys, counts, users.astype(np.int64)[:, None] * int(ds.num_items) + items)
    remove_from_history(f, ds.item_type_index(target_type), items, n_ui, item_emb, np.ones(items.shape, bool))
    return f


def history_pair_counts(ds: Dataset, train: pd.DataFrame, vocab: FeatureVocab, end: int):
    """(sorted int64 keys ``user * n_items + item``, multiplicities) of the counted history rows in the
    window ending at ``end`` (the rows a held-out item removes from a user's features)."""
    lu, lt, li, _ = _counted_log(train, ds, vocab.history_events)
    if vocab.history_days is not None:
        inside = lt >= end - int(np.ceil(vocab.history_days * DAY_S))
        lu, li = lu[inside], li[inside]
    return np.unique(lu.astype(np.int64) * int(ds.num_items) + li, return_counts=True)


def pair_multiplicity(keys: np.ndarray, counts: np.ndarray, q: np.ndarray) -> np.ndarray:
    """int64, shape of ``q``: the multiplicity of each key of ``q`` among ``keys`` (0 where absent)."""
    if keys.size == 0:
        return np.zeros(np.shape(q), np.int64)
    pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
    return np.where(keys[pos] == q, counts[pos], 0)


def remove_from_history(
    f: UserFeatures, k: int, items: np.ndarray, n_ui: np.ndarray, item_emb: np.ndarray, mask: np.ndarray
) -> None:
    """Removes from type ``k`` of the bundle ``f`` (in place, ``[B]`` rows) ``n_ui[b, m]`` history rows of
    item ``items[b, m]`` (global ids, ``[B, M]``; ``mask`` False = padding): the mean, count and flag are
    recomputed without them and their id tokens are dropped."""
    c = np.rint(np.expm1(f.history_count[:, k])).astype(np.int64)
    rest = c - n_ui.sum(1)
    removed = np.einsum("bm,bmd->bd", n_ui.astype(np.float64), np.asarray(item_emb, np.float32)[items])
    total = f.history_mean[:, k] * c[:, None] - removed
    f.history_mean[:, k] = np.where(rest[:, None] > 0, total / np.maximum(rest, 1)[:, None], 0.0)
    f.history_count[:, k] = np.log1p(np.maximum(rest, 0)).astype(np.float32)
    f.has_history[:, k] = (rest > 0).astype(np.float32)
    if f.history_ids.shape[-1]:
        tok = np.where(mask, items + 1, -1)
        hit = (f.history_ids[:, k][:, :, None] == tok[:, None, :]).any(-1)
        f.history_ids[:, k] = np.where(hit, 0, f.history_ids[:, k])
