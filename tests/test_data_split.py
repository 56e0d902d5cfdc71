"""Temporal split: boundaries, history/test windows, warm/cold labels, segment-size errors."""

import numpy as np
import pandas as pd
import pytest

from twotower_hgnn.data.readers import build_dataset
from twotower_hgnn.data.split import DAY, SplitError, temporal_split

T0 = 1_700_000_000
# items: a0 (audiobook, id 0), p0, p1 (podcasts, ids 1, 2)
LOG = [
    ("old", "a0", T0 - 100 * DAY, "stream"),  # audiobook listener, but only before a 90-day history
    ("old", "p0", T0 + 5 * DAY, "stream"),  # ... test
    ("w_stream", "a0", T0 - 10 * DAY, "stream"),  # warm by a stream
    ("w_stream", "p1", T0 + 1 * DAY, "stream"),
    ("w_weak", "a0", T0 - 5 * DAY, "follow"),  # warm by a weak signal (any event counts)
    ("w_weak", "a0", T0 + 2 * DAY, "stream"),
    ("c_pod", "p0", T0 - 3 * DAY, "stream"),  # cold: podcasts only before the cut
    ("c_pod", "a0", T0, "stream"),  # exactly at the cut -> test
    ("c_new", "a0", T0 + 20 * DAY, "preview"),  # only test, beyond a 14-day test window
    ("train_only", "p1", T0 - 1, "stream"),
]


@pytest.fixture(scope="module")
def ds():
    inter = pd.DataFrame(LOG, columns=["user_id", "item_id", "timestamp", "event"])
    items = pd.DataFrame(
        {
            "item_id": ["p0", "p1", "a0"],
            "item_type": ["podcast", "podcast", "audiobook"],
            "title": "t",
            "description": "",
            "language": "en",
            "genre": "",
        }
    )
    users = pd.DataFrame(
        {"user_id": ["old", "w_stream", "w_weak", "c_pod", "c_new", "train_only"], "age": 30, "country": ""}
    )
    return build_dataset(inter, items, users, name="hand")


def _names(ds, idx):
    return sorted(ds.users["user_id"].to_numpy()[idx].tolist())


def test_cut_date_history_window_and_labels(ds):
    sp = temporal_split(ds, cut_date=T0, history_days=90, test_days=None)
    assert sp.cut_time == T0 and sp.history_start == T0 - 90 * DAY
    assert (sp.train["timestamp"] < T0).all() and (sp.train["timestamp"] >= T0 - 90 * DAY).all()
    assert (sp.test["timestamp"] >= T0).all()
    assert len(sp.train) == 4 and len(sp.test) == 5  # the 100-day-old stream falls outside the history
    assert _names(ds, sp.warm_users) == ["w_stream", "w_weak"]
    assert _names(ds, sp.cold_users) == ["c_new", "c_pod", "old"]  # old: audiobook only before the window
    assert sp.warm_users.dtype == np.int32 and sp.cold_users.dtype == np.int32
    s = sp.segment_sizes
    assert (s["warm_users"], s["cold_users"], s["test_users"]) == (2, 3, 5)
    assert s["dropped_before_history"] == 1
    assert s["warm_users_ab_test"] == 1 and s["cold_users_ab_test"] == 1  # w_weak, c_pod stream a0 in test
    assert "warm 2" in sp.summary()


def test_no_history_window_and_test_window(ds):
    sp = temporal_split(ds, cut_date="2023-11-14T22:13:20", history_days=None, test_days=14)  # == T0 in UTC
    assert sp.cut_time == T0 and sp.history_start is None and sp.test_end == T0 + 14 * DAY
    assert _names(ds, sp.warm_users) == ["old", "w_stream", "w_weak"]
    assert _names(ds, sp.cold_users) == ["c_pod"]  # c_new's only event is after the test window
    assert sp.segment_sizes["after_test_window"] == 1


def test_quantile_cut(ds):
    sp = temporal_split(ds, cut_quantile=0.5, history_days=None)
    ts = np.sort(ds.interactions["timestamp"].to_numpy())
    assert sp.cut_time == ts[4]  # 'lower' quantile of 10 timestamps
    assert len(sp.train) + len(sp.test) == len(ts)
    assert len(sp.train) == int((ts < sp.cut_time).sum())


