"""The HGNN layer against a plain NumPy Eq. 2-3, masking, bf16, and the Eq. 4 loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sampler.batch import PaddedBatch
from sampler.csr import HeteroCSR, direction_name
from sampler.spec import make_spec
from twotower_hgnn import losses
from twotower_hgnn.models.hgnn import HGNNConfig, SHARED, hgnn_forward, init_hgnn, make_forward, masked_max, param_key

TYPES = ("audiobook", "podcast")
FAN = 6  # >= every degree below, so a batch can hold full neighbourhoods


def small_graph(seed: int = 0) -> HeteroCSR:
    """7 audiobooks, 9 podcasts; node 6 (audiobook) and 15 (podcast) have no edges at all."""
    rng = np.random.default_rng(seed)
    a, p = np.arange(0, 6), np.arange(7, 15)

    def pick(u, v, n, same):
        pairs = {(int(x), int(y)) for x, y in zip(rng.choice(u, 40), rng.choice(v, 40)) if (x < y if same else True)}
        return np.array(sorted(pairs)[:n], np.int64)

    edges = {
        ("audiobook", "audiobook"): pick(a, a, 5, True),
        ("audiobook", "podcast"): pick(a, p, 9, False),
        ("podcast", "podcast"): pick(p, p, 10, True),
    }
    g = HeteroCSR.from_edges(TYPES, {"audiobook": 7, "podcast": 9}, edges)
    for d, c in g.adj.items():
        assert c.degrees().max() <= FAN, (d, c.degrees().max())
    return g


def full_batch(graph: HeteroCSR, spec, seeds: dict[str, np.ndarray]) -> PaddedBatch:
    """A PaddedBatch holding *every* neighbour of every frontier node (fan-out >= degree)."""
    lay = spec.layout()
    pad = graph.pad_id
    frontier = {t: np.asarray(seeds[t], np.int32) for t in TYPES}
    nbrs, masks = [], []
    for k in range(spec.num_hops):
        nk, mk = {}, {}
        for d in lay.directions:
            f = lay.fanout[k][d]
            ids = frontier[d[0]]
            arr = np.full((ids.size, f), pad, np.int32)
            m = np.zeros((ids.size, f), bool)
            for i, c in enumerate(ids):
                nb = graph.neighbors(d, int(c)) if c != pad else np.zeros(0, np.int32)
                arr[i, : nb.size], m[i, : nb.size] = nb, True
            nk[direction_name(d)], mk[direction_name(d)] = arr, m
        nbrs.append(nk)
        masks.append(mk)
        frontier = PaddedBatch(seeds, tuple(nbrs), tuple(masks), np.ones(spec.num_positives, bool)).frontier(k + 1, lay)
    b = PaddedBatch(
        {t: np.asarray(seeds[t], np.int32) for t in TYPES}, tuple(nbrs), tuple(masks), np.ones(spec.num_positives, bool)
    )
    b.check_shapes(spec, lay)
    return b


def numpy_reference(params, cfg: HGNNConfig, graph: HeteroCSR, x: np.ndarray) -> np.ndarray:
    """Eq. 2-3 node by node over the whole graph with full neighbourhoods (float64)."""
    act = {"relu": lambda v: np.maximum(v, 0.0), "tanh": np.tanh}[cfg.activation]
    P = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    h = x.astype(np.float64)
    types = graph.node_type_of(np.arange(graph.num_nodes))
    for layer in range(cfg.num_layers):
        lp = P[f"layer_{layer}"]
        out = np.zeros((graph.num_nodes, lp["nbr"][next(iter(lp["nbr"]))]["w"].shape[1]))
        for c in range(graph.num_nodes):
            t = graph.node_types[types[c]]
            v = h[c] @ lp["self"][SHARED if cfg.homogeneous else t]
            dirs = [d for d in graph.adj if d[0] == t]
            if cfg.homogeneous:
                msgs = [
                    act(h[j] @ lp["nbr"][SHARED]["w"] + lp["nbr"][SHARED]["b"])
                    for d in dirs
                    for j in graph.neighbors(d, c)
                ]
                if msgs:
                    v = v + np.max(msgs, axis=0)
            else:
                for d in dirs:
                    prm = lp["nbr"][param_key(d)]
                    msgs = [act(h[j] @ prm["w"] + prm["b"]) for j in graph.neighbors(d, c)]
                    if msgs:  # no neighbour -> contributes zeros
                        v = v + np.max(msgs, axis=0)
            out[c] = act(v) if (layer < cfg.num_layers - 1 or cfg.final_activation) else v
        h = out
    return h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)


@pytest.fixture(scope="module")
def setup():
    g = small_graph()
    spec = make_spec(g, positives_per_batch=6, fanouts=(FAN, FAN), negatives_per_type={"audiobook": 1, "podcast": 1})
    lay = spec.layout()
    rng = np.random.default_rng(1)
    seeds = {}
    for t in TYPES:  # every node of the type appears, including the isolated ones
        lo, hi = g.type_range(t)
        s = rng.integers(lo, hi, lay.seeds_per_type[t]).astype(np.int32)
        s[: hi - lo] = np.arange(lo, hi)
        seeds[t] = s
    x = rng.normal(size=(g.num_nodes, 5)).astype(np.float32)
    feats = np.concatenate([x, np.zeros((1, 5), np.float32)])
    return g, spec, lay, full_batch(g, spec, seeds), x, feats


@pytest.mark.parametrize(
    "cfg",
    [
        HGNNConfig(hidden_dim=8, out_dim=4),
        HGNNConfig(hidden_dim=8, out_dim=4, homogeneous=True, activation="tanh", final_activation=True),
    ],
    ids=["hetero-relu", "homogeneous-tanh"],
)
def test_forward_matches_numpy_eq23(setup, cfg):
    g, spec, lay, batch, x, feats = setup
    params = init_hgnn(jax.random.key(0), cfg, spec, TYPES, 5)
    # Non-zero biases so a padding slot (message act(b)) would win a max if it were not masked.
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: v + 0.3 if jax.tree_util.keystr(path).endswith("['b']") else v, params
    )
    ref = numpy_reference(params, cfg, g, x)
    z = np.asarray(make_forward(cfg, lay)(params, feats, batch.as_dict()))
    ids = np.concatenate([batch.seeds[t] for t in TYPES])
    assert z.dtype == np.float32 and z.shape == (lay.num_seeds, 4)
    np.testing.assert_allclose(z, ref[ids], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)


def test_padding_slots_never_win_and_empty_rows_are_zero(setup):
    g, spec, lay, batch, x, feats = setup
    cfg = HGNNConfig(hidden_dim=8, out_dim=4)
    params = init_hgnn(jax.random.key(3), cfg, spec, TYPES, 5)
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: v + 5.0 if jax.tree_util.keystr(path).endswith("['b']") else v, params
    )
    fwd = make_forward(cfg, lay)
    z0 = np.asarray(fwd(params, feats, batch.as_dict()))
    # Put real node ids into the masked slots (their messages are large, b = 5): the output must not move.
    rng = np.random.default_rng(0)
    d = batch.as_dict()
    nbrs = tuple(
        {
            n: np.where(batch.masks[k][n], a, rng.integers(0, g.num_nodes, a.shape)).astype(np.int32)
            for n, a in batch.nbrs[k].items()
        }
        for k in range(spec.num_hops)
    )
    z1 = np.asarray(fwd(params, feats, {**d, "nbrs": nbrs}))
    np.testing.assert_allclose(z1, z0, rtol=1e-5, atol=1e-6)
    # masked_max directly: all-padding rows give exactly 0, padding never wins, gradients finite.
    msg = jnp.asarray([[[1.0, -2.0], [9.0, 9.0]], [[7.0, 7.0], [8.0, 8.0]]])
    mask = jnp.asarray([[True, False], [False, False]])
    np.testing.assert_array_equal(np.asarray(masked_max(msg, mask)), [[1.0, -2.0], [0.0, 0.0]])
    grad = jax.grad(lambda m: masked_max(m, mask).sum())(msg)
    np.testing.assert_array_equal(np.asarray(grad), [[[1, 1], [0, 0]], [[0, 0], [0, 0]]])


def test_isolated_seed_uses_features_only(setup):
    g, spec, lay, batch, x, feats = setup
    cfg = HGNNConfig(hidden_dim=8, out_dim=4)
    params = init_hgnn(jax.random.key(1), cfg, spec, TYPES, 5)
    z = np.asarray(make_forward(cfg, lay)(params, feats, batch.as_dict()))
    # node 6 (audiobook) has no edges: z = normalise(W1_self relu(W0_self x))
    pos = int(np.flatnonzero(batch.seeds["audiobook"] == 6)[0])
    P = jax.tree_util.tree_map(np.asarray, params)
    h = np.maximum(x[6] @ P["layer_0"]["self"]["audiobook"], 0) @ P["layer_1"]["self"]["audiobook"]
    np.testing.assert_allclose(z[pos], h / np.linalg.norm(h), rtol=1e-5, atol=1e-6)


def test_bf16_close_to_f32_and_output_f32(setup):
    g, spec, lay, batch, x, feats = setup
    c32 = HGNNConfig(hidden_dim=16, out_dim=8)
    c16 = HGNNConfig(hidden_dim=16, out_dim=8, compute_dtype="bfloat16")
    params = init_hgnn(jax.random.key(2), c32, spec, TYPES, 5)
    z32 = np.asarray(make_forward(c32, lay)(params, feats, batch.as_dict()))
    z16 = make_forward(c16, lay)(params, jnp.asarray(feats, jnp.bfloat16), batch.as_dict())
    assert z16.dtype == jnp.float32
    cos = np.sum(z32 * np.asarray(z16), axis=1)
    assert cos.min() > 0.98, cos.min()
    assert all(v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(params))


def test_config_and_init_errors(setup):
    g, spec, lay, batch, x, feats = setup
    with pytest.raises(ValueError, match="activation"):
        HGNNConfig(activation="swishy")
    with pytest.raises(ValueError, match="compute_dtype"):
        HGNNConfig(compute_dtype="float16")
    cfg3 = HGNNConfig(num_layers=3, hidden_dim=4, out_dim=4)
    with pytest.raises(ValueError, match="3 layers need"):
        hgnn_forward(init_hgnn(jax.random.key(0), cfg3, spec, TYPES, 5), cfg3, feats, batch.as_dict(), lay)
    hom = init_hgnn(jax.random.key(0), HGNNConfig(homogeneous=True, hidden_dim=4, out_dim=4), spec, TYPES, 5)
    assert set(hom["layer_0"]["self"]) == {SHARED} and set(hom["layer_0"]["nbr"]) == {SHARED}
    het = init_hgnn(jax.random.key(0), HGNNConfig(hidden_dim=4, out_dim=4), spec, TYPES, 5)
    assert set(het["layer_0"]["nbr"]) == {param_key(d) for d in lay.directions} and len(lay.directions) == 4


# ------------------------------------------------------------------ loss
def _np_loss(z, a, p, n, margin, mask):
    sp = np.sum(z[a] * z[p], 1)
    sn = np.einsum("pd,pkd->pk", z[a], z[n])
    h = np.maximum(0, sn - sp[:, None] + margin)
    return h[mask].mean() if mask.any() else 0.0, h


def test_max_margin_loss_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20, 3)).astype(np.float32)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    a, p = rng.integers(0, 20, 6), rng.integers(0, 20, 6)
    n = rng.integers(0, 20, (6, 4))
    mask = np.array([1, 1, 0, 1, 0, 1], bool)
    want, h = _np_loss(z, a, p, n, 0.3, mask)
    got = float(losses.max_margin_loss(z, a, p, n, 0.3, mask))
    assert abs(got - want) < 1e-6 and want > 0
    assert abs(float(losses.max_margin_loss(z, a, p, n, 0.3)) - h.mean()) < 1e-6
    assert float(losses.max_margin_loss(z, a, p, n, 0.3, np.zeros(6, bool))) == 0.0
    rel = np.array([0, 1, 0, 2, 2, 1])
    per = np.asarray(losses.per_relation_loss(z, a, p, n, 0.3, rel, 4, mask))
    for r in range(3):
        sel = mask & (rel == r)
        assert abs(per[r] - (h[sel].mean() if sel.any() else 0.0)) < 1e-6
    assert per[3] == 0.0
    # a perfect separation has zero loss; ranks are pessimistic on ties
    zz = np.eye(3, dtype=np.float32)
    assert float(losses.max_margin_loss(zz, np.array([0]), np.array([0]), np.array([[1, 2]]), 0.5)) == 0.0
    r = np.asarray(losses.rank_of_positive(jnp.array([0.5, 0.2]), jnp.array([[0.1, 0.5], [0.3, 0.4]])))
    np.testing.assert_array_equal(r, [2, 3])


def test_padded_features_take_bfloat16_storage_and_refuse_non_floats():
    import ml_dtypes

    from twotower_hgnn.models.hgnn import padded_features

    f = np.random.default_rng(0).normal(size=(5, 3)).astype(ml_dtypes.bfloat16)
    out = padded_features(f, 5)
    assert out.dtype == np.float32 and out.shape == (6, 3) and not out[-1].any()
    np.testing.assert_array_equal(out[:5], f.astype(np.float32))
    with pytest.raises(ValueError, match="expected a float array"):
        padded_features(np.ones((5, 3), np.int32), 5)
