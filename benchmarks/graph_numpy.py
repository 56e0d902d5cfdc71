"""The in-memory NumPy graph builder that the log queries replaced (steps 1-5 of :mod:`twotower_hgnn.graph`).

Pure NumPy over index arrays: per-user sequences, windowed pair keys ``min*n + max`` fed in chunks to a
hash-partitioned de-duplicating counter, and the top-k co-listened neighbours of each item -- a
home-made out-of-core engine, kept outside the package as the reference of ``benchmarks/graph_engine.py``
(the speed comparison with DuckDB), of ``benchmarks/log_golden.py`` (the golden digests the engines are
checked against) and of the tests that compare the engines' graphs with it. Its edges equal the
engines' bit for bit. Entry point: :func:`build_graph_numpy`, :func:`twotower_hgnn.graph.build_graph`'s
contract.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from twotower_hgnn.arrays import sorted_unique
from twotower_hgnn.data.schema import Dataset
from twotower_hgnn.graph import GraphConfig, _edge_rows, default_graph_config, graph_from_pairs

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _user_sequences(
    users: np.ndarray, items: np.ndarray, cap: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(user, item) in (user, time) order, first occurrence only, capped to the most recent ``cap``.

    Inputs must already be in time order. Returns (users, items, counts per present user, dropped rows).
    """
    order = np.argsort(users, kind="stable")  # stable: time order within a user
    u, it = users[order], items[order]
    n = np.int64(max(int(it.max()) + 1, 1)) if it.size else np.int64(1)
    key = u.astype(np.int64) * n + it
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(key.shape[0], bool)
    keep[first] = True
    u, it = u[keep], it[keep]
    starts = np.flatnonzero(np.concatenate([[True], u[1:] != u[:-1]])) if u.size else np.zeros(0, np.int64)
    counts = np.diff(np.concatenate([starts, [u.size]])).astype(np.int64)
    dropped = 0
    if cap is not None and counts.size and counts.max() > cap:
        pos = np.arange(u.size) - np.repeat(starts, counts)
        m = np.repeat(counts, counts)
        keep = pos >= m - cap  # most recent cap items
        dropped = int((~keep).sum())
        u, it = u[keep], it[keep]
        counts = np.minimum(counts, cap)
    return u, it, counts, dropped


def _pair_counts(counts: np.ndarray, window: int | None) -> tuple[int, int]:
    """(pairs generated with the window, all within-user pairs) for sequence lengths ``counts``."""
    m = counts.astype(np.float64)
    all_pairs = m * (m - 1) / 2
    if window is None:
        gen = all_pairs
    else:
        c = np.minimum(window, m - 1)
        gen = c * m - c * (c + 1) / 2
    return int(gen.sum()), int(all_pairs.sum())


