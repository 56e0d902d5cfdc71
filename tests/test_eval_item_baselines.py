"""Item-kNN and EASE (eval.item_baselines) on hand-made matrices with known answers, and tuning."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from twotower_hgnn.data.schema import EVENTS
from twotower_hgnn.eval.item_baselines import (
    RECENT_GRID,
    recent_popularity_rankings,
    EASE,
    EASE_GRID,
    KNN_GRID,
    ItemKNN,
    ease_applicable,
    ease_rankings,
    ease_skip_reason,
    interaction_matrix,
    item_knn_rankings,
    rank_scores,
    tune,
    tuned_item_baselines,
)
from twotower_hgnn.eval.metrics import ItemSets, popularity_tiers
from twotower_hgnn.eval.protocol import EvalProtocol, Rankings, TargetProtocol

# 8 items: cluster A = 0-3, cluster B = 4-7. Users 0-4 use A items, users 5-9 use B items, user 10 none.
HIST = [[0, 1, 2], [0, 1], [1, 2, 3], [0, 2, 3], [0, 3], [4, 5], [4, 5, 6], [5, 6, 7], [4, 7], [4, 5, 6, 7], []]
N_USERS, N_ITEMS = len(HIST), 8


def _matrix(hist=HIST, n_items=N_ITEMS):
    rows = np.repeat(np.arange(len(hist)), [len(h) for h in hist])
    cols = np.concatenate([np.asarray(h, np.int64) for h in hist])
    return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(len(hist), n_items))


def _tp(users, exclude, catalogue=np.arange(N_ITEMS), streams=None, relevant=None):
    users = np.asarray(users, np.int64)
    catalogue = np.asarray(catalogue, np.int64)
    streams = np.zeros(catalogue.size, np.int64) if streams is None else np.asarray(streams, np.int64)
    relevant = relevant or [[int(catalogue[0])]] * users.size
    return TargetProtocol(
        "audiobook",
        catalogue,
        users,
        np.ones(users.size, bool),
        ItemSets.from_lists(relevant),
        ItemSets.from_lists(exclude),
        ItemSets.from_lists([[]] * users.size),
        streams,
        popularity_tiers(streams),
    )


def _dense_cosine(X, shrink):
    D = np.asarray(X.todense(), np.float64)
    co = D.T @ D
    nrm = np.sqrt(np.diag(co))
    den = np.outer(nrm, nrm) + shrink
    sim = np.divide(co, den, out=np.zeros_like(co), where=den > 0)
    np.fill_diagonal(sim, 0.0)
    return sim


def test_interaction_matrix_is_binary_and_filters_events():
    df = pd.DataFrame(
        {
            "user_idx": [0, 0, 0, 1, 2],
            "item_idx": [1, 1, 2, 0, 3],
            "event_code": [EVENTS.index(e) for e in ("stream", "stream", "preview", "follow", "stream")],
        }
    )
    X = interaction_matrix(df, 3, 4)
    assert X.dtype == np.float32 and X.shape == (3, 4)
    np.testing.assert_array_equal(X.toarray(), [[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])  # duplicate counted once
    np.testing.assert_array_equal(
        interaction_matrix(df, 3, 4, events=["stream"]).toarray(), [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    )
    with pytest.raises(ValueError, match="outside"):
        interaction_matrix(df, 2, 4)


@pytest.mark.parametrize("shrink", [0.0, 3.0])
def test_knn_weights_follow_the_cosine_formula(shrink):
    X = _matrix()
    ref = _dense_cosine(X, shrink)
    knn = ItemKNN(X)
    W = knn.weights(np.arange(N_ITEMS), n_neighbors=N_ITEMS, shrink=shrink).toarray()
    np.testing.assert_allclose(W, ref, rtol=1e-6, atol=1e-7)
    # a sub-catalogue gives the same columns; n_neighbors=1 keeps each column's largest similarity only
    np.testing.assert_allclose(knn.weights(np.array([5, 6]), N_ITEMS, shrink).toarray(), ref[:, [5, 6]], rtol=1e-6)
    W1 = knn.weights(np.arange(N_ITEMS), 1, shrink).toarray()
    assert ((W1 > 0).sum(axis=0) == 1).all()
    np.testing.assert_allclose(W1.max(axis=0), ref.max(axis=0), rtol=1e-6)
    # shrink only divides: sim(shrink) = co / (n_i n_j + shrink)
    if shrink:
        W0 = knn.weights(np.arange(N_ITEMS), N_ITEMS, 0.0).toarray()
        D = X.toarray()
        nn = np.outer(np.sqrt(D.sum(0)), np.sqrt(D.sum(0)))
        np.testing.assert_allclose(W * (nn + shrink), W0 * nn, rtol=1e-5, atol=1e-6)


def test_knn_recommends_the_users_cluster_first_and_respects_exclusions():
    X = _matrix()
    streams = [5, 1, 1, 1, 9, 8, 7, 6]  # B items are the popular ones
    tp = _tp([0, 6, 10], exclude=[[0, 1], [4], []], streams=streams)
    rk = item_knn_rankings(tp, X, n_neighbors=3, shrink=0.0, depth=10)
    assert rk.items.shape == (3, 10)
    assert set(rk.items[0, :2]) == {2, 3} and set(rk.items[0, 2:6]) == {4, 5, 6, 7}  # A first despite popularity
    assert set(rk.items[1, :3]) == {5, 6, 7} and 4 not in rk.items[1]  # excluded item never shown
    assert (rk.items[0, 6:] == -1).all() and (rk.items[1, 7:] == -1).all()  # padding after the catalogue runs out
    # a user without history: all-zero scores -> exactly the popularity order (streams desc, then id)
    np.testing.assert_array_equal(rk.items[2, :8], [4, 5, 6, 7, 0, 1, 2, 3])


def test_rank_scores_breaks_ties_by_popularity_then_id_and_cuts_exactly():
    tp = _tp([0, 1], exclude=[[], [2]], streams=[0, 3, 3, 1, 0, 0, 0, 0])
    scores = np.array([[1, 0, 0, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0, 0]], np.float64)
    rk = rank_scores(tp, lambda users: scores[users], depth=4)
    np.testing.assert_array_equal(rk.items, [[0, 4, 7, 1], [1, 3, 0, 4]])
    rk_all = rank_scores(tp, lambda users: scores[users], depth=8)
    np.testing.assert_array_equal(rk_all.items[1], [1, 3, 0, 4, 5, 6, 7, -1])


def _ease_reference(X, lam):
    D = np.asarray(X.todense(), np.float64)
    P = np.linalg.inv(D.T @ D + lam * np.eye(D.shape[1]))
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return D @ B


@pytest.mark.parametrize("lam", [0.5, 10.0])
def test_ease_scores_equal_a_dense_reference(lam):
    X = _matrix()
    ref = _ease_reference(X, lam)
    ease = EASE(X)
    cat = np.array([2, 3, 4, 5, 6])
    np.testing.assert_allclose(X.toarray() @ ease.weights(lam, cat), ref[:, cat], rtol=1e-6, atol=1e-9)
    tp = _tp([0, 5, 9], exclude=[[2], [], [4, 5, 6]], catalogue=cat, streams=[1, 2, 3, 4, 5])
    rk = ease_rankings(tp, X, lam, depth=5, ease=ease)
    for r, u in enumerate([0, 5, 9]):
        s = ref[u, cat].copy()
        s[np.isin(cat, tp.exclude.row(r))] = -np.inf
        order = np.lexsort((cat, -np.asarray(tp.train_streams), -s))  # score, then popularity, then id
        want = np.where(np.isinf(s[order]), -1, cat[order])
        np.testing.assert_array_equal(rk.items[r], want)
    assert (rk.items[2, 2:] == -1).all() and not np.isin(rk.items[0], [2]).any()


def test_ease_size_limit():
    assert ease_applicable(20_000) and not ease_applicable(20_001)
    assert ease_skip_reason(25_000) == "EASE skipped: 25,000 items > 20,000"


def test_tune_picks_the_best_validation_hr_and_first_on_ties():
    tp = _tp([0, 1, 2], exclude=[[], [], []], relevant=[[3], [3], [5]])
    proto = EvalProtocol({"audiobook": tp}, {})
    good = Rankings(tp.users, np.array([[3, 5], [3, 5], [5, 3]]))
    half = Rankings(tp.users, np.array([[3, 5], [5, 3], [3, 5]]))
    bad = Rankings(tp.users, np.array([[0, 1], [0, 1], [0, 1]]))
    by_a = {0: bad, 1: half, 2: good, 3: good}
    best, table = tune(lambda p: {"audiobook": by_a[p["a"]]}, [{"a": a} for a in (0, 1, 2, 3)], proto, k=1)
    assert best == {"a": 2}  # 3 ties with 2: the first wins
    assert [round(r["hr@1"], 4) for r in table] == [0.0, round(1 / 3, 4), 1.0, 1.0]
    assert table[1]["per_target"]["audiobook"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="empty grid"):
        tune(lambda p: {}, [], proto)


def test_default_grids_are_small():
    assert len(KNN_GRID) == 15 and len(EASE_GRID) == 8
    assert {g["lam"] for g in EASE_GRID} == {50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0}


def test_tuned_item_baselines_on_the_synthetic_tiny_dataset():
    from twotower_hgnn.data import load_dataset
    from twotower_hgnn.data.split import temporal_split
    from twotower_hgnn.eval.protocol import build_protocol, sample_users

    ds = load_dataset("synthetic", scale="tiny", seed=0)
    split = temporal_split(ds)
    proto = build_protocol(ds, split)
    models, info = tuned_item_baselines(ds, split, proto, knn_grid=KNN_GRID[:2], ease_grid=EASE_GRID[:2])
    assert set(models) == {"RecentPop", "ItemKNN", "EASE"} and set(models["EASE"]) == set(proto.targets)
    assert info["ItemKNN"]["best"] in list(KNN_GRID[:2]) and len(info["EASE"]["table"]) == 2
    assert info["RecentPop"]["best"] in list(RECENT_GRID)
    for name in models:
        for t, tp in proto.targets.items():
            rk = models[name][t]
            np.testing.assert_array_equal(rk.users, tp.users)
            assert not tp.exclude.contains(np.arange(tp.n_users)[:, None], rk.items).any()
            assert np.isin(rk.items[rk.items >= 0], tp.catalogue).all()
    # the item caps: above them a baseline is skipped with its reason, the others still run; on a
    # seeded user sample every ranking is of the sampled users
    small = sample_users(proto, 30, seed=1)
    capped, cinfo = tuned_item_baselines(
        ds, split, small, knn_grid=KNN_GRID[:1], ease_grid=EASE_GRID[:1], ease_max_items=10, knn_max_items=10
    )
    assert set(capped) == {"RecentPop"}
    assert cinfo["ItemKNN"] == {"skipped": f"ItemKNN skipped: {ds.num_items:,} items > 10 (eval.knn_max_items)"}
    assert cinfo["EASE"] == {"skipped": f"EASE skipped: {ds.num_items:,} items > 10"}
    for t, tp in small.targets.items():
        np.testing.assert_array_equal(capped["RecentPop"][t].users, tp.users)
    assert cinfo["validation"]["protocol"]["audiobook"]["users"] <= 60  # the validation users are sampled too


def test_recent_popularity_ranks_by_the_last_days_then_all_time():
    from twotower_hgnn.data import load_dataset
    from twotower_hgnn.data.schema import EVENTS
    from twotower_hgnn.data.split import temporal_split
    from twotower_hgnn.eval.protocol import build_protocol

    ds = load_dataset("synthetic", scale="tiny", seed=0)
    split = temporal_split(ds)
    tp = build_protocol(ds, split)["podcast"]
    tr = split.train
    last = tr["timestamp"].max()
    recent = tr[(tr["event_code"] == EVENTS.index("stream")) & (tr["timestamp"] >= last - 3 * 86_400)]
    counts = recent["item_idx"].value_counts()
    top = int(counts.index[0])  # the most streamed podcast of the last 3 days
    rk = recent_popularity_rankings(tp, tr, 3.0)
    free = ~tp.exclude.contains(np.arange(tp.n_users), np.full(tp.n_users, top))
    assert (rk.items[free, 0] == top).all()  # first for everyone who has not streamed it yet
    allt = recent_popularity_rankings(tp, tr, None)
    from twotower_hgnn.eval.baselines import popularity_rankings

    np.testing.assert_array_equal(allt.items, popularity_rankings(tp).items)  # days=None is Popularity
