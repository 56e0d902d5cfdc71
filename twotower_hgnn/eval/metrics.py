"""Offline ranking metrics: the paper's App. A (HR@K, MRR, Coverage) plus Recall@K, NDCG@K and the
long-tail view.

Inputs
------
* ``ranked``: int ``[U, L]`` — row ``u`` is user ``u``'s recommendation list, global item ids (rows of
  ``Dataset.items``), best first; ``-1`` is padding (never a hit, never an item). ``L`` is usually 100.
* ``relevant``: :class:`ItemSets` with ``U`` rows — user ``u``'s relevant (held-out) items.
* ``catalogue``: sorted unique int64 global ids of the items that may be recommended (one item type).

Definitions (positions ``p`` start at 1; ``rel_u`` is user ``u``'s relevant set, never empty)
-----------------------------------------------------------------------------------------------
* ``hit_u(p)`` — the item at position ``p`` is in ``rel_u`` **and** is the first occurrence of that id
  in the row: a repeated id counts once, at its first position; later copies are misses (so a list with
  duplicates can never score higher than the same list without them).
* ``HR@K``      = mean_u [ exists p <= K with hit_u(p) ]                        (paper: K = 10)
* ``MRR@D``     = mean_u 1 / min{p <= D : hit_u(p)}, 0 when no hit in the top D  (paper: D = 100; the
  first relevant item counts: the paper's r_u with several relevant items)
* ``Recall@K``  = mean_u |{p <= K : hit_u(p)}| / |rel_u|
* ``NDCG@K``    = mean_u DCG_u / IDCG_u; DCG_u = sum_{p<=K} hit_u(p) / log2(p + 1) (binary relevance),
  IDCG_u = sum_{p=1}^{min(|rel_u|, K)} 1 / log2(p + 1)
* ``Coverage@D`` = |union_u {ranked[u, p] : p <= D, not padding}| / |catalogue|  (paper: D = 100)
* ``n_users``   = U.

When ``L < K`` (a catalogue smaller than K) the whole row is used; the metric name keeps its K.

Long-tail view (paper §5.1: "5 popularity tiers, tiers 3-5 the long tail")
-----------------------------------------------------------------------------
:func:`popularity_tiers` buckets the catalogue by **training streams**. Default ``mode="count"``:
equal-size tiers by item count — items sorted by (streams descending, id ascending), tier
``1 + floor(5 * rank / n)``; tier 1 is the most streamed fifth of the catalogue, tiers 3-5 the 60% least
streamed items (items never streamed in training are always in the last tiers). ``mode="share"``:
tiers by cumulative stream share — tier ``1 + floor(5 * S_before)`` where ``S_before`` is the share of all
training streams held by strictly more popular items, so each tier holds about a fifth of the streams.
:func:`long_tail_metrics` then keeps the users with at least one relevant item in the tail, restricts
their relevant sets to tail items, scores the **unchanged** full rankings (ranks still count head items
above a tail hit) and reports Coverage as the share of the tail items that appear in the top D of any user
of the segment (all users passed in, not only those with a tail relevant item).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from twotower_hgnn.arrays import sorted_unique

METRIC_NAMES: tuple[str, ...] = ("hr", "mrr", "coverage", "recall", "ndcg")


@dataclasses.dataclass(frozen=True)
class ItemSets:
    """Per-row item sets in CSR form (one row per user).

    Attributes:
      indptr: int64 ``[n_rows + 1]``, non-decreasing, ``indptr[0] == 0``.
      indices: int64 ``[nnz]`` global item ids; sorted and unique within each row.
    """

    indptr: np.ndarray
    indices: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    def sizes(self) -> np.ndarray:
        """int64 ``[n_rows]`` set sizes."""
        return np.diff(self.indptr)

    def row(self, i: int) -> np.ndarray:
        return self.indices[self.indptr[i] : self.indptr[i + 1]]

    def row_ids(self) -> np.ndarray:
        """int64 ``[nnz]`` the row of every stored item."""
        return np.repeat(np.arange(self.n_rows, dtype=np.int64), self.sizes())

    def to_lists(self) -> list[list[int]]:
        return [self.row(i).tolist() for i in range(self.n_rows)]

    @classmethod
    def from_pairs(cls, rows: np.ndarray, items: np.ndarray, n_rows: int) -> "ItemSets":
        """Builds sets from (row, item) pairs; duplicates are merged, rows outside ``[0, n_rows)`` raise."""
        rows = np.asarray(rows, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if rows.shape != items.shape or rows.ndim != 1:
            raise ValueError(f"ItemSets.from_pairs: rows {rows.shape} and items {items.shape} must be equal 1-d")
        if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
            raise ValueError(f"ItemSets.from_pairs: row ids must lie in [0, {n_rows}), got {rows.min()}..{rows.max()}")
        if items.size and items.min() < 0:
            raise ValueError(f"ItemSets.from_pairs: item ids must be >= 0, got {items.min()}")
        stride = int(items.max()) + 1 if items.size else 1
        keys = sorted_unique(rows * stride + items)
        r, it = keys // stride, keys % stride
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=n_rows), out=indptr[1:])
        return cls(indptr=indptr, indices=it.astype(np.int64))

    @classmethod
    def from_lists(cls, lists: list[list[int]] | list[np.ndarray]) -> "ItemSets":
        sizes = np.array([len(x) for x in lists], dtype=np.int64)
        items = (
            np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
            if lists and sizes.sum()
            else np.zeros(0, np.int64)
        )
        return cls.from_pairs(np.repeat(np.arange(len(lists), dtype=np.int64), sizes), items, len(lists))

    def take(self, rows: np.ndarray) -> "ItemSets":
        """The sets of ``rows`` (int array, any order, repeats allowed), vectorised."""
        rows = np.asarray(rows, dtype=np.int64)
        sizes = self.sizes()[rows]
        indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
        np.cumsum(sizes, out=indptr[1:])
        gather = np.repeat(self.indptr[rows] - indptr[:-1], sizes) + np.arange(indptr[-1], dtype=np.int64)
        return ItemSets(indptr=indptr, indices=self.indices[gather])

    def filter(self, keep: np.ndarray) -> "ItemSets":
        """Keeps the stored items where the bool ``keep [nnz]`` is True (rows may become empty)."""
        keep = np.asarray(keep, dtype=bool)
        indptr = np.zeros(self.n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.row_ids()[keep], minlength=self.n_rows), out=indptr[1:])
        return ItemSets(indptr=indptr, indices=self.indices[keep])

    def contains(self, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """bool, shape of ``items``: is ``items[...]`` in set ``rows[...]`` (broadcast); negative items -> False."""
        rows = np.asarray(rows, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        stride = max(int(self.indices.max()) + 1 if self.nnz else 1, int(items.max()) + 1 if items.size else 1)
        keys = self.row_ids() * stride + self.indices  # sorted: rows ascending, items sorted within a row
        q = rows * stride + np.maximum(items, 0)
        pos = np.minimum(np.searchsorted(keys, q), max(self.nnz - 1, 0))
        return (items >= 0) & (self.nnz > 0) & (keys[pos] == q if self.nnz else np.zeros(q.shape, bool))


def first_occurrence(ranked: np.ndarray) -> np.ndarray:
    """bool ``[U, L]``: True where the id is not padding and does not appear earlier in its row."""
    order = np.argsort(ranked, axis=1, kind="stable")  # stable: equal ids keep position order
    srt = np.take_along_axis(ranked, order, axis=1)
    first_sorted = np.ones_like(srt, dtype=bool)
    first_sorted[:, 1:] = srt[:, 1:] != srt[:, :-1]
    first = np.empty_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, axis=1)
    return first & (ranked >= 0)


def hit_matrix(ranked: np.ndarray, relevant: ItemSets) -> np.ndarray:
    """bool ``[U, L]`` of ``hit_u(p)`` (see the module docstring)."""
    u = np.arange(ranked.shape[0], dtype=np.int64)[:, None]
    return relevant.contains(u, ranked) & first_occurrence(ranked)


def _check_inputs(ranked: np.ndarray, relevant: ItemSets, catalogue: np.ndarray, name: str) -> np.ndarray:
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError(
            f"{name}: ranked must be a 2-d integer array [users, list length], got {ranked.dtype} {ranked.shape}"
        )
    if relevant.n_rows != ranked.shape[0]:
        raise ValueError(f"{name}: {ranked.shape[0]} ranked rows but {relevant.n_rows} relevant sets")
    sizes = relevant.sizes()
    if sizes.size and sizes.min() == 0:
        raise ValueError(
            f"{name}: user row {int(np.argmin(sizes))} has no relevant item; the protocol drops such users"
        )
    ranked = ranked.astype(np.int64, copy=False)
    bad = (ranked < -1) | ((ranked >= 0) & ~_isin_sorted(ranked, catalogue))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"{name}: ranked[{r}, {c}] = {ranked[r, c]} is neither -1 (padding) nor a catalogue item "
            f"({catalogue.size} items, ids {catalogue[:1].tolist()}..{catalogue[-1:].tolist()})"
        )
    rbad = ~_isin_sorted(relevant.indices, catalogue)
    if rbad.any():
        raise ValueError(f"{name}: relevant item {relevant.indices[rbad][0]} is not in the catalogue")
    return ranked


def _isin_sorted(x: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    if sorted_ids.size == 0:
        return np.zeros(np.shape(x), dtype=bool)
    lo, hi = int(sorted_ids[0]), int(sorted_ids[-1])
    if hi - lo + 1 == sorted_ids.size:  # a contiguous id range (every catalogue): two compares
        return (x >= lo) & (x <= hi)
    pos = np.minimum(np.searchsorted(sorted_ids, x), sorted_ids.size - 1)
    return sorted_ids[pos] == x


def metric_keys(k: int = 10, depth: int = 100) -> tuple[str, ...]:
    """The stable metric names of a result row, e.g. ("hr@10", "mrr@100", "coverage@100", ...)."""
    return (f"hr@{k}", f"mrr@{depth}", f"coverage@{depth}", f"recall@{k}", f"ndcg@{k}", "n_users")


def coverage(ranked: np.ndarray, items: np.ndarray, depth: int = 100) -> float:
    """Share of ``items`` (sorted unique ids) that appear in some row's top ``depth``."""
    if items.size == 0:
        return 0.0
    top = ranked[:, :depth]
    top = top[top >= 0]
    seen = np.zeros(max(int(items.max()), int(top.max()) if top.size else 0) + 1, dtype=bool)
    seen[top] = True  # a bitmap over ids: O(U * depth), no sort
    return float(seen[items].mean())


