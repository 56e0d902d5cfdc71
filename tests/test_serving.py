"""Serving: export round trip, real-time user vectors (known, raw, brand-new users), top-K, clear errors."""

from __future__ import annotations

import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.conftest import ROOT
from twotower_hgnn.data.split import temporal_split
from twotower_hgnn.data.synthetic import generate
from twotower_hgnn.models.two_tower import TwoTowerConfig
from twotower_hgnn.serving import Recommender, ServingError, load_model, save_model
from twotower_hgnn.train.two_tower import TwoTowerTrainConfig, item_vectors, train_two_tower, user_vectors

CFG = TwoTowerTrainConfig(
    batch_size=32,
    max_steps=12,
    checkpoint_every=100,
    log_every=4,
    progress=False,
    model=TwoTowerConfig(tower_dims=(32, 16)),
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ds = generate("tiny", 0)
    sp = temporal_split(ds)
    rng = np.random.default_rng(0)
    hgnn = rng.normal(size=(ds.num_items, 8)).astype(np.float32)
    hgnn /= np.linalg.norm(hgnn, axis=1, keepdims=True)
    root = tmp_path_factory.mktemp("serve")
    res = train_two_tower(ds, sp, ds.item_vectors, hgnn, CFG, root / "work")
    model_dir = save_model(res, ds, root / "model")
    rec = Recommender.from_model_dir(model_dir)
    return ds, res, model_dir, rec


def _active_user(ds, min_streams=3):
    """A user with several target-type streams (so exclusion is exercised)."""
    log = ds.interactions
    ab = log[(log.event == "stream") & (ds.items.item_type.to_numpy()[log.item_idx] == "audiobook")]
    counts = ab.groupby("user_idx").item_idx.nunique()
    return int(counts[counts >= min_streams].index[0])


def test_export_round_trip(served):
    ds, res, model_dir, rec = served
    loaded = load_model(model_dir)
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded.params, res.params)
    assert loaded.model_cfg == res.model_cfg and loaded.cfg == res.cfg and loaded.vocab == res.vocab
    users = np.arange(10)
    np.testing.assert_allclose(
        user_vectors(loaded, ds, ds.interactions, users, rec.as_of),
        user_vectors(res, ds, ds.interactions, users, rec.as_of),
        rtol=1e-6,
    )
    np.testing.assert_array_equal(item_vectors(loaded)[0], item_vectors(res)[0])
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_known_user_recommendations(served):
    ds, res, _, rec = served
    u = _active_user(ds)
    uid = ds.users.user_id.iloc[u]
    out = rec.recommend(user_id=uid, k=10)
    assert len(out) == 10
    scores = [s for _, _, s in out]
    assert scores == sorted(scores, reverse=True)
    # scores equal the offline encoders' dot products, as of the snapshot time
    uv = user_vectors(res, ds, ds.interactions, [u], rec.as_of)[0]
    iv, ids = item_vectors(res)
    pos = {ds.items.item_id.iloc[g]: i for i, g in enumerate(ids)}
    np.testing.assert_allclose(scores, [float(iv[pos[i]] @ uv) for i, _, _ in out], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rec.user_vector(uid), uv, rtol=1e-5, atol=1e-6)
    # every returned item is an audiobook with its title; streamed audiobooks are excluded
    by_id = ds.items.set_index("item_id")
    assert all(by_id.item_type[i] == "audiobook" and by_id.title[i] == t for i, t, _ in out)
    log = ds.interactions
    streamed = set(ds.items.item_id.iloc[log[(log.user_idx == u) & (log.event == "stream")].item_idx])
    assert streamed and not streamed & {i for i, _, _ in out}
    with_seen = {i for i, _, _ in rec.recommend(user_id=uid, k=40, exclude_consumed=False)}
    assert streamed & with_seen and len(with_seen) == 40


def test_raw_features_equal_known_user_and_new_users(served):
    ds, res, _, rec = served
    u = _active_user(ds)
    row = ds.users.iloc[u]
    log = ds.interactions[ds.interactions.user_idx == u]
    triples = list(zip(log.item_id, log.event, log.timestamp.astype(int)))
    raw = rec.user_vector(
        age=int(row.age), country=row.country, music=ds.music[u], interactions=triples, as_of=rec.as_of
    )
    np.testing.assert_allclose(raw, rec.user_vector(row.user_id), rtol=1e-5, atol=1e-6)
    # brand-new user: no history, no demographics, no music
    new = rec.user_vector()
    assert new.shape == (16,) and np.isfinite(new).all()
    recs = rec.recommend(k=5)
    assert len(recs) == 5 and all(np.isfinite(s) for _, _, s in recs)
    # new user who just previewed one audiobook: history changes the vector
    ab = ds.items.item_id[ds.items.item_type == "audiobook"].iloc[0]
    v2 = rec.user_vector(age=30, country="SE", interactions=[(ab, "preview", rec.as_of - 10)])
    assert not np.allclose(v2, new)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(user_id="no-such-user"), "unknown user_id"),
        (dict(interactions=[("no-such-item", "stream", 5)]), "not in the catalogue"),
        (dict(interactions=[("__AB__", "like", 5)]), "event"),
        (dict(interactions=[("__AB__", "stream", -3)]), "timestamp"),
        (dict(interactions=[("__AB__", "stream")]), "expected"),
        (dict(age="thirty"), "age"),
        (dict(age=400), "age"),
        (dict(country=46), "country"),
        (dict(music=[1.0, 2.0]), "music"),
        (dict(user_id="u0", age=30), "either"),
        (dict(k=0), "k must"),
    ],
)
def test_bad_requests(served, kwargs, match):
    ds, _, _, rec = served
    ab = ds.items.item_id[ds.items.item_type == "audiobook"].iloc[0]
    if "interactions" in kwargs:
        kwargs = {"interactions": [tuple(ab if x == "__AB__" else x for x in t) for t in kwargs["interactions"]]}
    if kwargs.get("user_id") == "u0":
        kwargs["user_id"] = ds.users.user_id.iloc[0]
    with pytest.raises(ServingError, match=match):
        rec.recommend(**kwargs)


def test_bad_model_dir(tmp_path):
    with pytest.raises(ServingError, match="model.json"):
        load_model(tmp_path)


def test_launch_recommend_prints_titles(served):
    ds, _, model_dir, rec = served
    uid = ds.users.user_id.iloc[_active_user(ds)]
    expected = rec.recommend(user_id=uid, k=3)
    proc = subprocess.run(
        [sys.executable, "launch/recommend.py", f"--model_dir={model_dir}", f"--user_id={uid}", "--k=3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for item_id, title, score in expected:
        assert title in proc.stdout and item_id in proc.stdout and f"{score:.4f}" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "launch/recommend.py", f"--model_dir={model_dir}", "--user_id=nobody"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "unknown user_id 'nobody'" in bad.stderr and "Traceback" not in bad.stderr
