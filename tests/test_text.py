"""Text features: the (model, text) cache, normalisation, the encoder seam, item texts; one real SBERT run."""

from pathlib import Path

import numpy as np
import pytest

from tests.snippets import run_python
from twotower_hgnn.text import DEFAULT_MODEL, TextError, encode_texts, item_features, item_texts


class CountingEncoder:
    """Deterministic fake encoder: a vector from character counts; counts every text it sees."""

    def __init__(self, key="fake-v1", dim=8):
        self.cache_key = key
        self.dim = dim
        self.seen: list[str] = []

    def __call__(self, texts):
        self.seen.extend(texts)
        out = np.zeros((len(texts), self.dim), np.float64)
        for r, t in enumerate(texts):
            for ch in t:
                out[r, ord(ch) % self.dim] += 1.0
            out[r, 0] += 0.5
        return out * 3.0  # not normalised: encode_texts must normalise


def test_cache_second_run_does_not_call_model(tmp_path):
    texts = ["crime podcast", "dragons and magic", "crime podcast", "stocks"]
    enc = CountingEncoder()
    a = encode_texts(texts, model=enc, cache_dir=tmp_path, batch_size=2, progress=False)
    assert sorted(enc.seen) == sorted(set(texts))  # duplicates encoded once
    assert a.dtype == np.float32 and a.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(a[0], a[2])
    enc2 = CountingEncoder()
    b = encode_texts(texts, model=enc2, cache_dir=tmp_path, progress=False)
    assert enc2.seen == []  # everything from the cache
    np.testing.assert_array_equal(a, b)
    enc3 = CountingEncoder()
    c = encode_texts(["stocks", "new text"], model=enc3, cache_dir=tmp_path, progress=False)
    assert enc3.seen == ["new text"]  # only the missing text
    np.testing.assert_array_equal(c[0], a[3])
    enc4 = CountingEncoder(key="fake-v2")  # another model key: a separate cache
    encode_texts(texts[:1], model=enc4, cache_dir=tmp_path, progress=False)
    assert enc4.seen == ["crime podcast"]


def test_damaged_shard_is_reencoded(tmp_path):
    enc = CountingEncoder()
    encode_texts(["a", "b"], model=enc, cache_dir=tmp_path, progress=False)
    for f in tmp_path.rglob("shard-*.npz"):
        f.write_bytes(b"garbage")
    enc2 = CountingEncoder()
    encode_texts(["a", "b"], model=enc2, cache_dir=tmp_path, progress=False)
    assert sorted(enc2.seen) == ["a", "b"]


def test_bad_encoder_output(tmp_path):
    def bad(texts):
        return np.ones((len(texts) + 1, 4))

    with pytest.raises(TextError, match=r"returned shape \(3, 4\) for 2 texts"):
        encode_texts(["x", "y"], model=bad, cache_dir=tmp_path, progress=False)
    with pytest.raises(TextError, match="non-finite"):
        encode_texts(["x"], model=lambda t: np.full((len(t), 2), np.nan), cache_dir=tmp_path, progress=False)


def test_item_texts_and_features(tmp_path):
    from twotower_hgnn.data.synthetic import generate

    ds = generate("tiny", seed=0, n_users=50)
    texts = item_texts(ds)
    assert len(texts) == ds.num_items
    assert texts[0] == f"{ds.items['title'][0]}. {ds.items['description'][0]}"
    np.testing.assert_array_equal(item_features(ds), ds.item_vectors)  # shipped vectors win
    ds.item_vectors = None
    enc = CountingEncoder()
    f = item_features(ds, model=enc, cache_dir=tmp_path, progress=False)
    assert f.shape == (ds.num_items, 8) and len(enc.seen) == len(set(texts))


def test_training_import_does_not_load_torch():
    code = "import sys, twotower_hgnn.text, twotower_hgnn.graph, twotower_hgnn.data; assert 'torch' not in sys.modules"
    run_python(code)


def test_default_model_real_sbert(tmp_path):
    """The one test that loads the bundled sentence-transformers model (~10 s)."""
    assert Path(DEFAULT_MODEL).is_dir()
    texts = ["A detective investigates a murder.", "The police solve a crime case.", "Baking bread in the kitchen."]
    v = encode_texts(texts, cache_dir=tmp_path, progress=False)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1  # real semantic signal
    shards = list(tmp_path.rglob("shard-*.npz"))
    assert len(shards) == 1