def check_rankings(ranked: np.ndarray, relevant: ItemSets, catalogue: np.ndarray, name: str = "metrics") -> np.ndarray:
    """Validates a ranked matrix against its relevant sets and catalogue; returns it as int64."""
    return _check_inputs(ranked, relevant, np.asarray(catalogue, dtype=np.int64), name)


def user_scores(ranked: np.ndarray, relevant: ItemSets, k: int = 10, depth: int = 100) -> np.ndarray:
    """float64 ``[U, 4]``: per user hit@k, reciprocal rank@depth, recall@k, ndcg@k (inputs already checked).

    Computed in blocks of users so memory stays bounded for millions of users.
    """
    if k < 1 or depth < 1:
        raise ValueError(f"k={k} and depth={depth} must be >= 1")
    n = ranked.shape[0]
    out = np.zeros((n, 4), dtype=np.float64)
    for lo in range(0, n, _CHUNK_USERS):
        rows = np.arange(lo, min(lo + _CHUNK_USERS, n))
        out[rows] = _per_user(ranked[rows], relevant.take(rows), k, depth)
    return out


def summarise(
    scores: np.ndarray, ranked: np.ndarray, coverage_items: np.ndarray, k: int = 10, depth: int = 100
) -> dict[str, float]:
    """Result dict (keys from :func:`metric_keys`): mean of ``user_scores`` rows + Coverage of ``ranked``."""
    keys = metric_keys(k, depth)
    n = int(scores.shape[0])
    means = scores.mean(axis=0) if n else np.zeros(4)
    return {
        keys[0]: float(means[0]),
        keys[1]: float(means[1]),
        keys[2]: coverage(ranked, coverage_items, depth),
        keys[3]: float(means[2]),
        keys[4]: float(means[3]),
        "n_users": n,
    }


