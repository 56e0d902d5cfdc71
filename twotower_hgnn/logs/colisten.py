"""Co-listening pairs and the graph rule as queries (the relational form of the NumPy builder they replaced,
``benchmarks/graph_numpy.py``).

The same steps as the NumPy builder, over the view ``inter`` (:mod:`.tables`):

1. rows whose event is an edge event; each user's first row per item (the smallest ``row_id``: a user
   counts once per pair), numbered in (time, row) order;
2. each user's most recent ``cap`` items kept (positions renumbered 1..m);
3. every item paired with the next ``window`` items of its user (``LEAD`` over each user's sequence, one
   scan of it; ``window=None``: all later items), each pair once as the canonical key
   ``lo * KEY + hi`` (``lo < hi``: a user's items are distinct);
4. the keys split into partitions by their smaller item (``lo mod P``); each partition is counted
   (shared users per pair) on its own and
5. ruled: "any" keeps every pair, "min_shared" pairs with ``count >= min_shared`` -- both decided per
   partition -- and "topk" a pair that is in the top ``k`` of either endpoint, ranking an item's
   neighbours by ``min(count, 32767)`` descending then the smaller neighbour id (the NumPy builder's
   15-bit count field). A partition holds every neighbour of its ``lo`` items, so their top ``k`` is
   final there; the other side's neighbours are spread over the partitions and are kept as candidates
   (cut to each item's top ``k`` whenever they pass a few times ``k`` per item) until the last
   partition, when every item's top ``k`` of its candidates is its top ``k`` (the top ``k`` of a union
   is the top ``k`` of its parts' top ``k``). Nothing of the size of the distinct pairs is stored past
   its partition.

Counting each pair once (not once per direction) halves the rows of the costly step: a hash
aggregation whose groups are nearly all distinct (at ``large``, 314M pairs, 268M distinct).

DuckDB writes a wave of partitions to Parquet by one query (``COPY ... PARTITION_BY``, making only that
wave's keys: :func:`wave_keys_sql`) and reads each partition back alone
(:meth:`DuckDBEngine.spill_partitions`): counting and ruling are linear in the pairs, the disk holds one
wave. Each wave re-reads the windowed sequences, so waves are as large as 70 % of the free disk allows
(``DuckDBEngine.wave_keys``; a few at the paper's scale). Other engines (Spark) count every key in one
pass and leave partitioning and spilling to their own shuffle.

:func:`colisten_edges` returns the kept pairs sorted by (lo, hi) -- exactly the NumPy builder's
``np.unique`` of canonical keys -- and the builder's integer statistics.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Sequence

import numpy as np

COUNT_CAP = 2**15 - 1  # the NumPy builder ranks by min(count, 2**15 - 1) (benchmarks/graph_numpy._topk_pairs)
KEY = 2**32  # pair key lo * KEY + hi, rank key r = ... * KEY + t (item ids are int32)
COMPACT_PER_ITEM = 8  # top-k candidates are cut to k per item once they pass this many times k per item
WAVE_KEYS = 2**33  # the most pair keys written to disk at once (DuckDB: also <= 70 % of the free disk)


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
    """(i, n1 .. n{window}): each sequence position with the items ``1 .. window`` positions later (NULL
    past the user's end): one sort of the sequences instead of a join per offset."""
    cols = ", ".join(f"LEAD(i, {k}) OVER w AS n{k}" for k in range(1, int(window) + 1))
    return f"SELECT i, {cols} FROM {seq} WINDOW w AS (PARTITION BY u ORDER BY pos)"


def _pair_key(x: str, y: str) -> str:
    return f"LEAST({x}, {y})::BIGINT * {KEY} + GREATEST({x}, {y})"


def pair_keys_sql(window: int | None, seq: str = "g_seq", where: Callable[[str], str] | None = None) -> str:
    """(key): ``lo * KEY + hi`` for every windowed pair, once; with a window from one scan of the table
    ``g_lead`` (:func:`lead_sql`) per offset, without one from a self-join of ``seq``. ``where(lo)``: a
    condition on the pair's smaller item, applied before the key is made."""
    if window is None:
        cond = f" WHERE {where('LEAST(a.i, b.i)')}" if where else ""
        return f"SELECT {_pair_key('a.i', 'b.i')} AS key FROM {seq} AS a JOIN {seq} AS b ON b.u = a.u AND b.pos > a.pos{cond}"
    parts = []
    for k in range(1, int(window) + 1):
        cond = f" AND {where(f'LEAST(i, n{k})')}" if where else ""
        parts.append(f"SELECT {_pair_key('i', f'n{k}')} AS key FROM g_lead WHERE n{k} IS NOT NULL{cond}")
    return " UNION ALL ".join(parts)


def wave_keys_sql(window: int | None, n_parts: int, a: int, b: int, seq: str = "g_seq") -> str:
    """(key, part): the pair keys of :func:`pair_keys_sql` whose partition ``part = lo mod n_parts`` is
    in ``[a, b)``; each offset's scan filters before it makes keys, so a wave costs a pass over the
    sequences but makes only its own keys."""
    n = int(n_parts)
    body = pair_keys_sql(window, seq, where=lambda lo: f"{lo} % {n} >= {int(a)} AND {lo} % {n} < {int(b)}")
    return f"SELECT key, ((key // {KEY}) % {n})::INTEGER AS part FROM ({body}) AS w"


def expected_pairs_sql(window: int | None, seq: str = "g_seq") -> str:
    """(pairs): the number of windowed pairs of ``seq`` (the NumPy builder's ``_pair_counts``)."""
    c = "m - 1" if window is None else f"LEAST({int(window)}, m - 1)"
    return (
        f"SELECT COALESCE(SUM(({c}) * m - ({c}) * (({c}) + 1) / 2), 0) AS pairs "
        f"FROM (SELECT COUNT(*) AS m FROM {seq} GROUP BY u) AS x"
    )


def counts_sql(src: str) -> str:
    """(key, c): the distinct pair keys of the FROM item ``src`` and their shared-user counts."""
    return f"SELECT key, COUNT(*) AS c FROM {src} GROUP BY key"


def ranked_sql(part: str, side: str) -> str:
    """(s, r): one direction of every counted pair of ``part`` (:func:`counts_sql`) as a source item ``s``
    and the rank key ``r = (COUNT_CAP - min(count, COUNT_CAP)) * KEY + t`` of its neighbour ``t``
    (ascending ``r``: count descending, then the smaller neighbour id); ``side`` "lo": ``s`` the pair's
    smaller item, "hi": its larger."""
    cnt = f"({COUNT_CAP} - LEAST(c, {COUNT_CAP}))::BIGINT * {KEY}"
    s, t = (f"key // {KEY}", f"key % {KEY}") if side == "lo" else (f"key % {KEY}", f"key // {KEY}")
    return f"SELECT {s} AS s, {cnt} + {t} AS r FROM {part}"


def topk_sql(ranked: str, topk: int, topn_aggregate: bool) -> str:
    """(s, r): the ``topk`` smallest rank keys of each source item of ``ranked`` (s, r). Two forms:
    DuckDB's top-n aggregate ``min(x, k)`` (a heap per item, no sort of its neighbours) or a window
    ranking (every engine; Spark plans ``rk <= k`` as a per-group limit)."""
    if topn_aggregate:
        return f"SELECT s, UNNEST(min(r, {int(topk)})) AS r FROM ({ranked}) AS x GROUP BY s"
    ranks = f"SELECT s, r, ROW_NUMBER() OVER (PARTITION BY s ORDER BY r) AS rk FROM ({ranked}) AS x"
    return f"SELECT s, r FROM ({ranks}) AS y WHERE rk <= {int(topk)}"


def part_rule_sql(rule: str, min_shared: int, part: str = "g_part") -> str:
    """(lo, hi): the pairs of a partition of counted keys (:func:`counts_sql`) that "any" or "min_shared"
    keeps (the top-k rule is decided over every partition's candidates: :func:`topk_sql`)."""
    cond = "" if rule == "any" else f" WHERE c >= {int(min_shared)}"
    return f"SELECT key // {KEY} AS lo, key % {KEY} AS hi FROM {part}{cond}"


def _seq_stats(engine, edge_codes: Sequence[int]) -> dict:
    got = engine.fetch(
        f"SELECT (SELECT COUNT(*) FROM inter WHERE event_code IN ({_in_list(edge_codes)})) AS used, "
        "(SELECT COUNT(DISTINCT i) FROM g_seq) AS items, x.users, x.distinct_rows, x.kept_rows, x.all_pairs FROM ("
        "SELECT COUNT(*) AS users, SUM(n) AS distinct_rows, SUM(m) AS kept_rows, SUM(m * (m - 1) / 2) AS all_pairs "
        "FROM (SELECT u, MAX(n) AS n, COUNT(*) AS m FROM g_seq GROUP BY u) AS y) AS x"
    )

    def val(k):
        v = got[k][0] if len(got[k]) else None
        return 0 if v is None or (isinstance(v, float) and v != v) else int(v)

    return {k: val(k) for k in ("used", "items", "users", "distinct_rows", "kept_rows", "all_pairs")}


def _partitions(engine, window: int | None, n_parts: int, per_wave: int) -> Iterator[str]:
    """FROM items of the partitions of the pair keys by smaller item (``lo mod P``): an engine with
    ``spill_partitions`` (DuckDB) writes ``per_wave`` of them at a time to disk (:func:`wave_keys_sql`);
    any other (Spark, whose own shuffle partitions and spills) counts every key in one pass."""
    if n_parts > 1 and hasattr(engine, "spill_partitions"):
        yield from engine.spill_partitions(lambda a, b: wave_keys_sql(window, n_parts, a, b), n_parts, per_wave)
        return
    engine.materialize("g_keys", pair_keys_sql(window))
    try:
        yield "g_keys"
    finally:
        engine.drop("g_keys")


def _topk_candidates(engine, p: int, topk: int, heap: bool, compact_at: int, barred: bool) -> bool:
    """Adds partition ``p``'s top-k candidates (from ``g_part``) to ``g_cand`` (s, r). Partitions go by the
    pair's smaller item, so a partition holds all of its ``lo`` items' neighbours: their top k is final
    and is all that is kept of that side (a top-n over few items, whose heaps stay in cache). The larger
    items' side -- an item has only a few neighbours per partition -- is kept whole, except what cannot
    enter: once a cut has left an item ``k`` candidates, a neighbour ranked after the worst of them
    (``g_bar``) never will (rank keys are distinct per item). When ``g_cand`` passes ``compact_at`` rows
    it is cut to every item's top k, and the bars are renewed: the table stays within a few times ``k``
    rows per item, however many partitions there are. ``barred``: ``g_bar`` exists; returns whether it
    does now."""
    (engine.append if p else engine.materialize)("g_cand", topk_sql(ranked_sql("g_part", "lo"), topk, heap))
    hi = ranked_sql("g_part", "hi")
    if barred:
        hi = f"SELECT h.s, h.r FROM ({hi}) AS h LEFT JOIN g_bar AS b ON b.s = h.s WHERE b.kth IS NULL OR h.r < b.kth"
    engine.append("g_cand", hi)
    if int(engine.fetch("SELECT COUNT(*) AS n FROM g_cand")["n"][0]) > compact_at:
        engine.materialize("g_compact", topk_sql("SELECT s, r FROM g_cand", topk, heap))
        engine.materialize("g_cand", "SELECT s, r FROM g_compact")
        engine.drop("g_compact")
        engine.materialize("g_bar", f"SELECT s, MAX(r) AS kth FROM g_cand GROUP BY s HAVING COUNT(*) >= {int(topk)}")
        return True
    return barred


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
    topn_aggregate: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(lo, hi) int64 of the edges the rule keeps over the view ``inter``, sorted by (lo, hi), and the
    pair statistics: ``interactions_used``, ``users``, ``rows_dropped_duplicate_user_item``,
    ``rows_dropped_by_user_cap``, ``pairs_generated``, ``pairs_skipped_by_window``, ``distinct_pairs``,
    ``partitions``.

    ``chunk_pairs``: the keys of about this many pairs per partition, ``P = ceil(pairs /
    chunk_pairs)`` (at most 4096, as the NumPy builder's hash partitions); None = one partition. Only
    an engine with ``spill_partitions`` (DuckDB) partitions; Spark always counts in one pass.
    ``with_pairs``: the statistics also hold ``pairs``, every distinct windowed pair (``lo``, ``hi``
    int64 sorted, shared-user ``count``) -- as large as the log's distinct pairs, for tests and digests.
    ``topn_aggregate``: the top-k form (None = the engine's)."""
    heap = engine.topn_aggregate if topn_aggregate is None else bool(topn_aggregate)
    try:
        engine.materialize("g_seq", sequences_sql(edge_codes, cap))
        seq = _seq_stats(engine, edge_codes)
        expected = int(engine.fetch(expected_pairs_sql(window))["pairs"][0])
        n_parts = 1 if chunk_pairs is None else max(1, min(4096, math.ceil(expected / int(chunk_pairs))))
        if not hasattr(engine, "spill_partitions"):
            n_parts = 1
        if window is not None:
            engine.materialize("g_lead", lead_sql(window))
            engine.drop("g_seq")  # every later step reads g_lead
        # the free disk once the sequences have spilled
        wave_keys = min(WAVE_KEYS, engine.wave_keys()) if hasattr(engine, "wave_keys") else WAVE_KEYS
        per_wave = max(1, wave_keys * n_parts // max(1, expected))
        per_wave = math.ceil(n_parts / math.ceil(n_parts / per_wave))  # equal waves: each re-reads the sequences
        distinct = generated = 0
        barred = False
        for p, src in enumerate(_partitions(engine, window, n_parts, per_wave)):
            engine.materialize("g_part", counts_sql(src))
            got = engine.fetch("SELECT COUNT(*) AS d, COALESCE(SUM(c), 0) AS g FROM g_part")
            distinct, generated = distinct + int(got["d"][0]), generated + int(got["g"][0])
            if rule == "topk" and n_parts == 1:  # one partition holds every neighbour: its top k is final
                both = f"{ranked_sql('g_part', 'lo')} UNION ALL {ranked_sql('g_part', 'hi')}"
                engine.materialize("g_cand", topk_sql(both, topk, heap))
            elif rule == "topk":
                barred = _topk_candidates(engine, p, topk, heap, COMPACT_PER_ITEM * topk * seq["items"], barred)
            else:
                (engine.append if p else engine.materialize)("g_kept", part_rule_sql(rule, min_shared))
            if with_pairs:
                lo_hi = f"SELECT key // {KEY} AS lo, key % {KEY} AS hi, c FROM g_part"
                (engine.append if p else engine.materialize)("g_pairs", lo_hi)
        if rule == "topk":  # an item's top k among its candidates from every partition
            top = "SELECT s, r FROM g_cand" if n_parts == 1 else topk_sql("SELECT s, r FROM g_cand", topk, heap)
            engine.materialize(
                "g_kept", f"SELECT LEAST(s, r % {KEY}) AS lo, GREATEST(s, r % {KEY}) AS hi FROM ({top}) AS t"
            )
        stats = {
            "interactions_used": seq["used"],
            "users": seq["users"],
            "rows_dropped_duplicate_user_item": seq["used"] - seq["distinct_rows"],
            "rows_dropped_by_user_cap": seq["distinct_rows"] - seq["kept_rows"],
            "pairs_generated": generated,
            "pairs_skipped_by_window": seq["all_pairs"] - generated,
            "distinct_pairs": distinct,
            "partitions": n_parts,
            "waves": math.ceil(n_parts / per_wave),  # passes over the sequences (partitions spilled per pass)
        }
        if with_pairs:
            got = engine.fetch("SELECT lo, hi, c FROM g_pairs ORDER BY lo, hi")
            stats["pairs"] = {k: got[c].astype(np.int64) for k, c in (("lo", "lo"), ("hi", "hi"), ("count", "c"))}
        kept = engine.fetch("SELECT DISTINCT lo, hi FROM g_kept ORDER BY lo, hi")
    finally:
        for t in ("g_part", "g_cand", "g_compact", "g_bar", "g_kept", "g_pairs", "g_lead", "g_seq"):
            engine.drop(t)
    return kept["lo"].astype(np.int64), kept["hi"].astype(np.int64), stats
