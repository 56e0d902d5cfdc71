"""Co-listening graph: training interactions -> item-only heterogeneous CSR (the paper, §1.1).

Nodes are items (global id = row of ``Dataset.items``); an undirected edge joins two items that
shared users listened to. Relations are the unordered type pairs AB-AB, AB-PC, PC-PC (every pair
whose two types both have items; a relation may be empty and the sampler spec decides what to do).

The pairs and the edge rule are queries on a log engine (:mod:`twotower_hgnn.logs.colisten`; DuckDB
by default, out-of-core under a memory limit, or Spark), linear in the log:

1. keep the interactions whose event is in ``edge_events``; order them by (user, time); keep each
   user's first interaction with an item (a user counts once per pair);
2. cap each user's sequence at the ``max_items_per_user`` most recent items (dropped rows counted);
3. pair every item with the next ``window`` items of the same user's sequence (``window=None``: all
   pairs within the capped sequence); pairs never generated because of the window are counted;
4. count the shared users of every distinct pair, in partitions of about ``chunk_pairs`` pairs by
   the pair's smaller item, so that memory follows one partition, not the log's distinct pairs;
5. the edge rule keeps pairs with ``>= min_shared`` shared users ("any" = 1, the paper's rule), or
   the ``topk`` most co-listened neighbours of each item (an edge survives if either end keeps it;
   ties broken by the smaller neighbour id).

NumPy builds the CSR from the kept pairs (:func:`graph_from_pairs`). The in-memory NumPy builder the
queries replaced is ``benchmarks/graph_numpy.py`` (the speed comparison of ``benchmarks/graph_engine.py``
and the golden digests' reference).

Per-dataset defaults: :func:`default_graph_config` (numbers behind the choices: BUILD_NOTES.md, appendix A).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from sampler.csr import HeteroCSR, Relation, relation_name
from twotower_hgnn.data.schema import EVENTS, Dataset, event_mask
from twotower_hgnn.graph_config import ENGINES, RULES, GraphConfig, GraphError  # noqa: F401  (re-exported)

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
    """Every unordered type pair (in ``type_counts`` order: the data's) whose two types both have items."""
    present = [t for t, c in type_counts.items() if int(c) > 0]
    return tuple((a, b) for i, a in enumerate(present) for b in present[i:])


def _degree_distribution(deg: np.ndarray) -> dict:
    """Size, mean, percentiles, max and isolated count of a degree array."""
    if deg.size == 0:
        return {"n": 0}
    q = np.percentile(deg, [10, 25, 50, 75, 90, 99])
    return {
        "n": int(deg.size),
        "mean": float(deg.mean()),
        "p10": float(q[0]),
        "p25": float(q[1]),
        "median": float(q[2]),
        "p75": float(q[3]),
        "p90": float(q[4]),
        "p99": float(q[5]),
        "max": int(deg.max()),
        "isolated": int((deg == 0).sum()),
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
def _edge_rows(inter, cfg: GraphConfig, n_items: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(user_idx, int64 item_idx, rows kept) of the interactions whose event is in ``cfg.edge_events``."""
    for col in ("user_idx", "item_idx", "event_code"):
        if col not in inter.columns:
            raise GraphError(f"interactions: column {col!r} missing (pass Dataset.interactions or a Split table)")
    codes = np.array([EVENTS.index(e) for e in cfg.edge_events], np.int8)
    ev = inter["event_code"].to_numpy()
    sel = event_mask(ev, codes)
    users = inter["user_idx"].to_numpy()[sel]
    items = inter["item_idx"].to_numpy()[sel].astype(np.int64)
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise GraphError(f"interactions: item_idx outside [0, {n_items})")
    return users, items, int(sel.sum())


def _relation_graph(ds: Dataset, a: np.ndarray, b: np.ndarray) -> tuple[HeteroCSR, tuple[Relation, ...]]:
    """(the HeteroCSR of edges ``a[k] - b[k]``, split by their endpoints' types; its relations)."""
    offsets = ds.item_type_offsets()
    ta = np.searchsorted(offsets, a, side="right") - 1
    tb = np.searchsorted(offsets, b, side="right") - 1
    rels = graph_relations(ds.item_type_counts)
    edges = {}
    for rel in rels:
        i, j = ds.item_type_index(rel[0]), ds.item_type_index(rel[1])
        m = (ta == i) & (tb == j)
        edges[rel] = np.stack([a[m], b[m]], axis=1)
    return HeteroCSR.from_edges(ds.item_types, dict(ds.item_type_counts), edges), rels


def _relation_stats(graph: HeteroCSR, rels: tuple[Relation, ...]) -> dict:
    """Per relation name: edges, density and the degree distribution of each direction."""
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
    return rel_stats


def _item_degrees(graph: HeteroCSR, n_items: int) -> np.ndarray:
    """int64 ``[n_items]`` degree of every item over all relations."""
    all_deg = np.zeros(n_items, np.int64)
    for e in graph.edges.values():
        all_deg += np.bincount(e[:, 0], minlength=n_items) + np.bincount(e[:, 1], minlength=n_items)
    return all_deg


def config_colisten(engine, cfg: GraphConfig) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(lo, hi, pair statistics)`` of the co-listening rule ``cfg`` over the view ``inter`` that
    ``engine`` (:mod:`twotower_hgnn.logs.engines`) already holds."""
    from twotower_hgnn.logs.colisten import colisten_edges

    codes = [EVENTS.index(e) for e in cfg.edge_events]
    return colisten_edges(
        engine,
        codes,
        cfg.rule,
        cfg.min_shared,
        cfg.topk,
        cfg.window,
        cfg.max_items_per_user,
        chunk_pairs=cfg.chunk_pairs,
    )


def parquet_source(ds: Dataset, rows: tuple[int, int] | None) -> tuple[str, int, int, int, int] | None:
    """``(folder, a, b, t0, t1)``: the rows ``[a, b)`` of ``ds.interactions`` as rows of the day-partitioned
    Parquet log the dataset was read from (``meta["parquet_dir"]``, whose ``row_id`` is the row's
    position), their seconds in ``[t0, t1)``; None when the dataset has no such log (or is not all of it)
    or ``rows`` is None."""
    folder, n = ds.meta.get("parquet_dir"), ds.meta.get("parquet_rows")
    if not folder or rows is None or n != len(ds.interactions) or rows[1] <= rows[0]:
        return None
    ts = ds.interactions["timestamp"].to_numpy()
    return str(folder), int(rows[0]), int(rows[1]), int(ts[rows[0]]), int(ts[rows[1] - 1]) + 1


def _engine_edges(inter, cfg: GraphConfig, n_items: int, parquet=None) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """(lo, hi, pair statistics, phase seconds) by the log queries on ``cfg.engine`` (:mod:`twotower_hgnn.logs`);
    ``parquet`` (:func:`parquet_source`): the engine reads those rows from the Parquet log, not ``inter``."""
    from twotower_hgnn.logs.engines import auto_memory_limit, open_engine
    from twotower_hgnn.logs.tables import day_window, interactions_frame

    t0 = time.perf_counter()
    _edge_rows(inter.iloc[:0], cfg, n_items)  # the columns
    frame = None
    if parquet is None:
        frame = interactions_frame(inter)
        codes = [EVENTS.index(e) for e in cfg.edge_events]
        items = frame["item_idx"].to_numpy()[event_mask(frame["event_code"].to_numpy(), codes)]
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise GraphError(f"interactions: item_idx outside [0, {n_items})")
    memory = cfg.memory_limit or auto_memory_limit()  # DuckDB's limit, or the local Spark driver's heap
    opts = {"memory_limit": memory} if cfg.engine == "duckdb" else {"memory": memory}
    engine = open_engine(cfg.engine, **opts)
    try:
        if frame is None:
            folder, a, b, t_lo, t_hi = parquet
            where = f"{day_window(t_lo, t_hi)} AND row_id >= {a} AND row_id < {b}"
            engine.register_parquet("inter", Path(folder) / "interactions", where=where)
        else:
            engine.register_frame("inter", frame)
        lo, hi, pst = config_colisten(engine, cfg)
    finally:
        engine.close()
    return lo, hi, pst, {"queries": time.perf_counter() - t0}


def build_graph(ds: Dataset, interactions=None, cfg: GraphConfig | None = None, parquet=None) -> tuple[HeteroCSR, dict]:
    """Builds the co-listening :class:`~sampler.csr.HeteroCSR` from (training) interactions.

    Args:
      ds: the dataset (item types and counts; node id = item row).
      interactions: a DataFrame with ``user_idx``, ``item_idx``, ``event_code`` in time order (e.g.
        ``Split.train``); None = all of ``ds.interactions``.
      cfg: None = :func:`default_graph_config`; ``cfg.engine`` runs the pair counting and the rule.
      parquet: :func:`parquet_source` of ``interactions``: the engine reads them from the Parquet log.

    Returns:
      (graph, stats): stats has per relation edges/density/degree distribution, pairs generated,
      distinct pairs, pairs dropped by the rule, pairs the window skipped, rows the per-user cap
      dropped, the engine, build seconds, RSS and process peak RSS (MiB).
    """
    t0 = time.perf_counter()
    cfg = cfg or default_graph_config(ds)
    inter = ds.interactions if interactions is None else interactions
    a, b, pst, phases = _engine_edges(inter, cfg, ds.num_items, parquet)
    return graph_from_pairs(ds, a, b, pst, cfg, phases, t0, source="parquet" if parquet is not None else "memory")


def graph_from_pairs(
    ds: Dataset,
    a: np.ndarray,
    b: np.ndarray,
    pair_stats: dict,
    cfg: GraphConfig,
    phases: dict,
    t0: float,
    source: str = "memory",
) -> tuple[HeteroCSR, dict]:
    """The :class:`HeteroCSR` of the kept pairs ``a[k] - b[k]`` (int64 item ids) and the statistics of
    :func:`build_graph`; ``pair_stats``: the pair counts of :func:`~twotower_hgnn.logs.colisten.colisten_edges`,
    ``phases``: seconds so far by phase (``"csr"`` is added), ``t0``: when the build started
    (``time.perf_counter()``), ``source``: where the log was read from."""
    n_items = ds.num_items
    graph, rels = _relation_graph(ds, a, b)
    secs = time.perf_counter() - t0
    phases["csr"] = secs - sum(phases.values())
    cur, peak = _rss_mb()
    n_pairs_total = n_items * (n_items - 1) / 2
    total_edges = int(sum(graph.num_edges(r) for r in rels))
    stats = {
        "config": cfg.to_dict(),
        "engine": cfg.engine,
        "source": source,
        "nodes": {t: int(ds.item_type_counts[t]) for t in ds.item_types},
        **{k: v for k, v in pair_stats.items() if k != "partitions"},
        "pairs_dropped_by_rule": int(pair_stats["distinct_pairs"] - total_edges),
        "partitions": pair_stats["partitions"],
        "edges": total_edges,
        "density": total_edges / n_pairs_total if n_pairs_total else 0.0,
        "degree": _degree_distribution(_item_degrees(graph, n_items)),
        "relations": _relation_stats(graph, rels),
        "build_seconds": secs,
        "phase_seconds": phases,
        "rss_mib": cur,
        "peak_rss_mib": peak,
    }
    return graph, stats


def holdout_edges(graph: HeteroCSR, frac: float = 0.1, seed: int = 0) -> tuple[HeteroCSR, dict[Relation, np.ndarray]]:
    """Removes a uniform ``frac`` of each relation's edges (HGNN validation, the paper's §5.1).

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


def prepare_report(
    ds: Dataset,
    split_kwargs: Mapping | None = None,
    cfg: GraphConfig | None = None,
    holdout_frac: float = 0.1,
    seed: int = 0,
) -> tuple[dict, HeteroCSR]:
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
        "items": {t: int(ds.item_type_counts[t]) for t in ds.item_types},
        "users": ds.num_users,
        "interactions": int(len(it)),
        "events": {e: int(c) for e, c in zip(EVENTS, np.bincount(it["event_code"].to_numpy(), minlength=len(EVENTS)))},
        "dropped": dict(ds.dropped),
        "calibration": dict(calibration(ds)),
        "content": "item_vectors %s" % (ds.item_vectors.shape,)
        if ds.item_vectors is not None
        else "text (encode with launch/encode_text.py)",
        "split": {
            "cut_time": sp.cut_time,
            "history_start": sp.history_start,
            "test_end": sp.test_end,
            "summary": sp.summary(),
            **sp.segment_sizes,
            "seconds": t_split,
        },
        "graph": gstats,
        "holdout": {relation_name(r): int(e.shape[0]) for r, e in held.items()},
        "train_graph_edges": {relation_name(r): g_train.num_edges(r) for r in g_train.relations},
        "rss_mib": cur,
        "peak_rss_mib": peak,
    }
    if "generate_seconds" in ds.meta:
        report["generate_seconds"] = ds.meta["generate_seconds"]
    return report, g
