"""A quick held-out check of one two-tower model against Popularity (``launch/train_two_tower.py --evaluate``).

The full comparison of every model is the pipeline's evaluation stage (``pipeline.eval_stages``); this
one scores a single trained model and Popularity under the same protocol (the paper, §5.1), encoding
through ``models.encode`` (evaluation never imports a trainer).
"""

from __future__ import annotations

from typing import Any

from twotower_hgnn.data.schema import Dataset
from twotower_hgnn.eval.baselines import popularity_rankings, rank_users
from twotower_hgnn.eval.metrics import compute_metrics
from twotower_hgnn.eval.protocol import SEGMENTS, build_protocol
from twotower_hgnn.models.encode import item_vectors, user_vectors


def compare_with_popularity(
    result: Any, ds: Dataset, split: Any, k: int = 10, exclude_seen: bool = True
) -> dict[str, dict[str, dict[str, float]]]:
    """Held-out metrics of the model and of Popularity under the evaluation protocol (the paper, §5.1).

    ``result``: a ``train.two_tower.TwoTowerResult`` (or ``serving.load_model``'s); its
    ``cfg.target_type`` is the target scored. Returns ``{"2T"|"Popularity": {segment: compute_metrics(...)}}``
    for segments all / warm / cold of that target type (Popularity = most-streamed target items of the
    training part; the protocol's already-streamed exclusions apply to both).
    """
    tp = build_protocol(ds, split, [result.cfg.target_type], exclude_seen=exclude_seen)[result.cfg.target_type]
    uv = user_vectors(result, ds, split.train, tp.users, split.user_as_of(tp.users))
    iv, _ = item_vectors(result)
    models = {"2T": rank_users(tp, uv, iv), "Popularity": popularity_rankings(tp)}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, r in models.items():
        ranked = r.items[r.rows_for(tp.users)]
        out[name] = {}
        for seg in SEGMENTS:
            pos = tp.segment(seg)
            out[name][seg] = compute_metrics(
                ranked[pos], tp.relevant.take(pos), tp.catalogue, k=k, name=f"{name}/{seg}"
            )
    return out
