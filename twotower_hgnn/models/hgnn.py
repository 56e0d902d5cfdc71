"""Heterogeneous GraphSAGE with max-pooling aggregation (paper Eq. 2-3) over a static ``PaddedBatch``.

One layer, for a node ``c`` of type ``t`` and every message direction ``r = (t, s)`` (messages flow
from ``s``-type neighbours into ``t``)::

    m_r  = max_{j in sampled N(c, r), valid} act(W_r h_j + b_r)          (Eq. 2; zeros if no valid j)
    h_c' = act(W_self[t] h_c + sum_r m_r)                                (Eq. 3)

and ``z_c = h_c^L / ||h_c^L||``. Choices the paper leaves open (BUILD_NOTES.md, appendix D):

* ``W_r, b_r`` per *direction* (``audiobook<-podcast`` and ``podcast<-audiobook`` are different
  matrices); ``W_self`` per node type with no bias (Eq. 3 has none).
* The last layer omits the outer ``act`` by default (``final_activation=False``): a ReLU before the
  L2 normalisation would confine every embedding to the positive orthant, so that no two items could
  have a negative dot product. Eq. 2's inner ``act`` is always applied.
* ``homogeneous=True`` shares one ``W_self`` across node types and one ``(W, b)`` across directions,
  and takes a single max over the union of a node's sampled neighbours (plain GraphSAGE-pool), so a
  node type without edges of its own (ablations E/F) still gets trained weights.

The fan-out is fixed by the sampling spec, so the neighbour axis is a real array axis: messages
for a frontier are ``[n, fanout, d]`` and the max reduces over axis 1 (measured 1.3-1.4x
faster than flat edges + ``segment_max``). Padding slots hold the padding id (a zero feature row)
and ``False`` in the mask; they are replaced by ``-inf`` before the max so they never win, and a
row with no valid slot contributes exactly zero. Full-graph, variable-degree inference lives in
``twotower_hgnn/inference.py`` (segment ops).

Params are a plain pytree of arrays (jit-friendly, orbax-friendly)::

    {"layer_0": {"self": {type_or_"shared": W [d_in, d_out]},
                 "nbr":  {"<dst>_from_<src>"_or_"shared": {"w": [d_in, d_out], "b": [d_out]}}},
     "layer_1": ...}
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sampler.csr import Direction, direction_name
from sampler.spec import Layout, SamplingSpec
from twotower_hgnn.models.hgnn_config import ACTIVATIONS, DTYPES, HGNNConfig  # noqa: F401  (re-exported)

SHARED = "shared"
_ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "elu": jax.nn.elu,
    "leaky_relu": jax.nn.leaky_relu,
    "tanh": jnp.tanh,
    "identity": lambda x: x,
}
assert set(_ACTIVATIONS) == set(ACTIVATIONS)


def param_key(d: Direction) -> str:
    """Param-tree key of a direction (no '<' so it is a safe checkpoint path component)."""
    return f"{d[0]}_from_{d[1]}"


def activation_fn(name: str):
    return _ACTIVATIONS[name]


def _directions_of(spec_or_layout: SamplingSpec | Layout | Sequence[Direction]) -> tuple[Direction, ...]:
    if isinstance(spec_or_layout, SamplingSpec):
        return spec_or_layout.directions()
    if isinstance(spec_or_layout, Layout):
        return spec_or_layout.directions
    return tuple(tuple(d) for d in spec_or_layout)


def init_hgnn(
    key: jax.Array,
    cfg: HGNNConfig,
    spec_or_layout: SamplingSpec | Layout | Sequence[Direction],
    node_types: Sequence[str],
    in_dim: int,
) -> dict[str, Any]:
    """Float32 params: Glorot-uniform weights, zero biases.

    ``spec_or_layout`` gives the message directions (a spec, its layout, or a list of ``(dst, src)``
    pairs, e.g. ``graph.adj.keys()``). Every node type in ``node_types`` gets a ``W_self`` (also
    types without edges: they are embedded from their features alone).
    """
    if int(in_dim) < 1:
        raise ValueError(f"init_hgnn: in_dim must be positive, got {in_dim}")
    dirs = _directions_of(spec_or_layout)
    for d in dirs:
        if d[0] not in node_types or d[1] not in node_types:
            raise ValueError(
                f"init_hgnn: direction {direction_name(d)} uses a type not in node_types={list(node_types)}"
            )
    glorot = jax.nn.initializers.glorot_uniform()
    params: dict[str, Any] = {}
    self_keys = [SHARED] if cfg.homogeneous else list(node_types)
    nbr_keys = [SHARED] if cfg.homogeneous else [param_key(d) for d in dirs]
    for layer, (d_in, d_out) in enumerate(cfg.layer_dims(in_dim)):
        key, k_self, k_nbr = jax.random.split(key, 3)
        ks = jax.random.split(k_self, len(self_keys))
        kn = jax.random.split(k_nbr, max(len(nbr_keys), 1))
        params[f"layer_{layer}"] = {
            "self": {name: glorot(ks[i], (d_in, d_out), jnp.float32) for i, name in enumerate(self_keys)},
            "nbr": {
                name: {"w": glorot(kn[i], (d_in, d_out), jnp.float32), "b": jnp.zeros((d_out,), jnp.float32)}
                for i, name in enumerate(nbr_keys)
            },
        }
    return params


def masked_max(msg: jax.Array, mask: jax.Array) -> jax.Array:
    """``[n, f, d]`` messages, ``[n, f]`` bool mask -> ``[n, d]`` max over valid slots, 0 if none."""
    neg = jnp.asarray(-jnp.inf, msg.dtype)
    m = jnp.max(jnp.where(mask[..., None], msg, neg), axis=1)
    return jnp.where(jnp.any(mask, axis=1)[:, None], m, jnp.zeros((), msg.dtype))


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Row-wise L2 normalisation with a finite gradient at zero rows (a zero row stays zero)."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def _frontier_ids(batch: Mapping[str, Any], layout: Layout, hops: int) -> list[dict[str, jax.Array]]:
    """Global ids of frontiers ``0..hops`` per type (frontier k+1 = concat of hop-k nbrs by direction)."""
    out = [dict(batch["seeds"])]
    for k in range(hops):
        nxt = {}
        for t, parts in layout.frontier_parts[k].items():
            chunks = [batch["nbrs"][k][direction_name(d)].reshape(-1) for d, _, _, _ in parts]
            nxt[t] = jnp.concatenate(chunks) if chunks else jnp.zeros((0,), jnp.int32)
        out.append(nxt)
    return out


def _part_of(layout: Layout, hop: int, d: Direction) -> tuple[int, int, int]:
    """(offset, rows, fanout) of direction ``d``'s slice in frontier ``hop + 1`` of type ``d[1]``."""
    for dd, off, rows, f in layout.frontier_parts[hop][d[1]]:
        if dd == d:
            return off, rows, f
    raise KeyError(f"direction {direction_name(d)} not in the layout's frontier {hop + 1}")


