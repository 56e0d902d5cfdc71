"""Two-tower towers and the in-batch softmax loss against hand computation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from twotower_hgnn.features import ItemFeatures, UserFeatures
from twotower_hgnn.models.two_tower import TwoTowerConfig, TwoTowerModel, in_batch_softmax_loss

# 4 examples; item 3 appears twice (rows 0 and 2): an accidental hit for each other.
U = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [-1.0, 0.0]], np.float32)
V = np.array([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0], [0.6, -0.8]], np.float32)
IDS = np.array([3, 5, 3, 7], np.int32)
LOGQ = np.log(np.array([0.4, 0.1, 0.4, 0.1], np.float32))
TAU = 0.5


def hand_loss(correction: str, mask_hits: bool, mask=(1, 1, 1, 1)) -> float:
    """Explicit loops, written independently of the vectorised implementation."""
    num = den = 0.0
    for i in range(4):
        if not mask[i]:
            continue
        terms = []
        for j in range(4):
            if j != i and (not mask[j] or (mask_hits and IDS[j] == IDS[i])):
                continue
            s = float(U[i] @ V[j]) / TAU
            if correction == "logq":
                s -= float(LOGQ[j])
            terms.append((j, s))
        lse = math.log(sum(math.exp(s) for _, s in terms))
        pos = dict(terms)[i]
        w = 1.0 / math.exp(float(LOGQ[i])) if correction == "inverse_frequency" else 1.0
        num += w * (lse - pos)
        den += w
    return num / den


@pytest.mark.parametrize("correction", ["logq", "inverse_frequency", "none"])
@pytest.mark.parametrize("mask_hits", [True, False])
def test_loss_matches_hand_computation(correction, mask_hits):
    cfg = TwoTowerConfig(temperature=TAU, correction=correction, mask_accidental_hits=mask_hits)
    got = float(in_batch_softmax_loss(jnp.asarray(U), jnp.asarray(V), jnp.asarray(IDS), jnp.asarray(LOGQ), cfg))
    assert got == pytest.approx(hand_loss(correction, mask_hits), rel=1e-5)
    # padding row 3: neither a row nor a negative column
    mask = np.array([1, 1, 1, 0], np.float32)
    got_m = float(
        in_batch_softmax_loss(
            jnp.asarray(U), jnp.asarray(V), jnp.asarray(IDS), jnp.asarray(LOGQ), cfg, mask=jnp.asarray(mask)
        )
    )
    assert got_m == pytest.approx(hand_loss(correction, mask_hits, mask=(1, 1, 1, 0)), rel=1e-5)


def test_modes_differ_and_masking_matters():
    vals = {(c, m): hand_loss(c, m) for c in ("logq", "inverse_frequency", "none") for m in (True, False)}
    assert len({round(v, 6) for v in vals.values()}) == 6  # every case exercises a distinct path


def test_bad_config():
    with pytest.raises(ValueError, match="correction"):
        TwoTowerConfig(correction="sampled")
    with pytest.raises(ValueError, match="temperature"):
        TwoTowerConfig(temperature=0.0)


def _features(b: int, n: int, d_hist=6, d_music=3, d_content=5, d_hgnn=4):
    rng = np.random.default_rng(0)
    u = UserFeatures(
        age_bucket=rng.integers(0, 8, b).astype(np.int32),
        country=rng.integers(0, 4, b).astype(np.int32),
        music=rng.normal(size=(b, d_music)).astype(np.float32),
        has_music=np.ones(b, np.float32),
        history_mean=rng.normal(size=(b, 2, d_hist)).astype(np.float32),
        has_history=np.ones((b, 2), np.float32),
        history_count=np.ones((b, 2), np.float32),
    )
    it = ItemFeatures(
        item_idx=np.arange(n, dtype=np.int32),
        language=rng.integers(0, 3, n).astype(np.int32),
        genre=rng.integers(0, 5, n).astype(np.int32),
        content=rng.normal(size=(n, d_content)).astype(np.float32),
        hgnn=rng.normal(size=(n, d_hgnn)).astype(np.float32),
    )
    return u, it


def test_towers_shapes_normalisation_and_hgnn_flag():
    u, it = _features(3, 7)
    cfg = TwoTowerConfig(tower_dims=(16, 8), n_countries=4, n_languages=3, n_genres=5)
    model = TwoTowerModel(cfg)
    params = jax.jit(model.init)(jax.random.key(0), u, it)
    uv, iv = jax.jit(model.apply)(params, u, it)
    assert uv.shape == (3, 8) and iv.shape == (7, 8)
    np.testing.assert_allclose(np.linalg.norm(uv, axis=1), 1.0, rtol=1e-5)
    # 2T baseline: the HGNN input does not exist in the item tower's first layer
    k_hgnn = params["params"]["item"]["mlp"]["dense_0"]["kernel"].shape[0]
    cfg2 = TwoTowerConfig(tower_dims=(16, 8), use_hgnn=False, n_countries=4, n_languages=3, n_genres=5)
    p2 = jax.jit(TwoTowerModel(cfg2).init)(jax.random.key(0), u, it)
    assert p2["params"]["item"]["mlp"]["dense_0"]["kernel"].shape[0] == k_hgnn - 4
    it_changed = ItemFeatures(it.item_idx, it.language, it.genre, it.content, it.hgnn + 5.0)
    iv1 = TwoTowerModel(cfg2).apply(p2, it, method=TwoTowerModel.encode_item)
    iv2 = TwoTowerModel(cfg2).apply(p2, it_changed, method=TwoTowerModel.encode_item)
    np.testing.assert_array_equal(iv1, iv2)
    raw = TwoTowerModel(
        TwoTowerConfig(tower_dims=(16, 8), normalize=False, n_countries=4, n_languages=3, n_genres=5)
    ).apply(params, u, method=TwoTowerModel.encode_user)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
