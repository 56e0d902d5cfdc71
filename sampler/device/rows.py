"""Rows -> ``[n, f]`` neighbour ids + mask, for any mix of directions at once (all directions
share one row space and one position space), with the batch's supervision edges removed exactly.

Every row is sampled uniformly **without** replacement by a vectorised Floyd's algorithm
(:func:`sampler.device.draws._floyd`, ``f`` static iterations). Each draw is over the row's
*remaining* neighbours, then mapped back to a CSR position by skipping the row's removed positions
(:func:`exclusion_table`): no rejection loop, no bound on removed edges per row.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

import jax
import jax.numpy as jnp

from sampler.csr import Direction, Relation, relation_name
from sampler.device.draws import _BitPool, _floyd
from sampler.device.graph import DeviceGraph


def _lower_bound(indices: jax.Array, lo: jax.Array, hi: jax.Array, v: jax.Array, steps: int) -> jax.Array:
    """First position in ``[lo, hi)`` whose entry is ``>= v`` (rows are sorted); ``steps`` iterations
    of a vectorised binary search (enough for the largest row)."""

    def body(_, lh):
        lo, hi = lh
        active = lo < hi
        mid = (lo + hi) // 2
        right = active & (indices[mid] < v)
        return jnp.where(right, mid + 1, lo), jnp.where(active & ~right, mid, hi)

    lo, _ = jax.lax.fori_loop(0, steps, body, (lo, hi))
    return lo


def find_in_rows(g: DeviceGraph, rows: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Is ``v[i]`` in global row ``rows[i]``? Returns ``(found bool, position)``."""
    lo, hi = g.indptr[rows], g.indptr[rows + 1]
    pos = _lower_bound(g.indices, lo, hi, v, g.search_steps)
    return (pos < hi) & (g.indices[pos] == v), pos


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["ex", "g_rank", "row_before", "row_count"], meta_fields=[]
)
@dataclasses.dataclass(frozen=True)
class Exclusion:
    """The CSR positions removed from message passing for one batch.

    Attributes:
      ex: int ``[m]`` sorted removed positions; a sentinel (the dtype's max) pads the end (pairs absent
        from the graph, invalid or duplicated).
      g_rank: int ``[m]``, ``ex[k] - k`` = kept entries before ``ex[k]`` (non-decreasing; sentinel
        where ``ex`` is) — for the general rank -> position map :func:`_kept_position`.
      row_before: int32 ``[R + 2]`` removed positions in all rows before each global row (an
        exclusive prefix sum: ``ex[row_before[r] : row_before[r] + row_count[r]]`` are row r's), or
        None: then each sampled row binary-searches ``ex`` (cheaper when a batch samples far fewer
        rows than the graph has, see :func:`batch_exclusions`).
      row_count: int32 ``[R + 2]`` removed positions inside each global row, or None.
    """

    ex: jax.Array
    g_rank: jax.Array
    row_before: jax.Array | None
    row_count: jax.Array | None


def exclusion_table(g: DeviceGraph, rows: jax.Array, v: jax.Array, valid: jax.Array, per_row: bool = True) -> Exclusion:
    """The removed CSR positions of the directed pairs (global row ``rows[i]`` loses neighbour ``v[i]``).

    Pairs absent from the graph (e.g. held-out edges), invalid, or duplicated are ignored. With
    ``per_row``, per-row counts come from one scatter-add over the row space and a prefix sum
    (``O(R)`` per batch), so a sampled row finds its removed entries with two gathers; without, each
    sampled row runs two binary searches over ``ex`` (``O(rows * log m)``).
    """
    found, pos = find_in_rows(g, rows, v)
    sentinel = jnp.asarray(jnp.iinfo(pos.dtype).max, pos.dtype)  # above any position (int32 or x64 int64)
    order = jnp.argsort(jnp.where(found & valid, pos, sentinel))
    ex, rows_s = jnp.where(found & valid, pos, sentinel)[order], rows[order]
    dup = jnp.concatenate([jnp.zeros((1,), bool), ex[1:] == ex[:-1]])
    keep = (ex != sentinel) & ~dup
    order = jnp.argsort(jnp.where(keep, ex, sentinel))
    ex, keep, rows_s = jnp.where(keep, ex, sentinel)[order], keep[order], rows_s[order]
    g_rank = jnp.where(keep, ex - jnp.arange(ex.shape[0], dtype=ex.dtype), sentinel)
    if not per_row:
        return Exclusion(ex=ex, g_rank=g_rank, row_before=None, row_count=None)
    n_rows = g.indptr.shape[0]  # R + 2
    count = jnp.zeros(n_rows, jnp.int32).at[jnp.where(keep, rows_s, n_rows - 1)].add(keep.astype(jnp.int32))
    before = jnp.cumsum(count) - count
    return Exclusion(ex=ex, g_rank=g_rank, row_before=before.astype(jnp.int32), row_count=count)


def _kept_position(rank: jax.Array, g_rank: jax.Array) -> jax.Array:
    """CSR position of the ``rank``-th kept entry (0-based over the whole position space): the rank
    plus the number of excluded entries before it, i.e. those with ``ex[k] - k <= rank``."""
    return rank + jnp.searchsorted(g_rank, rank, side="right").astype(rank.dtype)