def _run_lengths(sorted_keys: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(unique keys, int32 counts or summed weights) of a sorted key array."""
    if sorted_keys.size == 0:
        return sorted_keys, np.zeros(0, np.int32)
    starts = np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]]))
    if weights is None:
        c = np.diff(np.append(starts, sorted_keys.size))
    else:
        c = np.add.reduceat(weights.astype(np.int64), starts)
    return sorted_keys[starts], np.minimum(c, np.iinfo(np.int32).max).astype(np.int32)


class _PartitionedCounter:
    """Counts int64 keys in hash partitions; each partition compacts to sorted (unique keys, counts).

    A partition compacts when its pending raw keys reach ``max(compact_at, current size)`` (geometric,
    so total work stays O(n log n)); merging two sorted runs uses a stable (timsort) argsort, linear.
    """

    def __init__(self, n_parts: int, compact_at: int):
        self.n_parts = n_parts
        self.compact_at = compact_at
        self.keys: list[np.ndarray] = [np.zeros(0, np.int64)] * n_parts
        self.cnts: list[np.ndarray] = [np.zeros(0, np.int32)] * n_parts
        self.pending: list[list[np.ndarray]] = [[] for _ in range(n_parts)]
        self.pending_n = np.zeros(n_parts, np.int64)

    def add(self, keys: np.ndarray) -> None:
        if self.n_parts == 1:
            parts = [keys]
        else:
            h = ((keys.astype(np.uint64) * _GOLDEN) >> np.uint64(40)) % np.uint64(self.n_parts)
            h = h.astype(np.uint16)
            order = np.argsort(h, kind="stable")  # radix sort on uint16
            bounds = np.concatenate([[0], np.cumsum(np.bincount(h, minlength=self.n_parts))])
            ks = keys[order]
            parts = [ks[bounds[p] : bounds[p + 1]] for p in range(self.n_parts)]
        for p, kp in enumerate(parts):
            if kp.size:
                self.pending[p].append(kp)
                self.pending_n[p] += kp.size
                if self.pending_n[p] >= max(self.compact_at, self.keys[p].size):
                    self._compact(p)

    def _compact(self, p: int) -> None:
        if not self.pending[p]:
            return
        new = np.concatenate(self.pending[p])
        self.pending[p], self.pending_n[p] = [], 0
        new.sort()
        k, c = _run_lengths(new)
        del new
        if self.keys[p].size:
            allk = np.concatenate([self.keys[p], k])
            allc = np.concatenate([self.cnts[p], c])
            order = np.argsort(allk, kind="stable")  # two sorted runs: timsort merges in linear time
            k, c = _run_lengths(allk[order], allc[order])
        self.keys[p], self.cnts[p] = k, c

    def collect(self, min_count: int, with_counts: bool) -> tuple[int, np.ndarray, np.ndarray | None]:
        """(distinct keys, keys with count >= min_count, their counts or None), freeing partitions as
        they are copied into one preallocated array (no 2x concatenation peak)."""
        for p in range(self.n_parts):
            self._compact(p)
        distinct = int(sum(k.size for k in self.keys))
        masks = [c >= min_count for c in self.cnts]
        total = int(sum(int(m.sum()) for m in masks))
        keys = np.empty(total, np.int64)
        cnts = np.empty(total, np.int32) if with_counts else None
        pos = 0
        for p in range(self.n_parts):
            m = masks[p]
            k = int(m.sum())
            keys[pos : pos + k] = self.keys[p][m]
            if cnts is not None:
                cnts[pos : pos + k] = self.cnts[p][m]
            pos += k
            self.keys[p], self.cnts[p], masks[p] = np.zeros(0, np.int64), np.zeros(0, np.int32), None
        return distinct, keys, cnts


def _generate_pairs(
    u: np.ndarray,
    it: np.ndarray,
    counts: np.ndarray,
    window: int | None,
    n_items: int,
    counter: _PartitionedCounter,
    chunk: int,
    progress: Any = None,
) -> int:
    """Feeds canonical pair keys of each user's sequence into ``counter``; returns raw pairs generated.
    ``progress``: a ``tracking.Progress`` advanced by the pairs of each chunk (or None)."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    rem = np.repeat(starts + counts, counts) - np.arange(u.size) - 1  # partners left after each position
    max_k = int(counts.max() - 1) if counts.size else 0
    if window is not None:
        max_k = min(max_k, window)
    idx = np.arange(u.size, dtype=np.int64)
    it64 = it.astype(np.int64)
    total = 0
    for k in range(1, max_k + 1):
        idx = idx[rem[idx] >= k]
        if idx.size == 0:
            break
        for s in range(0, idx.size, chunk):
            sl = idx[s : s + chunk]
            a, b = it64[sl], it64[sl + k]
            key = np.minimum(a, b) * np.int64(n_items) + np.maximum(a, b)
            counter.add(key)
            total += int(sl.size)
            if progress is not None:
                progress.update(int(sl.size))
    return total


def _count_pairs(
    u: np.ndarray, it: np.ndarray, counts: np.ndarray, n_items: int, window: int | None, chunk_pairs: int
) -> tuple[_PartitionedCounter, int, int, int]:
    """Steps 3-4: (counter holding every windowed pair, pairs generated, all within-user pairs, partitions)."""
    expected, all_pairs = _pair_counts(counts, window)
    n_parts = max(1, min(4096, math.ceil(expected / chunk_pairs)))
    counter = _PartitionedCounter(n_parts, compact_at=max(chunk_pairs // n_parts, 1))
    from twotower_hgnn.tracking import Progress  # console only (a terminal); changes nothing computed

    with Progress(expected, desc="[graph] co-listening pairs", unit="pairs", enabled=None, final="shown") as prog:
        generated = _generate_pairs(u, it, counts, window, n_items, counter, chunk_pairs, prog)
    assert generated == expected, (generated, expected)
    return counter, generated, all_pairs, n_parts


def _directed_keys(keys: np.ndarray, c: np.ndarray, n: np.int64, cmax: int, src_is_min: bool, chunk: int) -> np.ndarray:
    """int64 ``(src * (C+1) + (C - count)) * n + dst`` per undirected key ``min*n + max`` (in chunks)."""
    out = np.empty(keys.size, np.int64)
    for s in range(0, keys.size, chunk):
        k = keys[s : s + chunk]
        lo, hi = k // n, k % n
        src, dst = (lo, hi) if src_is_min else (hi, lo)
        out[s : s + chunk] = (src * (cmax + 1) + (cmax - np.minimum(c[s : s + chunk], cmax))) * n + dst
    return out


def _top_ranked(pk: np.ndarray, k: int, per_src: np.int64, chunk: int) -> np.ndarray:
    """Entries of a *sorted* directed-key array with rank < k within their source (chunked scan)."""
    kept = []
    s, n = 0, pk.size
    while s < n:
        e = min(s + chunk, n)
        if e < n:  # extend to the end of the last source so ranks never straddle chunks
            e = int(np.searchsorted(pk, (pk[e - 1] // per_src + 1) * per_src, side="left"))
        src = pk[s:e] // per_src
        starts = np.flatnonzero(np.concatenate([[True], src[1:] != src[:-1]]))
        rank = np.arange(src.size) - np.repeat(starts, np.diff(np.append(starts, src.size)))
        kept.append(pk[s:e][rank < k])
        s = e
    return np.concatenate(kept) if kept else np.zeros(0, np.int64)


def _topk_pairs(keys: np.ndarray, c: np.ndarray, k: int, n_items: int, chunk: int) -> np.ndarray:
    """Sorted canonical keys ``min*n + max`` of the pairs in the top-k (by count desc, then smaller
    neighbour id) of either endpoint.

    A directed pair is one int64 key ``src | (C - count) | dst`` (22 + 15 + 22 bits at paper scale), so
    ranking is an in-place ``np.sort``. An item's neighbours split into those with a larger id (it is
    the pair's min) and a smaller id (it is the max); the top-k of the union is the top-k of the two
    sides' top-k candidates, so each side is sorted and ranked alone (one key array in memory at a
    time) and only <= 2k candidates per item are ranked again.
    """
    if keys.size == 0:
        return np.zeros(0, np.int64)
    cmax = int(min(int(c.max()), 2**15 - 1))
    n = np.int64(n_items)
    per_src = n * np.int64(cmax + 1)
    cands = []
    for src_is_min in (True, False):
        pk = _directed_keys(keys, c, n, cmax, src_is_min, chunk)
        pk.sort()
        cands.append(_top_ranked(pk, k, per_src, chunk))
        del pk
    pk = np.concatenate(cands)
    del cands
    pk.sort()
    top = _top_ranked(pk, k, per_src, chunk)
    src, dst = top // per_src, top % n
    return sorted_unique(np.minimum(src, dst) * n + np.maximum(src, dst))


def numpy_edges(inter, cfg: GraphConfig, n_items: int) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """(lo, hi, pair statistics, phase seconds): the pairs ``cfg`` keeps of the interactions ``inter``."""
    t0 = time.perf_counter()
    users, items, n_used = _edge_rows(inter, cfg, n_items)
    u, it, counts, cap_dropped = _user_sequences(users, items, cfg.max_items_per_user)
    phases = {"sequences": time.perf_counter() - t0}
    counter, generated, all_pairs, n_parts = _count_pairs(u, it, counts, n_items, cfg.window, cfg.chunk_pairs)
    del u, it
    phases["pairs_dedup"] = time.perf_counter() - t0 - sum(phases.values())
    min_c = cfg.min_shared if cfg.rule == "min_shared" else 1
    distinct, keys, cnts = counter.collect(min_c, with_counts=cfg.rule == "topk")
    del counter
    if cfg.rule == "topk":
        keys = _topk_pairs(keys, cnts, cfg.topk, n_items, cfg.chunk_pairs)
    del cnts
    phases["rule"] = time.perf_counter() - t0 - sum(phases.values())
    pst = {
        "interactions_used": n_used,
        "users": int(counts.size),
        "rows_dropped_duplicate_user_item": n_used - int(counts.sum()) - cap_dropped,
        "rows_dropped_by_user_cap": int(cap_dropped),
        "pairs_generated": int(generated),
        "pairs_skipped_by_window": int(all_pairs - generated),
        "distinct_pairs": int(distinct),
        "partitions": int(n_parts),
    }
    return keys // n_items, keys % n_items, pst, phases


def build_graph_numpy(ds: Dataset, interactions=None, cfg: GraphConfig | None = None):
    """(graph, stats) as :func:`twotower_hgnn.graph.build_graph`, the pairs counted by this module;
    ``stats["engine"]`` is "numpy" (``cfg.engine`` is ignored)."""
    t0 = time.perf_counter()
    cfg = cfg or default_graph_config(ds)
    inter = ds.interactions if interactions is None else interactions
    a, b, pst, phases = numpy_edges(inter, cfg, ds.num_items)
    graph, stats = graph_from_pairs(ds, a, b, pst, cfg, phases, t0)
    stats["engine"] = "numpy"
    return graph, stats