def hgnn_forward(
    params: Mapping[str, Any], cfg: HGNNConfig, features: jax.Array, batch: Mapping[str, Any], layout: Layout
) -> jax.Array:
    """Embeddings of the batch's hop-0 frontier.

    Args:
      params: from :func:`init_hgnn` (float32 masters; cast to ``cfg.compute_dtype`` here).
      cfg: model config (static).
      features: ``[N + 1, d_in]`` node features indexed by global id; the last row (the padding id)
        must be zeros. May be float32 or bfloat16.
      batch: ``PaddedBatch.as_dict()`` (numpy or jax arrays; ``positive_mask`` unused here).
      layout: ``spec.layout()`` of the spec that produced the batch (static).

    Returns:
      float32 ``[S_total, out_dim]``, L2-normalised rows, in the concatenated seed order of
      ``layout`` (index it with ``layout.anchor`` / ``positive`` / ``negative``).
    """
    L = cfg.num_layers
    if len(layout.fanout) < L:
        raise ValueError(f"hgnn_forward: {L} layers need a sampling spec with >= {L} hops, got {len(layout.fanout)}")
    dt = jnp.dtype(cfg.compute_dtype)
    act = _ACTIVATIONS[cfg.activation]
    p = jax.tree_util.tree_map(lambda x: x.astype(dt), params)
    types = list(layout.seeds_per_type)
    ids = _frontier_ids(batch, layout, L)
    h = [{t: jnp.take(features, ids[k][t], axis=0).astype(dt) for t in types} for k in range(L + 1)]
    for layer in range(L):
        lp = p[f"layer_{layer}"]
        last = layer == L - 1
        new_h = []
        for k in range(L - layer):
            new: dict[str, jax.Array] = {}
            for t in types:
                w_self = lp["self"][SHARED if cfg.homogeneous else t]
                out = h[k][t] @ w_self
                dirs = layout.directions_into(t)
                if dirs and h[k][t].shape[0]:
                    out = out + _aggregate(lp["nbr"], cfg, act, h[k + 1], batch["masks"][k], layout, k, dirs)
                new[t] = act(out) if (not last or cfg.final_activation) else out
            new_h.append(new)
        h = new_h
    z = jnp.concatenate([h[0][t] for t in types], axis=0)
    return l2_normalize(z)


