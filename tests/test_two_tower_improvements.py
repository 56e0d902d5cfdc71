"""The two-tower's quality options against slow references: history id tokens, leave-one-out example
histories, the full-catalogue softmax, the item-bias coordinate, recency weights and early stopping."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_features import small_dataset
from twotower_hgnn import features as F
from twotower_hgnn.data.schema import EVENTS
from twotower_hgnn.data.split import temporal_split
from twotower_hgnn.data.synthetic import generate
from twotower_hgnn.models.two_tower import TwoTowerConfig, TwoTowerModel, full_softmax_loss
from twotower_hgnn.train.two_tower import TwoTowerTrainConfig, recency_weights, train_two_tower

DAY = 86_400


@pytest.fixture(scope="module")
def ds():
    return small_dataset(seed=3)


@pytest.mark.parametrize("window_days", [None, 30])
def test_history_id_tokens_match_a_slow_reference(ds, window_days):
    log = ds.interactions
    rng = np.random.default_rng(1)
    users = rng.integers(0, ds.num_users, 40)
    times = log["timestamp"].to_numpy()[rng.integers(0, len(log), 40)]
    u, t, it = (log[c].to_numpy() for c in ("user_idx", "timestamp", "item_idx"))
    ty = ds.item_type_codes()[it]
    window = None if window_days is None else window_days * DAY
    got = F.history_id_tokens(u, t, it, ty, users, times, window, length=4)
    order = np.lexsort((t, u))  # the same order the function sorts by (stable in time ties)
    for q, (uq, tq) in enumerate(zip(users, times)):
        for k in range(2):
            rows = [
                r for r in order if u[r] == uq and ty[r] == k and t[r] < tq and (window is None or t[r] >= tq - window)
            ]
            want = [it[r] + 1 for r in rows[::-1][:4]]
            np.testing.assert_array_equal(got[q, k], want + [0] * (4 - len(want)))


def test_leave_one_out_features_drop_only_the_target_item(ds):
    sp = temporal_split(ds, cut_quantile=0.9, history_days=None, min_segment_users=0)
    emb = np.random.default_rng(0).normal(size=(ds.num_items, 3)).astype(np.float32)
    vocab = F.build_vocab(ds, "podcast", d_hist=3, history_days=None, id_history_len=3)
    ex = F.build_training_examples(ds, sp, "podcast", emb, vocab, example_history="leave_one_out")
    start, _ = F.target_item_range(ds, "podcast")
    tr = sp.train
    codes = [EVENTS.index(e) for e in vocab.history_events]
    tc = ds.item_type_codes()
    k = 1  # podcast
    for e in range(0, len(ex), 7):
        user, item = int(ex.user_idx[e]), int(ex.item_row[e]) + start
        rows = tr[(tr["user_idx"] == user) & tr["event_code"].isin(codes)]
        rows = rows[(tc[rows["item_idx"].to_numpy()] == k) & (rows["item_idx"] != item)]
        assert np.expm1(ex.user.history_count[e, k]) == pytest.approx(len(rows), abs=1e-3)
        want = emb[rows["item_idx"].to_numpy()].mean(axis=0) if len(rows) else np.zeros(3)
        np.testing.assert_allclose(ex.user.history_mean[e, k], want, atol=1e-5)
        assert item + 1 not in ex.user.history_ids[e, k]  # the target never in its own input
    with pytest.raises(F.FeatureError, match="example_history"):
        F.build_training_examples(ds, sp, "podcast", emb, vocab, example_history="future")


def test_full_softmax_loss_equals_numpy_and_weights_scale_rows():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(6, 4)), rng.normal(size=(9, 4))
    rows = rng.integers(0, 9, 6)
    mask = np.array([1, 1, 1, 1, 1, 0], np.float32)
    w = np.array([2, 1, 0.5, 1, 1, 7], np.float32)
    logits = u @ v.T / 0.1
    ce = np.log(np.exp(logits).sum(1)) - logits[np.arange(6), rows]
    got = full_softmax_loss(jnp.asarray(u), jnp.asarray(v), jnp.asarray(rows), 0.1, jnp.asarray(mask), jnp.asarray(w))
    assert float(got) == pytest.approx(float((ce * w * mask).sum() / mask.sum()), rel=1e-5)


def test_item_bias_coordinate_starts_at_the_prior():
    cfg = TwoTowerConfig(tower_dims=(8, 4), item_bias=True, personal_scale_init=0.05, n_item_tokens=6)
    model = TwoTowerModel(cfg)
    b, n = 3, 5
    u = F.UserFeatures(
        age_bucket=np.zeros(b, np.int32),
        country=np.zeros(b, np.int32),
        music=np.zeros((b, 0), np.float32),
        has_music=np.zeros(b, np.float32),
        history_mean=np.ones((b, 2, 2), np.float32),
        has_history=np.ones((b, 2), np.float32),
        history_count=np.ones((b, 2), np.float32),
        history_ids=np.zeros((b, 2, 0), np.int32),
    )
    prior = np.log(np.array([0.5, 0.2, 0.1, 0.1, 0.1], np.float32))
    it = F.ItemFeatures(
        item_idx=np.arange(n, dtype=np.int32),
        language=np.zeros(n, np.int32),
        genre=np.zeros(n, np.int32),
        content=np.ones((n, 3), np.float32),
        hgnn=np.ones((n, 2), np.float32),
        id_token=np.array([1, 2, 3, 0, 5], np.int32),
        log_prior=prior,
    )
    params = jax.jit(model.init)(jax.random.PRNGKey(0), u, it)
    uv, iv = jax.jit(model.apply)(params, u, it)
    assert uv.shape == (b, 5) and iv.shape == (n, 5) and cfg.out_dim == 5
    np.testing.assert_allclose(uv[:, -1], 1.0)
    np.testing.assert_allclose(iv[:, -1], cfg.temperature * prior, rtol=1e-6)  # delta starts at zero
    np.testing.assert_allclose(np.linalg.norm(uv[:, :-1], axis=1), 0.05, rtol=1e-5)  # personal scale


def test_recency_weights_halve_per_halflife():
    ts = np.array([0, 10, 20], np.int64) * DAY
    w = recency_weights(ts, 10.0)
    assert w.mean() == pytest.approx(1.0) and w[2] / w[1] == pytest.approx(2.0) and w[1] / w[0] == pytest.approx(2.0)
    assert recency_weights(ts, None) is None


def test_early_stopping_returns_the_best_validated_parameters(tmp_path):
    ds = generate("tiny", 0)
    sp = temporal_split(ds)
    cfg = TwoTowerTrainConfig(
        batch_size=32,
        epochs=20,
        checkpoint_every=1000,
        log_every=2,
        progress=False,
        eval_every=2,
        patience=2,
        example_history="leave_one_out",
        id_history_len=3,
        model=TwoTowerConfig(tower_dims=(16, 8), negatives="full", item_bias=True, personal_scale_init=0.05, id_dim=4),
    )
    scripted = iter([0.1, 0.3, 0.2, 0.25, 0.9])  # best at the 2nd validation (step 4), patience 2 -> stop at step 8
    res = train_two_tower(
        ds,
        sp,
        ds.item_vectors,
        None,
        dataclasses.replace(cfg, use_hgnn=False),
        tmp_path / "a",
        validate=lambda r: next(scripted),
    )
    assert res.stop_reason == "early_stopping" and res.step == 8 and res.best_step == 4 and res.n_compiles == 1
    assert [v["step"] for v in res.val_history] == [2, 4, 6, 8]
    rerun = train_two_tower(
        ds,
        sp,
        ds.item_vectors,
        None,
        dataclasses.replace(cfg, use_hgnn=False),
        tmp_path / "a",
        validate=lambda r: pytest.fail("an early-stopped run resumed must not train or validate"),
    )
    assert (rerun.step, rerun.best_step, rerun.stop_reason, rerun.val_history) == (
        8,
        4,
        "early_stopping",
        res.val_history,
    )
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b), res.params, rerun.params)
    again = train_two_tower(
        ds, sp, ds.item_vectors, None, dataclasses.replace(cfg, use_hgnn=False, max_steps=4), tmp_path / "b"
    )
    assert again.stop_reason == "max_steps"
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b), res.params, again.params)


def test_prior_table_counts_the_window_before_each_slot():
    # items 0..2; days: 0 0 1 3 3 5 (item 0,1,0,2,2,2)
    ts = np.array([0, 0, 1, 3, 3, 5], np.int64) * DAY + 100
    rows = np.array([0, 1, 0, 2, 2, 2])
    pt = F.prior_table(ts, rows, 3, window_days=2, alpha=1.0)
    assert pt.slot.tolist() == [0, 0, 1, 3, 3, 5] and pt.log_prior.shape == (7, 3)

    def expect(counts):
        c = np.asarray(counts, np.float64)
        return np.log((c + 1) / (c.sum() + 3))

    np.testing.assert_allclose(pt.log_prior[0], expect([0, 0, 0]), rtol=1e-6)  # nothing before day 0
    np.testing.assert_allclose(pt.log_prior[2], expect([2, 1, 0]), rtol=1e-6)  # days 0-1
    np.testing.assert_allclose(pt.log_prior[3], expect([1, 0, 0]), rtol=1e-6)  # days 1-2: never its own day
    np.testing.assert_allclose(pt.log_prior[5], expect([0, 0, 2]), rtol=1e-6)  # days 3-4
    np.testing.assert_allclose(pt.at_end, expect([0, 0, 1]), rtol=1e-6)  # days 4-5: the serving prior
    wide = F.prior_table(ts, rows, 3, window_days=2, max_cells=9)  # 6 days x 3 items > 9 cells: 2-day slots
    assert wide.slot_days == 2.0 and wide.slot.tolist() == [0, 0, 0, 1, 1, 2]


def _as_of_prior_config(max_steps: int, **model) -> TwoTowerTrainConfig:
    """A small leave-one-out two-tower with the time-aware 7-day prior (full softmax, item bias)."""
    return TwoTowerTrainConfig(
        batch_size=32,
        max_steps=max_steps,
        checkpoint_every=1000,
        log_every=2,
        progress=False,
        use_hgnn=False,
        example_history="leave_one_out",
        prior_days=7,
        prior_as_of=True,
        model=TwoTowerConfig(tower_dims=(16, 8), negatives="full", item_bias=True, **model),
    )


def test_time_aware_prior_trains_once_compiled_and_serves_the_end_prior(tmp_path):
    ds = generate("tiny", 0)
    sp = temporal_split(ds)
    cfg = _as_of_prior_config(6, personal_scale_init=0.05)
    res = train_two_tower(ds, sp, ds.item_vectors, None, cfg, tmp_path / "a")
    assert res.n_compiles == 1 and res.step == 6
    # the served prior is the table's last row over the training positives: the 7 days before the cut
    start, stop = F.target_item_range(ds, "audiobook")
    tr = sp.train
    pos = tr[(tr["event"] == "stream") & (tr["item_idx"] >= start) & (tr["item_idx"] < stop)]
    want = F.prior_table(pos["timestamp"].to_numpy(), pos["item_idx"].to_numpy() - start, stop - start, 7).at_end
    np.testing.assert_allclose(res.item_table.log_prior, want, rtol=1e-6)
    assert res.item_table.log_prior.std() > 0
    with pytest.raises(ValueError, match="prior_as_of needs"):
        dataclasses.replace(cfg, prior_days=None)


def test_select_and_refit_feed_the_step_one_prior_shape(tmp_path, monkeypatch):
    """The time-aware prior's rows are padded to a bucket of the slot count: the selection run (on the
    validation split, fewer days) and the refit feed the jitted step arrays of one shape, so they share
    one compiled program; the padding is never read (the loss equals the unpadded prior's)."""
    from twotower_hgnn.data.split import validation_split
    from twotower_hgnn.train import two_tower as T
    from twotower_hgnn.train.two_tower_batches import pad_slots, slot_bucket

    assert [slot_bucket(n) for n in (1, 4, 5, 9, 70, 77, 78, 80, 81)] == [4, 4, 8, 12, 80, 80, 80, 80, 96]
    assert all(n <= slot_bucket(n) < n + max(4, n / 4) for n in range(1, 5000))
    fed, raw = [], []
    make, build = T.make_train_step, T.training_data

    def recording(*a, **k):
        step = make(*a, **k)

        def run(state, table, batch, prior):
            fed.append(prior.shape)
            return step(state, table, batch, prior)

        return run

    def data(*a, **k):
        out = build(*a, **k)
        raw.append(out[3].shape)
        return out

    monkeypatch.setattr(T, "make_train_step", recording)
    monkeypatch.setattr(T, "training_data", data)
    ds = generate("tiny", 0)
    sp = temporal_split(ds)
    cfg = _as_of_prior_config(2)
    train_two_tower(ds, validation_split(ds, sp), ds.item_vectors, None, cfg, tmp_path / "select")
    train_two_tower(ds, sp, ds.item_vectors, None, cfg, tmp_path / "refit")
    assert raw[0][0] < raw[1][0] and raw[0][1] == raw[1][1]  # the refit's training window has more days
    assert len(set(fed)) == 1 and fed[0][0] == slot_bucket(raw[1][0])
    # padding is never read: one batch's loss with the padded table equals the loss with the table itself
    model_cfg, vocab, table, hist = T.prepare(ds, ds.item_vectors, None, cfg, known_items=T._known_items(sp))
    _, host_batch, train_table, prior = build(ds, sp, cfg, vocab, table, hist)
    params = T._init_params(model_cfg, cfg, host_batch(0), table)
    loss = jax.jit(T.make_loss_fn(model_cfg))
    b = host_batch(0)
    np.testing.assert_array_equal(loss(params, train_table, b, pad_slots(prior)), loss(params, train_table, b, prior))


def test_ema_parameters_are_the_moving_average(tmp_path):
    ds = generate("tiny", 0)
    sp = temporal_split(ds)
    base = TwoTowerTrainConfig(
        batch_size=32,
        max_steps=4,
        checkpoint_every=1000,
        log_every=2,
        progress=False,
        use_hgnn=False,
        model=TwoTowerConfig(tower_dims=(16, 8)),
    )
    raw = train_two_tower(ds, sp, ds.item_vectors, None, base, tmp_path / "raw")
    same = train_two_tower(ds, sp, ds.item_vectors, None, dataclasses.replace(base, ema_decay=0.0), tmp_path / "d0")
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b), raw.params, same.params)
    avg = train_two_tower(ds, sp, ds.item_vectors, None, dataclasses.replace(base, ema_decay=0.5), tmp_path / "d5")
    assert avg.n_compiles == 1
    leaves = lambda p: np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(p)])  # noqa: E731
    init = train_two_tower(
        ds, sp, ds.item_vectors, None, dataclasses.replace(base, max_steps=0, epochs=1), tmp_path / "i"
    )
    # ema_4 = 0.5^4 init + sum_k 0.5^(5-k) p_k: strictly between the start and the end of training
    d_start, d_end = (
        np.linalg.norm(leaves(avg.params) - leaves(init.params)),
        np.linalg.norm(leaves(avg.params) - leaves(raw.params)),
    )
    assert 0 < d_start and 0 < d_end < np.linalg.norm(leaves(raw.params) - leaves(init.params))


