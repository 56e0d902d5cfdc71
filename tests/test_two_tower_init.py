"""The SVD start of the shared item-id table: co-consumed items start close, the rest is the random init's."""

from __future__ import annotations

import numpy as np
import pandas as pd

from twotower_hgnn.data.schema import EVENTS
from twotower_hgnn.train.two_tower_init import svd_item_embeddings, with_svd_ids


def _blocks(seed: int = 0) -> pd.DataFrame:
    """Users 0-19 stream items 0-9, users 20-39 stream items 10-19 (each user 6 random items of its block)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(40):
        block = 0 if u < 20 else 10
        rows += [(u, block + int(i)) for i in rng.choice(10, 6, replace=False)]
    df = pd.DataFrame(rows, columns=["user_idx", "item_idx"])
    df["event_code"] = EVENTS.index("stream")
    return df


def _cos(a: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    return a @ a.T


def test_svd_rows_group_co_consumed_items_and_match_the_init_scale():
    df = _blocks()
    weak = pd.DataFrame({"user_idx": [0] * 5, "item_idx": [15] * 5, "event_code": [EVENTS.index("preview")] * 5})
    t = svd_item_embeddings(pd.concat([df, weak]), n_users=40, n_items=21, dim=4, seed=0)
    assert t.shape == (22, 4) and t.dtype == np.float32
    assert np.all(t[0] == 0)  # padding token
    assert np.all(t[21] == 0)  # item 20: never streamed
    np.testing.assert_allclose(t[1:].std(), 0.05, rtol=1e-4)
    c = _cos(t[1:21])
    same = np.r_[c[:10, :10][~np.eye(10, dtype=bool)], c[10:, 10:][~np.eye(10, dtype=bool)]]
    across = c[:10, 10:].ravel()
    assert same.mean() > 0.5 > across.mean() + 0.4, (same.mean(), across.mean())
    # the weak previews were not counted: same table without them
    np.testing.assert_array_equal(t, svd_item_embeddings(df, n_users=40, n_items=21, dim=4, seed=0))


def test_svd_init_is_deterministic_and_replaces_only_the_id_table():
    df = _blocks()
    a = svd_item_embeddings(df, 40, 20, 3, seed=7)
    np.testing.assert_array_equal(a, svd_item_embeddings(df, 40, 20, 3, seed=7))
    params = {"params": {"item_ids": {"embedding": np.zeros((21, 3), np.float32)}, "user": {"w": np.ones(2)}}}
    out = with_svd_ids(params, a)
    np.testing.assert_array_equal(out["params"]["item_ids"]["embedding"], a)
    assert out["params"]["user"] is params["params"]["user"]
    assert np.all(params["params"]["item_ids"]["embedding"] == 0)  # input untouched
