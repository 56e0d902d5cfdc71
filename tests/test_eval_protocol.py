"""The evaluation protocol on a hand-made dataset: segments, relevant sets, exclusions, catalogue."""

import dataclasses
import types

import numpy as np
import pandas as pd
import pytest

from twotower_hgnn.data.schema import EVENTS, Dataset
from twotower_hgnn.eval.protocol import Rankings, build_protocol, sample_users

# items 0-2 audiobooks, 3-5 podcasts; users 0-3
TRAIN = [
    (0, 0, "stream"),
    (0, 1, "preview"),
    (0, 3, "stream"),
    (1, 3, "stream"),
    (1, 4, "stream"),
    (2, 2, "follow"),
    (3, 0, "stream"),
]
TEST = [
    (0, 0, "stream"),
    (0, 2, "stream"),
    (0, 1, "preview"),
    (0, 4, "stream"),
    (1, 1, "stream"),
    (1, 1, "stream"),
    (1, 3, "stream"),
    (2, 2, "stream"),
    (3, 0, "stream"),
]


def _table(rows):
    u, i, e = zip(*rows)
    return pd.DataFrame(
        {
            "user_idx": np.array(u, np.int32),
            "item_idx": np.array(i, np.int32),
            "event_code": np.array([EVENTS.index(x) for x in e], np.int8),
            "timestamp": np.arange(len(rows), dtype=np.int64),
        }
    )


def _dataset(n_ab=3, n_pc=3):
    n = n_ab + n_pc
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(n)],
            "item_type": ["audiobook"] * n_ab + ["podcast"] * n_pc,
            "title": "",
            "description": "",
            "language": "",
            "genre": "",
        }
    )
    users = pd.DataFrame({"user_id": [f"u{j}" for j in range(4)], "age": -1, "country": ""})
    inter = pd.concat([_table(TRAIN), _table(TEST)], ignore_index=True)
    return Dataset("hand", items, users, inter, {"audiobook": n_ab, "podcast": n_pc})


SPLIT = types.SimpleNamespace(train=_table(TRAIN), test=_table(TEST))


def test_audiobook_protocol_with_exclusion():
    ab = build_protocol(_dataset(), SPLIT)["audiobook"]
    np.testing.assert_array_equal(ab.catalogue, [0, 1, 2])
    # user 3 only re-streams item 0 -> no new relevant item -> not evaluated
    np.testing.assert_array_equal(ab.users, [0, 1, 2])
    assert ab.relevant.to_lists() == [[2], [1], [2]]  # re-stream of 0 and the test preview of 1 are not relevant
    np.testing.assert_array_equal(ab.warm, [True, False, True])  # user 2 is warm through a follow only
    assert ab.exclude.to_lists() == [[0], [], []]  # only streams are excluded; user 2's follow is not
    assert ab.history.to_lists() == [[0, 1], [], [2]]  # streams + weak signals
    np.testing.assert_array_equal(ab.train_streams, [2, 0, 0])
    np.testing.assert_array_equal(ab.segment("warm"), [0, 2])
    np.testing.assert_array_equal(ab.segment("cold"), [1])
    np.testing.assert_array_equal(ab.segment("all"), [0, 1, 2])


def test_audiobook_protocol_without_exclusion():
    ab = build_protocol(_dataset(), SPLIT, exclude_seen=False)["audiobook"]
    np.testing.assert_array_equal(ab.users, [0, 1, 2, 3])
    assert ab.relevant.to_lists() == [[0, 2], [1], [2], [0]]
    assert ab.exclude.to_lists() == [[], [], [], []]
    np.testing.assert_array_equal(ab.warm, [True, False, True, True])


def test_podcast_protocol_uses_podcast_history():
    proto = build_protocol(_dataset(), SPLIT)
    pc = proto["podcast"]
    np.testing.assert_array_equal(pc.catalogue, [3, 4, 5])
    np.testing.assert_array_equal(pc.users, [0])  # user 1 only re-streams podcast 3
    assert pc.relevant.to_lists() == [[4]] and pc.exclude.to_lists() == [[3]]
    np.testing.assert_array_equal(pc.train_streams, [2, 1, 0])
    assert proto.stats()["podcast"]["catalogue"] == 3 and proto.config["exclude_seen"] is True


def test_homogeneous_dataset_has_one_target_and_bad_rows_are_named():
    proto = build_protocol(_dataset(n_ab=6, n_pc=0), SPLIT)
    assert list(proto.targets) == ["audiobook"]
    with pytest.raises(KeyError, match="podcast"):
        proto["podcast"]
    bad = types.SimpleNamespace(train=SPLIT.train, test=_table(TEST[:2] + [(0, 9, "stream")]))
    with pytest.raises(ValueError, match=r"split.test: row 2 has item_idx=9 outside \[0, 6\)"):
        build_protocol(_dataset(), bad)
    with pytest.raises(ValueError, match="exclude_events"):
        build_protocol(_dataset(), SPLIT, exclude_events=("listen",))