def _kept_positions(excl: Exclusion, lo: jax.Array, before: jax.Array, inside: jax.Array, rank: jax.Array) -> jax.Array:
    """CSR positions of the kept entries of rank ``rank`` (``[n, f]``) within rows starting at ``lo``.

    The kept entry of global kept-rank ``r = lo - before + rank`` sits at ``r`` plus the number of
    removed entries with ``g_rank <= r``: all ``before`` ones of earlier rows, plus those of this
    row's window ``[before, before + inside)`` found by a binary search over the window only —
    ``bit_length(max holes per row)`` steps (hub rows can lose a dozen or more neighbours in one
    batch), not ``log2`` of the whole table.
    """
    r = (lo - before)[:, None] + rank
    a = jnp.broadcast_to(before[:, None], rank.shape)
    b = jnp.broadcast_to((before + inside)[:, None], rank.shape)
    steps = jnp.ceil(jnp.log2(jnp.max(inside, initial=0).astype(jnp.float32) + 1.0)).astype(jnp.int32)
    m = excl.g_rank.shape[0]

    def body(_, ab):
        a, b = ab
        active = a < b
        mid = (a + b) // 2
        right = active & (excl.g_rank[jnp.minimum(mid, m - 1)] <= r)
        return jnp.where(right, mid + 1, a), jnp.where(active & ~right, mid, b)

    a, _ = jax.lax.fori_loop(0, steps + 1, body, (a, b))
    return lo[:, None] + rank + (a - before[:, None])


def sample_global_rows(
    g: DeviceGraph,
    rows: jax.Array,
    fanout: int,
    key: jax.Array | _BitPool,
    exclusion: Exclusion | None = None,
    replace: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """``fanout`` neighbours of every global row (see :meth:`DeviceGraph.rows_of`).

    Returns ``(ids, mask)``: int32 ``[n, fanout]`` global ids (``pad_id`` where masked), bool mask.
    Without replacement: ``min(deg', fanout)`` valid slots (not necessarily first: see
    :func:`_floyd`), where ``deg'`` is the degree after removing the excluded CSR positions. With
    replacement: every slot valid when ``deg' > 0``. ``key``: a PRNG key (or a bit pool, internal).
    """
    pool = key if isinstance(key, _BitPool) else _BitPool(key, 2 * rows.shape[0] * fanout)
    lo, hi = g.indptr[rows], g.indptr[rows + 1]
    if exclusion is not None:
        if exclusion.row_before is not None:
            before = exclusion.row_before[rows].astype(lo.dtype)
            inside = exclusion.row_count[rows].astype(lo.dtype)
        else:
            before = jnp.searchsorted(exclusion.ex, lo, side="left").astype(lo.dtype)
            inside = jnp.searchsorted(exclusion.ex, hi, side="left").astype(lo.dtype) - before
        deg = hi - lo - inside
    else:
        deg = hi - lo
    if replace:
        rank = pool.randint((rows.shape[0], fanout), 0, jnp.maximum(deg, 1)[:, None]).astype(deg.dtype)
        mask = jnp.broadcast_to((deg > 0)[:, None], rank.shape)
    else:
        rank = _floyd(pool, deg, fanout)
        mask = rank < deg[:, None]
    pos = _kept_positions(exclusion, lo, before, inside, rank) if exclusion is not None else lo[:, None] + rank
    pos = jnp.where(mask, pos, g.indices.shape[0] - 1)  # the trailing pad entry
    return g.indices[pos], mask


def sample_rows(
    g: DeviceGraph,
    direction: Direction,
    nodes: jax.Array,
    fanout: int,
    key: jax.Array,
    exclusion: Exclusion | None = None,
    replace: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Samples ``fanout`` src-type neighbours of every node in ``nodes`` (global ids of the dst type;
    ``pad_id`` and other types give fully masked rows) in ``direction``; see
    :func:`sample_global_rows`."""
    return sample_global_rows(g, g.rows_of(direction, jnp.asarray(nodes)), fanout, key, exclusion, replace)


def batch_exclusions(
    g: DeviceGraph,
    relations: tuple[Relation, ...],
    edges: Mapping[str, jax.Array],
    valid: Mapping[str, jax.Array] | None = None,
    sampled_rows: int | None = None,
) -> Exclusion | None:
    """The exclusion table of canonical edges (relation name -> ``[q, 2]``), both directions.

    ``sampled_rows`` (static: rows the batch will sample over all hops) picks how rows find their
    removed entries: per-row tables over the graph's row space (``3 R`` work) when that is cheaper
    than two binary searches per sampled row (``2 log2(m)`` each), else the searches; None: tables.
    """
    rows, vs, oks = [], [], []
    for rel in relations:
        name = relation_name(rel)
        if name not in edges:
            continue
        e = jnp.asarray(edges[name]).astype(jnp.int32)
        ok = jnp.ones(e.shape[0], bool) if valid is None or name not in valid else jnp.asarray(valid[name], bool)
        a, b = rel
        for d, u, v in (((a, b), e[:, 0], e[:, 1]), ((b, a), e[:, 1], e[:, 0])):
            if g.has(d):  # same-type: both orientations land in the one (a, a) direction
                rows.append(g.rows_of(d, u))
                vs.append(v)
                oks.append(ok)
    if not rows:
        return None
    rows, vs, oks = jnp.concatenate(rows), jnp.concatenate(vs), jnp.concatenate(oks)
    per_row = sampled_rows is None or 3 * g.indptr.shape[0] < 2 * sampled_rows * max(1, int(rows.shape[0]).bit_length())
    return exclusion_table(g, rows, vs, oks, per_row=per_row)


__all__ = ["Exclusion", "batch_exclusions", "exclusion_table", "find_in_rows", "sample_global_rows", "sample_rows"]
