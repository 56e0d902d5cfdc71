"""Flat-edge view of one hop of a :class:`~sampler.batch.PaddedBatch` as a ``jraph.GraphsTuple``.

For consumers that prefer segment ops (``jraph.segment_*``, full-graph style code). The dense
``[n_dst, fanout]`` arrays are the fast path (measured: reducing over a real fan-out axis beat flat
segment ops by 1.3-1.4x on an H200); this conversion is a host-side NumPy copy, keep it out of hot loops.

Hop ``k`` becomes one bipartite block:

* nodes ``0 .. T_k - 1``: frontier ``k`` (types concatenated in ``node_types`` order) — the receivers;
* nodes ``T_k .. T_k + T_{k+1} - 1``: frontier ``k + 1`` — the senders (slot ``s`` of row ``r`` of
  direction ``d`` is exactly one frontier-``k+1`` node, per the Layout convention);
* one padding node at the end, in a second (padding) graph, so ``n_node = [T_k + T_{k+1}, 1]``.

Edges: every slot of every direction, valid ones first (stable order: direction, row, slot), then
the padding slots re-pointed at the padding node; ``n_edge = [valid, padding]``. So
``jraph.get_edge_padding_mask`` / ``get_node_padding_mask`` work, and every shape depends on the spec
only. Node features: ``{"id": int32 global id (pad_id for the padding node), "type": int8}``; edge
features: ``{"direction": int32 index into layout.directions, "mask": bool}``.
"""

from __future__ import annotations

import jraph
import numpy as np

from sampler.batch import PaddedBatch
from sampler.csr import direction_name
from sampler.spec import Layout


def _offsets(sizes: dict[str, int], order: tuple[str, ...]) -> dict[str, int]:
    out, acc = {}, 0
    for t in order:
        out[t] = acc
        acc += sizes.get(t, 0)
    return out


def to_graphs_tuple(
    batch: PaddedBatch,
    layout: Layout,
    hop: int = 0,
    *,
    node_types: tuple[str, ...] | None = None,
    pad_id: int | None = None,
) -> jraph.GraphsTuple:
    """Hop ``hop`` of ``batch`` as a padded bipartite ``GraphsTuple`` (see module docstring).

    ``pad_id`` (the graph's) labels the padding node; by default it is read from a padding slot of
    the batch, or -1 when the hop has none (-1 still gathers the last row, the padding row, in JAX).
    """
    if node_types is None:
        node_types = tuple(batch.seeds)
    L = len(batch.nbrs)
    if not 0 <= hop < L:
        raise ValueError(f"hop={hop}: the batch has hops 0..{L - 1}")
    front_k = batch.frontier(hop, layout)
    front_n = batch.frontier(hop + 1, layout)
    sz_k, sz_n = layout.frontier_sizes[hop], layout.frontier_sizes[hop + 1]
    off_k, off_n = _offsets(sz_k, node_types), _offsets(sz_n, node_types)
    T_k, T_n = sum(sz_k.values()), sum(sz_n.values())
    pad_node = T_k + T_n
    ids = np.empty(T_k + T_n + 1, np.int32)
    types = np.empty(T_k + T_n + 1, np.int8)
    for ti, t in enumerate(node_types):
        ids[off_k[t] : off_k[t] + sz_k[t]] = front_k[t]
        types[off_k[t] : off_k[t] + sz_k[t]] = ti
        ids[T_k + off_n[t] : T_k + off_n[t] + sz_n[t]] = front_n[t]
        types[T_k + off_n[t] : T_k + off_n[t] + sz_n[t]] = ti
    parts = {d: off for t in node_types for (d, off, _, _) in layout.frontier_parts[hop].get(t, [])}
    send, recv, mask, dirs = [], [], [], []
    for di, d in enumerate(layout.directions):
        name = direction_name(d)
        m = np.asarray(batch.masks[hop][name])
        rows, f = m.shape
        recv.append(off_k[d[0]] + np.repeat(np.arange(rows, dtype=np.int32), f))
        send.append(T_k + off_n[d[1]] + parts[d] + np.arange(rows * f, dtype=np.int32))
        mask.append(m.reshape(-1))
        dirs.append(np.full(rows * f, di, np.int32))
        if pad_id is None:
            nb = np.asarray(batch.nbrs[hop][name])
            if (~m).any():
                pad_id = int(nb[~m][0])
    send, recv, mask, dirs = (np.concatenate(x) for x in (send, recv, mask, dirs))
    order = np.argsort(~mask, kind="stable")  # valid edges first
    send, recv, mask, dirs = send[order], recv[order], mask[order], dirs[order]
    send = np.where(mask, send, pad_node).astype(np.int32)
    recv = np.where(mask, recv, pad_node).astype(np.int32)
    ids[pad_node] = pad_id if pad_id is not None else -1
    types[pad_node] = -1
    nv = int(mask.sum())
    return jraph.GraphsTuple(
        nodes={"id": ids, "type": types},
        edges={"direction": dirs, "mask": mask},
        senders=send,
        receivers=recv,
        n_node=np.array([T_k + T_n, 1], np.int32),
        n_edge=np.array([nv, mask.shape[0] - nv], np.int32),
        globals=None,
    )


__all__ = ["to_graphs_tuple"]
