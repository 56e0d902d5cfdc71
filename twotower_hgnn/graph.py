"""Co-listening graph: training interactions -> item-only heterogeneous CSR (PAPER.md §1.1).

Nodes are items (global id = row of ``Dataset.items``); an undirected edge joins two items that
shared users listened to. Relations are the unordered type pairs AB-AB, AB-PC, PC-PC (every pair
whose two types both have items; a relation may be empty and the sampler spec decides what to do).

Pair generation is linear in the log and fully vectorised:

1. keep the interactions whose event is in ``edge_events``; order them by (user, time); keep each
   user's first interaction with an item (a user counts once per pair);
2. cap each user's sequence at the ``max_items_per_user`` most recent items (dropped rows counted);
3. pair every item with the next ``window`` items of the same user's sequence (``window=None``: all
   pairs within the capped sequence). Offsets are processed one at a time over the positions that
   still have a partner, so work equals the number of pairs generated; pairs never generated because
   of the window are counted;
4. canonical pair keys ``min*n + max`` go, in chunks of ``chunk_pairs``, to hash partitions that are
   de-duplicated (unique + shared-user counts) independently and compacted when they grow, so peak
   memory follows the number of *distinct* pairs plus one chunk;
5. the edge rule keeps pairs with ``>= min_shared`` shared users ("any" = 1, the paper's rule), or
   the ``topk`` most co-listened neighbours of each item (an edge survives if either end keeps it;
   ties broken by the smaller neighbour id).

Per-dataset defaults: :func:`default_graph_config` (numbers behind the choices: BUILD_NOTES.md, appendix A).
"""
from __future__ import annotations

import dataclasses
import math
import resource
import time
from typing import Mapping

import numpy as np

from sampler.csr import HeteroCSR, Relation, relation_name
from twotower_hgnn.data.schema import EVENTS, ITEM_TYPES, Dataset

RULES = ("any", "min_shared", "topk")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class GraphError(ValueError):
    """Invalid graph configuration or input."""


