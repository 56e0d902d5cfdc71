"""The paper's offline baselines (§5.1) and the ranking helper every vector model uses.

* **Popularity** — the target-type items ranked by their number of **streams in the train part** (the
  split's history window), ties by lower item id; the same list for everybody minus each user's
  exclusions. Serves every user.
* **LLM-KNN** — user vector = mean content (Sentence-BERT) embedding of the **distinct** target-type
  items in the user's history (streams + weak signals, :attr:`TargetProtocol.history`), then the top-k
  items by dot product. Warm users only (cold users have no history).
* **HGNN-KNN** ("HGNN" in Tables 2-3) — the same with the HGNN item embeddings.
* **2T / 2T-HGNN** — their user and item vectors go through :func:`rank_users` / :func:`rank_with_vectors`.

Distinct items, not interaction counts: the paper says "the average of the vectors of the audiobooks
the user interacted with". (The two-tower user features weight by interaction; BUILD_NOTES.md, appendix F.)
All nearest-neighbour search goes through :mod:`twotower_hgnn.retrieval` (``ExactIndex`` by default,
any object with ``search(queries, k, exclude)`` may be passed). HGNN-w-users (users as graph nodes) is
not implemented.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from twotower_hgnn.eval.metrics import ItemSets
from twotower_hgnn.eval.protocol import Rankings, TargetProtocol
from twotower_hgnn.retrieval import ExactIndex, ExcludeCSR


def _local_exclude(exclude: ItemSets, item_ids: np.ndarray) -> ExcludeCSR:
    """Global-id exclusion sets -> rows of the item table (ids outside the table are dropped)."""
    pos = np.searchsorted(item_ids, exclude.indices)
    ok = (pos < item_ids.size) & (item_ids[np.minimum(pos, item_ids.size - 1)] == exclude.indices)
    kept = exclude.filter(ok)
    return ExcludeCSR(kept.indptr, pos[ok].astype(np.int64))


def _num_items(item_vecs: np.ndarray | None, index: Any, who: str) -> int:
    """Rows to rank: those of ``item_vecs``, or of the prebuilt ``index`` when no vectors are given."""
    if item_vecs is None and index is None:
        raise ValueError(f"{who}: pass item_vecs or a prebuilt index")
    return int(np.shape(item_vecs)[0]) if item_vecs is not None else int(index.num_items)


def rank_with_vectors(
    user_vecs: np.ndarray,
    item_vecs: np.ndarray | None,
    k: int = 100,
    exclude: ItemSets | None = None,
    item_ids: np.ndarray | None = None,
    index: Any = None,
) -> np.ndarray:
    """Top-``k`` items by dot product for every user.

    Args:
      user_vecs: float ``[U, d]``.
      item_vecs: float ``[N, d]``; row ``r`` is item ``item_ids[r]``. None when ``index`` is given
        (its ``num_items`` rows are the items).
      k: list length.
      exclude: ItemSets with ``U`` rows of **global** ids never to recommend (ids not in ``item_ids``
        are ignored).
      item_ids: int64 ``[N]`` sorted global ids of the rows (default ``arange(N)``).
      index: a prebuilt index over ``item_vecs`` with ``search(queries, k, exclude)`` (reuse it across
        calls); default a fresh :class:`~twotower_hgnn.retrieval.ExactIndex`.

    Returns int64 ``[U, k]`` global ids, best first, ``-1`` where fewer than ``k`` items remain.
    """
    user_vecs = np.asarray(user_vecs)
    n = _num_items(item_vecs, index, "rank_with_vectors")
    item_ids = np.arange(n, dtype=np.int64) if item_ids is None else np.asarray(item_ids, dtype=np.int64)
    if item_ids.shape != (n,) or (n > 1 and np.any(np.diff(item_ids) <= 0)):
        raise ValueError(f"rank_with_vectors: item_ids must be {n} strictly increasing ids, got shape {item_ids.shape}")
    if exclude is not None and exclude.n_rows != user_vecs.shape[0]:
        raise ValueError(f"rank_with_vectors: {exclude.n_rows} exclusion rows for {user_vecs.shape[0]} users")
    if user_vecs.shape[0] == 0:
        return np.full((0, k), -1, dtype=np.int64)
    index = ExactIndex(item_vecs) if index is None else index
    ex = _local_exclude(exclude, item_ids) if exclude is not None else None
    _, rows = index.search(user_vecs, k, ex)
    return np.where(rows >= 0, item_ids[np.maximum(rows, 0)], -1).astype(np.int64)


def rank_users(
    tp: TargetProtocol,
    user_vecs: np.ndarray,
    item_vecs: np.ndarray | None,
    positions: np.ndarray | None = None,
    k: int = 100,
    index: Any = None,
) -> Rankings:
    """Rankings of the protocol's users ``tp.users[positions]`` (default all) from their vectors.

    ``user_vecs`` is ``[len(positions), d]``; ``item_vecs`` is ``[len(tp.catalogue), d]`` (row r = item
    ``tp.catalogue[r]``, e.g. the two-tower item table of the target type), or None with an ``index``
    over those rows. The protocol's exclusions are applied.
    """
    positions = np.arange(tp.n_users, dtype=np.int64) if positions is None else np.asarray(positions, np.int64)
    n_items = _num_items(item_vecs, index, "rank_users")
    if n_items != tp.catalogue.size:
        raise ValueError(
            f"rank_users: {n_items} item vectors for a {tp.target_type} catalogue of {tp.catalogue.size} items"
        )
    if np.shape(user_vecs)[0] != positions.size:
        raise ValueError(f"rank_users: {np.shape(user_vecs)[0]} user vectors for {positions.size} users")
    ranked = rank_with_vectors(user_vecs, item_vecs, k, tp.exclude.take(positions), tp.catalogue, index)
    return Rankings(users=tp.users[positions], items=ranked)


def rank_with_item_tower(tp: TargetProtocol, user_vecs: np.ndarray, result: Any, k: int = 100) -> Rankings:
    """:func:`rank_users` with a two-tower ``result``'s item vectors (its ``item_table`` must be the
    catalogue ``tp.catalogue``). The vectors go into a search-only :class:`ExactIndex` and the host copy
    is dropped before the search: at the paper's 3.5M podcasts x 128 that copy is 1.8 GB."""
    from twotower_hgnn.models.encode import item_vectors

    iv, ids = item_vectors(result)
    if not np.array_equal(ids, tp.catalogue):
        raise ValueError(
            f"rank_with_item_tower: item table ({ids.size} items) != the {tp.target_type} catalogue "
            f"({tp.catalogue.size})"
        )
    index = ExactIndex(iv, keep_host=False)
    del iv
    return rank_users(tp, user_vecs, None, k=k, index=index)


