"""Hand-computed values for every metric of twotower_hgnn.eval.metrics (App. A + Recall/NDCG + long tail)."""

import numpy as np
import pytest

from twotower_hgnn.eval.metrics import ItemSets, compute_metrics, first_occurrence, long_tail_metrics, popularity_tiers

CAT = np.arange(10, 20, dtype=np.int64)  # catalogue: ids 10..19
L2 = 1.0 / np.log2(3.0)  # discount at position 2


def _case():
    ranked = np.array(
        [
            [11, 12, 13, 14, 15],  # rel {12, 15}: hits at 2 and 5
            [13, 13, -1, -1, -1],  # rel {13}: hit at 1, the duplicate is not a second hit
            [16, 17, 18, 19, 10],  # rel {10}: only hit at 5, past depth 4 -> MRR 0
            [-1, -1, -1, -1, -1],  # rel {11, 12, 13}: all padding -> all 0
        ]
    )
    rel = ItemSets.from_lists([[15, 12], [13], [10], [13, 11, 12, 12]])
    return ranked, rel


def test_hand_computed_values():
    ranked, rel = _case()
    m = compute_metrics(ranked, rel, CAT, k=2, depth=4)
    assert set(m) == {"hr@2", "mrr@4", "coverage@4", "recall@2", "ndcg@2", "n_users"}
    assert m["n_users"] == 4
    assert m["hr@2"] == pytest.approx(0.5)
    assert m["mrr@4"] == pytest.approx((0.5 + 1.0 + 0.0 + 0.0) / 4)
    assert m["recall@2"] == pytest.approx((0.5 + 1.0) / 4)
    assert m["ndcg@2"] == pytest.approx((L2 / (1.0 + L2) + 1.0) / 4)
    # top-4 union: {11,12,13,14} u {13} u {16,17,18,19} = 8 of 10 items
    assert m["coverage@4"] == pytest.approx(0.8)
    # depth 5 reaches user 2's hit at position 5 and item 15/10 for coverage
    m5 = compute_metrics(ranked, rel, CAT, k=2, depth=5)
    assert m5["mrr@5"] == pytest.approx((0.5 + 1.0 + 0.2) / 4)
    assert m5["coverage@5"] == pytest.approx(1.0)


def test_k_larger_than_list_and_ndcg_ideal_capped_at_k():
    ranked = np.array([[10, 11, 12]])
    rel = ItemSets.from_lists([[12, 13, 14, 15]])
    m = compute_metrics(ranked, rel, CAT, k=10, depth=100)
    assert m["hr@10"] == 1.0 and m["mrr@100"] == pytest.approx(1 / 3)
    assert m["recall@10"] == pytest.approx(1 / 4)
    idcg = sum(1 / np.log2(p + 1) for p in range(1, 5))  # min(|rel|=4, K=10) = 4 terms
    assert m["ndcg@10"] == pytest.approx((1 / np.log2(4)) / idcg)
    m1 = compute_metrics(ranked, rel, CAT, k=1, depth=100)
    assert m1["hr@1"] == 0.0 and m1["ndcg@1"] == 0.0


def test_duplicates_never_score_above_the_deduplicated_list():
    rel = ItemSets.from_lists([[13, 14]])
    dup = compute_metrics(np.array([[13, 13, 14]]), rel, CAT, k=2)
    assert dup["recall@2"] == pytest.approx(0.5)
    assert dup["ndcg@2"] == pytest.approx(1 / (1 + L2))
    clean = compute_metrics(np.array([[13, 14, -1]]), rel, CAT, k=2)
    assert clean["recall@2"] == 1.0 and clean["ndcg@2"] == pytest.approx(1.0)
    np.testing.assert_array_equal(
        first_occurrence(np.array([[5, 3, 5, -1, 3, 7]])), [[True, True, False, False, False, True]]
    )


def test_perfect_ranking_scores_one_and_empty_users():
    rel = ItemSets.from_lists([[10], [11, 12]])
    m = compute_metrics(np.array([[10, 11], [12, 11]]), rel, CAT, k=2)
    assert m["hr@2"] == m["mrr@100"] == m["recall@2"] == 1.0 and m["ndcg@2"] == pytest.approx(1.0)
    empty = compute_metrics(np.zeros((0, 100), np.int64), ItemSets.from_lists([]), CAT)
    assert empty["n_users"] == 0 and empty["hr@10"] == 0.0


