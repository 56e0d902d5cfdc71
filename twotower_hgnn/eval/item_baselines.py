"""Collaborative-filtering item baselines: item-kNN (cosine) and EASE (Steck 2019), tuned on validation.

These are not in the paper; they are the standard strong non-neural baselines a reader expects next to
Popularity, and they need no content features. Both score the target-type catalogue from a binary
**user x item matrix over all items of both types** (:func:`interaction_matrix`; by default every event
of the training part, duplicates counted once), so a user's podcast history informs audiobook scores and
vice versa.

* **item-kNN** — ``sim(i, j) = (X^T X)_ij / (||x_i|| ||x_j|| + shrink)`` (cosine with shrinkage; for a
  binary ``X`` the numerator is the number of users of both items, ``||x_i||`` the square root of the
  number of users of ``i``); ``sim(j, j) = 0``. For every catalogue item ``j`` only its ``n_neighbors``
  most similar items (over all items; positive similarity only; ties at the cut to the lower item id)
  are kept. ``score(u, j) = sum_{i in X_u} sim(i, j)`` over the kept neighbours of ``j``.
* **EASE** — ``G = X^T X + lam I`` over all items (float64), ``P = G^{-1}``, ``B = -P / diag(P)``
  (column ``j`` divided by ``P_jj``), ``diag(B) = 0``; ``score(u, j) = X_u . B[:, j]``. The inverse
  is dense ``n_items^2``: above :data:`EASE_MAX_ITEMS` callers skip EASE (:func:`ease_applicable`).

**Ranking rules** (both models, :func:`rank_scores`): every evaluated user of the protocol is scored,
the protocol's exclusions are never recommended, the catalogue is sorted by score and **ties are broken
by popularity order** (train streams descending, then lower item id — :func:`baselines.popularity_order`):
a user with no history (all-zero scores) gets exactly the Popularity list. Lists are ``depth`` long,
``-1``-padded when fewer items remain. The tie-break is exact (a lexicographic order, not an epsilon).

**Tuning** (:func:`tune`): every point of a small grid is fitted on the validation split's train part
and scored on its protocol; the best mean HR@K over the validation target types (segment ``all``)
wins, ties to the first grid point. :func:`tuned_item_baselines` does the whole thing for a split.
Everything is vectorised (sparse products, blocked over catalogue columns and users; no per-user loop).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from twotower_hgnn.data.schema import EVENTS, event_mask
from twotower_hgnn.eval.protocol import EvalProtocol, Rankings, TargetProtocol
from twotower_hgnn.topk import top_k_columns, top_k_mask

EASE_MAX_ITEMS = 20_000
KNN_GRID: tuple[dict[str, Any], ...] = tuple(
    {"n_neighbors": n, "shrink": float(s)} for n in (20, 50, 100, 200, 400) for s in (0, 10, 50)
)
# 5000 and 10000 extend the usual range: on MovieLens-1M (temporal split) the validation optimum was
# lam = 10000 (HR@10 0.686 vs 0.661 at 2500, 25000 no better), i.e. the top of a 6-point grid was an edge.
EASE_GRID: tuple[dict[str, Any], ...] = tuple({"lam": float(v)} for v in (50, 100, 250, 500, 1000, 2500, 5000, 10000))
_BLOCK = 1 << 22  # elements of a dense score / similarity block (32 MiB at float64)
_CACHE = 1 << 25  # largest co-occurrence block kept between calls (128 MiB at float32)


def interaction_matrix(
    train_df: Any, n_users: int, n_items: int, events: Sequence[str | int] | None = None
) -> sp.csr_matrix:
    """float32 binary ``[n_users, n_items]`` CSR: 1 where the user has any of ``events`` with the item.

    ``train_df`` has int columns ``user_idx``, ``item_idx``, ``event_code``; ``events`` are names from
    ``EVENTS`` or codes (default: all events). Duplicates count once; all item types are kept.
    """
    u = np.asarray(train_df["user_idx"], dtype=np.int64)
    i = np.asarray(train_df["item_idx"], dtype=np.int64)
    if events is not None:
        codes = [EVENTS.index(e) if isinstance(e, str) else int(e) for e in events]
        keep = event_mask(np.asarray(train_df["event_code"]), codes)
        u, i = u[keep], i[keep]
    if u.size and (u.min() < 0 or u.max() >= n_users or i.min() < 0 or i.max() >= n_items):
        raise ValueError(f"interaction_matrix: ids outside [0, {n_users}) x [0, {n_items})")
    X = sp.csr_matrix((np.ones(u.size, np.float32), (u, i)), shape=(n_users, n_items))
    X.sum_duplicates()
    X.data[:] = 1.0
    return X


# ------------------------------------------------------------------------------------------------
# Ranking a score matrix under the protocol
# ------------------------------------------------------------------------------------------------
def _top_columns(S: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``min(depth, n)`` columns of every row of ``S [C, n]``, by score descending, ties by lower
    column (exact, O(C n); :func:`twotower_hgnn.topk.top_k_columns`). Returns (int64 columns ``[C, d]``,
    their scores ``[C, d]``)."""
    return top_k_columns(S, depth)


