"""Leave-many-out training units: held-out targets never reach their own user's features, the history
equals a slow recomputation without them, the multi-target loss is the mean of single-target losses, and
training compiles once."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_features import small_dataset
from twotower_hgnn import features as F
from twotower_hgnn.data.schema import EVENTS
from twotower_hgnn.data.split import temporal_split
from twotower_hgnn.data.synthetic import generate
from twotower_hgnn.models.two_tower import TwoTowerConfig, full_softmax_loss
from twotower_hgnn.train.two_tower import TwoTowerTrainConfig, train_two_tower
from twotower_hgnn.train.two_tower_masked import build_units, draw_targets, units_host_batch

CFG = TwoTowerTrainConfig(
    target_type="podcast",
    batch_size=16,
    max_steps=4,
    checkpoint_every=1000,
    log_every=2,
    progress=False,
    use_hgnn=False,
    history_days=None,
    id_history_len=6,
    example_history="leave_many_out",
    target_frac=0.4,
    max_targets=5,
    model=TwoTowerConfig(tower_dims=(16, 8), negatives="full", item_bias=True, id_dim=4),
)


def test_draw_targets_counts_and_membership():
    rng = np.random.default_rng(0)
    cnt = np.array([2, 3, 10, 40])
    cand = np.array([np.r_[np.arange(c) + 100 * i, -np.ones(40 - c, int)] for i, c in enumerate(cnt)])
    tgt, mask = draw_targets(cnt, cand, frac=0.2, m=5, rng=rng)
    assert tgt.shape == mask.shape == (4, 5)
    np.testing.assert_array_equal(mask.sum(1), [1, 1, 2, 5])  # >= 1, <= cnt - 1, <= m, round(frac * cnt)
    for i in range(4):
        got = tgt[i][mask[i]]
        assert len(set(got)) == len(got) and set(got) <= set(cand[i, : cnt[i]])
    t2, m2 = draw_targets(cnt, cand, frac=0.2, m=5, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(t2, tgt) and np.testing.assert_array_equal(m2, mask)


def test_units_batch_holds_the_targets_out_of_the_history():
    ds = small_dataset(seed=3)
    sp = temporal_split(ds, cut_quantile=0.9, history_days=None, min_segment_users=0)
    emb = np.random.default_rng(0).normal(size=(ds.num_items, 3)).astype(np.float32)
    vocab = F.build_vocab(ds, "podcast", d_hist=3, history_days=None, id_history_len=6)
    units = build_units(ds, sp.train, CFG, emb, vocab)
    assert len(units) > 0
    batch = units_host_batch(ds, units, CFG, emb)(3)
    start, _ = F.target_item_range(ds, "podcast")
    tr, tc = sp.train, ds.item_type_codes()
    codes = [EVENTS.index(e) for e in vocab.history_events]
    seen = 0
    for b in range(CFG.batch_size):
        targets = batch.item_row[b][batch.mask[b] > 0] + start
        if targets.size == 0:
            continue
        seen += 1
        # which user: the unit whose positives contain every target and whose features match
        rows_u = [
            u
            for u in range(len(units))
            if set(targets - start) <= set(units.rows[units.indptr[u] : units.indptr[u + 1]])
        ]
        ok = False
        for u in rows_u:
            user = units.users[u]
            h = tr[(tr["user_idx"] == user) & tr["event_code"].isin(codes)]
            h = h[(tc[h["item_idx"].to_numpy()] == 1) & ~h["item_idx"].isin(targets)]
            want = emb[h["item_idx"].to_numpy()].mean(axis=0) if len(h) else np.zeros(3)
            if np.allclose(batch.user.history_mean[b, 1], want, atol=1e-5) and np.expm1(
                batch.user.history_count[b, 1]
            ) == pytest.approx(len(h), abs=1e-3):
                ok = True
        assert ok, b
        assert not np.isin(targets + 1, batch.user.history_ids[b, 1]).any()  # never its own input
    assert seen > 0


def test_multi_target_loss_is_the_mean_of_single_target_losses():
    rng = np.random.default_rng(1)
    u, v = jnp.asarray(rng.normal(size=(3, 4))), jnp.asarray(rng.normal(size=(7, 4)))
    rows = np.array([[1, 2, 0], [3, 0, 0], [4, 5, 6]])
    mask = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1]], np.float32)
    got = full_softmax_loss(u, v, jnp.asarray(rows), 0.5, mask=jnp.asarray(mask))
    users = np.repeat(np.arange(3), 3)[mask.ravel() > 0]
    want = full_softmax_loss(u[users], v, jnp.asarray(rows.ravel()[mask.ravel() > 0]), 0.5)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)


def test_leave_many_out_trains_once_compiled_and_refuses_bad_settings(tmp_path):
    ds = generate("tiny", 0)
    sp = temporal_split(ds)
    cfg = dataclasses.replace(CFG, target_type="audiobook", id_init="svd")
    res = train_two_tower(ds, sp, ds.item_vectors, None, cfg, tmp_path / "a")
    assert res.n_compiles == 1 and res.step == 4 and np.isfinite(res.history[-1]["loss"])
    with pytest.raises(ValueError, match="leave_many_out"):
        dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, negatives="in_batch"))
    with pytest.raises(ValueError, match="target_frac"):
        dataclasses.replace(cfg, target_frac=1.0)
