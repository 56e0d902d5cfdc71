"""Two-tower trainer: static shapes (one compile), resume equals an uninterrupted run, metrics, 8 devices."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from tests.multidevice import run_with_devices
from twotower_hgnn.checkpoint import CheckpointError
from twotower_hgnn.data.split import temporal_split
from twotower_hgnn.data.synthetic import generate
from twotower_hgnn.models.two_tower import TwoTowerConfig
from twotower_hgnn.models.encode import item_vectors, user_vectors
from twotower_hgnn.train.two_tower import FailAfterStep, InjectedFailure, TwoTowerTrainConfig, train_two_tower

SMALL = TwoTowerTrainConfig(
    batch_size=32, epochs=3, checkpoint_every=4, log_every=2, progress=False, model=TwoTowerConfig(tower_dims=(32, 16))
)


@pytest.fixture(scope="module")
def data():
    ds = generate("tiny", 0)
    sp = temporal_split(ds)
    rng = np.random.default_rng(0)
    hgnn = rng.normal(size=(ds.num_items, 8)).astype(np.float32)
    hgnn /= np.linalg.norm(hgnn, axis=1, keepdims=True)  # stand-in for inference.embed_items
    return ds, sp, ds.item_vectors, hgnn


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    ds, sp, content, hgnn = data
    cfg = dataclasses.replace(SMALL, max_steps=10)
    return train_two_tower(ds, sp, content, hgnn, cfg, tmp_path_factory.mktemp("full"))


def test_one_compile_across_padded_epoch_boundary(data, tmp_path, capsys):
    ds, sp, content, hgnn = data
    # batch 128: ~10 steps per epoch; run one step into epoch 2 so a padded batch and a reshuffle are crossed
    n_ex = 1185  # tiny seed 0, audiobook streams of the training part
    cfg = dataclasses.replace(
        SMALL, use_hgnn=False, batch_size=128, epochs=2, max_steps=-(-n_ex // 128) + 1, checkpoint_every=1000
    )
    res = train_two_tower(ds, sp, content, None, cfg, tmp_path)
    assert res.n_examples == n_ex and n_ex % 128 != 0, "the last batch of an epoch must be a padded one"
    spe = -(-n_ex // 128)
    assert res.step == spe + 1 and res.n_compiles == 1
    assert all(np.isfinite(h["loss"]) for h in res.history)
    rows = [json.loads(x) for x in (tmp_path / "tb" / "metrics.jsonl").read_text().splitlines()]
    assert {r["tag"] for r in rows} >= {"train/loss", "train/epoch", "train/steps_per_sec"}
    assert rows[-1] == {**rows[-1], "tag": "stop/max_steps", "step": spe + 1}  # the last row: why it stopped
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    assert (
        f"[2T] audiobook: stopped at step {spe + 1} ({(spe + 1) / spe:.2f} epochs): max_steps"
        in capsys.readouterr().out
    )
    assert res.item_table.hgnn.shape[1] == 0  # 2T baseline: no HGNN input


def test_resume_matches_uninterrupted_run(data, full_run, tmp_path):
    ds, sp, content, hgnn = data
    part = train_two_tower(ds, sp, content, hgnn, dataclasses.replace(SMALL, max_steps=6), tmp_path)
    assert part.step == 6 and part.resumed_from is None
    # the time budget is a total over resumes: one already spent allows no further step
    spent = train_two_tower(
        ds, sp, content, hgnn, dataclasses.replace(SMALL, max_steps=10, time_budget_s=1e-6), tmp_path
    )
    assert spent.resumed_from == 6 and spent.step == 6
    resumed = train_two_tower(ds, sp, content, hgnn, dataclasses.replace(SMALL, max_steps=10), tmp_path)
    assert resumed.resumed_from == 6 and resumed.step == 10 == full_run.step
    assert resumed.history[: len(part.history)] == part.history  # history survives the resume
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), resumed.params, full_run.params
    )
    with pytest.raises(CheckpointError, match="different config"):
        train_two_tower(ds, sp, content, hgnn, dataclasses.replace(SMALL, max_steps=12, learning_rate=0.01), tmp_path)


def test_run_killed_by_a_fault_and_resumed_equals_the_uninterrupted_run(data, full_run, tmp_path):
    ds, sp, content, hgnn = data
    cfg = dataclasses.replace(SMALL, max_steps=10)
    # killed after step 7, before its checkpoint: the last checkpoint is step 4 (checkpoint_every=4)
    with pytest.raises(InjectedFailure, match="after step 7"):
        train_two_tower(ds, sp, content, hgnn, cfg, tmp_path, hooks=[FailAfterStep(7)])
    resumed = train_two_tower(ds, sp, content, hgnn, cfg, tmp_path)
    assert resumed.resumed_from == 4 and resumed.step == 10 == full_run.step
    assert resumed.history == full_run.history and resumed.stop_reason == full_run.stop_reason == "max_steps"
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.params, full_run.params)  # bit-identical


def test_encoders_and_errors(data, full_run):
    ds, sp, content, hgnn = data
    users = np.array([0, 1, 2, 3, 4])
    u = user_vectors(full_run, ds, sp.train, users, sp.cut_time)
    v, ids = item_vectors(full_run)
    assert u.shape == (5, 16) and v.shape == (ds.item_type_counts["audiobook"], 16)
    assert np.isfinite(u).all() and np.isfinite(v).all()
    assert (ds.items.item_type.iloc[ids] == "audiobook").all()
    with pytest.raises(ValueError, match="hgnn_emb"):
        train_two_tower(ds, sp, content, None, SMALL, "/tmp/unused-2t")
    with pytest.raises(ValueError, match="content_emb"):
        train_two_tower(ds, sp, content[:5], hgnn, SMALL, "/tmp/unused-2t")


def test_eight_devices_same_loss_and_step_as_one():
    out = run_with_devices("""
        import json, numpy as np, jax, optax
        from twotower_hgnn import features as F
        from twotower_hgnn.models.two_tower import TwoTowerConfig, TwoTowerModel
        from twotower_hgnn.parallel import make_mesh, replicate, shard_batch
        from twotower_hgnn.train.two_tower import make_train_step
        rng = np.random.default_rng(0)
        B, N = 16, 12
        user = F.UserFeatures(age_bucket=rng.integers(0, 8, B).astype(np.int32), country=rng.integers(0, 3, B).astype(np.int32),
            music=rng.normal(size=(B, 2)).astype(np.float32), has_music=np.ones(B, np.float32),
            history_mean=rng.normal(size=(B, 2, 4)).astype(np.float32), has_history=np.ones((B, 2), np.float32),
            history_count=np.ones((B, 2), np.float32))
        table = F.ItemFeatures(item_idx=np.arange(N, dtype=np.int32), language=rng.integers(0, 2, N).astype(np.int32),
            genre=rng.integers(0, 3, N).astype(np.int32), content=rng.normal(size=(N, 5)).astype(np.float32),
            hgnn=rng.normal(size=(N, 3)).astype(np.float32))
        item_row = rng.integers(0, N, B).astype(np.int32)  # repeats: accidental hits across devices
        mask = np.ones(B, np.float32); mask[-3:] = 0
        batch = F.TwoTowerBatch(user=user, item_row=item_row, log_q=np.log(rng.uniform(0.05, 0.3, B)).astype(np.float32), mask=mask)
        cfg = TwoTowerConfig(tower_dims=(16, 8), n_countries=3, n_languages=2, n_genres=3)
        params = jax.device_get(jax.jit(TwoTowerModel(cfg).init)(jax.random.key(0), user, table))  # host copy: steps donate
        tx = optax.adam(1e-2)
        res = {}
        for n in (1, 8):
            mesh = make_mesh(n)
            state = replicate({"params": params, "opt_state": tx.init(params), "step": np.int32(0)}, mesh)
            step = make_train_step(cfg, tx, mesh, [0])
            losses = []
            for _ in range(3):
                state, l = step(state, replicate(table, mesh), shard_batch(batch, mesh), None)
                jax.block_until_ready(l); losses.append(float(l))
            res[n] = dict(losses=losses,
                          flat=np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(jax.device_get(state["params"]))]).tolist(),
                          shards=len(shard_batch(batch, mesh).item_row.sharding.device_set))
        print(json.dumps(res))
    """)
    one, eight = out["1"], out["8"]
    assert eight["shards"] == 8 and one["shards"] == 1
    assert len(set(one["losses"])) == 3  # the steps really moved the parameters
    np.testing.assert_allclose(eight["losses"], one["losses"], rtol=1e-5)
    np.testing.assert_allclose(eight["flat"], one["flat"], rtol=1e-4, atol=1e-6)


def test_podcast_target(data, tmp_path):
    ds, sp, content, hgnn = data
    cfg = dataclasses.replace(
        SMALL, target_type="podcast", batch_size=64, max_steps=3, model=TwoTowerConfig(tower_dims=(16, 8))
    )
    res = train_two_tower(ds, sp, content, hgnn, cfg, tmp_path)
    v, ids = item_vectors(res)
    assert v.shape == (ds.item_type_counts["podcast"], 8) and res.step == 3 and res.n_compiles == 1
    assert (ds.items.item_type.iloc[ids] == "podcast").all()
    assert res.n_examples > 5 * 1185  # podcast streams dominate the log