@dataclasses.dataclass(frozen=True)
class GraphConfig:
    """How to turn interactions into co-listening edges.

    Attributes:
      edge_events: events that create edges (default streams only; weak signals are noisy and the paper
        leaves it open — PAPER.md §1.1).
      rule: "any" (>= 1 shared user, the paper's rule), "min_shared" (>= ``min_shared`` users) or
        "topk" (each item keeps its ``topk`` most co-listened neighbours).
      min_shared: threshold for rule "min_shared".
      topk: neighbours per item for rule "topk".
      window: pair each item with the next ``window`` distinct items of the user (time order);
        None = all pairs within the (capped) sequence.
      max_items_per_user: keep only each user's most recent N distinct items; None = no cap.
      chunk_pairs: raw pairs per de-duplication chunk (bounds transient memory; ~16 bytes each).
    """

    edge_events: tuple[str, ...] = ("stream",)
    rule: str = "topk"
    min_shared: int = 2
    topk: int = 20
    window: int | None = 20
    max_items_per_user: int | None = 1000
    chunk_pairs: int = 8_000_000

    def __post_init__(self):
        if self.rule not in RULES:
            raise GraphError(f"GraphConfig.rule: {self.rule!r} is not one of {RULES}")
        bad = [e for e in self.edge_events if e not in EVENTS]
        if bad or not self.edge_events:
            raise GraphError(f"GraphConfig.edge_events: {list(self.edge_events)} must be a non-empty subset of {list(EVENTS)}")
        if self.min_shared < 1:
            raise GraphError(f"GraphConfig.min_shared must be >= 1, got {self.min_shared}")
        if self.topk < 1:
            raise GraphError(f"GraphConfig.topk must be >= 1, got {self.topk}")
        if self.window is not None and self.window < 1:
            raise GraphError(f"GraphConfig.window must be >= 1 or None, got {self.window}")
        if self.max_items_per_user is not None and self.max_items_per_user < 2:
            raise GraphError(f"GraphConfig.max_items_per_user must be >= 2 or None, got {self.max_items_per_user}")
        if self.chunk_pairs < 1:
            raise GraphError(f"GraphConfig.chunk_pairs must be >= 1, got {self.chunk_pairs}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["edge_events"] = list(self.edge_events)
        return d


# Per-dataset defaults; the measurements behind them are in BUILD_NOTES.md, appendix A. The paper's rule ("any
# shared user", all pairs) joins 46 % of MovieLens-1M item pairs (median degree ~2,000) and makes a
# sampled neighbourhood random; "min_shared" leaves thousands of items isolated. Top-20 co-listened
# neighbours over a 20-item window keeps every co-listened item connected at density < 1 % and gives
# the highest topic homophily on synthetic data.
DEFAULT_CONFIGS: dict[str, GraphConfig] = {
    "movielens1m": GraphConfig(rule="topk", topk=20, window=20, max_items_per_user=1000),
    "synthetic": GraphConfig(rule="topk", topk=20, window=20, max_items_per_user=1000),
    "files": GraphConfig(rule="topk", topk=20, window=20, max_items_per_user=1000),
}


def default_graph_config(ds: Dataset | str) -> GraphConfig:
    """The default :class:`GraphConfig` for a dataset (by ``ds.name`` prefix)."""
    name = ds if isinstance(ds, str) else ds.name
    for key, cfg in DEFAULT_CONFIGS.items():
        if name == key or name.startswith(key + "-"):
            return cfg
    return DEFAULT_CONFIGS["files"]


def graph_relations(type_counts: Mapping[str, int]) -> tuple[Relation, ...]:
    """Every unordered type pair (ITEM_TYPES order) whose two types both have items."""
    present = [t for t in ITEM_TYPES if int(type_counts.get(t, 0)) > 0]
    return tuple((a, b) for i, a in enumerate(present) for b in present[i:])


# ------------------------------------------------------------------------------ pair generation
def _user_sequences(users: np.ndarray, items: np.ndarray, cap: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
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
            parts = [ks[bounds[p]: bounds[p + 1]] for p in range(self.n_parts)]
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
            keys[pos: pos + k] = self.keys[p][m]
            if cnts is not None:
                cnts[pos: pos + k] = self.cnts[p][m]
            pos += k
            self.keys[p], self.cnts[p], masks[p] = np.zeros(0, np.int64), np.zeros(0, np.int32), None
        return distinct, keys, cnts


def _generate_pairs(u: np.ndarray, it: np.ndarray, counts: np.ndarray, window: int | None, n_items: int,
                    counter: _PartitionedCounter, chunk: int) -> int:
    """Feeds canonical pair keys of each user's sequence into ``counter``; returns raw pairs generated."""
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
            sl = idx[s: s + chunk]
            a, b = it64[sl], it64[sl + k]
            key = np.minimum(a, b) * np.int64(n_items) + np.maximum(a, b)
            counter.add(key)
            total += int(sl.size)
    return total


def _directed_keys(keys: np.ndarray, c: np.ndarray, n: np.int64, cmax: int, src_is_min: bool, chunk: int) -> np.ndarray:
    """int64 ``(src * (C+1) + (C - count)) * n + dst`` per undirected key ``min*n + max`` (in chunks)."""
    out = np.empty(keys.size, np.int64)
    for s in range(0, keys.size, chunk):
        k = keys[s: s + chunk]
        lo, hi = k // n, k % n
        src, dst = (lo, hi) if src_is_min else (hi, lo)
        out[s: s + chunk] = (src * (cmax + 1) + (cmax - np.minimum(c[s: s + chunk], cmax))) * n + dst
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
    return np.unique(np.minimum(src, dst) * n + np.maximum(src, dst))


def _degree_distribution(deg: np.ndarray) -> dict:
    if deg.size == 0:
        return {"n": 0}
    q = np.percentile(deg, [10, 25, 50, 75, 90, 99])
    return {
        "n": int(deg.size), "mean": float(deg.mean()), "p10": float(q[0]), "p25": float(q[1]), "median": float(q[2]),
        "p75": float(q[3]), "p90": float(q[4]), "p99": float(q[5]), "max": int(deg.max()), "isolated": int((deg == 0).sum()),
    }


def _rss_mb() -> tuple[float, float]:
    """(current RSS, process peak RSS) in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    try:
        import psutil

        cur = psutil.Process().memory_info().rss / 2**20
    except Exception:  # psutil missing: report the peak only
        cur = float("nan")
    return cur, peak


# ------------------------------------------------------------------------------------ build
def build_graph(ds: Dataset, interactions=None, cfg: GraphConfig | None = None) -> tuple[HeteroCSR, dict]:
    """Builds the co-listening :class:`~sampler.csr.HeteroCSR` from (training) interactions.

    Args:
      ds: the dataset (item types and counts; node id = item row).
      interactions: a DataFrame with ``user_idx``, ``item_idx``, ``event_code`` in time order (e.g.
        ``Split.train``); None = all of ``ds.interactions``.
      cfg: None = :func:`default_graph_config`.

    Returns:
      (graph, stats): stats has per relation edges/density/degree distribution, pairs generated,
      distinct pairs, pairs dropped by the rule, pairs the window skipped, rows the per-user cap
      dropped, build seconds, RSS and process peak RSS (MiB).
    """
    t0 = time.perf_counter()
    cfg = cfg or default_graph_config(ds)
    inter = ds.interactions if interactions is None else interactions
    for col in ("user_idx", "item_idx", "event_code"):
        if col not in inter.columns:
            raise GraphError(f"interactions: column {col!r} missing (pass Dataset.interactions or a Split table)")
    n_items = ds.num_items
    codes = np.array([EVENTS.index(e) for e in cfg.edge_events], np.int8)
    ev = inter["event_code"].to_numpy()
    sel = np.isin(ev, codes)
    users = inter["user_idx"].to_numpy()[sel]
    items = inter["item_idx"].to_numpy()[sel].astype(np.int64)
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise GraphError(f"interactions: item_idx outside [0, {n_items})")

    u, it, counts, cap_dropped = _user_sequences(users, items, cfg.max_items_per_user)
    phases = {"sequences": time.perf_counter() - t0}
    expected, all_pairs = _pair_counts(counts, cfg.window)
    n_parts = max(1, min(4096, math.ceil(expected / cfg.chunk_pairs)))
    counter = _PartitionedCounter(n_parts, compact_at=max(cfg.chunk_pairs // n_parts, 1))
    generated = _generate_pairs(u, it, counts, cfg.window, n_items, counter, cfg.chunk_pairs)
    assert generated == expected, (generated, expected)
    del u, it
    phases["pairs_dedup"] = time.perf_counter() - t0 - sum(phases.values())

    min_c = cfg.min_shared if cfg.rule == "min_shared" else 1
    distinct, keys, cnts = counter.collect(min_c, with_counts=cfg.rule == "topk")
    del counter
    if cfg.rule == "topk":
        keys = _topk_pairs(keys, cnts, cfg.topk, n_items, cfg.chunk_pairs)
    del cnts
    phases["rule"] = time.perf_counter() - t0 - sum(phases.values())
    a, b = keys // n_items, keys % n_items
    del keys

    offsets = ds.item_type_offsets()
    ta = np.searchsorted(offsets, a, side="right") - 1
    tb = np.searchsorted(offsets, b, side="right") - 1
    rels = graph_relations(ds.item_type_counts)
    edges = {}
    for rel in rels:
        i, j = ITEM_TYPES.index(rel[0]), ITEM_TYPES.index(rel[1])
        m = (ta == i) & (tb == j)
        edges[rel] = np.stack([a[m], b[m]], axis=1)
    graph = HeteroCSR.from_edges(ITEM_TYPES, dict(ds.item_type_counts), edges)
    secs = time.perf_counter() - t0
    phases["csr"] = secs - sum(phases.values())
    cur, peak = _rss_mb()
    rel_stats = {}
    for rel in rels:
        na, nb = graph.num_nodes_of(rel[0]), graph.num_nodes_of(rel[1])
        pairs = na * (na - 1) / 2 if rel[0] == rel[1] else na * nb
        e = graph.num_edges(rel)
        entry = {"edges": e, "density": e / pairs if pairs else 0.0}
        dirs = [(rel[0], rel[1]), (rel[1], rel[0])] if rel[0] != rel[1] else [(rel[0], rel[0])]
        for d in dirs:
            entry[f"degree {d[0]}<-{d[1]}"] = _degree_distribution(graph.adj[d].degrees())
        rel_stats[relation_name(rel)] = entry
    all_deg = np.zeros(n_items, np.int64)
    for e in graph.edges.values():
        all_deg += np.bincount(e[:, 0], minlength=n_items) + np.bincount(e[:, 1], minlength=n_items)
    n_pairs_total = n_items * (n_items - 1) / 2
    total_edges = int(sum(graph.num_edges(r) for r in rels))
    stats = {
        "config": cfg.to_dict(),
        "nodes": {t: int(ds.item_type_counts.get(t, 0)) for t in ITEM_TYPES},
        "interactions_used": int(sel.sum()),
        "users": int(counts.size),
        "rows_dropped_duplicate_user_item": int(sel.sum()) - int(counts.sum()) - cap_dropped,
        "rows_dropped_by_user_cap": int(cap_dropped),
        "pairs_generated": int(generated),
        "pairs_skipped_by_window": int(all_pairs - expected),
        "distinct_pairs": int(distinct),
        "pairs_dropped_by_rule": int(distinct - total_edges),
        "partitions": int(n_parts),
        "edges": total_edges,
        "density": total_edges / n_pairs_total if n_pairs_total else 0.0,
        "degree": _degree_distribution(all_deg),
        "relations": rel_stats,
        "build_seconds": secs,
        "phase_seconds": phases,
        "rss_mib": cur,
        "peak_rss_mib": peak,
    }
    return graph, stats


def holdout_edges(graph: HeteroCSR, frac: float = 0.1, seed: int = 0) -> tuple[HeteroCSR, dict[Relation, np.ndarray]]:
    """Removes a uniform ``frac`` of each relation's edges (HGNN validation, PAPER.md §5.1).

    Returns (training graph without them, relation -> held-out int64 ``[k, 2]`` canonical edges, sorted).
    ``k = round(frac * E_r)``; node ids and relations are unchanged (a relation may become empty).
    """
    if not 0.0 <= frac < 1.0:
        raise GraphError(f"holdout frac must be in [0, 1), got {frac}")
    from twotower_hgnn.rng import np_rng

    keep, held = {}, {}
    for i, (rel, e) in enumerate(graph.edges.items()):
        e = np.asarray(e)
        n = e.shape[0]
        k = int(round(frac * n))
        perm = np_rng(seed, "holdout_edges", relation_name(rel)).permutation(n)
        h = np.sort(perm[:k])
        mask = np.ones(n, bool)
        mask[h] = False
        held[rel] = np.ascontiguousarray(e[h])
        keep[rel] = np.ascontiguousarray(e[mask])
    counts = {t: graph.num_nodes_of(t) for t in graph.node_types}
    return HeteroCSR.from_edges(graph.node_types, counts, keep), held


def prepare_report(ds: Dataset, split_kwargs: Mapping | None = None, cfg: GraphConfig | None = None,
                   holdout_frac: float = 0.1, seed: int = 0) -> tuple[dict, HeteroCSR]:
    """Split + graph + held-out edges with every statistic the data layer records (launch/prepare_data).

    Returns (JSON-serialisable report, full training graph).
    """
    from twotower_hgnn.data.split import temporal_split
    from twotower_hgnn.data.synthetic import calibration

    t0 = time.perf_counter()
    sp = temporal_split(ds, **dict(split_kwargs or {}))
    t_split = time.perf_counter() - t0
    g, gstats = build_graph(ds, sp.train, cfg)
    g_train, held = holdout_edges(g, frac=holdout_frac, seed=seed)
    cur, peak = _rss_mb()
    it = ds.interactions
    report = {
        "dataset": ds.name,
        "items": {t: int(ds.item_type_counts.get(t, 0)) for t in ITEM_TYPES},
        "users": ds.num_users,
        "interactions": int(len(it)),
        "events": {e: int(c) for e, c in zip(EVENTS, np.bincount(it["event_code"].to_numpy(), minlength=len(EVENTS)))},
        "dropped": dict(ds.dropped),
        "calibration": dict(calibration(ds)),
        "content": "item_vectors %s" % (ds.item_vectors.shape,) if ds.item_vectors is not None else "text (encode with launch/encode_text.py)",
        "split": {"cut_time": sp.cut_time, "history_start": sp.history_start, "test_end": sp.test_end,
                  "summary": sp.summary(), **sp.segment_sizes, "seconds": t_split},
        "graph": gstats,
        "holdout": {relation_name(r): int(e.shape[0]) for r, e in held.items()},
        "train_graph_edges": {relation_name(r): g_train.num_edges(r) for r in g_train.relations},
        "rss_mib": cur,
        "peak_rss_mib": peak,
    }
    if "generate_seconds" in ds.meta:
        report["generate_seconds"] = ds.meta["generate_seconds"]
    return report, g
