"""External splits (given parts, per-user as-of times), validation splits and split persistence."""

import numpy as np
import pandas as pd
import pytest

from twotower_hgnn import features as F
from twotower_hgnn.data import load_dataset
from twotower_hgnn.data.split import (
    SplitError,
    external_dataset,
    external_split,
    known_at_cut,
    split_from_files,
    temporal_split,
    validation_split,
)
from twotower_hgnn.data.split_io import load_split, save_split

RAW = ["user_id", "item_id", "timestamp", "event"]


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", scale="tiny", seed=0)


@pytest.fixture(scope="module")
def random_split(ds):
    """A per-user random (non-temporal) 80/20 split of every row."""
    held = np.random.default_rng(0).random(len(ds.interactions)) < 0.2
    raw = ds.interactions[RAW]
    return external_split(ds, raw[~held], raw[held]), held


def _rows(df):
    return sorted(map(tuple, df[["user_idx", "item_idx", "timestamp", "event_code"]].to_numpy().tolist()))


def test_random_split_gives_users_their_history(ds, random_split):
    sp, held = random_split
    assert sp.external and len(sp.train) == int((~held).sum()) and len(sp.test) == int(held.sum())
    assert sp.train["timestamp"].is_monotonic_increasing
    users = np.unique(sp.test["user_idx"].to_numpy())
    as_of = sp.user_as_of(users)
    last = sp.train.groupby("user_idx")["timestamp"].max()
    has_train = np.isin(users, last.index.to_numpy())
    np.testing.assert_array_equal(as_of[has_train], last.reindex(users[has_train]).to_numpy() + 1)
    assert (as_of[~has_train] == 0).all()
    # history from the training part, as of each user's own time: every user with training rows of
    # the history events has a history (with one global time -- the old behaviour -- most do not)
    vocab = F.build_vocab(ds, "audiobook", d_hist=4, history_days=None)
    emb = np.random.default_rng(1).normal(size=(ds.num_items, 4)).astype(np.float32)
    f = F.user_features_as_of(ds, sp.train, users, as_of, emb, vocab)
    counted = sp.train[sp.train["event"].isin(vocab.history_events)]["user_idx"].unique()
    with_hist = np.isin(users, counted)
    hist = f.has_history.reshape(len(users), -1).max(axis=1)  # any item type
    assert with_hist.sum() > 100 and (hist[with_hist] == 1).all() and (hist[~with_hist] == 0).all()
    g = F.user_features_as_of(ds, sp.train, users, sp.cut_time, emb, vocab)
    assert g.has_history.reshape(len(users), -1).max(axis=1).sum() < 0.5 * hist.sum()


def test_save_load_roundtrip_and_known_at_cut(ds, random_split, tmp_path):
    sp, _ = random_split
    save_split(sp, tmp_path / "ext")
    back = load_split(tmp_path / "ext")
    assert back.external and back.segment_sizes == sp.segment_sizes
    users = np.arange(ds.num_users)
    np.testing.assert_array_equal(back.user_as_of(users), sp.user_as_of(users))
    assert _rows(known_at_cut(ds, back).interactions) == _rows(sp.train)
    tmp = temporal_split(ds)
    save_split(tmp, tmp_path / "tmp")
    t2 = load_split(tmp_path / "tmp", ds)  # row ranges of ds: loaded with it
    assert not t2.external and (t2.user_as_of(users) == tmp.cut_time).all()
    snap = known_at_cut(ds, t2).interactions
    assert (snap["timestamp"] < tmp.cut_time).all()
    before = ds.interactions[ds.interactions["timestamp"].to_numpy() < tmp.cut_time].reset_index(drop=True)
    pd.testing.assert_frame_equal(snap, before)  # every row before the cut, as a view of the log's columns
    assert np.shares_memory(snap["item_idx"].to_numpy(), ds.interactions["item_idx"].to_numpy())