@pytest.mark.parametrize("history", ["as_of", "leave_one_out"])
def test_a_step_budget_builds_only_the_features_it_reads(ds, history):
    """With ``max_steps`` x ``batch_size`` below the number of examples only the examples those steps read get
    user features; every batch of the budget equals the batch built from every example's features."""
    from twotower_hgnn.train.two_tower_batches import batch_rows, budget_rows, make_batch

    sp = temporal_split(ds, cut_quantile=0.9, history_days=None, min_segment_users=0)
    emb = np.random.default_rng(0).normal(size=(ds.num_items, 3)).astype(np.float32)
    vocab = F.build_vocab(ds, "podcast", d_hist=3, history_days=None, id_history_len=3)
    cfg = TwoTowerTrainConfig(target_type="podcast", batch_size=8, max_steps=5, seed=2)
    full = F.build_training_examples(ds, sp, "podcast", emb, vocab, example_history=history)
    part = F.build_training_examples(
        ds, sp, "podcast", emb, vocab, example_history=history, budget_rows=lambda n: budget_rows(n, cfg)
    )
    n = len(full)
    assert 5 * 8 < n and part.built_rows is not None and len(part) == n
    built = part.built_rows
    assert np.all(np.diff(built) > 0)
    assert len(built) == part.user.history_mean.shape[0] <= 5 * 8
    np.testing.assert_array_equal(part.item_counts, full.item_counts)  # the correction sees every example
    log_q = F.smoothed_log_q(full.item_counts)
    # compacted: the example columns of the built rows only, the same length and batches
    small = part.compact()
    assert len(small) == n and small.item_row.shape == small.timestamp.shape == small.user_idx.shape == built.shape
    np.testing.assert_array_equal(small.timestamp, full.timestamp[built])
    weights = np.random.default_rng(1).random(n)
    for step in range(5):
        rows = batch_rows(n, 8, cfg.seed, step)
        assert np.isin(rows, built).all()
        a, b = make_batch(part, rows, log_q, 8), make_batch(full, rows, log_q, 8)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
            np.testing.assert_array_equal(x, y)
        # per-example weights are indexed like the compacted columns
        c, d = make_batch(small, rows, log_q, 8, weights[built]), make_batch(full, rows, log_q, 8, weights)
        for x, y in zip(jax.tree_util.tree_leaves(c), jax.tree_util.tree_leaves(d), strict=True):
            np.testing.assert_array_equal(x, y)
    outside = np.setdiff1d(np.arange(n), built)
    for rows in (outside[:1], outside[-1:], np.array([n - 1]) if n - 1 not in built else outside[:1]):
        for ex in (part, small):
            with pytest.raises(F.FeatureError, match="outside the step budget"):
                ex.users_of(np.concatenate([built[:2], rows]))
        with pytest.raises(F.FeatureError, match="outside the step budget"):
            small.positions(np.concatenate([built[:2], rows]))
    assert budget_rows(n, dataclasses.replace(cfg, max_steps=None)) is None  # epochs: every example