def _aggregate(nbr_params, cfg, act, h_next, masks_k, layout: Layout, k: int, dirs) -> jax.Array:
    """Sum over directions into one type of the masked max of neighbour messages (Eq. 2 + sum of Eq. 3)."""
    if cfg.homogeneous:
        w, b = nbr_params[SHARED]["w"], nbr_params[SHARED]["b"]
        msgs, masks = [], []
        for d in dirs:
            off, rows, f = _part_of(layout, k, d)
            x = jax.lax.slice_in_dim(h_next[d[1]], off, off + rows * f)
            msgs.append(act(x @ w + b).reshape(rows, f, -1))
            masks.append(masks_k[direction_name(d)])
        # One neighbourhood: the union of all directions' samples.
        return masked_max(jnp.concatenate(msgs, axis=1), jnp.concatenate(masks, axis=1))
    total = None
    for d in dirs:
        off, rows, f = _part_of(layout, k, d)
        prm = nbr_params[param_key(d)]
        x = jax.lax.slice_in_dim(h_next[d[1]], off, off + rows * f)
        m = masked_max(act(x @ prm["w"] + prm["b"]).reshape(rows, f, -1), masks_k[direction_name(d)])
        total = m if total is None else total + m
    return total


def padded_features(features: np.ndarray, num_nodes: int) -> np.ndarray:
    """``[N, d]`` or ``[N + 1, d]`` (last row zeros), any float dtype (bfloat16 storage included) -> float32
    ``[N + 1, d]`` with the padding row."""
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[0] not in (num_nodes, num_nodes + 1):
        raise ValueError(f"features: expected shape [{num_nodes}, d] (one row per graph node), got {list(f.shape)}")
    if not jnp.issubdtype(f.dtype, jnp.floating):  # numpy's own test says no to ml_dtypes' bfloat16
        raise ValueError(f"features: expected a float array, got dtype {f.dtype}")
    f = f.astype(np.float32, copy=False)
    if f.shape[0] == num_nodes + 1:
        if np.any(f[-1] != 0):
            raise ValueError("features: N + 1 rows given but the last (padding) row is not zeros")
        out = f
    else:
        out = np.concatenate([f, np.zeros((1, f.shape[1]), np.float32)])
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        raise ValueError(f"features: row {int(np.flatnonzero(bad)[0])} has a NaN/inf value")
    return out


def make_forward(cfg: HGNNConfig, layout: Layout):
    """``jit(lambda params, features, batch: hgnn_forward(...))`` with ``cfg`` / ``layout`` closed over
    (a Layout holds dicts and arrays, so it cannot be a static jit argument)."""
    return jax.jit(lambda params, features, batch: hgnn_forward(params, cfg, features, batch, layout))


def num_params(params: Any) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params)))


__all__ = [
    "HGNNConfig",
    "init_hgnn",
    "hgnn_forward",
    "make_forward",
    "padded_features",
    "masked_max",
    "l2_normalize",
    "param_key",
    "activation_fn",
    "num_params",
    "SHARED",
]