def test_segment_below_minimum_is_an_error(ds):
    with pytest.raises(SplitError, match=r"warm_users=2.*min_segment_users=3"):
        temporal_split(ds, cut_date=T0, history_days=90, min_segment_users=3)
    with pytest.raises(SplitError, match="test_interactions=0"):
        temporal_split(ds, cut_date=T0 + 365 * DAY, history_days=None)


def test_bad_arguments(ds):
    with pytest.raises(SplitError, match="not both"):
        temporal_split(ds, cut_date=T0, cut_quantile=0.5)
    with pytest.raises(SplitError, match=r"cut_quantile must be in \(0, 1\)"):
        temporal_split(ds, cut_quantile=1.5)
    with pytest.raises(SplitError, match="not a date"):
        temporal_split(ds, cut_date="the day after tomorrow")


def test_dataset_default_synthetic_last_14_days():
    from twotower_hgnn.data.synthetic import generate

    d = generate("tiny")
    sp = temporal_split(d)
    end = int(d.interactions["timestamp"].max()) + 1
    assert sp.cut_time == end - 14 * DAY and sp.history_start == sp.cut_time - 90 * DAY
    s = sp.segment_sizes
    assert s["warm_users"] > 0 and s["cold_users"] > s["warm_users"]  # most users have no audiobook history
    assert s["cold_users_ab_test"] > 0  # cold-start users who start audiobooks in the test window


def test_temporal_parts_are_views_and_load_back_as_views(ds, tmp_path):
    """A temporal split's parts (and its validation split's) are row ranges of the dataset: views of its
    columns, saved as ranges (no Parquet copies) and rebuilt as views when loaded with the dataset;
    loaded without it, or with another dataset, is a one-line SplitError (no copy of the log is saved)."""
    import dataclasses

    from twotower_hgnn.data import load_dataset
    from twotower_hgnn.data.split import validation_split
    from twotower_hgnn.data.split_io import load_split, save_split

    big = load_dataset("synthetic", scale="tiny", seed=0)
    sp = temporal_split(big)
    vs = validation_split(big, sp)
    col = big.interactions["item_idx"].to_numpy()
    lo, mid, hi = sp.rows
    assert (vs.rows[0], vs.rows[2]) == (lo, mid) and lo <= vs.rows[1] <= mid
    for part, (a, b) in ((sp.train, (lo, mid)), (sp.test, (mid, hi)), (vs.train, vs.rows[:2]), (vs.test, vs.rows[1:])):
        assert np.shares_memory(part["item_idx"].to_numpy(), col)
        pd.testing.assert_frame_equal(part, big.interactions.iloc[a:b].reset_index(drop=True))
    save_split(sp, tmp_path / "s")
    back = load_split(tmp_path / "s", big)
    assert back.rows == sp.rows and np.shares_memory(back.train["item_idx"].to_numpy(), col)
    # row ranges are saved as ranges: no copy of the log on disk, and no way to load them without it
    assert not list((tmp_path / "s").glob("*.parquet"))
    with pytest.raises(
        SplitError, match=r"split\.json: the split is rows \d+\.\.\d+ of its dataset; pass that dataset"
    ):
        load_split(tmp_path / "s")
    # the segments alone (e.g. to pick a few test users) need neither the dataset nor the parts
    seg = load_split(tmp_path / "s", read_parts=False)
    assert seg.rows is None and seg.train.empty and seg.test.empty and seg.cut_time == sp.cut_time
    np.testing.assert_array_equal(seg.warm_users, sp.warm_users)
    np.testing.assert_array_equal(seg.cold_users, sp.cold_users)
    np.testing.assert_array_equal(seg.user_as_of(sp.cold_users), sp.user_as_of(sp.cold_users))
    other = dataclasses.replace(big, interactions=big.interactions.iloc[1:].reset_index(drop=True))
    with pytest.raises(SplitError, match="the dataset given is not the one it was made from"):
        load_split(tmp_path / "s", other)  # ranges of another log: not trusted
    # a split that is not ranges of its log (ablation B) keeps its parts as Parquet
    stripped = dataclasses.replace(sp, train=sp.train.iloc[::2].reset_index(drop=True), rows=None)
    save_split(stripped, tmp_path / "b")
    read = load_split(tmp_path / "b", big)
    assert read.rows is None and not np.shares_memory(read.train["item_idx"].to_numpy(), col)
    pd.testing.assert_frame_equal(read.train, stripped.train, check_categorical=False)
    from twotower_hgnn.pipeline.config import strip_weak

    assert strip_weak(sp).rows is None  # ablation B's training part is no longer a range of the log
