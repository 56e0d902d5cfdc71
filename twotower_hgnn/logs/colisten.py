"""Co-listening pairs and the graph rule as queries (the relational form of ``twotower_hgnn.graph_pairs``).

The same steps as the NumPy builder, over the view ``inter`` (:mod:`.tables`):

1. rows whose event is an edge event; each user's first row per item (the smallest ``row_id``: a user
   counts once per pair), numbered in (time, row) order;
2. each user's most recent ``cap`` items kept (positions renumbered 1..m);
3. every item paired with the next ``window`` items of its user (an equi-join on ``pos + k`` over the
   offsets ``k = 1..window``, so work is linear in the pairs generated; ``window=None``: all later items);
4. pairs ``(lo, hi) = (min, max)`` counted (shared users);
5. the rule: "any" keeps every pair, "min_shared" pairs with ``count >= min_shared``, "topk" a pair that
   is in the top ``k`` of either endpoint, ranking an item's neighbours by ``min(count, 32767)``
   descending then the smaller neighbour id (the NumPy builder's 15-bit count field).

:func:`colisten_edges` returns the kept pairs sorted by (lo, hi) -- exactly the NumPy builder's
``np.unique`` of canonical keys -- and the builder's integer statistics.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

COUNT_CAP = 2**15 - 1  # the NumPy builder ranks by min(count, 2**15 - 1) (graph_pairs._topk_pairs)
KEY = 2**32  # pair key lo * KEY + hi (item ids are int32)


def _in_list(codes: Sequence[int]) -> str:
    return ", ".join(str(int(c)) for c in codes)


def sequences_sql(edge_codes: Sequence[int], cap: int | None) -> str:
    """(u, i, pos, n): each user's distinct edge-event items in first-seen order, capped to the last ``cap``;
    ``pos`` 1..m after the cap, ``n`` the user's length before it."""
    first = (
        "SELECT user_idx AS u, item_idx AS i, MIN(row_id) AS r FROM inter "
        f"WHERE event_code IN ({_in_list(edge_codes)}) GROUP BY user_idx, item_idx"
    )
    numbered = (
        "SELECT u, i, ROW_NUMBER() OVER (PARTITION BY u ORDER BY r) AS pos, "
        f"COUNT(*) OVER (PARTITION BY u) AS n FROM ({first}) AS f"
    )
    if cap is None:
        return f"SELECT u, i, pos, n FROM ({numbered}) AS s"
    c = int(cap)
    return f"SELECT u, i, pos - GREATEST(n - {c}, 0) AS pos, n FROM ({numbered}) AS s WHERE pos > n - {c}"


def lead_sql(window: int, seq: str = "g_seq") -> str:
    """(u, i, n1 .. n{window}): each sequence position with the items ``1 .. window`` positions later (NULL past
    the user's end): one sort of the sequences instead of a join per offset."""
    cols = ", ".join(f"LEAD(i, {k}) OVER w AS n{k}" for k in range(1, int(window) + 1))
    return f"SELECT u, i, {cols} FROM {seq} WINDOW w AS (PARTITION BY u ORDER BY pos)"


def pair_keys_sql(window: int | None, seq: str = "g_seq") -> str:
    """(key): one BIGINT ``lo * KEY + hi`` per windowed pair; with a window from the table ``g_lead``
    (:func:`lead_sql`), without one from a self-join of ``seq``."""
    if window is None:
        return (
            f"SELECT LEAST(a.i, b.i)::BIGINT * {KEY} + GREATEST(a.i, b.i) AS key "
            f"FROM {seq} AS a JOIN {seq} AS b ON b.u = a.u AND b.pos > a.pos"
        )
    return " UNION ALL ".join(
        f"SELECT LEAST(i, n{k})::BIGINT * {KEY} + GREATEST(i, n{k}) AS key FROM g_lead WHERE n{k} IS NOT NULL"
        for k in range(1, int(window) + 1)
    )