def rank_scores(
    tp: TargetProtocol,
    score_block: Callable[[np.ndarray], np.ndarray],
    depth: int = 100,
    positions: np.ndarray | None = None,
) -> Rankings:
    """Rankings of ``tp.users[positions]`` (default all) from a score function (module docstring rules).

    ``score_block(users)`` maps int64 user rows ``[C]`` to float scores ``[C, n_cat]`` (column ``r`` =
    item ``tp.catalogue[r]``); it is called on blocks of users so memory stays bounded. Excluded items
    get ``-inf`` and end up as ``-1`` padding if the list reaches them.
    """
    positions = np.arange(tp.n_users, dtype=np.int64) if positions is None else np.asarray(positions, np.int64)
    n_cat = tp.catalogue.size
    perm = np.lexsort((np.arange(n_cat), -tp.train_streams))  # popularity order = the tie-break
    inv = np.empty(n_cat, dtype=np.int64)
    inv[perm] = np.arange(n_cat)
    out = np.full((positions.size, depth), -1, dtype=np.int64)
    step = max(1, _BLOCK // max(n_cat, 1))
    for lo in range(0, positions.size, step):
        pos = positions[lo : lo + step]
        S = np.asarray(score_block(tp.users[pos]), dtype=np.float64)
        if S.shape != (pos.size, n_cat):
            raise ValueError(f"rank_scores: score block {S.shape}, expected {(pos.size, n_cat)}")
        S = S[:, perm]
        ex = tp.exclude.take(pos)
        S[ex.row_ids(), inv[ex.indices - tp.item_offset]] = -np.inf
        cols, vals = _top_columns(S, depth)
        items = tp.catalogue[perm[cols]]
        out[lo : lo + pos.size, : cols.shape[1]] = np.where(np.isneginf(vals), -1, items)
    return Rankings(users=tp.users[positions], items=out)


# ------------------------------------------------------------------------------------------------
# item-kNN
# ------------------------------------------------------------------------------------------------
class ItemKNN:
    """Cosine item-kNN over a binary ``X [n_users, n_items]`` (module docstring).

    Holds the item norms and caches the co-occurrence columns ``X^T X[:, columns]`` of each catalogue
    (up to :data:`_CACHE` elements over all catalogues, oldest evicted first), so a grid over
    ``n_neighbors`` x ``shrink`` pays for the sparse product once per target type.
    """

    def __init__(self, X: sp.spmatrix):
        self.X = sp.csr_matrix(X, dtype=np.float32)
        self.XT = self.X.T.tocsr()
        self.Xc = self.X.tocsc()
        self.norms = np.sqrt(np.asarray(self.X.multiply(self.X).sum(axis=0)).ravel()).astype(np.float32)
        self._cache: dict[bytes, np.ndarray] = {}

    @property
    def n_items(self) -> int:
        return int(self.X.shape[1])

    def cooccurrence(self, columns: np.ndarray, cache: bool = True) -> np.ndarray:
        """float32 ``[n_items, len(columns)]`` = ``X^T X[:, columns]`` (dense; cached if ``cache``)."""
        columns = np.asarray(columns, dtype=np.int64)
        key = columns.tobytes()
        if key in self._cache:
            return self._cache[key]
        block = np.asarray((self.XT @ self.Xc[:, columns]).toarray(), dtype=np.float32)
        if cache and block.size <= _CACHE:
            while self._cache and sum(b.size for b in self._cache.values()) + block.size > _CACHE:
                self._cache.pop(next(iter(self._cache)))  # oldest first: at most _CACHE elements in all
            self._cache[key] = block
        return block

    def weights(self, columns: np.ndarray, n_neighbors: int, shrink: float) -> sp.csr_matrix:
        """float32 CSR ``W [n_items, len(columns)]``: ``W[i, c]`` = ``sim(i, columns[c])`` if ``i`` is one of
        the ``n_neighbors`` most similar items of ``columns[c]`` (positive similarity only), else 0."""
        if n_neighbors < 1 or shrink < 0:
            raise ValueError(f"ItemKNN: n_neighbors={n_neighbors} must be >= 1 and shrink={shrink} >= 0")
        columns = np.asarray(columns, dtype=np.int64)
        n, m = self.n_items, columns.size
        kk = min(int(n_neighbors), n)
        full = self.cooccurrence(columns) if n * m <= _CACHE else None  # else: block by block, uncached
        rows, cols, vals = [], [], []
        step = max(1, _BLOCK // max(n, 1))
        for lo in range(0, m, step):
            c = columns[lo : lo + step]
            num = full[:, lo : lo + step] if full is not None else self.cooccurrence(c, cache=False)
            den = self.norms[:, None] * self.norms[None, c] + np.float32(shrink)
            sim = np.divide(num, den, out=np.zeros(num.shape, np.float32), where=den > 0)
            sim[c, np.arange(c.size)] = 0.0  # no self-similarity
            simT = sim.T  # [c, n]: one row per column item
            cc, rr = np.nonzero(top_k_mask(simT, kk) & (simT > 0))  # ties at the cut: the lower item
            rows.append(rr)
            cols.append(cc + lo)
            vals.append(simT[cc, rr])
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, m))

    def rankings(self, tp: TargetProtocol, n_neighbors: int, shrink: float, depth: int = 100) -> Rankings:
        """Item-kNN rankings of every evaluated user of ``tp`` (module docstring)."""
        W = self.weights(tp.catalogue, n_neighbors, shrink)
        return rank_scores(tp, lambda users: (self.X[users] @ W).toarray(), depth)


