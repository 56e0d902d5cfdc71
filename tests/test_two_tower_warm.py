"""Two-tower warm start: matching leaves are copied, leaves whose shape changed keep their init."""

import numpy as np

from twotower_hgnn.train.two_tower import warm_start_params


def test_warm_start_copies_matching_leaves(tmp_path):
    params = {
        "params": {
            "user": {"dense_0": {"kernel": np.zeros((3, 2), np.float32)}},
            "item": {"genre_emb": {"embedding": np.zeros((4, 2), np.float32)}},
        }
    }
    saved = {
        "params/user/dense_0/kernel": np.ones((3, 2), np.float32),
        "params/item/genre_emb/embedding": np.ones((5, 2), np.float32),
    }  # vocabulary grew: 5 != 4
    np.savez(tmp_path / "params.npz", **saved)
    out, n_ok, n_all = warm_start_params(params, tmp_path / "params.npz")
    assert (n_ok, n_all) == (1, 2)
    np.testing.assert_array_equal(out["params"]["user"]["dense_0"]["kernel"], np.ones((3, 2)))
    np.testing.assert_array_equal(out["params"]["item"]["genre_emb"]["embedding"], np.zeros((4, 2)))
