"""Synthetic generator: the paper's §7 calibration figures, content signal, weak signals, determinism."""

import numpy as np
import pytest

from twotower_hgnn.data import load_dataset
from twotower_hgnn.data.schema import EVENTS, ITEM_TYPES
from twotower_hgnn.data.synthetic import DAY, SCALES, calibration, generate


@pytest.fixture(scope="module")
def tiny():
    return generate("tiny", seed=0)


@pytest.fixture(scope="module")
def small():
    return generate("small", seed=1)  # 20K users, 600K interactions, < 1 s on a quiet core


def test_scales_ladder():
    sizes = [(c.n_users, c.n_audiobooks, c.n_podcasts) for c in SCALES.values()]
    assert sizes == sorted(sizes) and list(SCALES)[0] == "tiny"
    p = SCALES["paper"]
    assert (p.n_users, p.n_podcasts, p.n_audiobooks) == (10_000_000, 3_500_000, 250_000)
    for c in SCALES.values():
        assert c.n_podcasts == 14 * c.n_audiobooks


def test_tables_follow_schema(tiny):
    assert tiny.name == "synthetic-tiny"
    assert tiny.item_type_counts == {"audiobook": 40, "podcast": 560}
    assert (tiny.items["item_type"].to_numpy()[:40] == "audiobook").all()
    it = tiny.interactions
    assert it["timestamp"].is_monotonic_increasing
    assert set(it["event"].astype(str)) == set(EVENTS)
    assert it["user_idx"].max() < tiny.num_users and it["item_idx"].max() < tiny.num_items
    assert (
        tiny.interactions["user_id"].astype(str).to_numpy()[:5]
        == tiny.users["user_id"].to_numpy()[it["user_idx"].to_numpy()[:5]]
    ).all()
    v = tiny.item_vectors
    assert v.dtype == np.float32 and v.shape == (600, 32)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert tiny.music.shape == (800, 8) and tiny.music.dtype == np.float32
    assert tiny.items["title"].str.len().min() > 0 and tiny.items["description"].str.len().min() > 0
    assert ITEM_TYPES == ("audiobook", "podcast")


@pytest.mark.parametrize("fixture,tol_items", [("tiny", 0.10), ("small", 0.05)])
def test_calibration(request, fixture, tol_items):
    ds = request.getfixturevalue(fixture)
    c = calibration(ds)
    assert c["podcasts_per_audiobook"] == pytest.approx(14.0)
    assert c["top20_audiobooks_stream_share"] == pytest.approx(0.80, abs=tol_items)
    assert c["top25_users_stream_share"] == pytest.approx(0.75, abs=0.05)
    assert c["frac_users_with_audiobooks"] < 0.3  # most users have no audiobook history
    assert c["frac_ab_users_streaming_podcasts"] > 0.7
    assert c["mean_interactions_per_user"] == pytest.approx(30.0, rel=0.08)
    assert 89.0 < c["days"] <= 90.0


def test_weak_signals_predict_future_streams(small):
    it = small.interactions
    u = it["user_idx"].to_numpy().astype(np.int64)
    i = it["item_idx"].to_numpy().astype(np.int64)
    e = it["event_code"].to_numpy()
    t = it["timestamp"].to_numpy()
    n_ab = small.item_type_counts["audiobook"]
    key = u * small.num_items + i
    stream = e == EVENTS.index("stream")
    ks, ts = key[stream], t[stream]
    order = np.argsort(ks, kind="stable")
    uk, idx = np.unique(ks[order], return_index=True)
    last = np.maximum.reduceat(ts[order], idx)
    pos = np.searchsorted(uk, key)
    has = (pos < uk.size) & (uk[np.minimum(pos, uk.size - 1)] == key)
    later = has & (last[np.minimum(pos, uk.size - 1)] > t)
    early = t < t.max() - 14 * DAY  # leave time for a stream to follow
    conv = {}
    for ev in ("follow", "preview", "intent_to_pay"):
        m = (e == EVENTS.index(ev)) & (i < n_ab) & early
        conv[ev] = later[m].mean()
    assert conv["follow"] > conv["preview"] > 0.25 and conv["intent_to_pay"] > 0.25
    # baseline: a random (user, audiobook) pair of an audiobook user is almost never streamed
    assert conv["preview"] > 20 * (stream & (i < n_ab)).sum() / (np.unique(u[i < n_ab]).size * n_ab)


def test_topics_drive_content_and_co_listening(small):
    topic = small.truth["item_topic"]
    v = small.item_vectors
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, small.num_items, (2, 20000))
    same = topic[a] == topic[b]
    cos = (v[a] * v[b]).sum(1)
    assert cos[same].mean() > 0.3 > 0.05 > abs(cos[~same].mean())
    # consecutive streams of one user share a topic far more often than random pairs
    it = small.interactions
    it = it[it["event_code"] == 0].sort_values(["user_idx", "timestamp"], kind="stable")
    uu, ii = it["user_idx"].to_numpy(), it["item_idx"].to_numpy()
    m = uu[1:] == uu[:-1]
    assert (topic[ii[1:]][m] == topic[ii[:-1]][m]).mean() > 3 * same.mean()
    # audiobook and podcast tastes are shared: a user's audiobooks match their podcasts' topics
    ab = ii < small.item_type_counts["audiobook"]
    m2 = m & (ab[1:] != ab[:-1])
    assert (topic[ii[1:]][m2] == topic[ii[:-1]][m2]).mean() > 3 * same.mean()


def test_user_features_follow_taste(small):
    main = small.truth["user_topics"][:, 0]
    age = small.users["age"].to_numpy()
    assert age.min() >= 16 and age.max() <= 80
    means = np.bincount(main, weights=age) / np.maximum(np.bincount(main), 1)
    assert means.max() - means.min() > 10  # age depends on the main topic
    mv = small.music
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, small.num_users, (2, 20000))
    same = main[a] == main[b]
    cos = (mv[a] * mv[b]).sum(1)
    assert cos[same].mean() > cos[~same].mean() + 0.2


def test_text_carries_topic_words(tiny):
    from twotower_hgnn.data.synthetic import THEMES

    topic = tiny.truth["item_topic"]
    desc = tiny.items["description"].to_numpy()
    hits = [sum(w in d for w in THEMES[t % len(THEMES)][1]) for d, t in zip(desc, topic)]
    assert np.mean(hits) >= 2.5  # ~4 topic words per description, a few swapped for noise


def test_seeded_and_deterministic():
    a = generate("tiny", seed=5)
    b = load_dataset("synthetic", scale="tiny", seed=5)
    c = generate("tiny", seed=6)
    assert a.interactions[["user_idx", "item_idx", "timestamp", "event_code"]].equals(
        b.interactions[["user_idx", "item_idx", "timestamp", "event_code"]]
    )
    np.testing.assert_array_equal(a.item_vectors, b.item_vectors)
    assert not a.interactions["item_idx"].equals(c.interactions["item_idx"])


def test_overrides_and_vectors_only_scale():
    d = generate("tiny", seed=0, emit_text=False, content_dim=16, n_users=100)
    assert d.num_users == 100 and d.item_vectors.shape[1] == 16
    assert (d.items["title"] == "").all()
    assert not SCALES["medium"].emit_text and SCALES["medium"].content_dim > 0
    with pytest.raises(ValueError, match="unknown synthetic scale 'gigantic'"):
        generate("gigantic")
