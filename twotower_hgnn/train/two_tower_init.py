"""Initialisation of the shared item-id embedding from the training interactions (``id_init="svd"``).

A freshly initialised id table is noise: the personal part of the score starts random and, with Adam's
bounded steps, takes thousands of steps to learn the co-occurrence structure an item-item model reads
off the data directly. ``svd_item_embeddings`` starts the table from the item factors of a truncated
SVD of the binary user x item matrix of the training part (``X ~ U S V^T``, item rows ``V sqrt(S)``,
the PureSVD factors of Cremonesi et al. 2010), rescaled to the random initialiser's standard deviation.
The table is still a learned parameter of both towers; only its starting point changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from twotower_hgnn.data.schema import EVENTS, event_mask
from twotower_hgnn.rng import np_rng


def svd_item_embeddings(
    train: Any,
    n_users: int,
    n_items: int,
    dim: int,
    seed: int,
    events: tuple[str, ...] = ("stream",),
    std: float = 0.05,
) -> np.ndarray:
    """float32 ``[n_items + 1, dim]`` id-table rows (row 0 = padding, zeros; row ``i + 1`` = item ``i``).

    Args:
      train: interactions with ``user_idx``, ``item_idx``, ``event_code`` (the training part).
      dim: factors kept (at most ``min(n_users, n_items) - 1``; the rest of the columns stay 0).
      seed: seeds ARPACK's start vector (deterministic factors and signs).
      std: the returned rows' overall standard deviation (the random initialiser's).
    """
    codes = [EVENTS.index(e) for e in events]
    keep = event_mask(train["event_code"].to_numpy(), codes)
    u = train["user_idx"].to_numpy(np.int64)[keep]
    i = train["item_idx"].to_numpy(np.int64)[keep]
    x = sp.csr_matrix((np.ones(len(u), np.float64), (u, i)), shape=(n_users, n_items))
    x.data[:] = 1.0  # binary: repeated interactions count once
    out = np.zeros((n_items + 1, dim), np.float32)
    k = min(dim, min(x.shape) - 1)
    if k < 1 or x.nnz == 0:
        return out
    v0 = np_rng(seed, "2t-svd-init").standard_normal(min(x.shape))
    _, s, vt = svds(x, k=k, v0=v0)
    order = np.argsort(-s)  # largest singular value first
    v = (vt[order].T * np.sqrt(s[order])[None, :]).astype(np.float64)
    v *= std / max(float(v.std()), 1e-12)
    out[1:, :k] = v
    return out


def with_svd_ids(params: Any, table: np.ndarray) -> Any:
    """``params`` with the shared id embedding replaced by ``table`` (same shape)."""
    emb = params["params"]["item_ids"]["embedding"]
    if np.shape(emb) != table.shape:
        raise ValueError(f"id table shape {np.shape(emb)} != SVD table {table.shape}")
    new = dict(params["params"], item_ids={"embedding": table.astype(np.asarray(emb).dtype)})
    return {**params, "params": new}
