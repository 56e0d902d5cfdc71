"""A whole batch on the device: the neighbourhoods of given seeds (one draw per hop and distinct
fan-out), the negatives, and :func:`sample_batch` — seeds (anchors, positives, negatives) in the
spec's layout plus their neighbourhoods. Pure and jittable: an HGNN train step can call
:func:`sample_batch` inside its own ``jax.jit`` (the fused step).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from sampler.csr import direction_name, relation_name
from sampler.device.draws import _AVOID_ROUNDS, _BitPool, _hop_groups, _negative_bits, _neighbourhood_bits
from sampler.device.graph import DeviceGraph
from sampler.device.rows import batch_exclusions, find_in_rows, sample_global_rows
from sampler.spec import Layout, SamplingSpec


def sample_neighbourhoods(
    g: DeviceGraph,
    seeds_by_type: Mapping[str, jax.Array],
    key: jax.Array | _BitPool,
    exclude_pairs: Mapping[str, jax.Array] | None,
    *,
    spec: SamplingSpec,
    layout: Layout | None = None,
    exclude_valid: Mapping[str, jax.Array] | None = None,
) -> tuple[tuple[dict[str, jax.Array], ...], tuple[dict[str, jax.Array], ...]]:
    """L hops of per-direction fan-out from ``seeds_by_type`` (type -> int32 ``[S_t]``), pure/jittable.

    ``exclude_pairs``: relation name -> int ``[q, 2]`` canonical edges removed from message passing
    in both directions at every hop (``None``/empty: nothing removed; ignored when
    ``spec.exclude_supervision_edges`` is False); ``exclude_valid`` optionally marks which rows are
    real. ``spec``/``layout`` are used at trace time only. Every hop is one draw over the rows of
    all its directions (one per distinct fan-out).

    Returns ``(nbrs, masks)`` shaped like ``PaddedBatch.nbrs`` / ``.masks`` for these seed counts.
    """
    lay = layout or spec.layout()
    for d in lay.directions:
        if not g.has(d):
            raise ValueError(f"direction {direction_name(d)} is not on the device (uploaded: {list(g.directions)})")
    excl = None
    if spec.exclude_supervision_edges and exclude_pairs:
        sizes, n_rows = {t: jnp.shape(seeds_by_type[t])[0] for t in spec.node_types}, 0
        for k in range(spec.num_hops):  # static row count of the whole batch
            n_rows += sum(sizes[d[0]] for d in lay.directions)
            nxt = {t: 0 for t in spec.node_types}
            for d in lay.directions:
                nxt[d[1]] += sizes[d[0]] * lay.fanout[k][d]
            sizes = nxt
        excl = batch_exclusions(g, spec.relations, exclude_pairs, exclude_valid, sampled_rows=n_rows)
    frontier = {t: jnp.asarray(seeds_by_type[t]).astype(jnp.int32) for t in spec.node_types}
    own = not isinstance(key, _BitPool)
    pool = _BitPool(key, _neighbourhood_bits(spec, lay, {t: v.shape[0] for t, v in frontier.items()})) if own else key
    nbrs, masks = [], []
    for k in range(spec.num_hops):
        nk, mk = {}, {}
        for f, dirs in _hop_groups(lay, k):
            rows = jnp.concatenate([g.rows_of(d, frontier[d[0]]) for d in dirs])
            ids, m = sample_global_rows(g, rows, f, pool, excl, spec.replace)
            start = 0
            for d in dirs:  # static split back into directions
                n = frontier[d[0]].shape[0]
                nk[direction_name(d)], mk[direction_name(d)] = ids[start : start + n], m[start : start + n]
                start += n
        nk = {direction_name(d): nk[direction_name(d)] for d in lay.directions}
        mk = {direction_name(d): mk[direction_name(d)] for d in lay.directions}
        nbrs.append(nk)
        masks.append(mk)
        if k + 1 < spec.num_hops:
            frontier = {
                t: (
                    jnp.concatenate([nk[direction_name(d)].reshape(-1) for d, _, _, _ in parts])
                    if parts
                    else jnp.zeros((0,), jnp.int32)
                )
                for t, parts in lay.frontier_parts[k].items()
            }
    if own:
        pool.done()
    return tuple(nbrs), tuple(masks)


def sample_negatives(
    g: DeviceGraph, spec: SamplingSpec, key: jax.Array | _BitPool, anchors: jax.Array | None = None
) -> jax.Array:
    """int32 ``[P, K]`` negatives, uniform within their type, columns grouped by type in
    ``node_types`` order (``Layout.negative``'s order) — one draw for all types.

    With ``spec.avoid_known_positives`` a negative that is its anchor or a neighbour of it (in the
    direction ``(anchor type, negative type)``, if uploaded) is redrawn, ``_AVOID_ROUNDS`` rounds like
    the NumPy backend; a survivor of every round stays (probability ``(deg / n_t) ** rounds``).
    ``anchors`` (int32 ``[P]``) is needed then; the anchor type of each positive is static (its
    relation's first type).
    """
    P_ = spec.num_positives
    lo_c, hi_c, types = [], [], []
    for t in spec.node_types:
        k_t = int(spec.negatives_per_type.get(t, 0))
        lo, hi = g.type_range(t)
        lo_c += [lo] * k_t
        hi_c += [hi] * k_t
        types += [t] * k_t
    lo_a = np.asarray(lo_c, np.int32)[None, :]
    hi_a = np.asarray(hi_c, np.int32)[None, :]
    pool = key if isinstance(key, _BitPool) else _BitPool(key, _negative_bits(spec))
    neg = pool.randint((P_, len(lo_c)), lo_a, hi_a)
    if not spec.avoid_known_positives:
        return neg
    if anchors is None:
        raise ValueError("avoid_known_positives needs the anchors")
    a_types = [r[0] for r in spec.relations for _ in range(int(spec.positives_per_relation[relation_name(r)]))]
    # static per-slot direction (anchor type, negative type): its row offset, or the empty row
    row_off = np.full((P_, len(types)), -1, np.int64)
    a_lo = np.zeros((P_, 1), np.int64)
    for p, s in enumerate(a_types):
        a_lo[p, 0] = g.type_range(s)[0]
        for c, t in enumerate(types):
            if g.has((s, t)):
                row_off[p, c] = g.row_offsets[g.directions.index(direction_name((s, t)))]
    a = jnp.broadcast_to(anchors[:, None], neg.shape)
    rows = jnp.where(jnp.asarray(row_off >= 0), a - a_lo + row_off, g.empty_row).astype(g.indptr.dtype)
    for r in range(_AVOID_ROUNDS):
        bad = (neg == a) | find_in_rows(g, rows, neg)[0]
        fresh = pool.randint(neg.shape, lo_a, hi_a)
        neg = jnp.where(bad, fresh, neg)
    return neg


def sample_batch(
    g: DeviceGraph,
    supervision_edges_by_relation: Mapping[str, jax.Array],
    key: jax.Array,
    *,
    spec: SamplingSpec,
    positive_mask: jax.Array | None = None,
    orient: bool = True,
    layout: Layout | None = None,
) -> dict[str, Any]:
    """One batch, as ``PaddedBatch.as_dict()`` (pure and jittable; ``spec`` is trace-time data).

    The NumPy backend's recipe: for a same-type relation each edge's orientation (which end is the
    anchor) is a fair coin (``orient=True``, training batches; evaluation batches keep the given
    order); ``K_t`` negatives per positive; the batch's real supervision edges removed from message
    passing in both directions at every hop; L hops of fan-out. Seeds are placed by the layout's
    ``anchor`` / ``positive`` / ``negative`` positions, exactly like the NumPy backend.

    Args:
      supervision_edges_by_relation: relation name -> int ``[q_r, 2]`` canonical edges (column 0 of
        the relation's first type), ``q_r = spec.positives_per_relation[name]``.
      key: a PRNG key; the same key and edges give the same batch.
      positive_mask: bool ``[P]`` (default all True); False rows are filler: sampled like the others
        but not removed from message passing.
    """
    lay = layout or spec.layout()
    P_ = spec.num_positives
    pm = jnp.ones(P_, bool) if positive_mask is None else jnp.asarray(positive_mask, bool)
    edges, valid, start = {}, {}, 0
    for rel in spec.relations:
        name = relation_name(rel)
        q = int(spec.positives_per_relation[name])
        e = jnp.asarray(supervision_edges_by_relation[name]).astype(jnp.int32)
        if e.shape != (q, 2):
            raise ValueError(f"supervision_edges_by_relation[{name!r}]: expected shape ({q}, 2), got {e.shape}")
        edges[name], valid[name] = e, pm[start : start + q]
        start += q
    pairs = jnp.concatenate([edges[relation_name(r)] for r in spec.relations])  # [P, 2], relation-major
    same = np.repeat(
        [r[0] == r[1] for r in spec.relations],
        [int(spec.positives_per_relation[relation_name(r)]) for r in spec.relations],
    )
    orient = bool(orient and same.any())
    pool = _BitPool(key, P_ * orient + _negative_bits(spec) + _neighbourhood_bits(spec, lay, lay.seeds_per_type))
    if orient:  # fair coin per same-type edge
        swap = pool.coin((P_,)) & jnp.asarray(same)
        pairs = jnp.where(swap[:, None], pairs[:, ::-1], pairs)
    anchors, positives = pairs[:, 0], pairs[:, 1]
    neg = sample_negatives(g, spec, pool, anchors)
    hop0 = jnp.zeros(lay.num_seeds, jnp.int32)
    hop0 = hop0.at[lay.anchor].set(anchors).at[lay.positive].set(positives).at[lay.negative].set(neg)
    seeds = {t: hop0[lay.seed_offsets[t] : lay.seed_offsets[t] + lay.seeds_per_type[t]] for t in spec.node_types}
    nbrs, masks = sample_neighbourhoods(g, seeds, pool, edges, spec=spec, layout=lay, exclude_valid=valid)
    pool.done()
    return {"seeds": seeds, "nbrs": nbrs, "masks": masks, "positive_mask": pm}


__all__ = ["sample_batch", "sample_negatives", "sample_neighbourhoods"]
