"""Encoding with a trained two-tower model: user and item vectors, brute-force top-K ranking.

Evaluation and serving encode through this module; it reads models, features and data only (never a
trainer). A "model" here is anything shaped like ``train.two_tower.TwoTowerResult`` (the
:class:`EncodableModel` protocol): the Flax variables, the model config, the vocabularies, the item
table of the target type and the embedding the user-history means are built from.

* **One compiled shape per tower.** Towers run over padded chunks of ``ENCODE_CHUNK`` rows (or fewer
  when the bundle is smaller), so evaluation compiles each tower once per (config, chunk size).
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import jax
import numpy as np

from twotower_hgnn import features as F
from twotower_hgnn.data.schema import Dataset
from twotower_hgnn.models.two_tower import TwoTowerConfig, TwoTowerModel
from twotower_hgnn.topk import top_k_columns

ENCODE_CHUNK = 1024  # rows per jitted tower call at evaluation time (one static shape)


class EncodableModel(Protocol):
    """What encoding needs of a trained model (``train.two_tower.TwoTowerResult`` has it all).

    Attributes:
      params: host NumPy pytree of the Flax ``TwoTowerModel`` variables.
      model_cfg: the model config with vocabulary sizes filled in; vocab: categorical vocabularies.
      item_table: ItemFeatures of every target-type item (row r = global id ``item_table.item_idx[r]``).
      history_emb: float32 ``[n_items, d_hist]`` embedding the user history means are built from.
    """

    params: Any
    model_cfg: TwoTowerConfig
    vocab: F.FeatureVocab
    item_table: F.ItemFeatures
    history_emb: np.ndarray


@functools.lru_cache(maxsize=16)
def _encoder(model_cfg: TwoTowerConfig, method: str):
    model = TwoTowerModel(model_cfg)
    fn = TwoTowerModel.encode_user if method == "user" else TwoTowerModel.encode_item
    return jax.jit(lambda params, x: model.apply(params, x, method=fn))


def encode_chunked(
    model_cfg: TwoTowerConfig, params: Any, bundle: Any, which: str, chunk: int = ENCODE_CHUNK
) -> np.ndarray:
    """float32 ``[n, out_dim]``: a tower ("user" | "item") over a host bundle of ``n`` rows, run in
    fixed-size padded chunks (one compiled shape)."""
    n = len(bundle)
    enc = _encoder(model_cfg, which)
    size = min(chunk, max(1, n))
    out = None  # filled in place: a list of chunks and their concatenation would hold the output twice
    for s in range(0, n, size):
        part = jax.tree_util.tree_map(lambda a: np.asarray(a)[s : s + size], bundle)
        m = len(part)
        if m < size:
            part = jax.tree_util.tree_map(
                lambda a: np.concatenate([a, np.zeros((size - m,) + a.shape[1:], a.dtype)]), part
            )
        vec = np.asarray(enc(params, part))
        if out is None:
            out = np.empty((n,) + vec.shape[1:], vec.dtype)
        out[s : s + m] = vec[:m]
    return out if out is not None else np.zeros((0, model_cfg.out_dim), np.float32)


def user_vectors(result: EncodableModel, ds: Dataset, interactions: Any, user_idx: Any, as_of: Any) -> np.ndarray:
    """float32 ``[Q, d]`` user vectors as of ``as_of`` (history read from ``interactions``)."""
    feats = F.user_features_as_of(ds, interactions, user_idx, as_of, result.history_emb, result.vocab)
    return encode_chunked(result.model_cfg, result.params, feats, "user")


def item_vectors(result: EncodableModel) -> tuple[np.ndarray, np.ndarray]:
    """(float32 ``[N, d]`` item vectors, int64 ``[N]`` global item ids) of the target type."""
    return (
        encode_chunked(result.model_cfg, result.params, result.item_table, "item"),
        np.asarray(result.item_table.item_idx, np.int64),
    )


def rank_items(
    result: EncodableModel,
    ds: Dataset,
    interactions: Any,
    user_idx: Any,
    as_of: Any,
    depth: int = 100,
    exclude: Any = None,
) -> np.ndarray:
    """int64 ``[U, min(depth, N)]`` global ids of the top target-type items per user, best first.

    ``exclude`` (an ``eval.metrics.ItemSets`` with one row per user, global ids, or None) removes items
    from each user's ranking (e.g. already-streamed ones). Brute-force NumPy scoring for offline
    evaluation; serving uses the retrieval index.
    """
    u = user_vectors(result, ds, interactions, user_idx, as_of)
    v, ids = item_vectors(result)
    scores = u @ v.T
    if exclude is not None:
        if exclude.n_rows != len(u):
            raise ValueError(f"exclude has {exclude.n_rows} rows for {len(u)} users")
        local = np.asarray(exclude.indices, np.int64) - int(ids[0])
        ok = (local >= 0) & (local < len(ids))
        scores[exclude.row_ids()[ok], local[ok]] = -np.inf
    k = min(depth, len(ids))
    cols, _ = top_k_columns(scores, k)  # ties: the lower id, on every CPU
    return ids[cols]