def item_knn_rankings(
    tp: TargetProtocol, X: sp.spmatrix, n_neighbors: int, shrink: float, depth: int = 100, *, knn: ItemKNN | None = None
) -> Rankings:
    """Item-kNN for one target type. ``X``: binary ``[n_users, n_items]`` (:func:`interaction_matrix`);
    ``knn``: a prebuilt :class:`ItemKNN` over the same ``X`` to reuse its co-occurrence cache."""
    return (knn or ItemKNN(X)).rankings(tp, n_neighbors, shrink, depth)


# ------------------------------------------------------------------------------------------------
# EASE
# ------------------------------------------------------------------------------------------------
def ease_applicable(n_items: int, max_items: int = EASE_MAX_ITEMS) -> bool:
    """Whether EASE's dense ``n_items^2`` inverse is allowed (``n_items <= max_items``)."""
    return int(n_items) <= int(max_items)


def skip_reason(name: str, n_items: int, max_items: int, flag: str = "") -> str:
    """The report's note for an item baseline not fitted above its item cap (``flag``: the setting to name)."""
    return f"{name} skipped: {int(n_items):,} items > {int(max_items):,}" + (f" ({flag})" if flag else "")


def ease_skip_reason(n_items: int, max_items: int = EASE_MAX_ITEMS) -> str:
    return skip_reason("EASE", n_items, max_items)


