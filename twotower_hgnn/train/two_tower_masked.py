"""Leave-many-out training (``example_history="leave_many_out"``): one training unit per user.

Leave-one-out training (one example per positive, its user's whole history minus that item) spends a
user-tower pass and a catalogue softmax on every (user, item) pair, and the user vectors of one user's
~100 examples are nearly identical. Here a step draws ``batch_size`` users; for each it holds out a
random ``target_frac`` of the user's positives (at least 1, at most ``max_targets``, always leaving one
in the history) as targets, builds the user features from the rest of the training history, and scores
every held-out target against the whole catalogue with one logits row — the multinomial likelihood of
denoising autoencoders for collaborative filtering (Liang et al. 2018), kept inside the two-tower
contract: the user tower still sees only demographics and pooled embeddings of history items, and the
item tower is unchanged. The draw of step ``s`` is a pure function of ``(seed, s)`` (resumable).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import numpy as np

from twotower_hgnn import features as F
from twotower_hgnn.data.schema import EVENTS, ITEM_TYPES, Dataset
from twotower_hgnn.history import _counted_log, user_features_as_of
from twotower_hgnn.rng import np_rng


@dataclasses.dataclass
class UserUnits:
    """The per-user training units of a training part (``len`` = users with >= 2 positives).

    Attributes:
      users: int64 ``[U]`` user_idx; indptr: int64 ``[U + 1]``; rows: int32 ``[P]`` each user's distinct
        positive target-type item rows (``rows[indptr[u]:indptr[u + 1]]``).
      full: :class:`UserFeatures` ``[U]`` from each user's whole training history.
      pair_keys / pair_counts: sorted ``user * n_items + item`` keys of the counted history and their
        multiplicities (the rows a held-out item removes from the history mean and count).
      timestamp / item_row / item_counts: the positives as examples (for the popularity prior).
    """

    users: np.ndarray
    indptr: np.ndarray
    rows: np.ndarray
    full: F.UserFeatures
    pair_keys: np.ndarray
    pair_counts: np.ndarray
    timestamp: np.ndarray
    item_row: np.ndarray
    item_counts: np.ndarray

    def __len__(self) -> int:
        return int(self.users.shape[0])


def build_units(ds: Dataset, train: Any, cfg: Any, item_emb: np.ndarray, vocab: F.FeatureVocab) -> UserUnits:
    """:class:`UserUnits` of ``train`` for ``cfg`` (target type, positive events)."""
    start, stop = F.target_item_range(ds, cfg.target_type)
    codes = np.asarray([EVENTS.index(e) for e in cfg.positive_events], np.int64)
    item = train["item_idx"].to_numpy(np.int64)
    keep = np.isin(train["event_code"].to_numpy(), codes) & (item >= start) & (item < stop)
    u_all, i_all = train["user_idx"].to_numpy(np.int64)[keep], item[keep] - start
    ts_all = train["timestamp"].to_numpy(np.int64)[keep]
    pairs = np.unique(u_all * (stop - start) + i_all)
    pu, pi = pairs // (stop - start), (pairs % (stop - start)).astype(np.int32)
    users, counts = np.unique(pu, return_counts=True)
    ok = counts >= 2
    sel = np.isin(pu, users[ok])
    users, counts, rows = users[ok], counts[ok], pi[sel]
    end = int(train["timestamp"].max()) + 1 if len(train) else 0
    full = user_features_as_of(ds, train, users, end, item_emb, vocab)
    lu, lt, li, _ = _counted_log(train, ds, vocab.history_events)
    if vocab.history_days is not None:
        inside = lt >= end - int(np.ceil(vocab.history_days * F.DAY_S))
        lu, li = lu[inside], li[inside]
    keys, kc = np.unique(lu.astype(np.int64) * int(ds.num_items) + li, return_counts=True)
    return UserUnits(
        users=users,
        indptr=np.r_[0, np.cumsum(counts)].astype(np.int64),
        rows=rows,
        full=full,
        pair_keys=keys,
        pair_counts=kc,
        timestamp=ts_all,
        item_row=i_all.astype(np.int32),
        item_counts=np.bincount(i_all, minlength=stop - start).astype(np.int64),
    )


def draw_targets(cnt: np.ndarray, cand: np.ndarray, frac: float, m: int, rng: np.random.Generator):
    """(targets int32 ``[n, m]``, mask bool ``[n, m]``): a random ``frac`` of each row's ``cnt`` candidates
    (``cand`` ``[n, maxlen]``, valid where column < cnt), at least 1, at most ``m`` and ``cnt - 1``."""
    valid = np.arange(cand.shape[1])[None, :] < cnt[:, None]
    keys = np.where(valid, rng.random(cand.shape), np.inf)
    order = np.argsort(keys, axis=1, kind="stable")[:, :m]
    tgt = np.take_along_axis(cand, order, axis=1)
    n_t = np.minimum(np.clip(np.rint(frac * cnt), 1, m), cnt - 1)
    mask = np.arange(tgt.shape[1])[None, :] < n_t[:, None]
    pad = m - tgt.shape[1]
    if pad > 0:
        tgt, mask = np.pad(tgt, ((0, 0), (0, pad))), np.pad(mask, ((0, 0), (0, pad)))
    return np.where(mask, tgt, 0).astype(np.int32), mask


def units_batch(
    units: UserUnits, pos: np.ndarray, cfg: Any, item_emb: np.ndarray, n_items: int, start: int, rng
) -> F.TwoTowerBatch:
    """The padded batch of the units at positions ``pos``: targets held out of each user's features."""
    cnt = np.diff(units.indptr)[pos]
    width = int(cnt.max()) if len(cnt) else 1
    offs = units.indptr[pos][:, None] + np.arange(width)[None, :]
    cand = units.rows[np.minimum(offs, len(units.rows) - 1)]
    tgt, mask = draw_targets(cnt, cand, cfg.target_frac, cfg.max_targets, rng)
    f = F.take_users(units.full, pos)
    k = ITEM_TYPES.index(cfg.target_type)
    q = units.users[pos][:, None] * n_items + (tgt.astype(np.int64) + start)
    at = np.minimum(np.searchsorted(units.pair_keys, q), max(units.pair_keys.size - 1, 0))
    n_ui = np.where(mask & (units.pair_keys[at] == q), units.pair_counts[at], 0) if units.pair_keys.size else 0 * q
    c = np.rint(np.expm1(f.history_count[:, k])).astype(np.int64)
    rest = c - n_ui.sum(1)
    emb = np.asarray(item_emb, np.float32)[tgt.astype(np.int64) + start]  # [n, m, d]
    total = f.history_mean[:, k] * c[:, None] - np.einsum("nm,nmd->nd", n_ui.astype(np.float32), emb)
    f.history_mean[:, k] = np.where(rest[:, None] > 0, total / np.maximum(rest, 1)[:, None], 0.0)
    f.history_count[:, k] = np.log1p(np.maximum(rest, 0)).astype(np.float32)
    f.has_history[:, k] = (rest > 0).astype(np.float32)
    if f.history_ids.shape[-1]:
        tok = np.where(mask, tgt + start + 1, -1)
        hit = (f.history_ids[:, k][:, :, None] == tok[:, None, :]).any(-1)
        f.history_ids[:, k] = np.where(hit, 0, f.history_ids[:, k])
    b, n = cfg.batch_size, len(pos)
    m = np.zeros((b, cfg.max_targets), np.float32)
    m[:n] = mask
    rows = np.zeros((b, cfg.max_targets), np.int32)
    rows[:n] = tgt
    return F.TwoTowerBatch(user=F.pad_users(f, b), item_row=rows, log_q=np.zeros_like(m), mask=m, weight=m)


def units_host_batch(ds: Dataset, units: UserUnits, cfg: Any, item_emb: np.ndarray) -> Callable[[int], F.TwoTowerBatch]:
    """``host_batch(step)``: each epoch a seeded permutation of the users, ``batch_size`` per step."""
    start, _ = F.target_item_range(ds, cfg.target_type)
    n, spe = len(units), max(1, math.ceil(len(units) / cfg.batch_size))

    def host_batch(step: int) -> F.TwoTowerBatch:
        epoch, at = divmod(int(step), spe)
        perm = np_rng(cfg.seed, "2t-units", epoch).permutation(n)
        pos = perm[at * cfg.batch_size : (at + 1) * cfg.batch_size]
        return units_batch(units, pos, cfg, item_emb, int(ds.num_items), start, np_rng(cfg.seed, "2t-targets", step))

    return host_batch
