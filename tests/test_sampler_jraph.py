"""jraph conversion: the flat edges describe exactly the dense padded batch."""

from __future__ import annotations

import jax.numpy as jnp
import jraph
import numpy as np

from sampler.csr import direction_name
from sampler.jraph_convert import to_graphs_tuple
from sampler.numpy_backend import NumpySampler
from sampler.spec import make_spec
from tests.test_sampler_numpy import tiny_graph


def test_flat_edges_match_dense_batch():
    g = tiny_graph()
    spec = make_spec(g, positives_per_batch=12, fanouts=(4, 3), seed=1)
    s = NumpySampler(g, spec)
    lay = s.layout
    b = s.batch(0, 0)
    feats = np.random.default_rng(0).normal(size=(g.num_nodes + 1, 3)).astype(np.float32)
    feats[g.pad_id] = 0
    for hop in range(spec.num_hops):
        gt = to_graphs_tuple(b, lay, hop=hop, pad_id=g.pad_id)
        gt2 = to_graphs_tuple(s.batch(1, 3), lay, hop=hop, pad_id=g.pad_id)
        assert all(np.shape(x) == np.shape(y) for x, y in zip(jax_leaves(gt), jax_leaves(gt2)))  # static shapes
        ids, send, recv, mask = gt.nodes["id"], gt.senders, gt.receivers, gt.edges["mask"]
        nv = int(gt.n_edge[0])
        assert mask[:nv].all() and not mask[nv:].any()
        assert nv == sum(int(m.sum()) for m in b.masks[hop].values())
        pad_node = int(gt.n_node[0])
        assert (send[nv:] == pad_node).all() and (recv[nv:] == pad_node).all() and ids[pad_node] == g.pad_id
        # every valid flat edge is a dense slot: (receiver row node, sender id) pairs are the same multiset
        front = b.frontier(hop, lay)
        dense = []
        for d in lay.directions:
            nb, m = b.nbrs[hop][direction_name(d)], b.masks[hop][direction_name(d)]
            rows = np.broadcast_to(np.asarray(front[d[0]])[:, None], nb.shape)
            dense.append(np.stack([rows[m], nb[m]], 1))
        dense = np.concatenate(dense)
        flat = np.stack([ids[recv[:nv]], ids[send[:nv]]], 1)
        np.testing.assert_array_equal(
            np.unique(flat, axis=0, return_counts=True)[1], np.unique(dense, axis=0, return_counts=True)[1]
        )
        np.testing.assert_array_equal(np.unique(flat, axis=0), np.unique(dense, axis=0))
        # segment_max over the flat edges of one direction == masked max over the dense fan-out axis
        d = lay.directions[1]
        name = direction_name(d)
        sel = mask & (gt.edges["direction"] == 1)
        n_nodes = ids.shape[0]
        seg = jraph.segment_max(
            jnp.asarray(feats[ids[send]]) * sel[:, None], jnp.asarray(np.where(sel, recv, pad_node)), n_nodes
        )
        nb, m = b.nbrs[hop][name], b.masks[hop][name]
        dense_max = np.where(m[..., None], feats[nb], -np.inf).max(axis=1)
        off = sum(lay.frontier_sizes[hop][t] for t in spec.node_types[: spec.node_types.index(d[0])])
        got = np.asarray(seg)[off : off + nb.shape[0]]
        has = m.any(axis=1)
        np.testing.assert_allclose(got[has], dense_max[has], rtol=1e-6)


def jax_leaves(gt):
    return [
        gt.nodes["id"],
        gt.nodes["type"],
        gt.edges["direction"],
        gt.edges["mask"],
        gt.senders,
        gt.receivers,
        gt.n_node,
        gt.n_edge,
    ]
