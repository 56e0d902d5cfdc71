"""Popularity, weak-signal counts, relation support and the temporal split as queries over ``inter``
(and ``items`` for types). Item types are whatever codes the ``items`` view holds."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from twotower_hgnn.logs.colisten import _in_list


def item_event_counts(engine, event_codes: Sequence[int], n_items: int) -> dict[int, np.ndarray]:
    """``{event_code: int64 [n_items] rows of that event per item}`` of the view ``inter``."""
    got = engine.fetch(
        "SELECT item_idx, event_code, COUNT(*) AS n FROM inter "
        f"WHERE event_code IN ({_in_list(event_codes)}) GROUP BY item_idx, event_code"
    )
    out = {}
    for e in event_codes:
        m = got["event_code"].astype(np.int64) == int(e)
        c = np.zeros(n_items, np.int64)
        c[got["item_idx"][m].astype(np.int64)] = got["n"][m].astype(np.int64)
        out[int(e)] = c
    return out


def relation_support(engine, edge_codes: Sequence[int]) -> dict[tuple[int, int], int]:
    """``{(type a, type b): users whose edge-event rows span two distinct items of types a <= b}`` (pairs
    with no such user are absent)."""
    per_type = (
        "SELECT ui.u AS u, it.type_code AS tc, COUNT(*) AS n FROM "
        f"(SELECT DISTINCT user_idx AS u, item_idx AS i FROM inter WHERE event_code IN ({_in_list(edge_codes)})) AS ui "
        "JOIN items AS it ON it.item_idx = ui.i GROUP BY ui.u, it.type_code"
    )
    got = engine.fetch(
        f"WITH ut AS ({per_type}) SELECT a.tc AS ta, b.tc AS tb, COUNT(*) AS users FROM ut AS a JOIN ut AS b "
        "ON a.u = b.u AND a.tc <= b.tc WHERE a.tc < b.tc OR a.n >= 2 GROUP BY a.tc, b.tc"
    )
    return {(int(a), int(b)): int(n) for a, b, n in zip(got["ta"], got["tb"], got["users"])}


def log_bounds(engine) -> tuple[int, int]:
    """(rows, last second) of ``inter``."""
    got = engine.fetch("SELECT COUNT(*) AS n, MAX(timestamp) AS mx FROM inter")
    return int(got["n"][0]), int(got["mx"][0]) if int(got["n"][0]) else 0


def timestamp_at(engine, pos: int) -> int:
    """The timestamp of row ``pos`` of the time-ordered ``inter``."""
    return int(engine.fetch(f"SELECT timestamp FROM inter WHERE row_id = {int(pos)}")["timestamp"][0])


def _part_sql(cut: int, hist: int | None, end: int | None) -> str:
    lo = f"WHEN timestamp < {int(hist)} THEN 0 " if hist is not None else ""
    hi = f"WHEN timestamp < {int(end)} THEN 2 ELSE 3" if end is not None else "ELSE 2"
    return f"CASE {lo}WHEN timestamp < {int(cut)} THEN 1 {hi} END"


def split_parts(engine, cut: int, hist: int | None, end: int | None, warm_code: int, stream: int = 0) -> dict:
    """The temporal split of ``inter`` at ``cut`` (history from ``hist``, test until ``end``; None = open):
    ``part`` int8 per row (0 before the history, 1 train, 2 test, 3 after the test window), ``warm`` /
    ``cold`` int32 sorted test users with / without a ``warm_code``-type row in train, and the sizes of
    ``data.split.segments``.

    ``inter`` is in time order (``row_id``), so every part is one run of rows: the engine returns each
    part's first and last ``row_id`` and its row count (a few rows, not a part per row sorted back into
    row order) and ``part`` is rebuilt from those runs; a log whose parts are not runs breaks the
    contract and raises ``ValueError``."""
    part_of = _part_sql(cut, hist, end)
    runs = engine.fetch(
        f"SELECT p, MIN(row_id) AS a, MAX(row_id) AS b, COUNT(*) AS n FROM (SELECT row_id, {part_of} AS p "
        "FROM inter) AS x GROUP BY p ORDER BY p"
    )
    p, a, b, n = (runs[c].astype(np.int64) for c in ("p", "a", "b", "n"))
    if np.any(b - a + 1 != n) or np.any(a[1:] != b[:-1] + 1):
        raise ValueError("inter: the split's parts are not runs of row_id (rows not in time order)")
    part = np.repeat(p.astype(np.int8), n)
    per_row = (
        f"SELECT x.user_idx AS u, x.event_code AS e, it.type_code AS tc, {part_of} AS p "
        "FROM inter AS x JOIN items AS it ON it.item_idx = x.item_idx"
    )
    users = engine.fetch(
        f"SELECT u, MAX(CASE WHEN p = 1 AND tc = {int(warm_code)} THEN 1 ELSE 0 END) AS warm, "
        "MAX(CASE WHEN p = 2 THEN 1 ELSE 0 END) AS test, "
        f"MAX(CASE WHEN p = 2 AND tc = {int(warm_code)} AND e = {int(stream)} THEN 1 ELSE 0 END) AS ab_test, "
        f"MAX(CASE WHEN p = 1 THEN 1 ELSE 0 END) AS train FROM ({per_row}) AS r GROUP BY u ORDER BY u"
    )
    u = users["u"].astype(np.int32)
    test, warm_m = users["test"] == 1, users["warm"] == 1
    ab = users["ab_test"] == 1
    counts = np.bincount(part, minlength=4)
    sizes = {
        "train_interactions": int(counts[1]),
        "train_users": int((users["train"] == 1).sum()),
        "test_interactions": int(counts[2]),
        "test_users": int(test.sum()),
        "warm_users": int((test & warm_m).sum()),
        "cold_users": int((test & ~warm_m).sum()),
        "warm_users_ab_test": int((test & warm_m & ab).sum()),
        "cold_users_ab_test": int((test & ~warm_m & ab).sum()),
        "dropped_before_history": int(counts[0]),
        "after_test_window": int(counts[3]),
    }
    return {"part": part, "warm": u[test & warm_m], "cold": u[test & ~warm_m], "sizes": sizes}