def mean_history_vectors(history: ItemSets, item_vecs: np.ndarray) -> np.ndarray:
    """float32 ``[U, d]`` mean of ``item_vecs`` (global rows) over each history set; zeros for empty sets."""
    item_vecs = np.asarray(item_vecs, dtype=np.float32)
    if history.nnz and history.indices.max() >= item_vecs.shape[0]:
        raise ValueError(
            f"mean_history_vectors: history item {int(history.indices.max())} has no vector "
            f"({item_vecs.shape[0]} item vectors)"
        )
    sizes = history.sizes()
    weights = np.repeat(1.0 / np.maximum(sizes, 1), sizes).astype(np.float32)
    mat = sp.csr_matrix((weights, history.indices, history.indptr), shape=(history.n_rows, item_vecs.shape[0]))
    return np.asarray(mat @ item_vecs, dtype=np.float32)


def knn_rankings(tp: TargetProtocol, item_vecs: np.ndarray, k: int = 100, index: Any = None) -> Rankings:
    """LLM-KNN / HGNN-KNN: warm users, mean history embedding -> nearest catalogue items by dot product.

    ``item_vecs`` are **global** item embeddings ``[n_items, d]`` (content vectors for LLM-KNN, HGNN
    embeddings for HGNN-KNN); only the target-type rows are candidates.
    """
    pos = np.flatnonzero(tp.warm & (tp.history.sizes() > 0)).astype(np.int64)
    user_vecs = mean_history_vectors(tp.history.take(pos), item_vecs)
    return rank_users(tp, user_vecs, np.asarray(item_vecs)[tp.catalogue], pos, k, index)


def rank_global_order(order: np.ndarray, exclude: ItemSets, k: int = 100) -> np.ndarray:
    """int64 ``[U, k]``: the global list ``order`` (distinct item ids, best first) minus each user's
    exclusions, ``-1`` where the list runs out.

    Without a ``[U, k + max exclusions]`` candidate matrix: with ``p_1 < p_2 < ...`` the positions in
    ``order`` of user u's excluded items and ``q_i = p_i - (i - 1)``, output slot ``j`` is
    ``order[j + #{i : q_i <= j}]`` — one binary search per output slot.
    """
    order = np.asarray(order, dtype=np.int64)
    n, n_users = order.size, exclude.n_rows
    if n_users == 0:
        return np.full((0, k), -1, dtype=np.int64)
    rank_of = np.full(
        max(int(order.max()) if n else 0, int(exclude.indices.max()) if exclude.nnz else 0) + 1, -1, dtype=np.int64
    )
    rank_of[order] = np.arange(n, dtype=np.int64)
    pos = rank_of[exclude.indices]
    kept = pos >= 0  # excluded ids that are not in the list change nothing
    big = n + k + 1
    keys = np.sort(exclude.row_ids()[kept] * big + pos[kept])  # per user, positions ascending
    counts = np.bincount(exclude.row_ids()[kept], minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    row = keys // big
    q = keys % big - (np.arange(keys.size) - starts[row])
    qkeys = row * big + q  # sorted: q is non-decreasing within a row
    j = np.arange(k, dtype=np.int64)
    c = (
        np.searchsorted(qkeys, np.arange(n_users, dtype=np.int64)[:, None] * big + j[None, :], side="right")
        - starts[:, None]
    )
    idx = j[None, :] + c
    return np.where(idx < n, order[np.minimum(idx, max(n - 1, 0))], -1).astype(np.int64)


def popularity_order(tp: TargetProtocol) -> np.ndarray:
    """Catalogue ids by train streams, most streamed first, ties by lower id."""
    return tp.catalogue[np.lexsort((tp.catalogue, -tp.train_streams))]


def popularity_rankings(tp: TargetProtocol, k: int = 100) -> Rankings:
    """Popularity for every evaluated user of the target type (exclusions applied)."""
    return Rankings(users=tp.users, items=rank_global_order(popularity_order(tp), tp.exclude, k))
