"""Full-graph HGNN inference: every item's embedding, layer by layer, in fixed-size chunks.

Training sees a fixed fan-out; inference sees each node's whole neighbourhood (variable degree), so
here the work is edge lists + segment ops (jraph conventions: each direction's edges are a
``jraph.GraphsTuple`` with ``senders`` = source rows and ``receivers`` = destination rows, and the
max of Eq. 2 is ``jraph.segment_max``). Per layer:

1. **Messages per node, not per edge.** ``act(W_r h_j + b_r)`` depends only on the source node, so
   it is computed once per node of the source type (in row chunks of ``chunk_size``), then gathered
   per edge. This is the same maths as Eq. 2 with E/N times fewer matmul FLOPs.
2. **Aggregation per destination chunk.** Destination rows are cut into chunks of ``chunk_size``
   nodes; the chunk's edges (contiguous in the CSR) are cut into pieces of at most ``edge_chunk``
   edges (rounded to a power of two, padded with a dummy segment); each piece is one
   ``segment_max`` into ``[chunk_size, d]``, pieces combine with ``max``. Every jitted call has a
   static shape drawn from a few powers of two, so a layer compiles a handful of functions once.
3. **Update** ``act(W_self h + sum_r m_r)`` per chunk (no outer act on the last layer unless
   ``final_activation``), then L2 normalisation.

Neighbourhoods: ``max_neighbors=None`` uses every neighbour (the default: deterministic, and what
the paper calls embedding "all nodes"). ``max_neighbors=m`` keeps a seeded uniform sample of at most
``m`` neighbours per node and direction (without replacement) — the training-time distribution when
``m`` equals the fan-out, and bounded work on hub nodes. Note that a max over more neighbours than
training saw is shifted upwards; both modes are available so the effect can be measured.

A node with no edges (a new item: the paper's inductive case) gets zeros from every direction, so
its embedding is ``normalise(... act(W_self x) ...)``: features alone.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import jraph
import numpy as np

from sampler.csr import CSR, Direction, HeteroCSR, direction_name
from twotower_hgnn.io import atomic_write_bytes
from twotower_hgnn.models.hgnn import SHARED, HGNNConfig, activation_fn, l2_normalize, padded_features, param_key
from twotower_hgnn.rng import np_rng


def cap_neighbors(csr: CSR, max_neighbors: int, seed: int, tag: str = "") -> CSR:
    """At most ``max_neighbors`` uniformly sampled (seeded, without replacement) entries per row."""
    if max_neighbors < 1:
        raise ValueError(f"max_neighbors must be >= 1, got {max_neighbors}")
    deg = np.diff(np.asarray(csr.indptr))
    if deg.size == 0 or deg.max(initial=0) <= max_neighbors:
        return csr
    rows = np.repeat(np.arange(deg.size), deg)
    keys = np_rng(seed, "cap-neighbors", tag).random(rows.size)
    order = np.lexsort((keys, rows))  # grouped by row (same row order), random within a row
    rank = np.arange(rows.size) - np.asarray(csr.indptr)[rows[order]]
    keep = np.sort(order[rank < max_neighbors])  # back to CSR order (sorted neighbours)
    new_deg = np.minimum(deg, max_neighbors)
    indptr = np.zeros(deg.size + 1, np.int64)
    np.cumsum(new_deg, out=indptr[1:])
    return CSR(indptr, np.asarray(csr.indices)[keep])


def direction_graph(
    graph: HeteroCSR, d: Direction, max_neighbors: int | None = None, seed: int = 0
) -> jraph.GraphsTuple:
    """One direction's edges as a GraphsTuple: ``receivers`` = local dst rows, ``senders`` = local
    src rows (global id minus the source type's offset), sorted by receiver (CSR order)."""
    csr = graph.adj[d]
    if max_neighbors is not None:
        csr = cap_neighbors(csr, max_neighbors, seed, direction_name(d))
    deg = np.diff(np.asarray(csr.indptr))
    lo_src, _ = graph.type_range(d[1])
    return jraph.GraphsTuple(
        nodes=None,
        edges=None,
        globals=None,
        receivers=np.repeat(np.arange(deg.size, dtype=np.int32), deg),
        senders=(np.asarray(csr.indices, np.int64) - lo_src).astype(np.int32),
        n_node=np.array([graph.num_nodes_of(d[0])]),
        n_edge=np.array([int(deg.sum())]),
    )


def _pad_rows(x: jax.Array, rows: int) -> jax.Array:
    return jnp.pad(x, ((0, rows - x.shape[0]), (0, 0)))


def _padded_rows(n: int, chunk: int) -> int:
    return max(1, math.ceil((n + 1) / chunk)) * chunk  # >= 1 spare row: the dummy source of padding edges


class _Kernels:
    """The jitted static-shape pieces of one layer (compiled once per shape)."""

    def __init__(self, cfg: HGNNConfig, chunk: int, dt) -> None:
        act = activation_fn(cfg.activation)
        self.chunk = chunk

        @jax.jit
        def message(x, start, w, b):  # rows [start, start+chunk) of x -> act(x W + b)
            xs = jax.lax.dynamic_slice_in_dim(x, start, chunk)
            return act(xs.astype(dt) @ w.astype(dt) + b.astype(dt))

        @jax.jit
        def piece(msg, src, dst, acc):  # one padded edge piece -> running max over [chunk, d]
            vals = jnp.take(msg, src, axis=0)
            seg = jraph.segment_max(vals, dst, num_segments=chunk + 1, indices_are_sorted=True)
            return jnp.maximum(acc, seg[:chunk])

        @jax.jit
        def finish(acc):  # no valid neighbour -> 0
            return jnp.where(jnp.isneginf(acc), jnp.zeros((), acc.dtype), acc)

        def update(x, start, w_self, agg, last: bool):
            xs = jax.lax.dynamic_slice_in_dim(x, start, chunk)
            out = xs.astype(dt) @ w_self.astype(dt) + agg
            return out if (last and not cfg.final_activation) else act(out)

        self.message, self.piece, self.finish = message, piece, finish
        self.update = jax.jit(update, static_argnames="last")


_KERNELS: dict[tuple, _Kernels] = {}


def _kernels(cfg: HGNNConfig, chunk: int, dt) -> _Kernels:
    """Per-process cache: a second ``embed_items`` call with the same config compiles nothing."""
    key = (cfg, int(chunk), str(dt))
    if key not in _KERNELS:
        _KERNELS[key] = _Kernels(cfg, chunk, dt)
    return _KERNELS[key]


def embed_items(
    params: Mapping[str, Any],
    cfg: HGNNConfig,
    graph: HeteroCSR,
    features: np.ndarray,
    *,
    chunk_size: int = 8192,
    edge_chunk: int = 1 << 17,
    max_neighbors: int | None = None,
    relations: Sequence[tuple[str, str]] | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> np.ndarray:
    """float32 ``[N, out_dim]`` L2-normalised embeddings of every graph node (row = global id).

    Args:
      params, cfg: the trained model.
      graph: the graph to read neighbourhoods from (typically the full graph; items absent from
        training simply appear as nodes, with or without edges).
      features: float ``[N, d]`` (or ``[N + 1, d]`` with a zero padding row).
      chunk_size: destination/source nodes per jitted call; edge_chunk: edges per aggregation piece.
      max_neighbors: None = full neighbourhoods; m = at most m sampled neighbours per node and direction.
      relations: relations whose edges carry messages (default: in heterogeneous mode the directions
        the params have weights for; in homogeneous mode every relation of the graph — pass the
        training relations to reproduce an ablation).
      seed: for ``max_neighbors`` sampling.
      progress: console progress over the (layer, node chunk) updates (``tracking.Progress``; None: on a
        terminal only). When shown, each chunk is waited for, so that the rate is real; results unchanged.
    """
    from twotower_hgnn.tracking import Progress

    if chunk_size < 1 or edge_chunk < 1:
        raise ValueError(f"chunk_size and edge_chunk must be >= 1, got {chunk_size}, {edge_chunk}")
    x = padded_features(features, graph.num_nodes)[:-1]
    dt = jnp.dtype(cfg.compute_dtype)
    dirs = _inference_directions(params, cfg, graph, relations)
    k = _kernels(cfg, chunk_size, dt)
    types = [t for t in graph.node_types]
    gts = {d: direction_graph(graph, d, max_neighbors, seed) for d in dirs}
    ranges = {t: graph.type_range(t) for t in types}
    h = {t: _pad_rows(jnp.asarray(x[lo:hi]), _padded_rows(hi - lo, chunk_size)) for t, (lo, hi) in ranges.items()}
    n_chunks = sum(-(-int(v.shape[0]) // chunk_size) for v in h.values())
    prog = Progress(
        cfg.num_layers * n_chunks, desc="[inference] full graph", unit="chunks", enabled=progress, final="shown"
    )
    for layer in range(cfg.num_layers):
        lp = params[f"layer_{layer}"]
        last = layer == cfg.num_layers - 1
        d_out = int(np.shape(lp["self"][next(iter(lp["self"]))])[1])
        msgs = {}  # direction -> [rows_pad(src type), d_out] messages, computed once per source node
        for d in dirs:
            nb = lp["nbr"][SHARED if cfg.homogeneous else param_key(d)]
            if cfg.homogeneous and d[1] in {dd[1] for dd in msgs}:
                msgs[d] = next(m for dd, m in msgs.items() if dd[1] == d[1])
                continue
            src = h[d[1]]
            msgs[d] = jnp.concatenate([k.message(src, s, nb["w"], nb["b"]) for s in range(0, src.shape[0], chunk_size)])
        new_h = {}
        for t in types:
            lo, hi = ranges[t]
            n_t = hi - lo
            w_self = lp["self"][SHARED if cfg.homogeneous else t]
            into = [d for d in dirs if d[0] == t]
            out_chunks = []
            for c0 in range(0, h[t].shape[0], chunk_size):
                agg = _chunk_messages(k, cfg, msgs, gts, ranges, into, c0, n_t, chunk_size, edge_chunk, d_out, dt)
                out_chunks.append(k.update(h[t], c0, w_self, agg, last=last))
                if prog.enabled:
                    out_chunks[-1].block_until_ready()
                prog.update(1, layer=layer + 1)
            new_h[t] = jnp.concatenate(out_chunks)
        h = new_h
    prog.close()
    out = np.zeros((graph.num_nodes, cfg.out_dim), np.float32)
    for t, (lo, hi) in ranges.items():
        out[lo:hi] = np.asarray(l2_normalize(h[t][: hi - lo]))
    return out


def _chunk_messages(
    k: _Kernels,
    cfg: HGNNConfig,
    msgs: Mapping[tuple[str, str], Any],
    gts: Mapping[tuple[str, str], jraph.GraphsTuple],
    ranges: Mapping[str, tuple[int, int]],
    into: Sequence[tuple[str, str]],
    c0: int,
    n_t: int,
    chunk_size: int,
    edge_chunk: int,
    d_out: int,
    dt,
):
    """Aggregated messages ``[chunk_size, d_out]`` into the dst rows ``[c0, c0 + chunk_size)`` of one node
    type: the sum over the ``into`` directions of their max (heterogeneous), or one max over all of them
    (homogeneous)."""
    agg = jnp.zeros((chunk_size, d_out), dt)
    acc = None
    for d in into:
        if not cfg.homogeneous:
            acc = None
        acc = _aggregate_chunk(
            k,
            msgs[d],
            gts[d],
            c0,
            min(c0 + chunk_size, n_t),
            chunk_size,
            edge_chunk,
            n_src=ranges[d[1]][1] - ranges[d[1]][0],
            acc=acc,
            d_out=d_out,
            dt=dt,
        )
        if not cfg.homogeneous and acc is not None:
            agg = agg + k.finish(acc)
    if cfg.homogeneous and acc is not None:
        agg = agg + k.finish(acc)
    return agg


def _aggregate_chunk(
    k: _Kernels,
    msg,
    gt: jraph.GraphsTuple,
    r0: int,
    r1: int,
    chunk: int,
    edge_chunk: int,
    *,
    n_src: int,
    acc,
    d_out: int,
    dt,
):
    """Running segment-max of the messages of dst rows ``[r0, r1)`` into ``acc`` ``[chunk, d]``."""
    if r0 >= r1:
        return acc
    # receivers are sorted: the chunk's edges are one contiguous run
    e0, e1 = np.searchsorted(gt.receivers, [r0, r1])
    if e0 == e1:
        return acc
    if acc is None:
        acc = jnp.full((chunk, d_out), -jnp.inf, dt)
    # Pieces of a power-of-two size <= edge_chunk: little padding on small chunks, few distinct shapes.
    edge_chunk = min(edge_chunk, 1 << max(int(e1 - e0) - 1, 1).bit_length())
    for a in range(int(e0), int(e1), edge_chunk):
        b = min(a + edge_chunk, int(e1))
        src = np.full(edge_chunk, n_src, np.int32)  # dummy source row (exists: rows are padded)
        dst = np.full(edge_chunk, chunk, np.int32)  # dummy segment, dropped
        src[: b - a] = gt.senders[a:b]
        dst[: b - a] = gt.receivers[a:b] - r0
        acc = k.piece(msg, src, dst, acc)
    return acc


def _inference_directions(params, cfg: HGNNConfig, graph: HeteroCSR, relations) -> list[Direction]:
    dirs = list(graph.adj.keys())
    if relations is not None:
        rels = {tuple(r) for r in relations}
        missing = rels - set(graph.edges)
        if missing:
            raise ValueError(f"relations: {sorted(missing)} not in the graph (has {list(graph.edges)})")
        dirs = [d for d in dirs if tuple(sorted(d, key=graph.node_types.index)) in rels]
    if not cfg.homogeneous:
        have = set(params["layer_0"]["nbr"])
        dirs = [d for d in dirs if param_key(d) in have]
    missing_types = [
        t for t in ({SHARED} if cfg.homogeneous else set(graph.node_types)) if t not in params["layer_0"]["self"]
    ]
    if missing_types:
        raise ValueError(f"params have no W_self for node type(s) {missing_types}; were they trained on another graph?")
    return dirs


def export_embeddings(path: str | os.PathLike, item_ids: Sequence[str] | np.ndarray, emb: np.ndarray) -> None:
    """Writes ``{"item_ids": str [N], "embeddings": float32 [N, d]}`` as one ``.npz``, atomically."""
    import io

    ids = np.asarray(item_ids).astype(str)
    emb = np.asarray(emb, np.float32)
    if emb.ndim != 2 or ids.ndim != 1 or ids.shape[0] != emb.shape[0]:
        raise ValueError(
            f"export_embeddings: {ids.shape[0] if ids.ndim == 1 else ids.shape} ids for embeddings of shape {emb.shape}"
        )
    if not np.isfinite(emb).all():
        raise ValueError(f"export_embeddings: row {int(np.flatnonzero(~np.isfinite(emb).all(1))[0])} is not finite")
    buf = io.BytesIO()
    np.savez(buf, item_ids=ids, embeddings=emb)
    atomic_write_bytes(path, buf.getvalue())


def load_embeddings(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(item_ids str [N], embeddings float32 [N, d])`` from :func:`export_embeddings`."""
    with np.load(path, allow_pickle=False) as z:
        if set(z.files) != {"item_ids", "embeddings"}:
            raise ValueError(f"{path}: not an embeddings file (arrays {z.files})")
        return z["item_ids"], z["embeddings"]


__all__ = ["embed_items", "export_embeddings", "load_embeddings", "cap_neighbors", "direction_graph"]
