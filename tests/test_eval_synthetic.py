"""End-to-end evaluation on the tiny synthetic dataset: protocol invariants vs the split, baselines, report."""

import numpy as np
import pandas as pd
import pytest

from twotower_hgnn.data.schema import EVENTS
from twotower_hgnn.data.split import temporal_split
from twotower_hgnn.data.synthetic import generate
from twotower_hgnn.eval.baselines import knn_rankings, popularity_rankings, rank_users
from twotower_hgnn.eval.metrics import compute_metrics, long_tail_metrics
from twotower_hgnn.eval.protocol import build_protocol
from twotower_hgnn.eval.report import build_report, evaluate_models, format_console, load_report, write_report


@pytest.fixture(scope="module")
def tiny():
    ds = generate("tiny", seed=0)
    split = temporal_split(ds)
    return ds, split, build_protocol(ds, split)


def test_protocol_agrees_with_split_and_log(tiny):
    ds, split, proto = tiny
    ab = proto["audiobook"]
    assert ab.warm.any() and (~ab.warm).any()
    # the protocol's audiobook segments are the split's (same definition: any audiobook event in train)
    assert np.isin(ab.users[ab.warm], split.warm_users).all()
    assert np.isin(ab.users[~ab.warm], split.cold_users).all()
    for t, tp in proto.targets.items():
        pairs = pd.DataFrame({"user_idx": np.repeat(tp.users, tp.relevant.sizes()), "item_idx": tp.relevant.indices})
        test = split.test[split.test["event_code"] == EVENTS.index("stream")][["user_idx", "item_idx"]].astype(np.int64)
        train = split.train[split.train["event_code"] == EVENTS.index("stream")][["user_idx", "item_idx"]].astype(
            np.int64
        )
        in_test = pairs.merge(test.drop_duplicates(), how="left", indicator=True)["_merge"] == "both"
        in_train = pairs.merge(train.drop_duplicates(), how="left", indicator=True)["_merge"] == "both"
        assert in_test.all() and not in_train.any(), t  # relevant = new test streams only
        assert np.isin(tp.relevant.indices, tp.catalogue).all() and np.isin(tp.exclude.indices, tp.catalogue).all()
        assert tp.train_streams.sum() == int(
            (ds.item_type_codes()[train["item_idx"]] == ["audiobook", "podcast"].index(t)).sum()
        )


def test_baselines_report_end_to_end(tiny, tmp_path):
    ds, split, proto = tiny
    rng = np.random.default_rng(0)
    models = {
        "Popularity": {t: popularity_rankings(tp) for t, tp in proto.targets.items()},
        "LLM-KNN": {t: knn_rankings(tp, ds.item_vectors) for t, tp in proto.targets.items()},
        "Random": {
            t: rank_users(
                tp,
                rng.normal(size=(tp.n_users, 4)).astype(np.float32),
                rng.normal(size=(tp.catalogue.size, 4)).astype(np.float32),
            )
            for t, tp in proto.targets.items()
        },
    }
    report = build_report(evaluate_models(models, proto), proto, dataset=ds, split=split, config={"scale": "tiny"})
    res = {(r["model"], r["target_type"], r["segment"]): r["metrics"] for r in report["results"]}
    assert ("LLM-KNN", "audiobook", "cold") not in res  # warm only
    # the content vectors carry the topic signal: the KNN beats random rankings of the same users
    for seg_t in ("audiobook", "podcast"):
        assert res[("LLM-KNN", seg_t, "warm")]["hr@10"] > res[("Random", seg_t, "warm")]["hr@10"]
        assert res[("LLM-KNN", seg_t, "warm")]["mrr@100"] > res[("Random", seg_t, "warm")]["mrr@100"]
    # Popularity shows (nearly) the same list to everybody: far below random coverage on 560 podcasts
    assert res[("Popularity", "podcast", "all")]["coverage@100"] < res[("Random", "podcast", "all")]["coverage@100"]
    # the per-user-once evaluation equals the direct metric functions on each segment's slice
    lt = {(r["model"], r["target_type"], r["segment"]): r["metrics"] for r in report["long_tail"]}
    for seg in ("warm", "cold", "all"):
        tp = proto["audiobook"]
        pos = tp.segment(seg)
        ranked = models["Popularity"]["audiobook"].items[pos]  # popularity ranks every user in protocol order
        assert res[("Popularity", "audiobook", seg)] == pytest.approx(
            compute_metrics(ranked, tp.relevant.take(pos), tp.catalogue)
        )
        assert lt[("Popularity", "audiobook", seg)] == pytest.approx(
            long_tail_metrics(ranked, tp.relevant.take(pos), tp.catalogue, tp.tail_items())
        )
    paths = write_report(report, tmp_path)
    assert load_report(paths["json"])["meta"]["split"]["cut_time"] == split.cut_time
    assert "Table 3 - audiobook recommendations, cold-start users" in format_console(report)
