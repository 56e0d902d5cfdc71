"""Co-listening graph: exact edges per relation for each rule on a hand-made log; caps; holdout; density."""

import numpy as np
import pandas as pd
import pytest

from twotower_hgnn.data.readers import build_dataset
from twotower_hgnn.data.schema import ITEM_TYPES
from twotower_hgnn.graph import GraphConfig, GraphError, build_graph, default_graph_config, holdout_edges

AA, AP, PP = ("audiobook", "audiobook"), ("audiobook", "podcast"), ("podcast", "podcast")

# Items: a0, a1 (audiobooks -> global ids 0, 1), p0, p1, p2 (podcasts -> 2, 3, 4).
# Streams per user in time order:
#   u0: a0 p0 p1 (+ a repeated stream of a0)      u1: a0 p0 p2
#   u2: a1 p0                                     u3: p1 p2 (+ a preview of a1 in between)
#   u4: a0 a1
# All within-user pairs (shared-user counts): (0,2)x2, (0,3), (2,3), (0,4), (2,4), (1,2), (3,4), (0,1).
LOG = [
    ("u0", "a0", 1, "stream"),
    ("u0", "p0", 2, "stream"),
    ("u0", "a0", 3, "stream"),
    ("u0", "p1", 4, "stream"),
    ("u1", "a0", 1, "stream"),
    ("u1", "p0", 5, "stream"),
    ("u1", "p2", 6, "stream"),
    ("u2", "a1", 2, "stream"),
    ("u2", "p0", 3, "stream"),
    ("u3", "p1", 1, "stream"),
    ("u3", "a1", 2, "preview"),
    ("u3", "p2", 3, "stream"),
    ("u4", "a0", 7, "stream"),
    ("u4", "a1", 8, "stream"),
]


def _ds(item_types=None):
    inter = pd.DataFrame(LOG, columns=["user_id", "item_id", "timestamp", "event"])
    ids = ["p0", "a0", "p1", "a1", "p2"]
    types = item_types or {i: ("audiobook" if i[0] == "a" else "podcast") for i in ids}
    items = pd.DataFrame(
        {
            "item_id": ids,
            "item_type": [types[i] for i in ids],
            "title": ids,
            "description": "",
            "language": "en",
            "genre": "",
        }
    )
    users = pd.DataFrame({"user_id": [f"u{i}" for i in range(5)], "age": 30, "country": "SE"})
    return build_dataset(inter, items, users, name="hand")


def _edges(g):
    return {rel: sorted(map(tuple, np.asarray(e).tolist())) for rel, e in g.edges.items()}


@pytest.fixture(scope="module")
def ds():
    d = _ds()
    assert list(d.items["item_id"]) == ["a0", "a1", "p0", "p1", "p2"]
    return d


ALL = GraphConfig(rule="any", window=None, max_items_per_user=None)


def test_rule_any(ds):
    g, st = build_graph(ds, None, ALL)
    assert _edges(g) == {AA: [(0, 1)], AP: [(0, 2), (0, 3), (0, 4), (1, 2)], PP: [(2, 3), (2, 4), (3, 4)]}
    assert st["pairs_generated"] == 9 and st["distinct_pairs"] == 8 and st["pairs_dropped_by_rule"] == 0
    assert st["rows_dropped_duplicate_user_item"] == 1  # u0's second a0 stream counts once
    assert st["relations"]["audiobook-podcast"]["edges"] == 4
    assert st["relations"]["audiobook-podcast"]["density"] == pytest.approx(4 / 6)
    # CSR directions agree with the edge lists
    np.testing.assert_array_equal(g.neighbors(("podcast", "audiobook"), 2), [0, 1])
    np.testing.assert_array_equal(g.neighbors(("audiobook", "podcast"), 0), [2, 3, 4])
    np.testing.assert_array_equal(g.neighbors(("podcast", "podcast"), 3), [2, 4])


def test_rule_min_shared(ds):
    g, st = build_graph(ds, None, GraphConfig(rule="min_shared", min_shared=2, window=None, max_items_per_user=None))
    assert _edges(g) == {AA: [], AP: [(0, 2)], PP: []}
    assert st["pairs_dropped_by_rule"] == 7
    assert set(g.relations) == {AA, AP, PP}  # empty relations are kept; the sampler spec decides


