"""User/item features of the two-tower model: as-of history means vs a slow reference, no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from twotower_hgnn.data.readers import build_dataset
from twotower_hgnn.data.schema import EVENTS
from twotower_hgnn import features as F

DAY = 86_400


def small_dataset(seed: int = 0, n_users: int = 25, n_ab: int = 5, n_pc: int = 9, n_rows: int = 500):
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(n_ab + n_pc)],
            "item_type": ["podcast"] * n_pc + ["audiobook"] * n_ab,  # build_dataset reorders by type
            "title": [f"T{j}" for j in range(n_ab + n_pc)],
            "description": "",
            "language": rng.choice(["en", "sv", ""], n_ab + n_pc),
            "genre": rng.choice(["FIC", "BIO", "HIS"], n_ab + n_pc),
        }
    )
    users = pd.DataFrame(
        {
            "user_id": [f"u{j}" for j in range(n_users)],
            "age": rng.choice([-1, 15, 18, 30, 70], n_users),
            "country": rng.choice(["SE", "US", ""], n_users),
        }
    )
    # users 0..2 never appear in the log (no history at all)
    inter = pd.DataFrame(
        {
            "user_id": [f"u{j}" for j in rng.integers(3, n_users, n_rows)],
            "item_id": [f"i{j}" for j in rng.integers(0, n_ab + n_pc, n_rows)],
            "timestamp": (1_700_000_000 + rng.integers(0, 120 * DAY // 3600, n_rows) * 3600).astype(np.int64),
            "event": rng.choice(EVENTS, n_rows, p=[0.6, 0.15, 0.15, 0.1]),
        }
    )
    music = rng.normal(size=(n_users, 3)).astype(np.float32)
    music[1] = np.nan  # user 1 has no music vector
    return build_dataset(inter, items, users, name="features-test", music=music)


def reference(ds, log, users, times, emb, window_s, events=EVENTS):
    """Slow per-query loop: mean embedding per type of rows in [t - w, t)."""
    tcode = ds.item_type_codes()
    codes = {EVENTS.index(e) for e in events}
    u, t, it, ev = (log[c].to_numpy() for c in ("user_idx", "timestamp", "item_idx", "event_code"))
    means = np.zeros((len(users), 2, emb.shape[1]))
    counts = np.zeros((len(users), 2), np.int64)
    for q, (uq, tq) in enumerate(zip(users, times)):
        for r in range(len(u)):
            if u[r] == uq and int(ev[r]) in codes and t[r] < tq and (window_s is None or t[r] >= tq - window_s):
                means[q, tcode[it[r]]] += emb[it[r]]
                counts[q, tcode[it[r]]] += 1
    means /= np.maximum(counts, 1)[:, :, None]
    return means, counts


@pytest.fixture(scope="module")
def ds():
    return small_dataset()


@pytest.mark.parametrize("chunk_rows", [7, 1 << 18])
@pytest.mark.parametrize("days", [30.0, None])
def test_history_means_match_reference(ds, chunk_rows, days):
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(ds.num_items, 4)).astype(np.float32)
    vocab = F.build_vocab(ds, "audiobook", d_hist=4, history_days=days)
    log = ds.interactions
    q_users = rng.integers(0, ds.num_users, 60)
    # query times: random, exactly at existing log timestamps (ties), and outside the log's range
    q_times = np.concatenate(
        [
            rng.choice(log["timestamp"].to_numpy(), 40),
            rng.integers(1_699_000_000, 1_712_000_000, 18),
            [0, 2_000_000_000],
        ]
    )
    f = F.user_features_as_of(ds, log, q_users, q_times, emb, vocab, chunk_rows=chunk_rows)
    ref_m, ref_c = reference(ds, log, q_users, q_times, emb, None if days is None else days * DAY)
    np.testing.assert_allclose(f.history_mean, ref_m, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(f.has_history, (ref_c > 0).astype(np.float32))
    np.testing.assert_allclose(f.history_count, np.log1p(ref_c), rtol=1e-6)
    assert ref_c.sum() > 0 and (ref_c == 0).any()  # both cases exercised
    assert f.history_mean.dtype == np.float32 and f.history_mean.shape == (60, 2, 4)


@pytest.mark.parametrize("first_only", [True, False])
def test_training_examples_contain_no_target(ds, first_only):
    d = ds.num_items
    emb = np.eye(d, dtype=np.float32)  # one-hot: mean * count = per-item interaction counts
    vocab = F.build_vocab(ds, "audiobook", d_hist=d, history_days=90.0)
    ex = F.build_training_examples(ds, ds.interactions, "audiobook", emb, vocab, first_only=first_only)
    assert len(ex) > 10
    start, stop = F.target_item_range(ds, "audiobook")
    assert (ex.item_row >= 0).all() and (ex.item_row < stop - start).all()
    # Same features as the slow reference, example by example, as of the example's timestamp.
    ref_m, ref_c = reference(ds, ds.interactions, ex.user_idx, ex.timestamp, emb, 90.0 * DAY)
    np.testing.assert_allclose(ex.user.history_mean, ref_m, atol=1e-6)
    counts = np.rint(ex.user.history_mean * np.expm1(ex.user.history_count)[:, :, None]).astype(int)
    target = ex.item_row + start
    # The target's coordinate counts exactly the rows of that item strictly before the example (in the
    # window), never the target row itself; with first_only no earlier stream of it can exist.
    log = ds.interactions
    for e in range(len(ex)):
        rows = log[
            (log.user_idx == ex.user_idx[e])
            & (log.item_idx == target[e])
            & (log.timestamp < ex.timestamp[e])
            & (log.timestamp >= ex.timestamp[e] - 90 * DAY)
        ]
        if first_only:
            assert (rows.event != "stream").all()
        assert counts[e, 0, target[e]] == len(rows)
    assert (ex.user.has_history[:, 0] == 0).any(), "some first audiobook streams must be cold-start examples"
    assert ex.item_counts.sum() == len(ex)
    pairs = len(set(zip(ex.user_idx.tolist(), ex.item_row.tolist())))
    assert pairs == len(ex) if first_only else pairs < len(ex)  # re-streams are examples too by default


def test_same_second_interactions_are_not_history():
    items = pd.DataFrame(
        {
            "item_id": ["a", "p"],
            "item_type": ["audiobook", "podcast"],
            "title": ["A", "P"],
            "description": "",
            "language": "en",
            "genre": "FIC",
        }
    )
    users = pd.DataFrame({"user_id": ["u"], "age": [30], "country": ["SE"]})
    inter = pd.DataFrame(
        {
            "user_id": ["u", "u", "u"],
            "item_id": ["p", "a", "p"],
            "timestamp": np.array([100, 100, 50], np.int64),
            "event": ["stream", "stream", "follow"],
        }
    )
    ds = build_dataset(inter, items, users, name="tie")
    emb = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    vocab = F.build_vocab(ds, "audiobook", d_hist=2, history_days=None)
    ex = F.build_training_examples(ds, ds.interactions, "audiobook", emb, vocab)
    assert len(ex) == 1 and ex.timestamp[0] == 100
    np.testing.assert_array_equal(ex.user.has_history[0], [0.0, 1.0])  # only the follow at t=50
    np.testing.assert_allclose(np.expm1(ex.user.history_count[0]), [0, 1])
    np.testing.assert_allclose(ex.user.history_mean[0], [[0, 0], [0, 2]])


def test_users_without_history_and_encodings(ds):
    emb = np.random.default_rng(2).normal(size=(ds.num_items, 4)).astype(np.float32)
    vocab = F.build_vocab(ds, "audiobook", d_hist=4)
    f = F.user_features_as_of(ds, ds.interactions, np.array([0, 1, 2, 5]), 1_800_000_000, emb, vocab)
    assert np.isfinite(f.history_mean).all() and np.isfinite(f.music).all()
    np.testing.assert_array_equal(f.has_history[:3], 0.0)
    np.testing.assert_array_equal(f.history_mean[:3], 0.0)
    assert f.has_music[1] == 0.0 and f.has_music[0] == 1.0 and (f.music[1] == 0).all()
    np.testing.assert_array_equal(
        F.age_buckets(np.array([-1, 0, 17, 18, 24, 25, 64, 65, 99])), [0, 1, 1, 2, 2, 3, 6, 7, 7]
    )
    assert vocab.countries[0] in ("SE", "US") and "" not in vocab.countries
    ids = F.encode_vocab(vocab.countries, ["SE", "US", "", "XX"])
    assert ids[2] == 0 and ids[3] == 0 and set(ids[:2]) == {1, 2}
    with pytest.raises(F.FeatureError, match="age"):
        F.age_buckets(np.array([30, 400]))


def test_item_feature_table(ds):
    rng = np.random.default_rng(3)
    content = rng.normal(size=(ds.num_items, 6)).astype(np.float32)
    hgnn = rng.normal(size=(ds.num_items, 5)).astype(np.float32)
    vocab = F.build_vocab(ds, "podcast", d_hist=5)
    t = F.item_feature_table(ds, content, hgnn, "podcast", vocab)
    start, stop = F.target_item_range(ds, "podcast")
    assert (stop - start) == 9 and t.content.shape == (9, 6) and t.hgnn.shape == (9, 5)
    np.testing.assert_array_equal(t.item_idx, np.arange(start, stop))
    assert (ds.items.item_type.iloc[t.item_idx] == "podcast").all()
    langs = ds.items.language.iloc[start:stop].to_numpy()
    assert ((t.language == 0) == (langs == "")).all()
    t2 = F.item_feature_table(ds, content, None, "podcast", vocab)
    assert t2.hgnn.shape == (9, 0)
    with pytest.raises(F.FeatureError, match="hgnn_emb"):
        F.item_feature_table(ds, content, hgnn[:3], "podcast", vocab)


@pytest.mark.parametrize("first_only", [False, True])
@pytest.mark.parametrize("shuffled", [False, True])
def test_positives_in_chunks_equal_the_whole_log_definition(first_only, shuffled):
    """``_positives`` counts then fills ``chunk`` rows at a time at the log's widths: the same rows, in
    the same (time, user, item) order, as the definition over the whole log (one mask, int64, lexsort)."""
    import pandas as pd

    from twotower_hgnn.features_examples import _is_sorted, _positives

    rng = np.random.default_rng(3)
    n = 5_000
    df = pd.DataFrame(
        {
            "user_idx": rng.integers(0, 40, n).astype(np.int32),
            "item_idx": rng.integers(0, 30, n).astype(np.int32),
            "timestamp": rng.integers(0, 400, n).astype(np.int64),
            "event_code": rng.integers(0, 3, n).astype(np.int8),
        }
    ).sort_values(["timestamp", "user_idx", "item_idx"], kind="stable")
    if shuffled:
        df = df.sample(frac=1.0, random_state=1)
    df = df.reset_index(drop=True)
    codes, start, stop = np.array([0, 2]), 5, 25
    m = df["event_code"].isin(codes) & (df["item_idx"] >= start) & (df["item_idx"] < stop)
    ref = df[m].astype({"user_idx": np.int64, "item_idx": np.int64})
    ref = ref.sort_values(["timestamp", "user_idx", "item_idx"], kind="stable")
    if first_only:
        ref = ref.drop_duplicates(["user_idx", "item_idx"], keep="first")
    for chunk in (7, 64, 1 << 24):
        u, ts, it = _positives(df, codes, start, stop, 30, first_only, chunk=chunk)
        assert (u.dtype, ts.dtype, it.dtype) == (np.int32, np.int64, np.int32)
        np.testing.assert_array_equal(u, ref["user_idx"].to_numpy())
        np.testing.assert_array_equal(ts, ref["timestamp"].to_numpy())
        np.testing.assert_array_equal(it, ref["item_idx"].to_numpy())
        assert _is_sorted(ts, u, it, chunk)
    # an order broken only across a chunk boundary is found
    ts2 = np.arange(10, dtype=np.int64)
    ts2[7] = 3
    assert not _is_sorted(ts2, np.zeros(10, np.int32), np.zeros(10, np.int32), chunk=7)


def test_event_mask_equals_isin_without_widening_the_column():
    """``schema.event_mask``: the rows ``np.isin`` keeps, for int8 codes (negative ones included), any code
    list (repeats, codes absent from the column, none), without an int64 copy of the column."""
    import resource

    from twotower_hgnn.data.schema import event_mask

    ev = np.random.default_rng(0).integers(-2, 6, 10_000).astype(np.int8)
    for codes in ([0], [0, 2], [2, 0, 2], [5, 7], [], [-1, 3]):
        np.testing.assert_array_equal(event_mask(ev, codes), np.isin(ev, codes))
    big = np.zeros(40_000_000, np.int8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert event_mask(big, [0, 1]).all()
    # a bool result and one bool temporary (80 MB), not an int64 copy (320 MB)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 < 200_000_000