def test_bad_inputs_raise_clear_errors():
    rel = ItemSets.from_lists([[10]])
    with pytest.raises(ValueError, match=r"ranked\[0, 1\] = 25 is neither -1"):
        compute_metrics(np.array([[10, 25]]), rel, CAT, name="m")
    with pytest.raises(ValueError, match="-7"):
        compute_metrics(np.array([[10, -7]]), rel, CAT)
    with pytest.raises(ValueError, match="no relevant item"):
        compute_metrics(np.array([[10]]), ItemSets.from_lists([[]]), CAT)
    with pytest.raises(ValueError, match="2 ranked rows but 1"):
        compute_metrics(np.array([[10], [11]]), rel, CAT)
    with pytest.raises(ValueError, match="relevant item 3"):
        compute_metrics(np.array([[10]]), ItemSets.from_lists([[3]]), CAT)


def test_itemsets_ops():
    s = ItemSets.from_lists([[5, 3, 5], [], [9, 1]])
    assert s.to_lists() == [[3, 5], [], [1, 9]]
    assert s.take(np.array([2, 0, 2])).to_lists() == [[1, 9], [3, 5], [1, 9]]
    assert s.filter(s.indices > 3).to_lists() == [[5], [], [9]]
    np.testing.assert_array_equal(
        s.contains(np.array([[0], [1], [2]]), np.array([[3, 9], [3, 9], [3, 9]])),
        [[True, False], [False, False], [False, True]],
    )
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        ItemSets.from_pairs(np.array([0, 2]), np.array([1, 1]), 2)


def test_popularity_tiers_count_and_share():
    streams = np.array([100, 0, 50, 5, 5, 1, 0, 20, 3, 2])
    # order: 0(100) 2(50) 7(20) 3(5) 4(5) 8(3) 9(2) 5(1) 1(0) 6(0) -> two items per tier
    np.testing.assert_array_equal(popularity_tiers(streams, mode="count"), [1, 5, 1, 2, 3, 4, 5, 2, 3, 4])
    # share: streams strictly before item 2 = 100/186 -> tier 3; before item 7 = 150/186 -> tier 5
    np.testing.assert_array_equal(popularity_tiers(streams, mode="share"), [1, 5, 3, 5, 5, 5, 5, 5, 5, 5])
    with pytest.raises(ValueError, match="mode"):
        popularity_tiers(streams, mode="bogus")


def test_long_tail_restricts_users_and_relevant_items():
    ranked = np.array([[10, 11, 15], [10, 12, 13], [14, 10, 11]])
    rel = ItemSets.from_lists([[10, 15], [10], [11, 16]])
    tail = np.array([15, 16, 17, 18, 19])
    m = long_tail_metrics(ranked, rel, CAT, tail, k=2, depth=3)
    # users 0 ({15}) and 2 ({16}) stay; user 0's tail hit is at rank 3 (head items still count above it)
    assert m["n_users"] == 2
    assert m["hr@2"] == 0.0
    assert m["mrr@3"] == pytest.approx((1 / 3 + 0) / 2)
    assert m["recall@2"] == 0.0
    assert m["coverage@3"] == pytest.approx(1 / 5)  # only 15 of the tail is shown, to anyone


def test_chunked_computation_equals_one_block(monkeypatch):
    import twotower_hgnn.eval.metrics as M

    rng = np.random.default_rng(0)
    ranked = np.stack([rng.permutation(CAT)[:6] for _ in range(37)])
    ranked[rng.random(ranked.shape) < 0.2] = -1
    rel = ItemSets.from_lists([rng.choice(CAT, rng.integers(1, 4), replace=False) for _ in range(37)])
    whole = compute_metrics(ranked, rel, CAT, k=3, depth=5)
    monkeypatch.setattr(M, "_CHUNK_USERS", 4)
    assert compute_metrics(ranked, rel, CAT, k=3, depth=5) == pytest.approx(whole)