def test_rule_topk(ds):
    # top-1 per item (count desc, then smaller id): a0->p0(2), a1->a0, p0->a0, p1->a0, p2->a0
    g, _ = build_graph(ds, None, GraphConfig(rule="topk", topk=1, window=None, max_items_per_user=None))
    assert _edges(g) == {AA: [(0, 1)], AP: [(0, 2), (0, 3), (0, 4)], PP: []}
    g2, _ = build_graph(ds, None, GraphConfig(rule="topk", topk=2, window=None, max_items_per_user=None))
    # top-2: a0:{p0, a1}  a1:{a0, p0}  p0:{a0, a1}  p1:{a0, p0}  p2:{a0, p0}
    assert _edges(g2) == {AA: [(0, 1)], AP: [(0, 2), (0, 3), (0, 4), (1, 2)], PP: [(2, 3), (2, 4)]}


def test_window_and_counts(ds):
    g, st = build_graph(ds, None, GraphConfig(rule="any", window=1, max_items_per_user=None))
    # consecutive items only: u0 (0,2),(2,3); u1 (0,2),(2,4); u2 (1,2); u3 (3,4); u4 (0,1)
    assert _edges(g) == {AA: [(0, 1)], AP: [(0, 2), (1, 2)], PP: [(2, 3), (2, 4), (3, 4)]}
    assert st["pairs_generated"] == 7 and st["pairs_skipped_by_window"] == 2


def test_user_cap_keeps_most_recent(ds):
    g, st = build_graph(ds, None, GraphConfig(rule="any", window=None, max_items_per_user=2))
    # u0 keeps (p0, p1), u1 keeps (p0, p2): their audiobook a0 is dropped from pairing
    assert st["rows_dropped_by_user_cap"] == 2
    assert _edges(g) == {AA: [(0, 1)], AP: [(1, 2)], PP: [(2, 3), (2, 4), (3, 4)]}


def test_edge_events_parameter(ds):
    g, _ = build_graph(
        ds, None, GraphConfig(edge_events=("stream", "preview"), rule="any", window=None, max_items_per_user=None)
    )
    assert (1, 3) in _edges(g)[AP] and (1, 4) in _edges(g)[AP]  # u3's preview of a1 joins a1 with p1, p2
    g0, _ = build_graph(ds, None, ALL)
    assert (1, 3) not in _edges(g0)[AP]


def test_interactions_subset_and_partitioning_do_not_change_result(ds):
    train = ds.interactions[ds.interactions["timestamp"] < 5]
    g, _ = build_graph(ds, train, ALL)
    # before t=5: u0 a0 p0 p1, u1 a0, u2 a1 p0, u3 p1 (a1 preview) p2
    assert _edges(g) == {AA: [], AP: [(0, 2), (0, 3), (1, 2)], PP: [(2, 3), (3, 4)]}
    for rule in ("any", "topk", "min_shared"):
        a, _ = build_graph(ds, None, GraphConfig(rule=rule, topk=1, window=None, max_items_per_user=None))
        b, st = build_graph(
            ds, None, GraphConfig(rule=rule, topk=1, window=None, max_items_per_user=None, chunk_pairs=1)
        )
        assert st["partitions"] > 1
        assert _edges(a) == _edges(b)


def test_homogeneous_graph():
    d = _ds({i: "podcast" for i in ["p0", "a0", "p1", "a1", "p2"]})
    g, st = build_graph(d, None, ALL)
    assert g.relations == (PP,)
    assert g.num_edges(PP) == 8 and st["nodes"] == {"audiobook": 0, "podcast": 5}


def test_config_errors(ds):
    with pytest.raises(GraphError, match="rule"):
        GraphConfig(rule="all")
    with pytest.raises(GraphError, match="edge_events"):
        GraphConfig(edge_events=("click",))
    with pytest.raises(GraphError, match="item_idx"):
        build_graph(ds, pd.DataFrame({"user_idx": [0]}), ALL)


def test_holdout_edges(ds):
    g, _ = build_graph(ds, None, ALL)
    tr, held = holdout_edges(g, frac=0.34, seed=3)
    for rel, e in g.edges.items():
        k = int(round(0.34 * e.shape[0]))
        assert held[rel].shape == (k, 2)
        both = sorted(map(tuple, np.concatenate([tr.edges[rel], held[rel]]).tolist()))
        assert both == sorted(map(tuple, e.tolist()))  # disjoint, union = original
    tr2, held2 = holdout_edges(g, frac=0.34, seed=3)
    assert all(np.array_equal(held[r], held2[r]) for r in held)  # seeded
    # the CSR of the training graph no longer contains held-out edges
    for a, b in held[PP].tolist():
        assert b not in tr.neighbors(PP, a)


