"""``twotower_hgnn.topk``: the selection is a function of the scores alone (ties to the lower column),
equal to the first ``k`` of a stable argsort of ``-scores``; ItemKNN keeps a column's tied neighbours in
id order, so its rankings do not depend on NumPy's CPU-dispatched partition."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from twotower_hgnn.topk import top_k_columns, top_k_mask


@pytest.mark.parametrize("k", [0, 1, 3, 7, 12, 20])
def test_top_k_is_the_stable_argsort_prefix(k):
    rng = np.random.default_rng(k)
    S = rng.integers(0, 4, size=(50, 12)).astype(np.float32)  # many ties, at the cut too
    S[rng.random(S.shape) < 0.1] = -np.inf
    cols, vals = top_k_columns(S, k)
    want = np.argsort(-S, axis=1, kind="stable")[:, : min(k, 12)]
    np.testing.assert_array_equal(cols, want)
    np.testing.assert_array_equal(vals, np.take_along_axis(S, want, axis=1))
    mask = top_k_mask(S, k)
    assert (mask.sum(axis=1) == min(k, 12)).all()
    np.testing.assert_array_equal(np.sort(np.nonzero(mask)[1].reshape(50, -1), axis=1), np.sort(want, axis=1))


def test_item_knn_ties_at_the_cut_go_to_the_lower_item():
    from twotower_hgnn.eval.item_baselines import ItemKNN

    # item 0 is co-listened with items 1..9 by one user each: nine equal similarities (1/3) to item 0;
    # five neighbours keep ids 1..5 (NumPy's argpartition kept 1, 2, 3, 4, 6 here)
    rows = np.repeat(np.arange(9), 2)
    cols = np.stack([np.zeros(9, np.int64), np.arange(1, 10)], axis=1).ravel()
    X = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(9, 10))
    W = ItemKNN(X).weights(np.array([0]), n_neighbors=5, shrink=0.0).toarray()
    assert np.nonzero(W[:, 0])[0].tolist() == [1, 2, 3, 4, 5]
    assert np.allclose(W[1:6, 0], 1 / 3)
