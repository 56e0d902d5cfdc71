"""HGNN-w-users baseline graph: users as nodes, exact edges, user features = mean of item features."""

import numpy as np
import pandas as pd

from twotower_hgnn.data.readers import build_dataset
from twotower_hgnn.user_graph import USER, tripartite_graph, user_node_features


def _ds():
    items = pd.DataFrame(
        {
            "item_id": ["a0", "a1", "p0", "p1"],
            "item_type": ["audiobook", "audiobook", "podcast", "podcast"],
            "title": ["x"] * 4,
            "description": [""] * 4,
            "language": ["en"] * 4,
            "genre": ["g"] * 4,
        }
    )
    users = pd.DataFrame({"user_id": ["u0", "u1", "u2"], "age": [20, 30, 40], "country": ["SE"] * 3})
    inter = pd.DataFrame(
        {
            "user_id": ["u0", "u0", "u0", "u1", "u1", "u0"],
            "item_id": ["a0", "p0", "p1", "a1", "a1", "a1"],
            "timestamp": [1, 2, 3, 4, 5, 6],
            "event": ["stream", "stream", "stream", "stream", "stream", "preview"],
        }
    )
    return build_dataset(inter, items, users, name="toy")


def test_edges_and_features():
    ds = _ds()
    g = tripartite_graph(ds, ds.interactions)
    assert g.node_types == ("audiobook", "podcast", USER) and g.num_nodes == 4 + 3
    # users are nodes 4 (u0), 5 (u1), 6 (u2); the preview u0-a1 is not a stream; u1-a1 twice -> one edge
    np.testing.assert_array_equal(g.edges[("audiobook", USER)], [[0, 4], [1, 5]])
    np.testing.assert_array_equal(g.edges[("podcast", USER)], [[2, 4], [3, 4]])
    x = np.arange(8, dtype=np.float32).reshape(4, 2)  # rows a0, a1, p0, p1
    f = user_node_features(ds, g, x)
    assert f.shape == (7, 2)
    np.testing.assert_allclose(f[:4], x)
    # u0: audiobook mean a0 = [0,1], podcast mean (p0+p1)/2 = [5,6] -> average of the two types
    np.testing.assert_allclose(f[4], [2.5, 3.5])
    np.testing.assert_allclose(f[5], x[1])  # u1: a1 only
    np.testing.assert_allclose(f[6], [0, 0])  # u2: no edges
