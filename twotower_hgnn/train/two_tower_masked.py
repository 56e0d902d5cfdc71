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
from typing import Any, Callable

import numpy as np

from twotower_hgnn.arrays import sorted_unique
from twotower_hgnn import features as F
from twotower_hgnn.data.schema import Dataset, EVENTS, event_mask
from twotower_hgnn.history import history_pair_counts, pair_multiplicity, remove_from_history, user_features_as_of
from twotower_hgnn.rng import np_rng
from twotower_hgnn.train.two_tower_batches import batch_rows


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
    keep = event_mask(train["event_code"].to_numpy(), codes) & (item >= start) & (item < stop)
    u_all, i_all = train["user_idx"].to_numpy(np.int64)[keep], item[keep] - start
    ts_all = train["timestamp"].to_numpy(np.int64)[keep]
    pairs = sorted_unique(u_all * (stop - start) + i_all)
    pu, pi = pairs // (stop - start), (pairs % (stop - start)).astype(np.int32)
    users, counts = np.unique(pu, return_counts=True)
    ok = counts >= 2
    sel = np.isin(pu, users[ok])
    users, counts, rows = users[ok], counts[ok], pi[sel]
    end = int(train["timestamp"].max()) + 1 if len(train) else 0
    full = user_features_as_of(ds, train, users, end, item_emb, vocab)
    keys, kc = history_pair_counts(ds, train, vocab, end)
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
    units: UserUnits, pos: np.ndarray, cfg: Any, item_emb: np.ndarray, n_items: int, start: int, type_index: int, rng
) -> F.TwoTowerBatch:
    """The padded batch of the units at positions ``pos``: targets held out of each user's features
    (type ``type_index`` of the history: the target type's position in ``Dataset.item_types``)."""
    cnt = np.diff(units.indptr)[pos]
    width = int(cnt.max()) if len(cnt) else 1
    offs = units.indptr[pos][:, None] + np.arange(width)[None, :]
    cand = units.rows[np.minimum(offs, len(units.rows) - 1)]
    tgt, mask = draw_targets(cnt, cand, cfg.target_frac, cfg.max_targets, rng)
    f = F.take_users(units.full, pos)
    items = tgt.astype(np.int64) + start
    n_ui = np.where(
        mask, pair_multiplicity(units.pair_keys, units.pair_counts, units.users[pos][:, None] * n_items + items), 0
    )
    remove_from_history(f, type_index, items, n_ui, item_emb, mask)
    b, n = cfg.batch_size, len(pos)
    m = np.zeros((b, cfg.max_targets), np.float32)
    m[:n] = mask
    rows = np.zeros((b, cfg.max_targets), np.int32)
    rows[:n] = tgt
    return F.TwoTowerBatch(user=F.pad_users(f, b), item_row=rows, log_q=np.zeros_like(m), mask=m, weight=m)


def units_host_batch(ds: Dataset, units: UserUnits, cfg: Any, item_emb: np.ndarray) -> Callable[[int], F.TwoTowerBatch]:
    """``host_batch(step)``: each epoch a seeded permutation of the users, ``batch_size`` per step."""
    start, _ = F.target_item_range(ds, cfg.target_type)
    k = ds.item_type_index(cfg.target_type)
    cache: dict = {}

    def host_batch(step: int) -> F.TwoTowerBatch:
        pos = batch_rows(len(units), cfg.batch_size, cfg.seed, int(step), cache, stream="2t-units")
        rng = np_rng(cfg.seed, "2t-targets", step)
        return units_batch(units, pos, cfg, item_emb, int(ds.num_items), start, k, rng)

    return host_batch
