"""Baselines: popularity order with exclusions, LLM-KNN/HGNN-KNN vs a per-user NumPy reference, ranking helper."""

import types

import numpy as np
import pandas as pd
import pytest

from twotower_hgnn.data.schema import EVENTS, Dataset
from twotower_hgnn.eval.baselines import (
    knn_rankings,
    mean_history_vectors,
    popularity_rankings,
    rank_global_order,
    rank_users,
    rank_with_vectors,
)
from twotower_hgnn.eval.metrics import ItemSets
from twotower_hgnn.eval.protocol import build_protocol

N_AB, N_PC, N_USERS = 12, 18, 30


def _random_case(seed=0):
    rng = np.random.default_rng(seed)
    n = N_AB + N_PC

    def table(rows, cold_from=N_USERS):
        u = rng.integers(0, N_USERS, rows)
        ab = (rng.random(rows) < 0.5) & (u < cold_from)  # users >= cold_from: no audiobook in train
        i = np.where(ab, rng.integers(0, N_AB, rows), rng.integers(N_AB, n, rows))
        e = rng.choice(len(EVENTS), rows, p=[0.7, 0.1, 0.1, 0.1])
        return pd.DataFrame(
            {"user_idx": u.astype(np.int32), "item_idx": i.astype(np.int32), "event_code": e.astype(np.int8)}
        )

    train, test = table(300, cold_from=20), table(120)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(n)],
            "item_type": ["audiobook"] * N_AB + ["podcast"] * N_PC,
            "title": "",
            "description": "",
            "language": "",
            "genre": "",
        }
    )
    users = pd.DataFrame({"user_id": [f"u{j}" for j in range(N_USERS)], "age": -1, "country": ""})
    ds = Dataset(
        "rand", items, users, pd.concat([train, test], ignore_index=True), {"audiobook": N_AB, "podcast": N_PC}
    )
    return ds, types.SimpleNamespace(train=train, test=test), rng.normal(size=(n, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def case():
    ds, split, vecs = _random_case()
    return build_protocol(ds, split), vecs


def _reference_knn(tp, vecs, user_pos, k):
    """Per-user loop: mean of distinct history vectors, dot, drop exclusions, sort by (-score, id)."""
    hist, excl = tp.history.row(user_pos), set(tp.exclude.row(user_pos).tolist())
    u = vecs[hist].astype(np.float64).mean(axis=0)
    cands = [int(i) for i in tp.catalogue if int(i) not in excl]
    cands.sort(key=lambda i: (-float(vecs[i].astype(np.float64) @ u), i))
    return (cands + [-1] * k)[:k]


@pytest.mark.parametrize("target", ["audiobook", "podcast"])
def test_knn_matches_reference(case, target):
    proto, vecs = case
    tp = proto[target]
    k = 8
    rk = knn_rankings(tp, vecs, k=k)
    warm_pos = np.flatnonzero(tp.warm)
    assert warm_pos.size > 3 and (target == "podcast" or (~tp.warm).sum() > 0)  # audiobook: cold users exist
    np.testing.assert_array_equal(rk.users, tp.users[warm_pos])  # warm only
    ref = np.array([_reference_knn(tp, vecs, p, k) for p in warm_pos])
    np.testing.assert_array_equal(rk.items, ref)


def test_knn_recovers_the_nearest_item():
    # user streamed item 0 and previewed item 2; item 1 lies exactly on their mean direction
    vecs = np.array([[1, 0], [0.7, 0.7], [0, 1], [-1, 0], [0, -1]], np.float32)
    tp = types.SimpleNamespace(
        warm=np.array([True]),
        history=ItemSets.from_lists([[0, 2]]),
        exclude=ItemSets.from_lists([[0]]),
        catalogue=np.arange(5),
        users=np.array([7]),
        n_users=1,
        target_type="audiobook",
    )
    np.testing.assert_allclose(mean_history_vectors(tp.history, vecs), [[0.5, 0.5]])
    rk = knn_rankings(tp, vecs, k=5)
    np.testing.assert_array_equal(rk.users, [7])
    # scores: 1 -> 0.7, 2 -> 0.5, 3 -> -0.5, 4 -> -0.5 (tie -> lower id first); 0 is excluded -> padding
    np.testing.assert_array_equal(rk.items, [[1, 2, 3, 4, -1]])


def test_popularity_order_exclusions_and_padding(case):
    proto, _ = case
    tp = proto["audiobook"]
    rk = popularity_rankings(tp, k=N_AB + 3)
    np.testing.assert_array_equal(rk.users, tp.users)
    order = sorted(tp.catalogue.tolist(), key=lambda i: (-tp.train_streams[i - tp.item_offset], i))
    for p in range(tp.n_users):
        excl = set(tp.exclude.row(p).tolist())
        want = [i for i in order if i not in excl]
        np.testing.assert_array_equal(rk.items[p], want + [-1] * (N_AB + 3 - len(want)))
    # hand case: counts 5, 9, 9, 1 -> order 1, 2, 0, 3; user 0 excludes 2
    got = rank_global_order(np.array([1, 2, 0, 3]), ItemSets.from_lists([[2], [], [0, 1, 2, 3]]), k=3)
    np.testing.assert_array_equal(got, [[1, 0, 3], [1, 2, 0], [-1, -1, -1]])


def test_rank_with_vectors_maps_ids_and_checks_shapes(case):
    proto, vecs = case
    tp = proto["podcast"]
    items = vecs[tp.catalogue]
    user_vecs = np.eye(8, dtype=np.float32)[:3]
    ex = ItemSets.from_lists([[int(tp.catalogue[0]), 0], [], [int(tp.catalogue[-1])]])  # 0 is not a podcast: ignored
    got = rank_with_vectors(user_vecs, items, k=5, exclude=ex, item_ids=tp.catalogue)
    scores = user_vecs @ items.T
    for u in range(3):
        allowed = [r for r in range(items.shape[0]) if int(tp.catalogue[r]) not in ex.row(u)]
        best = sorted(allowed, key=lambda r: (-scores[u, r], r))[:5]
        np.testing.assert_array_equal(got[u], tp.catalogue[best])
    with pytest.raises(ValueError, match="item vectors for a podcast catalogue"):
        rank_users(tp, user_vecs, items[:-1])
    with pytest.raises(ValueError, match="exclusion rows"):
        rank_with_vectors(user_vecs, items, exclude=ItemSets.from_lists([[]]))


def test_rank_global_order_random_against_loop():
    rng = np.random.default_rng(3)
    order = rng.permutation(np.arange(5, 45))  # 40 distinct ids, any order
    lists = [rng.choice(np.arange(0, 50), rng.integers(0, 30), replace=False) for _ in range(25)]  # some ids not listed
    got = rank_global_order(order, ItemSets.from_lists(lists), k=20)
    for u, ex in enumerate(lists):
        want = [int(i) for i in order if i not in set(ex.tolist())][:20]
        np.testing.assert_array_equal(got[u], want + [-1] * (20 - len(want)))


def test_rank_users_with_a_search_only_index_equals_the_vectors(case):
    """A search-only ExactIndex (host vectors not kept: the two-tower rankings drop them before the
    search) ranks exactly as the vectors do; without vectors or an index nothing is ranked."""
    from twotower_hgnn.retrieval import ExactIndex

    proto, vecs = case
    tp = proto["podcast"]
    items = vecs[tp.catalogue]
    user_vecs = np.random.default_rng(1).normal(size=(tp.n_users, items.shape[1])).astype(np.float32)
    want = rank_users(tp, user_vecs, items, k=7)
    index = ExactIndex(items.copy(), keep_host=False)
    got = rank_users(tp, user_vecs, None, k=7, index=index)
    np.testing.assert_array_equal(got.items, want.items)
    np.testing.assert_array_equal(got.users, want.users)
    with pytest.raises(ValueError, match="cannot be saved"):
        index.save("unused")
    with pytest.raises(ValueError, match="pass item_vecs or a prebuilt index"):
        rank_users(tp, user_vecs, None)
    with pytest.raises(ValueError, match="item vectors for a podcast catalogue"):
        rank_users(tp, user_vecs, None, index=ExactIndex(items[:-1]))