class EASE:
    """EASE over a binary ``X [n_users, n_items]`` (module docstring): the Gram matrix is computed once,
    the inverse once per ``lam`` (the last one is kept, so both target types share it)."""

    def __init__(self, X: sp.spmatrix):
        self.X = sp.csr_matrix(X, dtype=np.float32)
        if not ease_applicable(self.X.shape[1]):
            raise ValueError(ease_skip_reason(self.X.shape[1]))
        self._gram: np.ndarray | None = None
        self._inv: tuple[float, np.ndarray] | None = None

    def inverse(self, lam: float) -> np.ndarray:
        """float64 ``P = (X^T X + lam I)^{-1}`` ``[n_items, n_items]``."""
        if lam <= 0:
            raise ValueError(f"EASE: lam={lam} must be > 0")
        if self._inv is not None and self._inv[0] == float(lam):
            return self._inv[1]
        if self._gram is None:
            self._gram = (self.X.T @ self.X).toarray().astype(np.float64)
        G = self._gram.copy()
        G[np.diag_indices_from(G)] += float(lam)
        self._inv = (float(lam), np.linalg.inv(G))
        return self._inv[1]

    def weights(self, lam: float, columns: np.ndarray) -> np.ndarray:
        """float64 ``B[:, columns]`` ``[n_items, len(columns)]``: ``-P[:, j] / P_jj`` with ``B[j, j] = 0``."""
        columns = np.asarray(columns, dtype=np.int64)
        P = self.inverse(lam)
        B = P[:, columns] / -P[columns, columns][None, :]
        B[columns, np.arange(columns.size)] = 0.0
        return B

    def rankings(self, tp: TargetProtocol, lam: float, depth: int = 100) -> Rankings:
        """EASE rankings of every evaluated user of ``tp`` (module docstring)."""
        B = self.weights(lam, tp.catalogue)
        return rank_scores(tp, lambda users: np.asarray(self.X[users] @ B), depth)


def ease_rankings(
    tp: TargetProtocol, X: sp.spmatrix, lam: float, depth: int = 100, *, ease: EASE | None = None
) -> Rankings:
    """EASE for one target type (raises ValueError above :data:`EASE_MAX_ITEMS` items); ``ease``: a
    prebuilt :class:`EASE` over the same ``X`` (reuses its Gram matrix / inverse)."""
    return (ease or EASE(X)).rankings(tp, lam, depth)


# ------------------------------------------------------------------------------------------------
# Tuning on validation
# ------------------------------------------------------------------------------------------------
def validation_hr(rankings: Mapping[str, Rankings], protocol: EvalProtocol, k: int = 10) -> dict[str, float]:
    """HR@k of segment ``all`` per target type of ``protocol`` (users a ranking misses count as misses)."""
    from twotower_hgnn.eval.bootstrap import per_user_metrics

    out = {}
    for t, tp in protocol.targets.items():
        if t not in rankings:
            raise ValueError(f"validation_hr: no rankings for target type {t!r}")
        pu = per_user_metrics(tp, rankings[t], "all", k=k)
        out[t] = float(np.nan_to_num(pu["hit"]).mean()) if tp.n_users else 0.0
    return out


