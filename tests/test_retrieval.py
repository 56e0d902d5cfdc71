"""Retrieval indexes: exact top-k vs a NumPy reference (ties, exclusions, padding), no recompiles
within a query bucket, ANN recall on clustered data, save/load, clear errors."""

import numpy as np
import pytest

from twotower_hgnn.retrieval import ExactIndex, ExcludeCSR, FaissIndex, load_index, make_index

N, D = 1000, 8


@pytest.fixture(scope="module")
def int_data():
    # Small integer vectors: every score is an exact small integer, so there are many ties and
    # float32 / bfloat16 / NumPy all compute identical scores.
    rng = np.random.default_rng(0)
    return rng.integers(-3, 4, size=(N, D)).astype(np.float32), rng.integers(-3, 4, size=(6, D)).astype(np.float32)


@pytest.fixture(scope="module")
def exact(int_data):
    return ExactIndex(int_data[0], chunk_size=128)  # 8 chunks, last one padded (1000 = 7*128 + 104)


def reference(v, q, k, exclude=None):
    s = q.astype(np.float64) @ v.T.astype(np.float64)
    if exclude is not None:
        for b, ex in enumerate(exclude):
            s[b, np.asarray(ex, dtype=np.int64)] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]  # ties: lower item index first
    top = np.take_along_axis(s, order, 1)
    return np.where(np.isinf(top), -np.inf, top).astype(np.float32), np.where(np.isinf(top), -1, order)


def test_exact_matches_argsort_with_ties_and_exclusions(int_data, exact):
    v, q = int_data
    s, i = exact.search(q, 50)
    rs, ri = reference(v, q, 50)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(s, rs)
    assert s.dtype == np.float32 and i.dtype == np.int64
    # Exclude each user's true top-10 (plus duplicates and an item in the padded last chunk).
    excl = [np.concatenate([ri[b, :10], ri[b, :2], [999]]) for b in range(len(q))]
    excl[3] = np.array([], np.int64)
    for ex in (excl, ExcludeCSR.from_lists(excl)):
        s, i = exact.search(q, 50, ex)
        rs2, ri2 = reference(v, q, 50, excl)
        np.testing.assert_array_equal(i, ri2)
        np.testing.assert_array_equal(s, rs2)
        for b in range(len(q)):
            assert not np.isin(i[b], excl[b]).any()


def test_exact_fewer_than_k_left_and_k_above_chunk():
    v = np.eye(5, 4, dtype=np.float32) + 0.1
    idx = ExactIndex(v, chunk_size=2)
    s, i = idx.search(np.ones((1, 4), np.float32), 7, [np.array([0, 4])])
    assert list(i[0, :3]) == [1, 2, 3] and list(i[0, 3:]) == [-1] * 4
    assert np.isneginf(s[0, 3:]).all() and np.isfinite(s[0, :3]).all()


def test_no_recompile_within_a_bucket(int_data, exact):
    v, q = int_data
    qs = np.tile(q, (3, 1))  # 18 rows
    exact.search(qs[:5], 10)  # bucket 8
    before = exact.trace_count
    for b in (5, 6, 7, 8):
        exact.search(qs[:b], 10)
        exact.search(qs[:b], 10, [np.arange(b % 3)] * b)  # exclusion width bucket 8 too
    assert exact.trace_count == before
    exact.search(qs[:9], 10)  # bucket 16: one new compilation
    assert exact.trace_count == before + 1


def test_bfloat16_exact_and_factory(int_data):
    v, q = int_data
    idx = make_index("exact_bf16", v, chunk_size=256)
    _, i = idx.search(q, 20)
    np.testing.assert_array_equal(i, reference(v, q, 20)[1])


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(40, 32))
    topic = rng.integers(0, 40, size=5000)
    v = centres[topic] + 0.7 * rng.normal(size=(5000, 32))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    q = (centres[rng.integers(0, 40, size=64)] + 0.7 * rng.normal(size=(64, 32))).astype(np.float32)
    return v, q


