"""The HGNN's max-margin (triplet hinge) loss, paper Eq. 4, and ranking metrics on the same triples.

``L(z_a, z_p) = E_{n} max(0, z_a . z_n - z_a . z_p + margin)``: for each valid positive edge
(anchor, positive) and each of its K negatives. Embeddings are rows of one table ``z`` (the model
output for a batch's seeds); ``anchor`` / ``positive`` ``[P]`` and ``negative`` ``[P, K]`` are row
positions in it (``Layout.anchor`` etc.). ``mask`` ``[P]`` drops filler positives (partial batches).

Data-parallel training needs a global mean over shards, so :func:`max_margin_terms` returns the
(sum, count) pair and :func:`max_margin_loss` is their ratio.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def triple_scores(z: jax.Array, anchor: jax.Array, positive: jax.Array, negative: jax.Array) -> tuple[jax.Array, jax.Array]:
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
    z: jax.Array, anchor: jax.Array, positive: jax.Array, negative: jax.Array, margin: float, mask: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """``(sum of hinge over valid triples, number of valid triples)`` as float32 scalars."""
    s_pos, s_neg = triple_scores(z, anchor, positive, negative)
    w = _weights(mask, s_pos.shape[0])
    return jnp.sum(hinge(s_pos, s_neg, margin) * w[:, None]), jnp.sum(w) * s_neg.shape[1]


def max_margin_loss(
    z: jax.Array, anchor: jax.Array, positive: jax.Array, negative: jax.Array, margin: float, mask: jax.Array | None = None
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


__all__ = [
    "triple_scores",
    "hinge",
    "max_margin_terms",
    "max_margin_loss",
    "per_relation_terms",
    "per_relation_loss",
    "rank_of_positive",
]