@pytest.mark.parametrize("prior_as_of", [False, True])
def test_training_data_under_a_budget_batches_like_every_example(ds, prior_as_of):
    """``training_data`` under a step budget keeps only the budget's examples (compacted), yet every step's
    host batch (users, items, priors, recency weights, prior slots) equals the one built from every example."""
    from twotower_hgnn.train.two_tower import prepare
    from twotower_hgnn.train.two_tower_batches import training_data

    sp = temporal_split(ds, cut_quantile=0.9, history_days=None, min_segment_users=0)
    rng = np.random.default_rng(0)
    content = rng.normal(size=(ds.num_items, 4)).astype(np.float32)
    cfg = TwoTowerTrainConfig(
        target_type="podcast",
        batch_size=8,
        max_steps=5,
        seed=3,
        recency_halflife_days=2.0,
        prior_days=3.0,
        prior_as_of=prior_as_of,
        model=TwoTowerConfig(item_bias=True),
    )
    every = dataclasses.replace(cfg, max_steps=None, epochs=1)
    got, want = [], []
    for c, out in ((cfg, got), (every, want)):
        _, vocab, table, hist = prepare(ds, content, content, c)
        ex, host_batch, train_table, prior = training_data(ds, sp, c, vocab, table, hist)
        out.append((ex, [host_batch(s) for s in range(5)], table.log_prior, prior))
    (ex, batches, log_prior, prior), (ex_all, batches_all, log_prior_all, prior_all) = got[0], want[0]
    assert ex.n_examples == len(ex_all) == len(ex) > 5 * 8 >= len(ex.item_row)  # compacted
    np.testing.assert_array_equal(log_prior, log_prior_all)
    if prior_as_of:
        np.testing.assert_array_equal(prior, prior_all)
    for a, b in zip(batches, batches_all):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
            np.testing.assert_array_equal(x, y)
