"""Per-user metrics and paired-bootstrap intervals of metric differences between models.

* :func:`per_user_metrics` — hit@K, reciprocal rank within the depth, recall@K and NDCG@K of every user
  of one segment, aligned on the protocol's users; ``compute_metrics``' HR / MRR / Recall / NDCG are
  exactly the means of these arrays over the users the model ranks.
* :func:`paired_bootstrap` — the difference of two per-user metric arrays of the **same users**:
  ``diff = mean(a - b)`` and the percentile interval of the mean over ``n_boot`` resamples of the users
  with replacement (one resample shared by both models: a paired bootstrap). ``excludes_zero`` is the
  two-sided test at level ``alpha``.
* :func:`best_baseline_intervals` — for every target type and segment, the best baseline (highest HR@K
  among the baseline models with a result on that segment; ties to the first in result order) and the
  interval of every other model's HR@K difference from it, on the users both rank (a model that only
  serves warm users is compared on those).
* :func:`per_user_frame` — one row per (target, segment, model, user) for ``per_user.parquet``.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping, Sequence

import numpy as np

from twotower_hgnn.eval.metrics import check_rankings, user_scores
from twotower_hgnn.eval.protocol import EvalProtocol, Rankings, TargetProtocol

PER_USER_FIELDS: tuple[str, ...] = ("hit", "rr", "recall", "ndcg")  # the columns of metrics.user_scores
_BLOCK = 1 << 22  # resampled elements per bootstrap block (32 MiB of int64 indices)


def per_user_metrics(
    tp: TargetProtocol,
    rk: Rankings,
    segment: str = "all",
    k: int = 10,
    depth: int = 100,
    name: str = "per_user_metrics",
) -> dict[str, np.ndarray]:
    """Per-user metrics of one model on one segment of one target type.

    Returns, aligned on ``tp.users[tp.segment(segment)]`` (``S`` users):
      ``users`` int64 ``[S]``; ``covered`` bool ``[S]`` (the model ranks the user); ``hit`` (hit@k, 0/1),
      ``rr`` (1 / rank of the first hit within ``depth``, 0 if none), ``recall`` (@k), ``ndcg`` (@k):
      float64 ``[S]``, NaN where not covered.
    Validates the rankings like ``compute_metrics`` (catalogue ids or -1).
    """
    pos = tp.segment(segment)
    rows = rk.rows_for(tp.users[pos])
    cov = rows >= 0
    rel = tp.relevant.take(pos[cov])
    ranked = check_rankings(rk.items[rows[cov]], rel, tp.catalogue, name)
    out: dict[str, np.ndarray] = {"users": tp.users[pos], "covered": cov}
    scores = user_scores(ranked, rel, k, depth)
    for j, f in enumerate(PER_USER_FIELDS):
        col = np.full(pos.size, np.nan)
        col[cov] = scores[:, j]
        out[f] = col
    return out


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, Any]:
    """Paired bootstrap of ``mean(a - b)`` over users.

    Args:
      a, b: float ``[U]`` per-user metrics of two models on the same users (same order).
      n_boot: resamples; seed: the resampling seed (same seed, same inputs -> same result).
      alpha: the interval is the ``[alpha/2, 1 - alpha/2]`` percentile interval (95 % by default).

    Returns ``{"diff", "lo", "hi", "excludes_zero", "n_users", "n_boot"}``; with ``U == 0`` the numbers
    are NaN and ``excludes_zero`` False.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_bootstrap: a {a.shape} and b {b.shape} must be equal 1-d shapes")
    if n_boot < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"paired_bootstrap: n_boot={n_boot} must be >= 1 and alpha={alpha} in (0, 1)")
    d = a - b
    n = d.size
    if n == 0:
        return {
            "diff": float("nan"),
            "lo": float("nan"),
            "hi": float("nan"),
            "excludes_zero": False,
            "n_users": 0,
            "n_boot": int(n_boot),
        }
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    step = max(1, _BLOCK // n)  # depends on n only: deterministic in (seed, n)
    for lo in range(0, n_boot, step):
        idx = rng.integers(0, n, size=(min(step, n_boot - lo), n))
        means[lo : lo + idx.shape[0]] = d[idx].mean(axis=1)
    lo_q, hi_q = np.percentile(means, [50.0 * alpha, 100.0 - 50.0 * alpha])
    return {
        "diff": float(d.mean()),
        "lo": float(lo_q),
        "hi": float(hi_q),
        "excludes_zero": bool(lo_q > 0.0 or hi_q < 0.0),
        "n_users": int(n),
        "n_boot": int(n_boot),
    }


def _dense(record: Mapping[str, Any], n_users: int, field: str) -> np.ndarray:
    """float64 ``[n_users]`` (protocol positions) of one per-user record's ``field``; NaN = not ranked."""
    out = np.full(n_users, np.nan)
    out[np.asarray(record["positions"], dtype=np.int64)] = record[field]
    return out


def best_baseline_intervals(
    per_user: Sequence[Mapping[str, Any]],
    results: Sequence[Mapping[str, Any]],
    protocol: EvalProtocol,
    baselines: Collection[str],
    k: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """``{target: {segment: {model: {"vs", "metric", "diff", "lo", "hi", "significant", "n_users"}}}}``.

    Args:
      per_user: records ``{"model", "target_type", "positions" (int64 [C] into tp.users), "hit", "rr"}``
        (``report.evaluate_models``' ``per_user``).
      results: result rows (``evaluate_models``' ``results``); the best baseline of a segment is the
        baseline with the highest ``hr@k`` row there (ties: first row).
      baselines: names of the baseline models.
    Every model with per-user data on the segment other than the best baseline gets an entry; pairs are
    the users both rank.
    """
    dense = {(r["model"], r["target_type"]): r for r in per_user}
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    groups = list(dict.fromkeys((r["target_type"], r["segment"]) for r in results))
    for target, seg in groups:
        cands = [r for r in results if (r["target_type"], r["segment"]) == (target, seg) and r["model"] in baselines]
        if not cands:
            continue
        hrs = [float(r["metrics"][f"hr@{k}"]) for r in cands]
        best = cands[int(np.argmax(hrs))]["model"]
        if (best, target) not in dense:
            continue
        tp = protocol[target]
        pos = tp.segment(seg)
        ref = _dense(dense[(best, target)], tp.n_users, "hit")[pos]
        for (model, t), rec in dense.items():
            if t != target or model == best:
                continue
            hit = _dense(rec, tp.n_users, "hit")[pos]
            both = ~np.isnan(hit) & ~np.isnan(ref)
            if not both.any():
                continue
            bs = paired_bootstrap(hit[both], ref[both], n_boot, seed)
            out.setdefault(target, {}).setdefault(seg, {})[model] = {
                "vs": best,
                "metric": f"hr@{k}",
                "diff": bs["diff"],
                "lo": bs["lo"],
                "hi": bs["hi"],
                "significant": bs["excludes_zero"],
                "n_users": bs["n_users"],
            }
    return out


def per_user_frame(
    per_user: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]], protocol: EvalProtocol
) -> Any:
    """pandas DataFrame ``target, segment, model, user_idx, hit, rr``: one row per user of every scored
    (model, target, segment) result row (the users behind that row's HR@K and MRR)."""
    import pandas as pd

    dense = {(r["model"], r["target_type"]): r for r in per_user}
    parts = []
    for r in results:
        rec = dense.get((r["model"], r["target_type"]))
        if rec is None:
            continue
        tp = protocol[r["target_type"]]
        pos = tp.segment(r["segment"])
        parts.append(
            pd.DataFrame(
                {
                    "target": r["target_type"],
                    "segment": r["segment"],
                    "model": r["model"],
                    "user_idx": tp.users[pos],
                    "hit": _dense(rec, tp.n_users, "hit")[pos].astype(np.int8),
                    "rr": _dense(rec, tp.n_users, "rr")[pos],
                }
            )
        )
    if not parts:
        return pd.DataFrame(
            {
                "target": pd.Series(dtype=str),
                "segment": pd.Series(dtype=str),
                "model": pd.Series(dtype=str),
                "user_idx": pd.Series(dtype=np.int64),
                "hit": pd.Series(dtype=np.int8),
                "rr": pd.Series(dtype=np.float64),
            }
        )
    return pd.concat(parts, ignore_index=True)