def test_rankings_rows_for():
    r = Rankings(users=np.array([7, 2, 5]), items=np.zeros((3, 4), np.int64))
    np.testing.assert_array_equal(r.rows_for(np.array([2, 5, 3, 7])), [1, 2, -1, 0])
    with pytest.raises(ValueError, match="unique"):
        Rankings(users=np.array([1, 1]), items=np.zeros((2, 4), np.int64))


def _random_protocol(n_users=300, seed=0):
    """A protocol over random train/test streams: 20 audiobooks + 30 podcasts, ``n_users`` users."""
    rng = np.random.default_rng(seed)
    n_ab, n_pc = 20, 30

    def rows(n):
        u = rng.integers(0, n_users, n)
        i = np.where(rng.random(n) < 0.5, rng.integers(0, n_ab, n), rng.integers(n_ab, n_ab + n_pc, n))
        return pd.DataFrame(
            {
                "user_idx": u.astype(np.int32),
                "item_idx": i.astype(np.int32),
                "event_code": np.zeros(n, np.int8),
                "timestamp": np.arange(n, dtype=np.int64),
            }
        )

    train, test = rows(2 * n_users), rows(2 * n_users)
    ds = _dataset(n_ab, n_pc)
    ds.users = pd.DataFrame({"user_id": [f"u{j}" for j in range(n_users)], "age": -1, "country": ""})
    return build_protocol(ds, types.SimpleNamespace(train=train, test=test))


def test_user_sample_keeps_whole_rows_of_at_most_n_users_per_segment():
    full = _random_protocol()
    n = 25
    sampled = sample_users(full, n, seed=3)
    assert sample_users(full, 0, seed=3) is full  # 0 = every user
    for t, tp in full.targets.items():
        sp = sampled[t]
        for seg in ("warm", "cold"):
            assert sp.segment(seg).size == min(n, tp.segment(seg).size)
        assert sampled.config["user_sample"]["population"][t] == {
            "warm": int(tp.warm.sum()),
            "cold": int((~tp.warm).sum()),
        }
        assert np.all(np.diff(sp.users) > 0) and np.isin(sp.users, tp.users).all()
        pos = np.searchsorted(tp.users, sp.users)
        np.testing.assert_array_equal(sp.warm, tp.warm[pos])
        for name in ("relevant", "exclude", "history"):  # each sampled user keeps exactly her sets
            a, b = getattr(sp, name), getattr(tp, name).take(pos)
            np.testing.assert_array_equal(a.indptr, b.indptr)
            np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(sp.train_streams, tp.train_streams)  # training facts unchanged
    # seeded: the same seed gives the same users; another seed other users; a target's sample does
    # not depend on which other targets are evaluated
    again = sample_users(full, n, seed=3)
    other = sample_users(full, n, seed=4)
    for t in full.targets:
        np.testing.assert_array_equal(sampled[t].users, again[t].users)
        assert not np.array_equal(sampled[t].users, other[t].users)
    alone = dataclasses.replace(full, targets={"podcast": full["podcast"]})
    np.testing.assert_array_equal(sample_users(alone, n, seed=3)["podcast"].users, sampled["podcast"].users)


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_sampled_build_equals_sampling_the_whole_protocol(exclude_seen, monkeypatch):
    """``build_protocol(sample=...)`` builds the sampled users' sets only, reading the training part in
    chunks; it must give exactly ``sample_users`` of the whole protocol: users, segments, every set,
    the catalogue's stream counts and tiers, and the recorded sample."""
    from twotower_hgnn.data import load_dataset
    from twotower_hgnn.data.split import temporal_split
    from twotower_hgnn.eval import protocol as P

    ds = load_dataset("synthetic", scale="tiny", seed=1)
    sp = temporal_split(ds)
    monkeypatch.setattr(P, "CHUNK_ROWS", 997)  # many chunks
    whole = build_protocol(ds, sp, exclude_seen=exclude_seen)
    assert build_protocol(ds, sp, exclude_seen=exclude_seen, sample=(0, 3)).config == whole.config  # 0: all
    for n in (1, 9, 60, 10**6):
        want = sample_users(whole, n, seed=5)
        got = build_protocol(ds, sp, exclude_seen=exclude_seen, sample=(n, 5))
        assert got.config == want.config and list(got.targets) == list(want.targets)
        for t, a in want.targets.items():
            b = got.targets[t]
            assert b.n_users == a.n_users and (n > 50 or a.n_users <= 2 * n)
            for f in ("catalogue", "users", "warm", "train_streams", "tiers"):
                np.testing.assert_array_equal(getattr(b, f), getattr(a, f), err_msg=f"{t} {f} n={n}")
                assert getattr(b, f).dtype == getattr(a, f).dtype, (t, f)
            for f in ("relevant", "exclude", "history"):
                np.testing.assert_array_equal(getattr(b, f).indptr, getattr(a, f).indptr, err_msg=f"{t} {f}")
                np.testing.assert_array_equal(getattr(b, f).indices, getattr(a, f).indices, err_msg=f"{t} {f}")
    assert whole.targets["podcast"].exclude.nnz > 0 or not exclude_seen  # the exclusion path is exercised
