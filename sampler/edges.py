"""The balanced multi-link supervision-edge sampler (the paper, §3).

Each epoch, relation ``r`` contributes ``n_r`` supervision edges drawn uniformly *without
replacement* from its ``E_r`` training edges, redrawn every epoch (a fresh RNG stream per epoch), so
over epochs the majority relations are covered:

* ``balance="equal"``: ``n_r = min_r' E_r'`` (every relation undersampled to the smallest one);
* ``balance="ratios"``: ``n_r = min(E_r, round(ratios[r] * min_r' E_r'))``;
* ``balance="off"``: ``n_r = E_r`` (all edges, shuffled; ablation A).

Batch ``b`` takes, for every relation, ``q_r`` consecutive edges of that relation's epoch permutation
(cyclically: the permutation is extended from its start to fill the last batches), so every batch has
the fixed per-relation quota that keeps the arrays static, and the epoch length
``num_batches = max_r ceil(n_r / q_r)`` is known in advance. Every drawn edge is used at least once per
epoch; at most ``q_r - 1`` (equal policy) are used twice.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from sampler.csr import Relation, relation_name
from sampler.spec import SamplingSpec, SpecError

_TAG_EPOCH = 0x45504F43  # "EPOC": RNG stream tag of the per-epoch draws


def epoch_sizes(spec: SamplingSpec, edge_counts: Mapping[Relation, int]) -> dict[Relation, int]:
    """Supervision edges per relation per epoch under the spec's balance policy."""
    counts = {r: int(edge_counts[r]) for r in spec.relations}
    for r, c in counts.items():
        if c <= 0:
            raise SpecError(f"relations: {relation_name(r)} has no training edges")
    smallest = min(counts.values())
    if spec.balance == "equal":
        return {r: smallest for r in counts}
    if spec.balance == "ratios":
        return {
            r: max(1, min(c, int(round(float(spec.ratios[relation_name(r)]) * smallest)))) for r, c in counts.items()
        }
    return dict(counts)


def num_batches(spec: SamplingSpec, sizes: Mapping[Relation, int]) -> int:
    """Batches per epoch: ``max_r ceil(n_r / q_r)``."""
    return max(math.ceil(int(sizes[r]) / int(spec.positives_per_relation[relation_name(r)])) for r in spec.relations)


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), _TAG_EPOCH, int(epoch)]))


def draw_epoch(spec: SamplingSpec, edge_counts: Mapping[Relation, int], epoch: int) -> dict[Relation, np.ndarray]:
    """Relation -> int64 ``[n_r]`` indices into the relation's edge list, in this epoch's order.

    A pure function of ``(spec.seed, epoch)``: uniform without replacement, redrawn per epoch.
    """
    sizes = epoch_sizes(spec, edge_counts)
    rng = epoch_rng(spec.seed, epoch)
    out = {}
    for r in spec.relations:  # fixed order: the stream is consumed deterministically
        E, n = int(edge_counts[r]), sizes[r]
        out[r] = rng.permutation(E) if n == E else rng.choice(E, size=n, replace=False)
    return out


def batch_slice(order: np.ndarray, quota: int, index: int) -> np.ndarray:
    """Positions ``[index * q, (index + 1) * q)`` of ``order``, wrapping around its end."""
    n = order.shape[0]
    pos = (np.int64(index) * quota + np.arange(quota, dtype=np.int64)) % n
    return order[pos]


__all__ = ["epoch_sizes", "num_batches", "draw_epoch", "batch_slice", "epoch_rng"]
