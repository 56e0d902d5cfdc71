"""The HGNN's max-margin (triplet hinge) loss, paper Eq. 4, and ranking metrics on the same triples.

``L(z_a, z_p) = E_{n} max(0, z_a . z_n - z_a . z_p + margin)``: for each valid positive edge
(anchor, positive) and each of its K negatives. Embeddings are rows of one table ``z`` (the model
output for a batch's seeds); ``anchor`` / ``positive`` ``[P]`` and ``negative`` ``[P, K]`` are row
positions in it (``Layout.anchor`` etc.). ``mask`` ``[P]`` drops filler positives (partial batches).

Data-parallel training needs a global mean over shards, so :func:`max_margin_terms` returns the
(sum, count) pair and :func:`max_margin_loss` is their ratio. The HGNN trainer's step and
validation add up :func:`ranking_sums` (jax) over sub-batches and shards, then
:func:`ranking_metrics` turns the totals into ``val_loss`` / ``val_mrr`` / ``val_hits1``;
:func:`ranking_sums_np` is the same sums in NumPy (the random-embedding baseline).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def triple_scores(
    z: jax.Array, anchor: jax.Array, positive: jax.Array, negative: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """``(s_pos [P], s_neg [P, K])`` dot products anchor.positive and anchor.negative (float32)."""
    z = z.astype(jnp.float32)
    za = jnp.take(z, anchor, axis=0)
    s_pos = jnp.sum(za * jnp.take(z, positive, axis=0), axis=-1)
    s_neg = jnp.einsum("pd,pkd->pk", za, jnp.take(z, negative, axis=0))
    return s_pos, s_neg


def hinge(s_pos: jax.Array, s_neg: jax.Array, margin: float) -> jax.Array:
    """``[P, K]`` per-triple hinge ``max(0, s_neg - s_pos + margin)``."""
    return jax.nn.relu(s_neg - s_pos[:, None] + margin)


def _weights(mask: jax.Array | None, p: int) -> jax.Array:
    return jnp.ones((p,), jnp.float32) if mask is None else mask.astype(jnp.float32)


def max_margin_terms(
    z: jax.Array,
    anchor: jax.Array,
    positive: jax.Array,
    negative: jax.Array,
    margin: float,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``(sum of hinge over valid triples, number of valid triples)`` as float32 scalars."""
    s_pos, s_neg = triple_scores(z, anchor, positive, negative)
    w = _weights(mask, s_pos.shape[0])
    return jnp.sum(hinge(s_pos, s_neg, margin) * w[:, None]), jnp.sum(w) * s_neg.shape[1]