def pair_counts_sql(keys: str = "g_keys", part: tuple[int, int] | None = None) -> str:
    """(lo, hi, c): the distinct pairs of the key table ``keys`` and their shared-user counts (one-column
    grouping); ``part=(p, P)``: only the keys equal to ``p`` modulo ``P`` (disjoint partitions)."""
    cond = "" if part is None else f" WHERE key % {int(part[1])} = {int(part[0])}"
    return (
        f"SELECT key // {KEY} AS lo, key % {KEY} AS hi, c FROM "
        f"(SELECT key, COUNT(*) AS c FROM {keys}{cond} GROUP BY key) AS g"
    )


def expected_pairs_sql(window: int | None, seq: str = "g_seq") -> str:
    """(pairs): the number of windowed pairs of ``seq`` (``graph_pairs._pair_counts``)."""
    c = "m - 1" if window is None else f"LEAST({int(window)}, m - 1)"
    return (
        f"SELECT COALESCE(SUM(({c}) * m - ({c}) * (({c}) + 1) / 2), 0) AS pairs "
        f"FROM (SELECT COUNT(*) AS m FROM {seq} GROUP BY u) AS x"
    )


def _topk_window_sql(topk: int, pairs: str) -> str:
    """Top-k by ROW_NUMBER over each item's neighbours (Spark plans ``rk <= k`` as a per-group limit)."""
    directed = f"SELECT lo AS s, hi AS t, c FROM {pairs} UNION ALL SELECT hi AS s, lo AS t, c FROM {pairs}"
    ranked = (
        f"SELECT s, t, ROW_NUMBER() OVER (PARTITION BY s ORDER BY LEAST(c, {COUNT_CAP}) DESC, t) AS rk "
        f"FROM ({directed}) AS d"
    )
    return (
        "SELECT lo, hi FROM (SELECT DISTINCT LEAST(s, t) AS lo, GREATEST(s, t) AS hi "
        f"FROM ({ranked}) AS r WHERE rk <= {int(topk)}) AS k ORDER BY lo, hi"
    )


def _topk_heap_sql(topk: int, pairs: str) -> str:
    """Top-k by DuckDB's top-n aggregate ``min(x, k)`` (a heap per group, no sort of all pairs) over the
    rank key ``(COUNT_CAP - min(count, COUNT_CAP)) * KEY + neighbour``: each side of a pair (item as its
    lo, item as its hi) gives <= k candidates, the union is ranked again (``graph_pairs._topk_pairs``)."""
    k = int(topk)

    def side(src: str, dst: str) -> str:
        rank = f"({COUNT_CAP} - LEAST(c, {COUNT_CAP}))::BIGINT * {KEY} + {dst}"
        return f"SELECT {src} AS s, UNNEST(min({rank}, {k})) AS r FROM {pairs} GROUP BY {src}"

    return (
        f"WITH cand AS ({side('lo', 'hi')} UNION ALL {side('hi', 'lo')}), "
        f"top AS (SELECT s, UNNEST(min(r, {k})) % {KEY} AS t FROM cand GROUP BY s) "
        "SELECT DISTINCT LEAST(s, t) AS lo, GREATEST(s, t) AS hi FROM top ORDER BY lo, hi"
    )


def rule_sql(rule: str, min_shared: int, topk: int, pairs: str = "g_pairs", topn_aggregate: bool = False) -> str:
    """(lo, hi) of the pairs the rule keeps, sorted. The top-k selection is the one step with two forms:
    ``topn_aggregate`` (DuckDB's ``min(x, k)``) or a window ranking (every engine; Spark's form)."""
    if rule == "any":
        return f"SELECT lo, hi FROM {pairs} ORDER BY lo, hi"
    if rule == "min_shared":
        return f"SELECT lo, hi FROM {pairs} WHERE c >= {int(min_shared)} ORDER BY lo, hi"
    return _topk_heap_sql(topk, pairs) if topn_aggregate else _topk_window_sql(topk, pairs)