def _recall(a, b):
    return np.mean([len(np.intersect1d(x[x >= 0], y[y >= 0])) / max((y >= 0).sum(), 1) for x, y in zip(a, b)])


@pytest.mark.parametrize(
    "kind,params,min_recall",
    [
        ("flat", {}, 1.0),
        ("flat_fp16", {}, 0.98),
        ("flat_sq8", {}, 0.9),
        ("hnsw", {"M": 16, "ef_construction": 80, "ef_search": 128}, 0.9),
        ("ivf_flat", {"nlist": 32, "nprobe": 8}, 0.9),
        ("ivf_sq8", {"nlist": 32, "nprobe": 8}, 0.85),
    ],
)
def test_faiss_recall_and_exclusions(clustered, kind, params, min_recall):
    v, q = clustered
    _, truth = reference(v, q, 100)
    idx = make_index(kind, v, **params)
    s, i = idx.search(q, 100)
    assert _recall(i, truth) >= min_recall
    assert np.all(np.diff(s, axis=1) <= 1e-6)  # sorted best first
    excl = [truth[b, :20] for b in range(len(q))]
    _, truth_ex = reference(v, q, 100, excl)
    s2, i2 = idx.search(q, 100, excl)
    for b in range(len(q)):
        assert not np.isin(i2[b], excl[b]).any()
    assert (i2 >= 0).all()  # over-fetch kept k results per row
    assert _recall(i2, truth_ex) >= min_recall - 0.05


def test_faiss_pads_when_catalogue_exhausted():
    v = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32)
    s, i = FaissIndex(v, kind="flat").search(v[:2], 60, [np.arange(10), []])
    assert (i[0, :40] >= 0).all() and (i[0, 40:] == -1).all() and np.isneginf(s[0, 40:]).all()
    assert (i[1, :50] >= 0).all() and (i[1, 50:] == -1).all()
    assert len(np.unique(i[0, :40])) == 40 and not np.isin(i[0], np.arange(10)).any()


