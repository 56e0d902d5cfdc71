"""Full-graph inference: equals the NumPy Eq. 2-3 reference, chunking-invariant, capped
neighbourhoods, unseen (edge-less) items from features alone, atomic export."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from sampler.csr import HeteroCSR
from test_hgnn_model import TYPES, numpy_reference, small_graph  # tests/ is on sys.path under pytest
from twotower_hgnn.inference import cap_neighbors, embed_items, export_embeddings, load_embeddings
from twotower_hgnn.models.hgnn import HGNNConfig, init_hgnn


@pytest.fixture(scope="module")
def model():
    g = small_graph()
    x = np.random.default_rng(4).normal(size=(g.num_nodes, 5)).astype(np.float32)
    cfg = HGNNConfig(hidden_dim=8, out_dim=4)
    params = init_hgnn(jax.random.key(7), cfg, list(g.adj), TYPES, 5)
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: v + 0.2 if jax.tree_util.keystr(path).endswith("['b']") else v, params
    )
    return g, x, cfg, params


def test_full_graph_matches_reference_for_any_chunking(model):
    g, x, cfg, params = model
    ref = numpy_reference(params, cfg, g, x)
    # tiny chunks: several destination chunks and several edge pieces per chunk
    z_small = embed_items(params, cfg, g, x, chunk_size=4, edge_chunk=3)
    z_big = embed_items(params, cfg, g, x, chunk_size=64, edge_chunk=1024)
    assert z_small.shape == (g.num_nodes, 4) and z_small.dtype == np.float32
    np.testing.assert_allclose(z_small, ref, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(z_big, ref, rtol=2e-5, atol=2e-6)
    # a cap at or above every degree changes nothing
    np.testing.assert_allclose(
        embed_items(params, cfg, g, x, chunk_size=4, edge_chunk=3, max_neighbors=6), ref, rtol=2e-5, atol=2e-6
    )


def test_capped_neighbourhoods(model):
    g, x, cfg, params = model
    m = 2
    capped_adj = {d: cap_neighbors(c, m, 0, f"{d[0]}<-{d[1]}") for d, c in g.adj.items()}
    for d, c in capped_adj.items():
        deg, full = np.diff(c.indptr), np.diff(g.adj[d].indptr)
        np.testing.assert_array_equal(deg, np.minimum(full, m))
        for r in range(deg.size):  # a subset of the true neighbours, sorted
            nb = c.indices[c.indptr[r] : c.indptr[r + 1]]
            assert set(nb) <= set(g.adj[d].indices[g.adj[d].indptr[r] : g.adj[d].indptr[r + 1]]) and np.all(
                np.diff(nb) > 0
            )
    capped = HeteroCSR(g.node_types, g.type_offsets, g.edges, capped_adj)
    z = embed_items(params, cfg, g, x, chunk_size=4, edge_chunk=3, max_neighbors=m, seed=0)
    np.testing.assert_allclose(z, numpy_reference(params, cfg, capped, x), rtol=2e-5, atol=2e-6)


def test_unseen_items_embedded_from_features(model, tmp_path):
    g, x, cfg, params = model
    z = embed_items(params, cfg, g, x, chunk_size=4, edge_chunk=3)
    P = jax.tree_util.tree_map(np.asarray, params)
    for node, t in ((6, "audiobook"), (15, "podcast")):  # no edges at all: the inductive case
        h = np.maximum(x[node] @ P["layer_0"]["self"][t], 0) @ P["layer_1"]["self"][t]
        np.testing.assert_allclose(z[node], h / np.linalg.norm(h), rtol=1e-5, atol=1e-6)
    # and they are not degenerate: distinct new items get distinct embeddings
    assert abs(float(z[6] @ z[15])) < 0.999
    ids = np.array([f"item{i}" for i in range(g.num_nodes)])
    export_embeddings(tmp_path / "emb.npz", ids, z)
    rid, remb = load_embeddings(tmp_path / "emb.npz")
    np.testing.assert_array_equal(rid, ids)
    np.testing.assert_array_equal(remb, z)
    with pytest.raises(ValueError, match="ids for embeddings"):
        export_embeddings(tmp_path / "bad.npz", ids[:3], z)
    assert not (tmp_path / "bad.npz").exists()
    with pytest.raises(ValueError, match=r"features: expected shape \[16, d\]"):
        embed_items(params, cfg, g, x[:5])
