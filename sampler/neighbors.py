"""Vectorised fixed fan-out neighbourhood sampling over a :class:`~sampler.csr.HeteroCSR`.

No per-node Python loop: every frontier row of a direction is sampled at once.

* **Without replacement** (default): a vectorised Floyd's algorithm — ``f`` iterations, each drawing
  one rank per row and replacing a collision by the iteration's top rank — gives every ``f``-subset
  of a row's ``n`` neighbours the same probability, in ``O(f^2)`` work per row whatever the degree
  (hub podcasts have tens of thousands of neighbours). Rows with ``n <= f`` run the same code with
  ``n`` raised to ``f``: the result is a permutation of ``0..f-1`` and the slots whose rank is
  ``>= n`` are padding. So a row's valid slots are *not* necessarily a prefix.
* **With replacement**: ``f`` independent uniform ranks per row.
* **Excluded edges** (the batch's own supervision edges, both directions): the sampler draws ranks
  among the row's ``n = degree - holes`` remaining neighbours and maps rank -> position by skipping
  the sorted hole positions, i.e. exactly as if those edges were deleted from the graph for this
  batch, at every hop. Only rows whose node has a hole take that path.

Rows are *global* node ids: :class:`DirAdj` re-indexes a direction's ``indptr`` by global id
(zero degree for other types and for the padding id), so a frontier containing ``pad_id`` needs no
special case — its rows come out fully masked.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from sampler.csr import Direction, HeteroCSR, direction_name

_BIG = np.iinfo(np.int64).max // 4  # hole padding: larger than any rank


@dataclasses.dataclass(frozen=True)
class DirAdj:
    """One message-passing direction, indexed by *global* node id.

    Attributes:
      start: int64 ``[num_nodes + 2]``; row of global node ``u`` is ``indices[start[u]:start[u+1]]``
        (empty for nodes of another type and for ``pad_id == num_nodes``).
      indices: int32/int64 ``[nnz]`` global ids of the source type, sorted within each row.
      max_degree: largest row length (bounds the bisection in :func:`find_in_rows`).
    """

    start: np.ndarray
    indices: np.ndarray
    max_degree: int


def sorted_distinct(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values of non-negative int ``keys``. NumPy 2.4's plain ``np.unique`` hashes and
    is 4-27x slower than this sort (BUILD_NOTES, §4)."""
    s = np.sort(keys)
    return s[np.diff(s, prepend=s[:1] - 1) != 0] if s.size else s


def build_dir_adj(graph: HeteroCSR, direction: Direction) -> DirAdj:
    """Global-id view of ``graph.adj[direction]`` (one int64 copy of indptr, indices shared)."""
    csr = graph.adj[direction]
    lo, hi = graph.type_range(direction[0])
    start = np.empty(graph.num_nodes + 2, dtype=np.int64)
    start[:lo] = 0
    start[lo : hi + 1] = csr.indptr
    start[hi + 1 :] = csr.indptr[-1]
    deg = np.diff(csr.indptr)
    return DirAdj(start=start, indices=np.asarray(csr.indices), max_degree=int(deg.max()) if deg.size else 0)


def build_dir_adjs(graph: HeteroCSR, directions: Sequence[Direction]) -> dict[Direction, DirAdj]:
    return {d: build_dir_adj(graph, d) for d in directions}