def tune(
    fit_rank: Callable[[dict[str, Any]], Mapping[str, Rankings]],
    grid: Sequence[Mapping[str, Any]],
    val_protocol: EvalProtocol,
    k: int = 10,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Picks the grid point with the best mean validation HR@k over the target types (segment ``all``);
    ties go to the first grid point.

    Args:
      fit_rank: params -> {target type: Rankings of the validation protocol's users}.
      grid: parameter dicts, tried in order.
      val_protocol: the validation :class:`EvalProtocol`.

    Returns (best params, table): one row per grid point, ``{"params", "hr@k" (mean), "per_target",
    "seconds"}``.
    """
    if not grid:
        raise ValueError("tune: empty grid")
    table = []
    for params in grid:
        t0 = time.perf_counter()
        per_target = validation_hr(fit_rank(dict(params)), val_protocol, k)
        mean = float(np.mean(list(per_target.values()))) if per_target else 0.0
        table.append(
            {
                "params": dict(params),
                f"hr@{k}": mean,
                "per_target": per_target,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
    best = int(np.argmax([row[f"hr@{k}"] for row in table]))  # first maximum
    return dict(table[best]["params"]), table


def knn_fit_rank(protocol: EvalProtocol, X: sp.spmatrix, depth: int = 100) -> Callable[[dict], dict[str, Rankings]]:
    """``fit_rank`` for :func:`tune`: item-kNN on ``X`` for every target type of ``protocol``."""
    knn = ItemKNN(X)
    return lambda p: {t: knn.rankings(tp, p["n_neighbors"], p["shrink"], depth) for t, tp in protocol.targets.items()}


def ease_fit_rank(protocol: EvalProtocol, X: sp.spmatrix, depth: int = 100) -> Callable[[dict], dict[str, Rankings]]:
    """``fit_rank`` for :func:`tune`: EASE on ``X`` for every target type of ``protocol``."""
    ease = EASE(X)
    return lambda p: {t: ease.rankings(tp, p["lam"], depth) for t, tp in protocol.targets.items()}


RECENT_GRID: tuple[dict[str, Any], ...] = tuple({"days": d} for d in (3.0, 7.0, 14.0, 30.0, 90.0, None))


def recent_popularity_rankings(tp: TargetProtocol, train_df: Any, days: float | None, depth: int = 100) -> Rankings:
    """Popularity of the last ``days`` of the training part (streams; ties by all-time streams, then id).

    "What is popular lately": the strongest simple baseline of a temporal split whose test period
    follows trends. ``days=None`` is the all-time Popularity order.
    """
    from twotower_hgnn.data.schema import EVENTS
    from twotower_hgnn.eval.baselines import rank_global_order

    ev = train_df["event_code"].to_numpy() == EVENTS.index("stream")
    ts = train_df["timestamp"].to_numpy()
    if days is not None and len(ts):
        ev &= ts >= ts.max() - float(days) * 86_400
    items = train_df["item_idx"].to_numpy()[ev]
    n = int(max(tp.catalogue.max() if tp.catalogue.size else 0, items.max() if items.size else 0)) + 1
    recent = np.bincount(items, minlength=n)[tp.catalogue]
    order = tp.catalogue[np.lexsort((tp.catalogue, -tp.train_streams, -recent))]
    return Rankings(users=tp.users, items=rank_global_order(order, tp.exclude, depth))


def recent_fit_rank(protocol: EvalProtocol, train_df: Any, depth: int = 100) -> Callable[[dict], dict[str, Rankings]]:
    """``fit_rank`` for :func:`tune`: recent popularity for every target type of ``protocol``."""
    return lambda p: {
        t: recent_popularity_rankings(tp, train_df, p["days"], depth) for t, tp in protocol.targets.items()
    }


def _same_protocol(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``build_protocol`` keywords of a protocol's ``config``: the same settings, and the same user sample
    (the test users are a sample: the validation users are sampled the same way, only their sets built)."""
    kw: dict[str, Any] = dict(
        exclude_seen=cfg.get("exclude_seen", True),
        exclude_events=cfg.get("exclude_events", ("stream",)),
        n_tiers=cfg.get("n_tiers", 5),
        tier_mode=cfg.get("tier_mode", "count"),
    )
    if "history_events" in cfg:
        kw["history_events"] = cfg["history_events"]
    us = cfg.get("user_sample")
    kw["sample"] = (us["per_segment"], us["seed"]) if us else None
    return kw


def tuned_item_baselines(
    dataset: Any,
    split: Any,
    protocol: EvalProtocol,
    *,
    depth: int = 100,
    k: int = 10,
    val_frac: float = 0.1,
    events: Sequence[str] | None = None,
    knn_grid: Sequence[Mapping[str, Any]] = KNN_GRID,
    ease_grid: Sequence[Mapping[str, Any]] = EASE_GRID,
    valid_split: Any = None,
    ease_max_items: int = EASE_MAX_ITEMS,
    knn_max_items: int | None = None,
) -> tuple[dict[str, dict[str, Rankings]], dict[str, Any]]:
    """RecentPop (popularity of the last N days), ItemKNN and EASE tuned on a validation split of
    ``split.train`` and refitted on all of it.

    The validation split is ``valid_split`` (the pipeline's, shared with every model), else
    :func:`twotower_hgnn.data.split.validation_split` (last ``val_frac`` of the training time range for
    temporal splits) with the protocol settings of ``protocol``. Returns
    (models ``{"ItemKNN": {target: Rankings}, "EASE": {...}}`` ready for ``evaluate_models``, info
    ``{"ItemKNN": {"best", "table", "fit_seconds"}, "EASE": {...} or {"skipped": reason}}``). EASE is
    skipped above ``ease_max_items`` items (its inverse is dense ``n_items^2``, cubic time), ItemKNN above
    ``knn_max_items`` (None = never; its similarities are computed in dense item x catalogue blocks, so
    its time grows as items x catalogue per grid point).
    """
    from twotower_hgnn.data.split import validation_split
    from twotower_hgnn.eval.protocol import build_protocol

    cfg = protocol.config
    vsplit = validation_split(dataset, split, frac=val_frac) if valid_split is None else valid_split
    vproto = build_protocol(dataset, vsplit, list(protocol.targets), **_same_protocol(cfg))
    n_u, n_i = dataset.num_users, dataset.num_items
    knn_ok, ease_ok = knn_max_items is None or n_i <= knn_max_items, ease_applicable(n_i, ease_max_items)
    # the user x item matrices only when a model reads them (~200M non-zeros each at the paper's scale,
    # where both item caps skip ItemKNN and EASE)
    Xv, X = (
        (interaction_matrix(vsplit.train, n_u, n_i, events), interaction_matrix(split.train, n_u, n_i, events))
        if knn_ok or ease_ok
        else (None, None)
    )
    models: dict[str, dict[str, Rankings]] = {}
    info: dict[str, Any] = {
        "validation": {
            "train_rows": int(len(vsplit.train)),
            "test_rows": int(len(vsplit.test)),
            "protocol": vproto.stats(),
        }
    }
    # (name, fit_rank factory, grid, applicable, (validation data, training data)) — the factories take
    # (protocol, data, depth): an interaction matrix for ItemKNN/EASE, the interaction table for RecentPop
    specs = [
        ("RecentPop", recent_fit_rank, RECENT_GRID, True, (vsplit.train, split.train)),
        ("ItemKNN", knn_fit_rank, knn_grid, knn_ok, (Xv, X)),
        ("EASE", ease_fit_rank, ease_grid, ease_ok, (Xv, X)),
    ]
    skip = {
        "EASE": ease_skip_reason(n_i, ease_max_items),
        "ItemKNN": skip_reason("ItemKNN", n_i, knn_max_items or 0, "eval.knn_max_items"),
    }
    for name, factory, grid, ok, (val_data, data) in specs:
        if not ok:
            info[name] = {"skipped": skip[name]}
            continue
        t0 = time.perf_counter()
        best, table = tune(factory(vproto, val_data, depth), grid, vproto, k)
        t1 = time.perf_counter()
        models[name] = factory(protocol, data, depth)(best)
        info[name] = {
            "best": best,
            "table": table,
            "tune_seconds": round(t1 - t0, 3),
            "fit_seconds": round(time.perf_counter() - t1, 3),
        }
    return models, info