def test_temporal_validation_split(ds):
    sp = temporal_split(ds)
    v = validation_split(ds, sp, frac=0.1)
    ts = sp.train["timestamp"].to_numpy()
    assert v.cut_time == int(np.quantile(ts, 0.9, method="lower"))
    assert (v.train["timestamp"] < v.cut_time).all() and (v.test["timestamp"] >= v.cut_time).all()
    assert _rows(pd.concat([v.train, v.test])) == _rows(sp.train)
    assert v.test_end == sp.cut_time and v.history_start == sp.history_start and not v.external
    assert (v.user_as_of([0, 5]) == v.cut_time).all()
    has_ab = set(v.train.loc[v.train["item_idx"] < ds.item_type_counts["audiobook"], "user_idx"])
    assert set(v.warm_users) == set(v.test["user_idx"]) & has_ab
    assert set(v.cold_users) == set(v.test["user_idx"]) - has_ab


def test_random_validation_split(ds, random_split):
    sp, _ = random_split
    v = validation_split(ds, sp, frac=0.1, seed=3)
    assert _rows(pd.concat([v.train, v.test])) == _rows(sp.train)
    assert abs(len(v.test) / len(sp.train) - 0.1) < 0.02
    n_tr = sp.train["user_idx"].value_counts()
    n_v = v.test["user_idx"].value_counts().reindex(n_tr.index, fill_value=0)
    assert (n_v <= n_tr - 1).all()  # every user keeps a training row (users with one row keep it)
    assert set(n_tr.index) == set(v.train["user_idx"])
    np.testing.assert_array_equal(
        v.user_as_of(v.warm_users), v.train.groupby("user_idx")["timestamp"].max().reindex(v.warm_users).to_numpy() + 1
    )
    again = validation_split(ds, sp, frac=0.1, seed=3)
    assert _rows(again.test) == _rows(v.test) and _rows(validation_split(ds, sp, frac=0.1, seed=4).test) != _rows(
        v.test
    )


def test_validation_rows_given_are_held_out_as_a_multiset(ds, random_split):
    sp, _ = random_split
    pick = sp.train.iloc[::25]
    dup = pd.concat([sp.train, sp.train.iloc[:1]], ignore_index=True).sort_values("timestamp", kind="stable")
    base = external_split(ds, dup, sp.test)  # one training row twice: the validation copy removes one
    v = validation_split(ds, base, valid_interactions=pick[RAW])
    assert _rows(v.test) == _rows(pick) and len(v.train) == len(base.train) - len(pick)
    assert _rows(pd.concat([v.train, v.test])) == _rows(base.train)
    with pytest.raises(SplitError, match="frac"):
        validation_split(ds, sp, frac=1.0)


def test_split_from_files(ds, tmp_path):
    inter = ds.interactions[RAW]
    part = np.random.default_rng(2).integers(0, 3, len(inter))  # 0 train, 1 valid, 2 test
    paths = {n: tmp_path / f"{n}.csv" for n in ("train", "valid", "test", "items", "users")}
    for k, n in enumerate(("train", "valid", "test")):
        inter[part == k].to_csv(paths[n], index=False)
    ds.items.to_csv(paths["items"], index=False)
    ds.users[["user_id", "age", "country"]].to_csv(paths["users"], index=False)
    full = external_dataset(paths["train"], paths["test"], paths["items"], paths["users"], valid=paths["valid"])
    assert len(full.interactions) == len(inter) and "_part" not in full.interactions.columns
    sp = split_from_files(full, paths["train"], paths["test"], valid=paths["valid"])
    assert len(sp.train) == int((part < 2).sum()) and len(sp.test) == int((part == 2).sum())
    from twotower_hgnn.data.readers import read_interactions

    v = validation_split(full, sp, valid_interactions=read_interactions(paths["valid"]))
    assert len(v.test) == int((part == 1).sum()) and len(v.train) == int((part == 0).sum())
    pd.DataFrame(
        {
            "user_id": ["nobody"],
            "item_id": [inter["item_id"].iloc[0]],
            "timestamp": [1_700_000_000],
            "event": ["stream"],
        }
    ).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="nobody"):
        validation_split(full, sp, valid_interactions=read_interactions(tmp_path / "bad.csv"))
