"""Every log output of a dataset under its default split and graph rule, computed by one engine, under
the names of the golden digests (``benchmarks/log_golden.py``, ``tests/golden/log_digests.json``).

The two-tower outputs use fixed settings (:data:`EXAMPLES`): per item type, every training stream is
an example (``examples.<type>.*``); its as-of history over every event in the 90 days before it gives
per type the row counts, the 8 most recent item tokens and the mean of a seeded probe embedding
(:func:`probe_embedding`; ``history.<type>.*``, the means as float sums)."""

from __future__ import annotations

import numpy as np

from twotower_hgnn.data.schema import EVENTS, WEAK_EVENTS, Dataset
from twotower_hgnn.data.split import cut_bounds, segment_type
from twotower_hgnn.logs.colisten import colisten_edges
from twotower_hgnn.logs.counts import item_event_counts, log_bounds, relation_support, split_parts, timestamp_at
from twotower_hgnn.logs.examples import history_features, positives
from twotower_hgnn.logs.tables import interactions_frame, items_frame


def _split_outputs(engine, ds: Dataset, types: list[str]) -> dict:
    n, mx = log_bounds(engine)
    cut, hist, end = cut_bounds(ds.meta.get("split"), n, mx, lambda p: timestamp_at(engine, p))
    seg_t = segment_type(ds)
    sp = split_parts(engine, cut, hist, end, types.index(seg_t) if seg_t in types else -1)
    out = {
        "split.part": sp["part"],
        "split.cut_time": cut,
        "split.history_start": -1 if hist is None else hist,
        "split.test_end": -1 if end is None else end,
        "split.warm_users": sp["warm"],
        "split.cold_users": sp["cold"],
    }
    out.update({f"split.sizes.{k}": v for k, v in sp["sizes"].items()})
    return out, sp["part"]


def _train_outputs(engine, ds: Dataset, types: list[str], graph_cfg) -> dict:
    codes = [EVENTS.index(e) for e in graph_cfg.edge_events]
    cap, window = graph_cfg.max_items_per_user, graph_cfg.window
    lo, hi, st = colisten_edges(
        engine, codes, graph_cfg.rule, graph_cfg.min_shared, graph_cfg.topk, window, cap, with_pairs=True
    )
    pairs = st.pop("pairs")
    st.pop("partitions"), st.pop("waves")  # how the engine chunked the work, not a log output
    out: dict = {"pairs.lo_hi": np.stack([pairs["lo"], pairs["hi"]], axis=1), "pairs.count": pairs["count"]}
    tcode = items_frame(ds.item_type_codes())["type_code"].to_numpy()
    for a in range(len(types)):
        for b in range(a, len(types)):
            if int(ds.item_type_counts.get(types[a], 0)) and int(ds.item_type_counts.get(types[b], 0)):
                m = (tcode[lo] == a) & (tcode[hi] == b)
                out[f"graph.edges.{types[a]}-{types[b]}"] = np.stack([lo[m], hi[m]], axis=1)
    out.update({f"graph.{k}": v for k, v in st.items()})
    out["graph.edges"] = int(lo.size)
    out["graph.pairs_dropped_by_rule"] = st["distinct_pairs"] - int(lo.size)
    ev = item_event_counts(engine, [EVENTS.index(e) for e in ("stream",) + WEAK_EVENTS], ds.num_items)
    off = ds.item_type_offsets()
    for i, t in enumerate(types):
        if off[i + 1] > off[i]:
            out[f"popularity.{t}"] = ev[EVENTS.index("stream")][off[i] : off[i + 1]]
    out.update({f"weak.{e}": ev[EVENTS.index(e)] for e in WEAK_EVENTS})
    sup = relation_support(engine, codes)
    for a in range(len(types)):
        for b in range(a, len(types)):
            if int(ds.item_type_counts.get(types[a], 0)) and int(ds.item_type_counts.get(types[b], 0)):
                out[f"signal.{types[a]}-{types[b]}"] = sup.get((a, b), 0)
    return out


EXAMPLES = {"positive_events": ("stream",), "history_events": EVENTS, "history_days": 90, "id_length": 8, "dim": 8}


def probe_embedding(n_items: int) -> np.ndarray:
    """float32 ``[n_items, EXAMPLES["dim"]]`` seeded standard-normal item vectors: what the golden history
    means average (any fixed embedding checks the same rows)."""
    return np.random.default_rng(0).standard_normal((n_items, EXAMPLES["dim"])).astype(np.float32)


def history_summaries(means: np.ndarray) -> dict:
    """Float digests of history means ``[Q, n_types, d]``: sums of absolute values and of squares (float64)."""
    m = np.asarray(means, np.float64)
    return {"mean_abs_sum": float(np.abs(m).sum()), "mean_sq_sum": float((m * m).sum())}


def _example_outputs(engine, ds: Dataset, types: list[str], users_per_chunk: int | None = None) -> dict:
    """``examples.<type>.{user,time,item}`` and ``history.<type>.{count,ids,mean_*}`` on the view ``inter``
    (the history by chunks of ``users_per_chunk`` users: :func:`~twotower_hgnn.logs.examples.history_features`)."""
    codes = [EVENTS.index(e) for e in EXAMPLES["positive_events"]]
    hist = [EVENTS.index(e) for e in EXAMPLES["history_events"]]
    window = EXAMPLES["history_days"] * 86_400.0
    emb, out = probe_embedding(ds.num_items), {}
    off = ds.item_type_offsets()
    for k, t in enumerate(types):
        if off[k + 1] == off[k]:
            continue
        u, ts, it = positives(engine, codes, int(off[k]), int(off[k + 1]))
        out.update({f"examples.{t}.user": u, f"examples.{t}.time": ts, f"examples.{t}.item": it})
        h = history_features(engine, u, ts, hist, window, len(types), emb, EXAMPLES["id_length"], users_per_chunk)
        out[f"history.{t}.count"] = h.counts
        out[f"history.{t}.ids"] = h.ids
        summaries = history_summaries(h.means)
        out.update({f"history.{t}.{name}": v for name, v in summaries.items()})
    return out


def engine_outputs(engine, ds: Dataset, graph_cfg, users_per_chunk: int | None = None) -> dict:
    """The golden outputs of ``ds`` (default temporal split; ``graph_cfg`` its graph configuration),
    every one computed by ``engine`` from the views ``inter`` (all rows, then the training part) and
    ``items``; the as-of history by chunks of ``users_per_chunk`` users (None: all at once). Float
    summaries of the graph (density, degrees) are left to the caller."""
    types = list(ds.item_type_counts)
    engine.register_frame("items", items_frame(ds.item_type_codes()))
    engine.register_frame("inter", interactions_frame(ds.interactions))
    out, part = _split_outputs(engine, ds, types)
    train = ds.interactions.iloc[np.flatnonzero(part == 1)]  # contiguous: the rows are time-sorted
    engine.register_frame("inter", interactions_frame(train))
    out.update(_train_outputs(engine, ds, types, graph_cfg))
    out.update(_example_outputs(engine, ds, types, users_per_chunk))
    return out
