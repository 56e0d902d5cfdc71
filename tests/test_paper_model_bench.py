"""benchmarks/paper_model.py: its graph is the project's generator's, its features reach the trainer as
the trainer takes them. (The dry run itself, three child processes that import jax and compile the
train step, takes ~30 s on 2 cores: not run here.)"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import paper_model as pm
from sampler.synthetic import powerlaw_hetero_graph
from twotower_hgnn.graph import holdout_edges


def _same_graph(a, b) -> None:
    assert a.node_types == b.node_types and list(a.edges) == list(b.edges) and set(a.adj) == set(b.adj)
    for r in a.edges:
        np.testing.assert_array_equal(a.edges[r], b.edges[r])
    for d in a.adj:
        np.testing.assert_array_equal(a.adj[d].indptr, b.adj[d].indptr)
        np.testing.assert_array_equal(a.adj[d].indices, b.adj[d].indices)


def test_graph_one_relation_at_a_time_is_the_generator_and_holdout(tmp_path):
    counts = {"audiobook": 300, "podcast": 4000}
    rel = pm.relation_targets(counts, 18.3)
    assert abs(sum(rel.values()) - 18.3 * 4300) <= len(rel)  # edges per item kept, split over the relations
    assert rel[("podcast", "podcast")] > rel[("audiobook", "podcast")] > rel[("audiobook", "audiobook")]
    plan = {"counts": counts, "relation_edges": [[list(r), m] for r, m in rel.items()], "graph_seed": 5, "alpha": 2.5}
    g = pm.generate_graph(plan, tmp_path, log=lambda _: None)
    ref = powerlaw_hetero_graph(counts, rel, seed=5, alpha=2.5)
    _same_graph(g, ref)
    g_train, held = pm.holdout_graph(g, 0.1, 5, tmp_path)
    ref_train, ref_held = holdout_edges(ref, frac=0.1, seed=5)
    _same_graph(g_train, ref_train)
    for r in ref_held:
        np.testing.assert_array_equal(held[r], ref_held[r])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full_graph", "train_graph"]  # parts removed


@pytest.mark.parametrize(
    "storage,dtype,rows,mapped,upcast",
    [
        ("padded", "float32", 101, False, False),
        ("mmap", "float32", 100, True, False),
        ("padded", "bfloat16", 100, False, True),
    ],
)
def test_features_reach_the_trainer_padded_float32(tmp_path, storage, dtype, rows, mapped, upcast):
    from twotower_hgnn.models.hgnn import padded_features

    vec = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    np.save(tmp_path / "v.npy", vec)
    plan = {"item_vectors": str(tmp_path / "v.npy"), "feat_storage": storage, "feat_dtype": dtype}
    f, info = pm.open_features({**plan, "graph_seed": 0, "feat_dim": 8}, 100)
    assert info["shape"] == [rows, 8] and info["memory_mapped"] is mapped and info["bytes"] == f.nbytes
    fed, up = pm.for_trainer(f)
    assert up is upcast
    out = padded_features(fed, 100)  # what the trainer and embed_items do with it
    assert out.shape == (101, 8) and out.dtype == np.float32 and not out[-1].any()
    if storage == "padded" and dtype == "float32":
        assert np.shares_memory(out, f)  # passed through, not copied
    np.testing.assert_allclose(out[:-1], vec, rtol=1e-2 if upcast else 0, atol=1e-2 if upcast else 0)