def max_margin_loss(
    z: jax.Array,
    anchor: jax.Array,
    positive: jax.Array,
    negative: jax.Array,
    margin: float,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Eq. 4: mean hinge over valid positives and their K negatives (0 when nothing is valid)."""
    total, count = max_margin_terms(z, anchor, positive, negative, margin, mask)
    return total / jnp.maximum(count, 1.0)


def per_relation_terms(
    z: jax.Array,
    anchor: jax.Array,
    positive: jax.Array,
    negative: jax.Array,
    margin: float,
    relation: jax.Array,
    num_relations: int,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``(sums [R], counts [R])`` of the hinge per relation of the positive edge (``relation`` ``[P]``)."""
    s_pos, s_neg = triple_scores(z, anchor, positive, negative)
    w = _weights(mask, s_pos.shape[0])
    per_pos = jnp.sum(hinge(s_pos, s_neg, margin), axis=1) * w
    sums = jax.ops.segment_sum(per_pos, relation, num_segments=num_relations)
    counts = jax.ops.segment_sum(w * s_neg.shape[1], relation, num_segments=num_relations)
    return sums, counts


def per_relation_loss(
    z: jax.Array,
    anchor: jax.Array,
    positive: jax.Array,
    negative: jax.Array,
    margin: float,
    relation: jax.Array,
    num_relations: int,
    mask: jax.Array | None = None,
) -> jax.Array:
    """``[R]`` mean hinge per relation (0 for a relation with no valid positive in the batch)."""
    sums, counts = per_relation_terms(z, anchor, positive, negative, margin, relation, num_relations, mask)
    return sums / jnp.maximum(counts, 1.0)


def rank_of_positive(s_pos: jax.Array, s_neg: jax.Array) -> jax.Array:
    """``[P]`` 1-based rank of the positive among itself and its K negatives; ties count against it
    (pessimistic), so collapsed embeddings (all scores equal) get the worst rank, not a lucky one."""
    return 1 + jnp.sum(s_neg >= s_pos[:, None], axis=1)


def ranking_sums(
    z: jax.Array,
    anchor: jax.Array,
    positive: jax.Array,
    negative: jax.Array,
    margin: float,
    mask: jax.Array,
    relation: np.ndarray,
    num_relations: int,
) -> dict[str, jax.Array]:
    """Sums over the valid positives of one batch (``mask`` ``[P]``, ``relation`` ``[P]`` in
    ``[0, R)``), to be added across batches and shards: ``hinge`` (hinge over all triples), ``count``
    (valid triples), ``pos`` (valid positives), ``rr`` (reciprocal ranks), ``hits1``, and
    ``rel_hinge`` / ``rel_count`` ``[R]`` per relation. All float32 scalars unless noted."""
    s_pos, s_neg = triple_scores(z, anchor, positive, negative)
    w = mask.astype(jnp.float32)
    h = hinge(s_pos, s_neg, margin)
    per_pos = jnp.sum(h, axis=1) * w
    rank = rank_of_positive(s_pos, s_neg)
    k = s_neg.shape[1]
    rel = jnp.asarray(relation)
    return {
        "hinge": jnp.sum(per_pos),
        "count": jnp.sum(w) * k,
        "pos": jnp.sum(w),
        "rr": jnp.sum(w / rank),
        "hits1": jnp.sum(w * (rank == 1)),
        "rel_hinge": jax.ops.segment_sum(per_pos, rel, num_relations),
        "rel_count": jax.ops.segment_sum(w * k, rel, num_relations),
    }


def ranking_sums_np(
    z: np.ndarray,
    anchor: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
    margin: float,
    mask: np.ndarray,
    relation: np.ndarray,
    num_relations: int,
) -> dict[str, np.ndarray]:
    """:func:`ranking_sums` in NumPy (float64 weights) for fixed embeddings ``z`` ``[n, d]``; the
    scores are :func:`triple_scores`' own."""
    s_pos, s_neg = (np.asarray(x) for x in triple_scores(z, anchor, positive, negative))
    w = np.asarray(mask).astype(np.float64)
    h = np.maximum(0.0, s_neg - s_pos[:, None] + margin)
    rank = 1 + np.sum(s_neg >= s_pos[:, None], axis=1)
    k = s_neg.shape[1]
    return {
        "hinge": np.sum(h.sum(1) * w),
        "count": w.sum() * k,
        "pos": w.sum(),
        "rr": np.sum(w / rank),
        "hits1": np.sum(w * (rank == 1)),
        "rel_hinge": np.bincount(relation, h.sum(1) * w, num_relations),
        "rel_count": np.bincount(relation, w * k, num_relations),
    }


def ranking_metrics(sums: Mapping[str, np.ndarray], relation_names: Sequence[str]) -> dict[str, float]:
    """Totals of :func:`ranking_sums` -> ``val_loss``, ``val_mrr``, ``val_hits1`` and
    ``val_loss/<relation>`` (``relation_names[r]`` for relation index r)."""
    pos = max(float(sums["pos"]), 1.0)
    out = {
        "val_loss": float(sums["hinge"]) / max(float(sums["count"]), 1.0),
        "val_mrr": float(sums["rr"]) / pos,
        "val_hits1": float(sums["hits1"]) / pos,
    }
    for i, name in enumerate(relation_names):
        out[f"val_loss/{name}"] = float(sums["rel_hinge"][i]) / max(float(sums["rel_count"][i]), 1.0)
    return out


__all__ = [
    "triple_scores",
    "hinge",
    "max_margin_terms",
    "max_margin_loss",
    "per_relation_terms",
    "per_relation_loss",
    "rank_of_positive",
    "ranking_sums",
    "ranking_sums_np",
    "ranking_metrics",
]
