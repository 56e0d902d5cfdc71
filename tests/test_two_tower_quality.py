"""Done-when check of issue 5: on tiny synthetic data the two-tower model beats Popularity on held-out HR@10.

The model uses content (SBERT-like) features here: the HGNN variant needs a trained HGNN, which the
pipeline tests cover; its numbers are recorded in BUILD_NOTES.md, appendix E.
"""

from __future__ import annotations

import dataclasses

from twotower_hgnn.data.split import temporal_split
from twotower_hgnn.data.synthetic import generate
from twotower_hgnn import configs
from twotower_hgnn.eval.compare import compare_with_popularity
from twotower_hgnn.train.two_tower import train_two_tower


def test_two_tower_beats_popularity_on_tiny(tmp_path):
    ds = generate("tiny", 0)
    split = temporal_split(ds)
    cfg = dataclasses.replace(
        configs.load("test").two_tower, use_hgnn=False, progress=False, checkpoint_every=10_000, log_every=1
    )
    res = train_two_tower(ds, split, ds.item_vectors, None, cfg, tmp_path)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    m = compare_with_popularity(res, ds, split)
    tt, pop = m["2T"]["all"], m["Popularity"]["all"]
    assert tt["n_users"] == pop["n_users"] >= 40
    # measured (2-core box, seed 0): 0.814 vs 0.729; the margin is several users
    assert tt["hr@10"] > pop["hr@10"] + 0.03, (tt, pop)
    assert tt["mrr@100"] > pop["mrr@100"]
