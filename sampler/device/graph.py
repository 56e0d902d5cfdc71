"""The heterogeneous CSR resident on the device (:class:`DeviceGraph`), its size and its limits.

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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sampler.csr import Direction, HeteroCSR, Relation, direction_name, relation_name

_I32_MAX = 2**31 - 1


class DeviceGraphError(ValueError):
    """The graph cannot be placed on the device (too many ids/entries for the index width, or memory)."""


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
            raise DeviceGraphError(
                f"{int(row_off[-1])} CSR rows over the directions in use: beyond int32 (enable jax_enable_x64)"
            )
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


__all__ = ["DeviceGraph", "DeviceGraphError", "device_bytes"]