def _stats(engine, edge_codes: Sequence[int]) -> dict:
    got = engine.fetch(
        f"SELECT (SELECT COUNT(*) FROM inter WHERE event_code IN ({_in_list(edge_codes)})) AS used, "
        "x.users, x.distinct_rows, x.kept_rows, x.all_pairs, "
        "(SELECT COUNT(*) FROM g_pairs) AS distinct_pairs, (SELECT SUM(c) FROM g_pairs) AS generated FROM ("
        "SELECT COUNT(*) AS users, SUM(n) AS distinct_rows, SUM(m) AS kept_rows, SUM(m * (m - 1) / 2) AS all_pairs "
        "FROM (SELECT u, MAX(n) AS n, COUNT(*) AS m FROM g_seq GROUP BY u) AS y) AS x"
    )

    def val(k):
        v = got[k][0] if len(got[k]) else None
        return 0 if v is None or (isinstance(v, float) and v != v) else int(v)

    return {
        "interactions_used": val("used"),
        "users": val("users"),
        "rows_dropped_duplicate_user_item": val("used") - val("distinct_rows"),
        "rows_dropped_by_user_cap": val("distinct_rows") - val("kept_rows"),
        "pairs_generated": val("generated"),
        "pairs_skipped_by_window": val("all_pairs") - val("generated"),
        "distinct_pairs": val("distinct_pairs"),
    }


def colisten_pairs(
    engine, edge_codes: Sequence[int], cap: int | None, window: int | None, chunk_pairs: int | None = None
) -> dict:
    """Materialises the tables ``g_seq`` and ``g_pairs`` in ``engine``; returns the statistics.

    ``chunk_pairs``: the pairs are counted in ``P = ceil(pairs / chunk_pairs)`` disjoint partitions of
    their key (at most 4096, as the NumPy builder's hash partitions), appended one after the other, so
    one aggregation holds about ``chunk_pairs`` raw pairs; None = one aggregation (the engine spills).
    The raw keys are materialised once (``g_keys``, 8 bytes per pair, spilled past the memory limit)."""
    engine.materialize("g_seq", sequences_sql(edge_codes, cap))
    if window is not None:
        engine.materialize("g_lead", lead_sql(window))
    engine.materialize("g_keys", pair_keys_sql(window))
    engine.drop("g_lead")
    n_parts = 1
    if chunk_pairs is not None:
        expected = int(engine.fetch(expected_pairs_sql(window))["pairs"][0])
        n_parts = max(1, min(4096, math.ceil(expected / int(chunk_pairs))))
    for p in range(n_parts):
        part = None if n_parts == 1 else (p, n_parts)
        (engine.append if p else engine.materialize)("g_pairs", pair_counts_sql(part=part))
    engine.drop("g_keys")
    return {**_stats(engine, edge_codes), "partitions": n_parts}


def colisten_edges(
    engine,
    edge_codes: Sequence[int],
    rule: str,
    min_shared: int,
    topk: int,
    window: int | None,
    cap: int | None,
    with_pairs: bool = False,
    chunk_pairs: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(lo, hi) int64 of the edges the rule keeps, sorted by (lo, hi), and the pair statistics
    (``interactions_used``, ``users``, rows dropped, ``pairs_generated``, ``pairs_skipped_by_window``,
    ``distinct_pairs``, ``partitions``: see :func:`colisten_pairs`) of the view ``inter``; ``with_pairs``: the statistics also hold ``pairs``, every
    distinct windowed pair (``lo``, ``hi`` int64 sorted, shared-user ``count``)."""
    try:
        stats = colisten_pairs(engine, edge_codes, cap, window, chunk_pairs)
        if with_pairs:
            got = engine.fetch("SELECT lo, hi, c FROM g_pairs ORDER BY lo, hi")
            stats["pairs"] = {k: got[c].astype(np.int64) for k, c in (("lo", "lo"), ("hi", "hi"), ("count", "c"))}
        kept = engine.fetch(rule_sql(rule, min_shared, topk, topn_aggregate=engine.topn_aggregate))
    finally:
        engine.drop("g_pairs")
        engine.drop("g_seq")
    return kept["lo"].astype(np.int64), kept["hi"].astype(np.int64), stats
