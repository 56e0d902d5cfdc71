"""The HGNN-w-users baseline's graph (the paper, §5.1): a *tripartite* user–item graph.

Unlike the co-listening graph (items only), users are nodes here: an edge joins a user and an item
the user streamed (the paper: "an edge when a user streams an item"). Node ids follow the HeteroCSR
convention: items keep their global ids ``0..N-1`` (in the data's type order: audiobooks, then podcasts)
and user ``j`` is node ``N + j``; relations are ``<type>-user`` for every item type with items
(``audiobook-user`` and ``podcast-user``; node types: :func:`user_node_types`).
User nodes have no text, so their input features are the mean content vector of the items they
streamed (zeros when none) — the same space as the items' features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sampler.csr import HeteroCSR
from twotower_hgnn.arrays import sorted_unique
from twotower_hgnn import errors
from twotower_hgnn.data.schema import Dataset, EVENTS, event_mask

USER = "user"


def user_node_types(ds: Dataset) -> tuple[str, ...]:
    """The tripartite graph's node types: the data's item types, then ``user``."""
    if USER in ds.item_types:
        raise errors.DataError(
            f"item type {USER!r}: the HGNN-w-users baseline names its user nodes {USER!r}; rename that item type "
            "or leave --config.eval.with_hgnn_users off"
        )
    return ds.item_types + (USER,)


def tripartite_graph(ds: Dataset, interactions: pd.DataFrame, events: tuple[str, ...] = ("stream",)) -> HeteroCSR:
    """User–item graph of ``interactions`` (one edge per distinct (user, item) with an event in ``events``).

    Item types without items get no relation (homogeneous catalogues).
    """
    codes = [EVENTS.index(e) for e in events]
    m = event_mask(interactions["event_code"].to_numpy(), codes)
    u = interactions["user_idx"].to_numpy()[m].astype(np.int64)
    it = interactions["item_idx"].to_numpy()[m].astype(np.int64)
    n_items = ds.num_items
    key = sorted_unique(it * np.int64(ds.num_users) + u)  # distinct pairs, sorted
    it, u = key // ds.num_users, key % ds.num_users
    node_types = user_node_types(ds)
    off = ds.item_type_offsets()
    counts = {t: int(ds.item_type_counts[t]) for t in ds.item_types}
    counts[USER] = ds.num_users
    edges = {}
    for t_i, t in enumerate(ds.item_types):
        if counts[t] == 0:
            continue
        sel = (it >= off[t_i]) & (it < off[t_i + 1])
        edges[(t, USER)] = np.stack([it[sel], n_items + u[sel]], axis=1)
    return HeteroCSR.from_edges(node_types, counts, edges)


def user_node_features(ds: Dataset, graph: HeteroCSR, item_features: np.ndarray) -> np.ndarray:
    """float32 ``[N + U, d]``: item rows = ``item_features``; user rows = mean over the user's items in
    ``graph`` of each type, averaged over the types the user has (zeros for a user without edges)."""
    item_features = np.asarray(item_features, np.float32)
    n, d = item_features.shape
    if n != ds.num_items:
        raise ValueError(f"item_features has {n} rows for {ds.num_items} items")
    import scipy.sparse as sp

    # one sparse (users x items) row-normalised incidence matrix per item type, summed
    users = np.zeros((ds.num_users, d), np.float32)
    for (dst, _), csr in graph.adj.items():
        if dst != USER:
            continue
        deg = np.diff(csr.indptr)
        w = np.repeat(1.0 / np.maximum(deg, 1), deg).astype(np.float32)
        users += np.asarray(
            sp.csr_matrix((w, np.asarray(csr.indices), csr.indptr), shape=(ds.num_users, n)) @ item_features
        )
    # a user with edges of several types averages the per-type means (equal weight per type)
    n_types = sum(1 for (dst, _), c in graph.adj.items() if dst == USER and c.nnz)
    both = (
        sum((np.diff(c.indptr) > 0).astype(np.float32) for (dst, _), c in graph.adj.items() if dst == USER)
        if n_types
        else 0
    )
    users /= np.maximum(both, 1.0)[:, None] if n_types else 1.0
    return np.concatenate([item_features, users]).astype(np.float32)