def test_synthetic_density_bound_and_linear_pairs():
    from twotower_hgnn.data.split import temporal_split
    from twotower_hgnn.data.synthetic import generate

    d = generate("tiny", seed=0)
    sp = temporal_split(d)
    cfg = default_graph_config(d)
    g, st = build_graph(d, sp.train, cfg)
    n_stream = int((sp.train["event_code"] == 0).sum())
    assert st["pairs_generated"] <= cfg.window * n_stream  # linear in the log
    # top-k bounds the edge count: each item keeps <= k, so E <= k * n_items
    assert st["edges"] <= cfg.topk * d.num_items
    assert st["degree"]["median"] <= 3 * cfg.topk
    full, st_full = build_graph(d, sp.train, GraphConfig(rule="any", window=None, max_items_per_user=None))
    assert st["density"] < 0.5 * st_full["density"]
    # the paper's §4.1.3: |PC-PC| >> |AB-PC| and |AB-AB| on Spotify-shaped data
    e = {r: g.num_edges(r) for r in g.relations}
    assert e[PP] > 5 * e[AP] and e[PP] > 5 * e[AA]
    assert ITEM_TYPES == ("audiobook", "podcast")


def test_topk_matches_brute_force_on_random_log():
    """Random log, small k, ties everywhere: the vectorised top-k equals a Python reference."""
    from collections import Counter
    from itertools import combinations

    rng = np.random.default_rng(7)
    n_users, n_items = 40, 25
    rows = []
    for u in range(n_users):
        for t, i in enumerate(rng.choice(n_items, size=rng.integers(1, 9), replace=False)):
            rows.append((f"u{u}", f"i{i:02d}", t, "stream"))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "event"])
    items = pd.DataFrame(
        {
            "item_id": [f"i{i:02d}" for i in range(n_items)],
            "item_type": ["audiobook"] * 5 + ["podcast"] * (n_items - 5),
            "title": "t",
            "description": "",
            "language": "",
            "genre": "",
        }
    )
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(n_users)], "age": 1, "country": ""})
    d = build_dataset(inter, items, users, name="rand")
    seqs = d.interactions.groupby("user_idx")["item_idx"].apply(list)
    cnt = Counter()
    for s in seqs:
        for a, b in combinations(sorted(set(s)), 2):
            cnt[(a, b)] += 1
    for k in (1, 2, 3):
        nbrs = {i: [] for i in range(n_items)}
        for (a, b), c in cnt.items():
            nbrs[a].append((-c, b))
            nbrs[b].append((-c, a))
        ref = set()
        for i, lst in nbrs.items():
            for _, j in sorted(lst)[:k]:
                ref.add((min(i, j), max(i, j)))
        for chunk in (10**6, 7):
            g, _ = build_graph(
                d, None, GraphConfig(rule="topk", topk=k, window=None, max_items_per_user=None, chunk_pairs=chunk)
            )
            got = {tuple(e) for rel in g.edges.values() for e in np.asarray(rel).tolist()}
            assert got == ref, (k, chunk)


def test_prepare_report_on_tiny():
    from twotower_hgnn.data.synthetic import generate
    from twotower_hgnn.graph import prepare_report

    d = generate("tiny", seed=0)
    rep, g = prepare_report(d, {"min_segment_users": 5}, None, holdout_frac=0.1, seed=0)
    assert rep["split"]["warm_users"] >= 5 and rep["split"]["cold_users"] >= 5
    for rel in g.relations:
        name = f"{rel[0]}-{rel[1]}"
        assert rep["holdout"][name] == int(round(0.1 * g.num_edges(rel)))
        assert rep["train_graph_edges"][name] == g.num_edges(rel) - rep["holdout"][name]
    assert rep["calibration"]["podcasts_per_audiobook"] == 14.0
    assert rep["graph"]["config"]["rule"] == "topk"
    import json

    json.dumps(rep, default=str)  # JSON-serialisable for stats.json