def find_in_rows(adj: DirAdj, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised membership: is ``v[i]`` a neighbour of ``u[i]`` in this direction?

    Returns ``(found bool [n], pos int64 [n])`` where ``pos`` is the absolute position of ``v[i]`` in
    ``indices`` when found. A bisection over all pairs at once (rows are sorted): ``log2(max_degree)``
    vector steps, no loop over pairs.
    """
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    lo = adj.start[u]
    hi = adj.start[u + 1]
    end = hi.copy()
    nnz = adj.indices.shape[0]
    if nnz == 0:
        return np.zeros(u.shape, bool), lo
    for _ in range(max(1, int(adj.max_degree).bit_length()) + 1):
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi) >> 1
        go_right = active & (adj.indices.take(mid, mode="clip") < v)
        lo = np.where(go_right, mid + 1, lo)
        hi = np.where(active & ~go_right, mid, hi)
    found = (lo < end) & (adj.indices.take(lo, mode="clip") == v)
    return found, lo


@dataclasses.dataclass(frozen=True)
class Holes:
    """Edges excluded from one direction for one batch.

    Attributes:
      nodes: int64 ``[U]`` sorted unique global ids of rows that lose neighbours.
      offsets: int64 ``[U, M]`` positions of the lost neighbours within the row, sorted, padded with
        a huge value.
      counts: int64 ``[U]`` number of real entries per row of ``offsets``.
      flag: bool ``[num_nodes + 2]`` (global ids), True for the ``nodes``: a 1-byte gather finds the
        affected frontier rows, so only those pay for the search.
    """

    nodes: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray
    flag: np.ndarray


def make_holes(adj: DirAdj, u: np.ndarray, v: np.ndarray) -> Holes | None:
    """Holes for the directed pairs ``(u -> v)`` (row ``u`` loses neighbour ``v``).

    Pairs that are not edges of the graph (e.g. validation edges, already absent) are ignored;
    duplicates count once. Returns None when nothing is excluded.
    """
    found, pos = find_in_rows(adj, u, v)
    if not found.any():
        return None
    u = np.asarray(u, np.int64)[found]
    local = pos[found] - adj.start[u]
    width = np.int64(adj.max_degree + 1)
    key = sorted_distinct(u * width + local)  # sorted by (u, local), deduplicated
    u, local = key // width, key % width
    nodes, first, counts = np.unique(u, return_index=True, return_counts=True)
    rank = np.arange(u.shape[0]) - np.repeat(first, counts)
    offsets = np.full((nodes.shape[0], int(counts.max())), _BIG, dtype=np.int64)
    offsets[np.repeat(np.arange(nodes.shape[0]), counts), rank] = local
    flag = np.zeros(adj.start.shape[0], dtype=bool)
    flag[nodes] = True
    return Holes(nodes=nodes, offsets=offsets, counts=counts.astype(np.int64), flag=flag)


def sample_rows(
    adj: DirAdj,
    rows: np.ndarray,
    fanout: int,
    rng: np.random.Generator,
    *,
    pad_id: int,
    replace: bool = False,
    holes: Holes | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Samples up to ``fanout`` neighbours of every row.

    Args:
      adj: the direction to sample.
      rows: int ``[R]`` global ids (any type; other types and ``pad_id`` have no neighbours).
      fanout: f, static.
      rng: consumed deterministically (same state ⇒ same output).
      pad_id: id written into padding slots.
      replace: sample with replacement.
      holes: neighbours to treat as absent.

    Returns:
      ``(ids int32 [R, f], mask bool [R, f])``; ``ids == pad_id`` exactly where ``mask`` is False.
    """
    rows = np.asarray(rows)
    R, f = rows.shape[0], int(fanout)
    start = adj.start[rows]
    n = adj.start[rows + 1] - start
    flagged = None
    if holes is not None and R:
        flagged = np.flatnonzero(holes.flag[rows])
        if flagged.size:
            k = np.searchsorted(holes.nodes, rows[flagged])
            n = n.copy()
            n[flagged] -= holes.counts[k]
        else:
            flagged = None
    # ranks are row-local (< max degree): int32 halves the memory traffic of the Floyd loop
    rdt = np.int32 if adj.max_degree < 2**31 - 1 else np.int64
    u = rng.random((f, R))
    if replace:
        ranks = (u * n).astype(rdt)
        mask = np.broadcast_to(n > 0, (f, R))
    else:
        ranks = np.empty((f, R), dtype=rdt)
        top = (np.maximum(n, f) - f).astype(rdt)  # iteration i draws in [0, top + i]
        for i in range(f):
            t = (u[i] * (top + (i + 1))).astype(rdt)
            if i:
                dup = ranks[0] == t
                for c in range(1, i):
                    dup |= ranks[c] == t
                t = np.where(dup, top + i, t)
            ranks[i] = t
        mask = ranks < n
    if flagged is not None:
        sub = ranks[:, flagged]
        off = holes.offsets[k]
        for m in range(off.shape[1]):  # ascending holes: rank -> position skipping each
            sub += sub >= off[:, m]
        ranks[:, flagged] = sub
    pos = ranks + start  # int64 [f, R]
    ids = adj.indices.take(pos.T, mode="clip")  # [R, f], C order
    if ids.dtype != np.int32:
        ids = ids.astype(np.int32)
    mask = np.ascontiguousarray(mask.T)
    np.copyto(ids, np.int32(pad_id), where=~mask)
    return ids, mask


def sample_hops(
    adjs: Mapping[Direction, DirAdj],
    frontier0: Mapping[str, np.ndarray],
    directions: Sequence[Direction],
    fanouts: Sequence[Mapping[Direction, int]],
    rng: np.random.Generator,
    *,
    pad_id: int,
    replace: bool = False,
    holes: Mapping[Direction, Holes | None] | None = None,
) -> tuple[tuple[dict[str, np.ndarray], ...], tuple[dict[str, np.ndarray], ...]]:
    """L hops of fixed fan-out sampling from the hop-0 frontier.

    Frontier ``k+1`` of type ``s`` is the concatenation, in ``directions`` order, of
    ``nbrs[k][d].reshape(-1)`` over ``d = (t, s)`` — the :class:`~sampler.spec.Layout` convention.

    Returns ``(nbrs, masks)``: per hop, direction name -> int32 / bool ``[N_k[dst], f_k[d]]``.
    """
    frontier = {t: np.asarray(v) for t, v in frontier0.items()}
    nbrs_all, masks_all = [], []
    for f_k in fanouts:
        nbrs: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        nxt: dict[str, list[np.ndarray]] = {t: [] for t in frontier}
        for d in directions:
            dst, src = d
            ids, m = sample_rows(
                adjs[d],
                frontier[dst],
                f_k[d],
                rng,
                pad_id=pad_id,
                replace=replace,
                holes=None if holes is None else holes.get(d),
            )
            name = direction_name(d)
            nbrs[name], masks[name] = ids, m
            nxt.setdefault(src, []).append(ids.reshape(-1))
        nbrs_all.append(nbrs)
        masks_all.append(masks)
        frontier = {
            t: (np.concatenate(parts) if len(parts) > 1 else parts[0]) if parts else np.zeros(0, np.int32)
            for t, parts in nxt.items()
        }
    return tuple(nbrs_all), tuple(masks_all)


__all__ = [
    "DirAdj",
    "Holes",
    "build_dir_adj",
    "build_dir_adjs",
    "find_in_rows",
    "make_holes",
    "sample_rows",
    "sample_hops",
]