def test_save_load_round_trip(tmp_path, int_data, clustered):
    v, q = int_data
    e = ExactIndex(v, chunk_size=256)
    e.save(tmp_path / "exact")
    e2 = load_index(tmp_path / "exact")
    np.testing.assert_array_equal(e.search(q, 10)[1], e2.search(q, 10)[1])
    cv, cq = clustered
    h = FaissIndex(cv, kind="ivf_flat", nlist=16, nprobe=4)
    h.save(tmp_path / "ivf")
    h2 = load_index(tmp_path / "ivf")
    assert h2.kind == "ivf_flat" and h2.params["nprobe"] == 4
    np.testing.assert_array_equal(h.search(cq, 10)[1], h2.search(cq, 10)[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exact", "ivf"]  # no temporaries left


def test_clear_errors(int_data, exact):
    v, q = int_data
    with pytest.raises(ValueError, match=r"shape \[B, 8\]"):
        exact.search(np.zeros((2, 5), np.float32), 3)
    with pytest.raises(ValueError, match="wrap one query"):
        exact.search(q[0], 3)
    with pytest.raises(ValueError, match="exclude row 1 names item 1000"):
        exact.search(q[:2], 3, [[1], [2, 1000]])
    with pytest.raises(ValueError, match="2 queries"):
        exact.search(q[:2], 3, [[1]])
    with pytest.raises(ValueError, match="k must be a positive int"):
        exact.search(q, 0)
    with pytest.raises(ValueError, match="query row 1"):
        exact.search(np.stack([q[0], np.full(D, np.nan, np.float32)]), 3)
    with pytest.raises(ValueError, match="unknown index kind"):
        make_index("annoy", v)
    with pytest.raises(FileNotFoundError, match="not a saved index"):
        load_index("/nonexistent/index")


def test_default_ivf_lists_and_probes_scale_with_the_catalogue():
    from twotower_hgnn.retrieval import default_nlist, default_nprobe, default_train_size

    assert default_nlist(250_000) == 2048 and default_nprobe(2048) == 64  # the measured 250K point
    assert default_nlist(3_500_000) == 8192 and default_nprobe(8192) == 128  # 3.5M: measured in retrieval_paper.json
    assert default_nlist(1000) == 25 and default_nprobe(25) == 64  # >= 39 items per list; nprobe never below 64
    assert default_train_size(2048) == 100_000 and default_train_size(8192) == 39 * 8192


def test_block_selections_equal_top_k_with_ties():
    """The exact search's two selection shortcuts give exactly ``lax.top_k`` (ties to the lower column):
    ``_block_top_k`` (the best groups first) and the ``few`` path taken once the carried list has filled
    (a block's top ``few`` when no row has more than ``few`` columns above its k-th score)."""
    import jax
    import jax.numpy as jnp

    from twotower_hgnn.retrieval import _block_top_k, _make_exact_search

    rng = np.random.default_rng(5)
    for _ in range(20):
        b, c, kc = int(rng.integers(1, 30)), 16 * int(rng.integers(1, 200)), int(rng.integers(1, 120))
        s = rng.integers(0, int(rng.integers(2, 40)), size=(b, c)).astype(np.float32)
        s[rng.random((b, c)) < 0.2] = -np.inf
        want, got = jax.lax.top_k(jnp.asarray(s), min(kc, c)), _block_top_k(jnp.asarray(s), min(kc, c))
        for x, y in zip(want, got):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # many chunks of tied integer scores: the few path (few=2, and the default) = the full selection
    v = rng.integers(-2, 3, size=(4096, 4)).astype(np.float32)
    q = rng.integers(-2, 3, size=(16, 4)).astype(np.float32)
    items, excl = jnp.asarray(v.reshape(64, 64, 4)), jnp.asarray(rng.integers(-1, 4096, (16, 8)).astype(np.int32))
    full = jax.jit(_make_exact_search(64, 4096, 10, few=10**9))(items, q, excl)
    for few in (2, 16):
        got = jax.jit(_make_exact_search(64, 4096, 10, few=few))(items, q, excl)
        np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(full[1]))
        np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(full[0]))
    excl_sets = [[e for e in row if e >= 0] for row in np.asarray(excl)]
    rs, ri = reference(v, q, 10, excl_sets)
    np.testing.assert_array_equal(np.asarray(full[1]), ri)


def test_exact_topk_is_the_stable_argsort_in_bounded_blocks():
    """``exact_topk`` (the recall reference of exports) = the first k of a stable argsort of -scores, ties
    to the lower row, whether the queries fit one block of scores or are split into many."""
    from twotower_hgnn.retrieval import exact_topk

    rng = np.random.default_rng(11)
    v = rng.integers(-2, 3, size=(500, 3)).astype(np.float32)  # integer scores: many ties
    q = rng.integers(-2, 3, size=(37, 3)).astype(np.float32)
    want = np.argsort(-(q @ v.T), axis=1, kind="stable")
    for k in (1, 7, 100, 500, 900):
        for score_bytes in (1, 4 * 500 * 5, 1 << 28):  # one query per block, 5 per block, all at once
            got = exact_topk(q, v, k, score_bytes=score_bytes)
            np.testing.assert_array_equal(got, want[:, : min(k, 500)])


def test_exact_index_is_freed_without_the_cyclic_gc():
    """An ExactIndex holds its items on the device (1.8 GB for 3.5M x 128): once its last reference goes it
    must be freed at once, not when the cyclic GC next runs (a closure over ``self`` in its jitted search
    kept each validation's index alive into the next one)."""
    import gc
    import weakref

    v = np.random.default_rng(0).normal(size=(3000, 8)).astype(np.float32)
    gc.disable()
    try:
        ix = ExactIndex(v, chunk_size=1024)
        ix.search(v[:5], 10)
        assert ix.trace_count == 1
        ref = weakref.ref(ix)
        del ix
        assert ref() is None
    finally:
        gc.enable()
