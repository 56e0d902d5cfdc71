"""Sampling on the accelerator: a jitted backend for the same :class:`~sampler.spec.SamplingSpec`.

The heterogeneous CSR lives on the device (:class:`DeviceGraph`); one jitted function turns a batch
of supervision edges and a PRNG key into the arrays of a :class:`~sampler.batch.PaddedBatch` with
exactly the NumPy backend's layout and conventions (shapes, dtypes, seed layout, frontier order,
padding id ``num_nodes``, masks, valid slots not necessarily first). Only the random streams differ.

Pieces, from the bottom:

* :func:`sample_global_rows` / :func:`sample_rows` — fan-out for any mix of rows (all directions
  share one row space and one position space): every row at once, uniformly **without**
  replacement by a vectorised Floyd's algorithm (``f`` static iterations). The batch's supervision
  edges are removed exactly: each draw is over the row's *remaining* neighbours, then mapped back to
  a CSR position by skipping the row's removed positions (:func:`exclusion_table`). No rejection
  loop, no bound on removed edges per row.
* :func:`sample_neighbourhoods` — all hops for given seeds (one draw per hop and distinct fan-out).
* :func:`sample_batch` — seeds (anchors, positives, negatives) in the spec's layout + neighbourhoods.
  Pure and jittable: an HGNN train step can call it inside its own ``jax.jit`` (the fused step).
* :class:`FusedSampler` — the epoch's order of supervision edges goes to the device once per epoch;
  per step only a batch/step index (and the epoch key) crosses. ``step`` returns the HGNN trainer's
  G stacked sub-batches; with a mesh every device samples its own sub-batches against its replica
  of the CSR (``jax.shard_map``).
* :class:`DeviceSampler` — the host-facing backend with the NumPy backend's methods.

Uniformity (Floyd): for a row with ``d`` candidates and fan-out ``f < d``, iteration ``m`` draws
``t`` uniform in ``[0, j]`` with ``j = d - f + m`` and adds ``t`` unless already taken, else ``j``.
By induction, after iteration ``m`` the set is a uniform ``(m+1)``-subset of ``[0, j]``: each subset
containing ``j`` arises from ``m+1`` draws (``j`` itself or any of the ``m`` previously chosen), each
not containing ``j`` from exactly one, and ``(m+1) / C(j+1, m+1)`` times the uniform probability of
the previous set equals ``1 / C(j+1, m+1)``. The map from "index among the remaining neighbours" to
CSR position is a bijection, so the sampled *set* is uniform over the f-subsets of the remaining
neighbours. (The order inside a row is not exchangeable; consumers aggregate over the fan-out axis
with a permutation-invariant reduction.) Integers are reduced from 64 random bits modulo the span
like ``jax.random.randint``: exact to ~span/2**64 for spans below 2**16 (every fan-out draw in
practice); for larger spans (negatives over a million-node type) the product wraps at 32 bits and
the relative bias is below span/2**32 (2.4e-4 at 1M nodes).

Integer widths: jax is 32-bit unless ``jax_enable_x64`` is set. Node ids (and ``pad_id``) must be
below 2**31 - 1 (the PaddedBatch contract is int32); CSR positions of all directions in use together
(2 per undirected edge: about 1.07e9 undirected edges) must stay below 2**31 - 2 with 32-bit jax —
:class:`DeviceGraph` raises a clear error beyond that (or uses int64 positions when x64 is enabled).

Memory: each device holds the whole CSR of the relations in use: 4 bytes per directed entry
(``indices``) + 4 per row (``indptr``) + 8 per canonical edge (the edge list, for the fused step),
i.e. about 16 bytes per undirected edge plus 4 bytes per node and direction — :func:`device_bytes`.
:meth:`DeviceGraph.from_host` compares it with the device's free memory when the platform reports
it and raises a clear error instead of an out-of-memory crash in the middle of an upload. Beyond the
limit use the NumPy backend (host sampler); the CSR is not partitioned across devices (each device
samples from its own full replica).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sampler.batch import PaddedBatch
from sampler.csr import Direction, HeteroCSR, Relation, direction_name, relation_name
from sampler.spec import Layout, SamplingSpec, SpecError

_I32_MAX = 2**31 - 1


class DeviceGraphError(ValueError):
    """The graph cannot be placed on the device (too many ids/entries for the index width, or memory)."""


# ------------------------------------------------------------------------------------------------
# The CSR on the device
# ------------------------------------------------------------------------------------------------
@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["indptr", "indices", "edges"],
    meta_fields=["node_types", "type_offsets", "directions", "row_offsets", "search_steps"],
)
@dataclasses.dataclass(frozen=True)
class DeviceGraph:
    """A :class:`~sampler.csr.HeteroCSR` resident on the device (a jax pytree; pass it as a jit
    argument, never close over it — closed-over arrays become compile-time constants).

    All directions share one *row space* and one *position space*, so that a hop samples every
    direction with one draw and the batch's excluded edges live in one sorted table: direction
    ``i`` owns rows ``[row_offsets[i], row_offsets[i+1])`` (its dst nodes in local order) and a
    contiguous slice of ``indices``. Row ``row_offsets[-1]`` is an extra empty row that pad ids and
    ids of another type map to.

    Attributes:
      indptr: int32 ``[R + 2]`` (int64 under x64 when needed), ``R = sum of n_dst`` over directions.
      indices: int32 ``[nnz + 1]`` global src ids, sorted within each row; the last entry is
        ``pad_id`` so that gathers at masked positions are in bounds and already padding.
      edges: relation name -> int32 ``[E, 2]`` canonical undirected edges (for the fused step; empty
        ``[0, 2]`` when uploaded without edges).
      node_types / type_offsets: static id ranges (``type_offsets[-1] == num_nodes == pad_id``).
      directions: static direction names ("dst<-src"), in upload order.
      row_offsets: static, ``len(directions) + 1`` row offsets.
      search_steps: static binary-search iterations covering the largest row.
    """

    indptr: jax.Array
    indices: jax.Array
    edges: dict[str, jax.Array]
    node_types: tuple[str, ...]
    type_offsets: tuple[int, ...]
    directions: tuple[str, ...]
    row_offsets: tuple[int, ...]
    search_steps: int

    @property
    def num_nodes(self) -> int:
        return int(self.type_offsets[-1])

    @property
    def pad_id(self) -> int:
        return self.num_nodes

    @property
    def empty_row(self) -> int:
        return int(self.row_offsets[-1])

    def type_range(self, node_type: str) -> tuple[int, int]:
        t = self.node_types.index(node_type)
        return int(self.type_offsets[t]), int(self.type_offsets[t + 1])

    def has(self, direction: Direction) -> bool:
        return direction_name(direction) in self.directions

    def rows_of(self, direction: Direction, nodes: jax.Array) -> jax.Array:
        """Global row of each node in ``direction`` (the empty row for pad ids / other types)."""
        i = self.directions.index(direction_name(direction))
        lo, hi = self.type_range(direction[0])
        inside = (nodes >= lo) & (nodes < hi)
        return jnp.where(inside, nodes - lo + self.row_offsets[i], self.empty_row).astype(self.indptr.dtype)

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in jax.tree_util.tree_leaves(self)))

    @classmethod
    def from_host(
        cls,
        graph: HeteroCSR,
        *,
        relations: tuple[Relation, ...] | None = None,
        with_edges: bool = True,
        sharding: jax.sharding.Sharding | None = None,
        check_memory: bool = True,
    ) -> "DeviceGraph":
        """Uploads the CSR of ``relations`` (default: all of the graph's) to the device.

        ``sharding``: where the arrays go (default the first device; pass a replicated
        ``NamedSharding(mesh, P())`` for a multi-device fused step: one replica per device).

        Raises:
          DeviceGraphError: ids or CSR positions beyond the index width, or the estimated size beyond
            the device memory the platform reports.
        """
        rels = tuple(graph.relations) if relations is None else tuple(tuple(r) for r in relations)
        for rel in rels:
            if rel not in graph.edges:
                raise DeviceGraphError(f"relation {relation_name(rel)} is not in the graph")
        if graph.num_nodes >= _I32_MAX:
            raise DeviceGraphError(
                f"graph has {graph.num_nodes} nodes: global ids and pad_id must stay below 2**31 - 1 "
                "(PaddedBatch ids are int32); use the NumPy backend"
            )
        pos_dtype = _position_dtype(graph, rels)
        if check_memory:
            _check_memory(graph, rels, with_edges, sharding)
        dirs = [d for rel in rels for d in _rel_directions(rel)]
        row_off = np.cumsum([0] + [graph.adj[d].num_rows for d in dirs]).astype(np.int64)
        if pos_dtype == np.int32 and row_off[-1] + 2 >= _I32_MAX:
            raise DeviceGraphError(f"{int(row_off[-1])} CSR rows over the directions in use: beyond int32 (enable jax_enable_x64)")
        nnz = sum(graph.adj[d].nnz for d in dirs)
        indptr = np.empty(int(row_off[-1]) + 2, pos_dtype)
        indices = np.empty(nnz + 1, np.int32)
        pos, max_deg = 0, 0
        for i, d in enumerate(dirs):  # one copy per direction (not per node)
            c = graph.adj[d]
            indptr[row_off[i] : row_off[i + 1]] = np.asarray(c.indptr[:-1]) + pos
            indices[pos : pos + c.nnz] = c.indices
            pos += c.nnz
            if c.num_rows:
                max_deg = max(max_deg, int(c.degrees().max()))
        indptr[-2:] = pos  # the empty row
        indices[-1] = graph.pad_id
        put = (lambda x: jax.device_put(x, sharding)) if sharding is not None else jax.device_put
        edges = {}
        for rel in rels:
            e = np.asarray(graph.edges[rel], dtype=np.int32) if with_edges else np.zeros((0, 2), np.int32)
            edges[relation_name(rel)] = put(e.reshape(-1, 2))
        return cls(
            indptr=put(indptr),
            indices=put(indices),
            edges=edges,
            node_types=tuple(graph.node_types),
            type_offsets=tuple(int(x) for x in graph.type_offsets),
            directions=tuple(direction_name(d) for d in dirs),
            row_offsets=tuple(int(x) for x in row_off),
            search_steps=max(1, int(max_deg).bit_length() + 1),
        )


def _rel_directions(rel: Relation) -> tuple[Direction, ...]:
    a, b = rel
    return ((a, b),) if a == b else ((a, b), (b, a))


def _position_dtype(graph: HeteroCSR, rels: tuple[Relation, ...]) -> Any:
    """int32 when all directions' entries together (+1 pad slot, + the exclusion sentinel) fit,
    else int64 under x64, else a clear error."""
    total = sum(graph.adj[d].nnz for r in rels for d in _rel_directions(r))
    if total + 2 < _I32_MAX:
        return np.int32
    if jax.config.jax_enable_x64:
        return np.int64
    raise DeviceGraphError(
        f"the relations in use have {total} directed CSR entries together: positions must stay below "
        "2**31 - 2 with 32-bit jax (about 1.07e9 undirected edges). Enable 64-bit positions with "
        "jax.config.update('jax_enable_x64', True), drop relations, or use the NumPy backend"
    )


def device_bytes(graph: HeteroCSR, relations: tuple[Relation, ...] | None = None, with_edges: bool = True) -> int:
    """Bytes one device replica takes (int32 layout): ``4*(nnz+1)`` for ``indices``, ``4*(R+2)`` for
    ``indptr`` (``R`` = dst rows over directions), plus ``8*E`` per relation with the edge lists —
    about 16 bytes per undirected edge."""
    rels = tuple(graph.relations) if relations is None else tuple(relations)
    dirs = [d for r in rels for d in _rel_directions(r)]
    total = 4 * (sum(graph.adj[d].nnz for d in dirs) + 1) + 4 * (sum(graph.adj[d].num_rows for d in dirs) + 2)
    if with_edges:
        total += 8 * sum(graph.num_edges(r) for r in rels)
    return total


def _check_memory(graph: HeteroCSR, rels, with_edges: bool, sharding) -> None:
    dev = next(iter(sharding.device_set)) if sharding is not None else jax.devices()[0]
    try:
        stats = dev.memory_stats() or {}
    except Exception:  # some platforms (XLA:CPU) report nothing
        stats = {}
    limit = stats.get("bytes_limit")
    if not limit:
        return
    need = device_bytes(graph, rels, with_edges)
    free = int(limit) - int(stats.get("bytes_in_use", 0))
    if need > free:
        raise DeviceGraphError(
            f"the CSR replica needs {need / 2**30:.2f} GiB but {dev} has {free / 2**30:.2f} GiB free "
            f"(limit {int(limit) / 2**30:.2f} GiB): use the NumPy backend (--sampler=numpy), drop relations, "
            "or upload without edge lists (with_edges=False)"
        )


# ------------------------------------------------------------------------------------------------
# Randomness: one counter-based draw per batch
# ------------------------------------------------------------------------------------------------
class _BitPool:
    """All random bits of one batch from a single ``jax.random.bits`` call, handed out in static
    slices. Every ``jax.random`` call costs a threefry block in the program: ten of them took 10 s to
    compile on the 2-core box against 2 s for one draw sliced ten ways — so a batch uses one.

    Integers in ``[0, span)`` take two words per value and are reduced exactly like
    ``jax.random.randint`` (a 64-bit value modulo the span; see the module docstring for the bias).
    """

    def __init__(self, key: jax.Array, size: int):
        self.size = int(size)
        self.bits = jax.random.bits(key, (max(self.size, 1),), jnp.uint32)
        self.used = 0

    def take(self, n: int) -> jax.Array:
        if self.used + n > self.size:
            raise AssertionError(f"random-bit budget exceeded: {self.used} + {n} > {self.size}")
        out = self.bits[self.used : self.used + n]
        self.used += n
        return out

    def randint(self, shape: tuple[int, ...], lo: Any, hi: Any) -> jax.Array:
        """int32 uniform in ``[lo, hi)`` (broadcast against ``shape``; ``hi > lo``)."""
        n = int(np.prod(shape))
        hi_bits, lo_bits = self.take(n).reshape(shape), self.take(n).reshape(shape)
        lo = jnp.asarray(lo, jnp.int32)
        span = jnp.maximum(jnp.asarray(hi, jnp.int32) - lo, 1).astype(jnp.uint32)
        mult = (jnp.uint32(2**16) % span) ** 2 % span  # 2**32 mod span
        off = ((hi_bits % span) * mult + lo_bits % span) % span
        return lo + off.astype(jnp.int32)

    def coin(self, shape: tuple[int, ...]) -> jax.Array:
        return (self.take(int(np.prod(shape))) >> 31).reshape(shape) == 1

    def done(self) -> None:
        if self.used != self.size:
            raise AssertionError(f"random-bit budget {self.size} but {self.used} used")


def _hop_groups(lay: Layout, k: int) -> list[tuple[int, list[Direction]]]:
    """Directions of hop ``k`` grouped by fan-out (one draw per group), in a fixed order."""
    groups: dict[int, list[Direction]] = {}
    for d in lay.directions:
        groups.setdefault(lay.fanout[k][d], []).append(d)
    return sorted(groups.items())


def _neighbourhood_bits(spec: SamplingSpec, lay: Layout, seed_counts: Mapping[str, int]) -> int:
    """Random words :func:`sample_neighbourhoods` consumes for these seed counts."""
    sizes = dict(seed_counts)
    total = 0
    for k in range(spec.num_hops):
        for f, dirs in _hop_groups(lay, k):
            total += 2 * f * sum(sizes[d[0]] for d in dirs)
        nxt = {t: 0 for t in spec.node_types}
        for d in lay.directions:
            nxt[d[1]] += sizes[d[0]] * lay.fanout[k][d]
        sizes = nxt
    return total


def _negative_bits(spec: SamplingSpec) -> int:
    n = 2 * spec.num_positives * spec.negatives_per_positive
    return n * (1 + _AVOID_ROUNDS) if spec.avoid_known_positives else n


# ------------------------------------------------------------------------------------------------
# Rows -> [n, f] neighbour ids + mask (any mix of directions at once)
# ------------------------------------------------------------------------------------------------
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


@functools.partial(jax.tree_util.register_dataclass, data_fields=["ex", "g_rank", "row_before", "row_count"], meta_fields=[])
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


def _floyd(pool: _BitPool, d: jax.Array, f: int) -> jax.Array:
    """``[n, f]`` distinct ranks in ``[0, max(d, f))`` per row: a uniform f-subset (Floyd's algorithm,
    ``f`` static iterations over every row at once; proof in the module docstring). Rows with
    ``d <= f`` run the same code with ``d`` raised to ``f`` and get a permutation of ``0..f-1``; the
    caller masks ranks ``>= d`` — the NumPy backend's convention, so valid slots need not be a prefix."""
    n = d.shape[0]
    top = jnp.maximum(d, f) - f  # iteration m draws in [0, top + m]
    j = top[:, None] + jnp.arange(f, dtype=d.dtype)[None, :]  # [n, f]
    t = pool.randint((n, f), 0, j + 1).astype(d.dtype)
    if f <= _UNROLL_FANOUT:  # unrolled: O(f^2) compares per row, fused into few kernels
        cols: list[jax.Array] = []
        for m in range(f):
            tm = t[:, m]
            if cols:
                taken = jnp.any(jnp.stack(cols, axis=1) == tm[:, None], axis=1)
                tm = jnp.where(taken, j[:, m], tm)
            cols.append(tm)
        return jnp.stack(cols, axis=1)
    col = jnp.arange(f)[None, :]

    def body(m, s):  # large fan-outs: a loop keeps the program (and compile time) small
        tm = jax.lax.dynamic_index_in_dim(t, m, axis=1, keepdims=False)
        taken = jnp.any((s == tm[:, None]) & (col < m), axis=1)
        tm = jnp.where(taken, jax.lax.dynamic_index_in_dim(j, m, axis=1, keepdims=False), tm)
        return jax.lax.dynamic_update_index_in_dim(s, tm, m, axis=1)

    return jax.lax.fori_loop(0, f, body, jnp.zeros((n, f), d.dtype))


_UNROLL_FANOUT = 16  # unrolled up to here (faster at run time); a loop above (smaller programs)


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


# ------------------------------------------------------------------------------------------------
# A whole batch
# ------------------------------------------------------------------------------------------------
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


_AVOID_ROUNDS = 8  # = NumpySampler's default max_negative_retries


def sample_negatives(g: DeviceGraph, spec: SamplingSpec, key: jax.Array | _BitPool, anchors: jax.Array | None = None) -> jax.Array:
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
    same = np.repeat([r[0] == r[1] for r in spec.relations], [int(spec.positives_per_relation[relation_name(r)]) for r in spec.relations])
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


def epoch_key(seed: int, epoch: int) -> jax.Array:
    """The key of an epoch; batch ``index`` uses ``fold_in(epoch_key, index)`` (:func:`batch_key`)."""
    return jax.random.fold_in(jax.random.key(int(seed)), int(epoch))


def batch_key(seed: int, epoch: int, index: int) -> jax.Array:
    """The key of batch ``index`` of ``epoch`` (a function of the three numbers only)."""
    return jax.random.fold_in(epoch_key(seed, epoch), int(index))


# ------------------------------------------------------------------------------------------------
# The fused step: sampling inside the trainer's jit, one or many devices
# ------------------------------------------------------------------------------------------------
class FusedSampler:
    """Samples on the device from an epoch *order* uploaded once per epoch, so that per step only a
    batch (or step) index and the epoch key cross from the host.

    The epoch order is relation name -> int32 ``[n_r]`` indices into ``DeviceGraph.edges[name]``:
    either the NumPy backend's draw (:meth:`host_order`, uploaded with :meth:`place_order` — then
    both backends train on the same supervision edges in the same batches) or drawn on the device
    (:meth:`device_order`). Batch ``b`` takes positions ``(b*q_r + arange(q_r)) % n_r`` of each
    relation's order — the NumPy backend's ``batch_slice`` — so ``num_batches`` is the same too,
    and its key is ``fold_in(epoch_key, b)`` (:func:`batch_key`).

    * ``__call__(g, order, index, key)``: batch ``index`` (``PaddedBatch.as_dict()`` layout).
    * ``step(g, order, step, key)``: the HGNN trainer's step — ``sub_batches`` consecutive batches
      ``step*G .. step*G+G-1`` stacked on a leading axis, batches past the epoch's end reusing
      ``i % num_batches`` with ``positive_mask`` zeroed (exactly ``StepSampler(DeviceSampler, G)``).
      With a ``mesh`` (1-D), the G axis is split over the devices under ``jax.shard_map``: every
      device samples its own sub-batches against its replica of the CSR (upload the graph with
      ``DeviceGraph.from_host(..., sharding=NamedSharding(mesh, P()))``) and the result is already
      laid out ``P(axis)`` for a data-parallel train step. ``G`` must be a multiple of the devices.

    All methods are pure and jittable (``jax.jit(fused.step)``, or call them inside the train step's
    own jit: the fused step).

    Attributes:
      spec / layout: the per-batch spec; sizes: relation -> supervision edges per epoch (``n_r``);
      num_batches: batches per epoch; sub_batches: G; mesh / axis_name.
    """

    def __init__(
        self, spec: SamplingSpec, edge_counts: Mapping[Relation, int], *, mesh: Mesh | None = None, sub_batches: int = 1
    ):
        from sampler.edges import epoch_sizes, num_batches  # NumPy; shared epoch arithmetic

        self.spec, self.layout = spec, spec.layout()
        self.edge_counts = {r: int(edge_counts[r]) for r in spec.relations}
        self.sizes = epoch_sizes(spec, self.edge_counts)
        self.num_batches = num_batches(spec, self.sizes)
        self.sub_batches = int(sub_batches)
        self.mesh = mesh
        if mesh is not None and len(mesh.axis_names) != 1:
            raise ValueError(f"FusedSampler needs a 1-D mesh, got axes {mesh.axis_names}")
        self.axis_name = None if mesh is None else mesh.axis_names[0]
        n_dev = 1 if mesh is None else int(mesh.devices.size)
        if self.sub_batches < 1 or self.sub_batches % n_dev:
            raise SpecError(
                f"sub_batches={sub_batches} must be a positive multiple of the {n_dev} devices: every device "
                "samples whole sub-batches"
            )

    # ---------------------------------------------------------------- epoch orders
    def host_order(self, epoch: int) -> dict[str, np.ndarray]:
        """The NumPy backend's epoch draw (``sampler.edges.draw_epoch``), as int32 arrays."""
        from sampler.edges import draw_epoch

        order = draw_epoch(self.spec, self.edge_counts, epoch)
        return {relation_name(r): np.asarray(o, np.int32) for r, o in order.items()}

    def place_order(self, order: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """Uploads an epoch order (replicated over the mesh); once per epoch."""
        sh = None if self.mesh is None else NamedSharding(self.mesh, P())
        return {k: jax.device_put(np.asarray(v, np.int32), sh) for k, v in order.items()}

    def device_order(self, key: jax.Array) -> dict[str, jax.Array]:
        """The epoch draw on the device (jittable): per relation ``n_r`` of ``E_r`` edge indices,
        uniformly without replacement, in random order (a sort-based permutation of ``E_r``)."""
        out = {}
        for i, r in enumerate(self.spec.relations):
            perm = jax.random.permutation(jax.random.fold_in(key, i), self.edge_counts[r])
            out[relation_name(r)] = perm[: self.sizes[r]].astype(jnp.int32)
        return out

    # ---------------------------------------------------------------- sampling
    def batch_edges(self, g: DeviceGraph, order: Mapping[str, jax.Array], index: jax.Array) -> dict[str, jax.Array]:
        """Relation name -> int32 ``[q_r, 2]`` supervision edges of batch ``index`` (on the device)."""
        out = {}
        for r in self.spec.relations:
            name = relation_name(r)
            q, n = int(self.spec.positives_per_relation[name]), self.sizes[r]
            if g.edges[name].shape[0] != self.edge_counts[r]:
                raise ValueError(
                    f"DeviceGraph.edges[{name!r}] has {g.edges[name].shape[0]} edges, the sampler expects "
                    f"{self.edge_counts[r]}: upload the training graph with with_edges=True"
                )
            pos = (index * q + jnp.arange(q, dtype=jnp.int32)) % n
            out[name] = g.edges[name][order[name][pos]]
        return out

    def __call__(self, g: DeviceGraph, order: Mapping[str, jax.Array], index: jax.Array, key: jax.Array) -> dict[str, Any]:
        """Batch ``index`` of the epoch whose order and key are given (pure and jittable)."""
        index = jnp.asarray(index, jnp.int32)
        return sample_batch(g, self.batch_edges(g, order, index), jax.random.fold_in(key, index), spec=self.spec, layout=self.layout)

    def _sub_batches(self, g: DeviceGraph, order: Mapping[str, jax.Array], idx: jax.Array, key: jax.Array) -> dict[str, Any]:
        def one(i):
            b = self(g, order, i % self.num_batches, key)
            b["positive_mask"] = b["positive_mask"] & (i < self.num_batches)
            return b

        return jax.vmap(one)(idx)

    def step(self, g: DeviceGraph, order: Mapping[str, jax.Array], step: jax.Array, key: jax.Array) -> dict[str, Any]:
        """Step ``step``: G stacked batches (leading axis; split over the mesh's devices if any)."""
        idx = jnp.asarray(step, jnp.int32) * self.sub_batches + jnp.arange(self.sub_batches, dtype=jnp.int32)
        if self.mesh is None:
            return self._sub_batches(g, order, idx, key)
        ax = self.axis_name
        return jax.shard_map(
            self._sub_batches, mesh=self.mesh, in_specs=(P(), P(), P(ax), P()), out_specs=P(ax), check_vma=False
        )(g, order, idx, key)

    def num_steps(self) -> int:
        return math.ceil(self.num_batches / self.sub_batches)


# ------------------------------------------------------------------------------------------------
# The host-facing backend
# ------------------------------------------------------------------------------------------------
_TAG_EVAL = 0x4556414C  # "EVAL": key stream of evaluation edge batches
_COMPILED: dict[tuple, dict[str, Any]] = {}


def _compiled_fns(spec: SamplingSpec, edge_counts: Mapping[Relation, int]) -> dict[str, Any]:
    """The jitted functions of a spec, shared by every :class:`DeviceSampler` built for the same spec
    and edge counts (a rebuilt sampler does not recompile). ``traces`` counts traces per function."""
    key = (spec.to_json(), tuple(sorted((relation_name(r), int(c)) for r, c in edge_counts.items())))
    fns = _COMPILED.get(key)
    if fns is None:
        fused = FusedSampler(spec, edge_counts)
        lay = fused.layout
        traces = {"batch": 0, "draw": 0, "eval": 0}

        def counted(name: str, fn: Callable) -> Callable:
            @functools.wraps(fn)
            def traced(*a, **k):
                traces[name] += 1  # runs at trace time only
                return fn(*a, **k)

            return traced

        def eval_batch(g, pairs, pmask, key):
            return sample_batch(g, pairs, key, spec=spec, positive_mask=pmask, orient=False, layout=lay)

        fns = {
            "fused": fused,
            "traces": traces,
            "batch": jax.jit(counted("batch", fused.__call__)),
            "draw": jax.jit(counted("draw", fused.device_order)),
            "eval": jax.jit(counted("eval", eval_batch)),
        }
        _COMPILED[key] = fns
    return fns


class DeviceSampler:
    """The device backend behind the NumPy backend's interface (``num_batches``, ``epoch_edges``,
    ``batch_edges``, ``batch``, ``iter_epoch``, ``num_edge_batches``, ``edge_batch``,
    ``edge_batches``); batches are :class:`PaddedBatch` es of jax arrays on the device.

    Everything that is not sampling is the NumPy backend's own code (a :class:`NumpySampler` is kept
    as ``self.host``): spec validation, holdout removal, the balanced per-epoch draw of supervision
    edges (``epoch_draw="host"``: one permutation per relation per epoch on the host, uploaded once;
    the same edges in the same batches as the NumPy backend for the same seed) — or
    ``epoch_draw="device"``: the draw is made on the device too (same distribution, other stream).

    ``batch(epoch, index)`` is a pure function of ``(spec.seed, epoch, index)``: its key is
    :func:`batch_key`. The jitted functions are compiled once per spec (``self.traces`` counts traces per function, shared
    by samplers of the same spec and edge counts).
    """

    def __init__(
        self,
        graph: HeteroCSR,
        spec: SamplingSpec,
        *,
        holdout: Mapping[Relation, np.ndarray] | None = None,
        epoch_draw: str = "host",
    ) -> None:
        from sampler.numpy_backend import NumpySampler

        if epoch_draw not in ("host", "device"):
            raise ValueError(f"epoch_draw must be 'host' or 'device', got {epoch_draw!r}")
        self.host = NumpySampler(graph, spec, holdout=holdout)
        self.graph, self.spec, self.layout = self.host.graph, spec, self.host.layout
        self.epoch_draw = epoch_draw
        self.dgraph = DeviceGraph.from_host(self.graph)
        fns = _compiled_fns(spec, self.host.edge_counts)
        self.fused: FusedSampler = fns["fused"]
        self.traces: dict[str, int] = fns["traces"]  # shared by samplers of the same spec
        self._step, self._draw, self._eval = fns["batch"], fns["draw"], fns["eval"]
        self._orders: dict[int, dict[str, jax.Array]] = {}

    # ---------------------------------------------------------------- epochs (host plan)
    def num_batches(self, epoch: int = 0) -> int:
        return self.host.num_batches(epoch)

    def epoch_edges(self, epoch: int) -> dict[Relation, np.ndarray]:
        """Relation -> int64 ``[n_r, 2]`` supervision edges of ``epoch`` in order (host copy)."""
        if self.epoch_draw == "host":
            return self.host.epoch_edges(epoch)
        order = self.epoch_order(epoch)
        return {r: np.asarray(self.graph.edges[r])[np.asarray(order[relation_name(r)])] for r in self.spec.relations}

    def epoch_order(self, epoch: int) -> dict[str, jax.Array]:
        """The epoch's order on the device (relation name -> int32 ``[n_r]`` edge indices); cached
        for the last two epochs."""
        order = self._orders.get(epoch)
        if order is None:
            if self.epoch_draw == "host":
                order = self.fused.place_order(self.fused.host_order(epoch))
            else:
                order = self._draw(epoch_key(self.spec.seed, epoch))
            self._orders[epoch] = order
            for old in sorted(self._orders)[:-2]:
                del self._orders[old]
        return order

    def batch_edges(self, epoch: int, index: int) -> dict[Relation, np.ndarray]:
        """Relation -> int64 ``[q_r, 2]`` canonical supervision edges of one batch (host copy)."""
        if self.epoch_draw == "host":
            return self.host.batch_edges(epoch, index)
        self._check_index(epoch, index)
        out = {}
        for r in self.spec.relations:
            o = np.asarray(self.epoch_order(epoch)[relation_name(r)])
            q = int(self.spec.positives_per_relation[relation_name(r)])
            out[r] = np.asarray(self.graph.edges[r])[o[(index * q + np.arange(q)) % o.shape[0]]]
        return out

    def _check_index(self, epoch: int, index: int) -> None:
        if not 0 <= index < self.num_batches(epoch):
            raise IndexError(f"batch index {index} outside [0, {self.num_batches(epoch)}) for epoch {epoch}")

    # ---------------------------------------------------------------- batches (device)
    def batch(self, epoch: int, index: int) -> PaddedBatch:
        """Training batch ``index`` of ``epoch`` (jax arrays; a pure function of seed/epoch/index)."""
        self._check_index(epoch, index)
        out = self._step(self.dgraph, self.epoch_order(epoch), np.int32(index), epoch_key(self.spec.seed, epoch))
        return PaddedBatch.from_dict(out)

    def iter_epoch(self, epoch: int, start: int = 0):
        for i in range(int(start), self.num_batches(epoch)):
            yield self.batch(epoch, i)

    def num_edge_batches(self, edges: Mapping[Relation, np.ndarray]) -> int:
        return self.host.num_edge_batches(edges)

    def _canon(self, edges: Mapping[Relation, np.ndarray]) -> dict[Relation, np.ndarray]:
        from sampler.numpy_backend import canonical_edges

        unknown = [r for r in edges if tuple(r) not in self.spec.relations]
        if unknown:
            raise ValueError(f"edge_batches: relation(s) {[relation_name(tuple(r)) for r in unknown]} not in the spec")
        edges = {tuple(r): e for r, e in edges.items()}
        return {
            r: canonical_edges(self.graph, r, edges[r], "edge_batches") if r in edges else np.zeros((0, 2), np.int64)
            for r in self.spec.relations
        }

    def edge_batch(self, edges: Mapping[Relation, np.ndarray], seed: int, index: int, *, canonical: bool = False) -> PaddedBatch:
        """Batch ``index`` of an evaluation edge set, like ``NumpySampler.edge_batch``: each
        relation's edges in order, ``q_r`` per batch, filler rows (``positive_mask`` False) where a
        relation runs out, no re-orientation."""
        spec = self.spec
        canon = edges if canonical else self._canon(edges)
        pairs, pmask, start = {}, np.zeros(spec.num_positives, bool), 0
        for r in spec.relations:
            q = int(spec.positives_per_relation[relation_name(r)])
            e = canon[r]
            take = e[index * q : (index + 1) * q]
            pmask[start : start + take.shape[0]] = True
            if take.shape[0] < q:  # filler: valid ids, masked
                fill = e[:1] if e.shape[0] else self.host._filler_pair(r)
                take = np.concatenate([take, np.repeat(fill, q - take.shape[0], axis=0)])
            pairs[relation_name(r)] = take.astype(np.int32)
            start += q
        key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.key(spec.seed), _TAG_EVAL), seed), index)
        return PaddedBatch.from_dict(self._eval(self.dgraph, pairs, pmask, key))

    def edge_batches(self, edges: Mapping[Relation, np.ndarray], seed: int = 0):
        """Batches over an evaluation edge set, in order, each edge once (see ``edge_batch``)."""
        canon = self._canon(edges)
        for i in range(self.num_edge_batches(canon)):
            yield self.edge_batch(canon, seed, i, canonical=True)


__all__ = [
    "DeviceGraph",
    "DeviceGraphError",
    "device_bytes",
    "find_in_rows",
    "Exclusion",
    "exclusion_table",
    "batch_exclusions",
    "sample_global_rows",
    "sample_rows",
    "sample_neighbourhoods",
    "sample_negatives",
    "sample_batch",
    "batch_key",
    "epoch_key",
    "FusedSampler",
    "DeviceSampler",
]