def compute_metrics(
    ranked: np.ndarray,
    relevant: ItemSets,
    catalogue: np.ndarray,
    k: int = 10,
    depth: int = 100,
    coverage_items: np.ndarray | None = None,
    name: str = "metrics",
) -> dict[str, float]:
    """All metrics of the module docstring for one ranked matrix; keys from :func:`metric_keys`.

    ``coverage_items`` (sorted ids; default the catalogue) is the denominator set of Coverage.
    ``name`` prefixes error messages (e.g. "2T-HGNN/audiobook/warm").
    """
    if k < 1 or depth < 1:
        raise ValueError(f"{name}: k={k} and depth={depth} must be >= 1")
    catalogue = np.asarray(catalogue, dtype=np.int64)
    ranked = _check_inputs(ranked, relevant, catalogue, name)
    cov_items = catalogue if coverage_items is None else np.asarray(coverage_items, dtype=np.int64)
    return summarise(user_scores(ranked, relevant, k, depth), ranked, cov_items, k, depth)


_CHUNK_USERS = 1 << 16


def _per_user(ranked: np.ndarray, relevant: ItemSets, k: int, depth: int) -> np.ndarray:
    """float64 [U, 4]: hit@k, reciprocal rank@depth, recall@k, ndcg@k of every user."""
    hits = hit_matrix(ranked, relevant)
    top_k = hits[:, :k]
    top_d = hits[:, :depth]
    rr = np.where(top_d.any(axis=1), 1.0 / (np.argmax(top_d, axis=1) + 1.0), 0.0)
    n_rel = relevant.sizes().astype(np.float64)
    discount = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = (top_k * discount[: top_k.shape[1]]).sum(axis=1)
    idcg = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(n_rel, k).astype(np.int64)]
    return np.stack([top_k.any(axis=1), rr, top_k.sum(axis=1) / n_rel, dcg / idcg], axis=1)


def popularity_tiers(streams: np.ndarray, n_tiers: int = 5, mode: str = "count") -> np.ndarray:
    """int8 ``[n]`` tier 1..n_tiers (1 = head) of every catalogue item from its training stream count."""
    streams = np.asarray(streams, dtype=np.float64)
    n = streams.shape[0]
    if n_tiers < 1:
        raise ValueError(f"popularity_tiers: n_tiers={n_tiers} must be >= 1")
    order = np.lexsort((np.arange(n), -streams))  # most streamed first, ties by id
    tiers = np.empty(n, dtype=np.int8)
    if mode == "count":
        tiers[order] = 1 + (np.arange(n) * n_tiers) // max(n, 1)
    elif mode == "share":
        total = streams.sum()
        s = streams[order]
        before = (np.cumsum(s) - s) / total if total > 0 else np.ones(n)
        tiers[order] = np.minimum(1 + np.floor(before * n_tiers + 1e-12), n_tiers).astype(np.int8)
    else:
        raise ValueError(f"popularity_tiers: mode must be 'count' or 'share', got {mode!r}")
    return tiers


def restrict(relevant: ItemSets, items: np.ndarray) -> ItemSets:
    """The relevant sets restricted to ``items`` (sorted ids); rows may become empty."""
    return relevant.filter(_isin_sorted(relevant.indices, np.asarray(items, dtype=np.int64)))


def long_tail_metrics(
    ranked: np.ndarray,
    relevant: ItemSets,
    catalogue: np.ndarray,
    tail_items: np.ndarray,
    k: int = 10,
    depth: int = 100,
    name: str = "long_tail",
) -> dict[str, float]:
    """Metrics restricted to the long tail (module docstring): users with a tail relevant item, tail
    relevant items only, unchanged rankings, Coverage over ``tail_items`` (sorted ids)."""
    tail_items = np.asarray(tail_items, dtype=np.int64)
    rel_tail = restrict(relevant, tail_items)
    users = np.flatnonzero(rel_tail.sizes() > 0)
    out = compute_metrics(np.asarray(ranked)[users], rel_tail.take(users), catalogue, k=k, depth=depth, name=name)
    out[f"coverage@{depth}"] = coverage(np.asarray(ranked), tail_items, depth)  # over every user of the segment
    return out
