"""Scoring models under the protocol and the evaluation report (``report.json``, ``report.md``, console).

``report.json`` layout (``schema_version`` 1; keys are stable, new keys may be added)::

    {
      "schema_version": 1,
      "meta": {
        "created_utc": "2026-11-27T05:00:00Z", "git_sha": "<40 hex | 'unknown'>",
        "k": 10, "depth": 100,                     # HR/Recall/NDCG cut-off K and MRR/Coverage depth
        "config": {...},                           # the run's configuration (free-form, JSON-able)
        "dataset": {...},                          # dataset_stats(): sizes, items per type, events, content
        "split": {...},                            # split_stats(): cut time, window, part sizes
        "protocol": {...},                         # EvalProtocol.config (exclusion, events, tiers)
        "protocol_stats": {target_type: {...}}     # TargetProtocol.stats() (users per segment ...)
      },
      "results": [                                 # one row per model x target type x segment
        {"model": "2T-HGNN", "target_type": "audiobook", "segment": "warm",
         "metrics": {"hr@10": 0.35, "mrr@100": 0.22, "coverage@100": 0.22, "recall@10": 0.2,
                     "ndcg@10": 0.2, "n_users": 1234}}, ...],
      "long_tail": [                               # same rows, metrics restricted to tiers 3-5
        {"model", "target_type", "segment", "tiers": [3, 4, 5], "metrics": {...}}, ...],
      "skipped": [{"model", "target_type", "segment", "reason"}, ...],   # e.g. LLM-KNN on cold users
      "intervals": {target_type: {segment: {model: {      # only when evaluate_models got `baselines`
          "vs": "EASE", "metric": "hr@10",               # the segment's best baseline (highest HR@10)
          "diff": 0.03, "lo": 0.01, "hi": 0.05,          # HR@10(model) - HR@10(vs), 95% paired bootstrap
          "significant": true, "n_users": 1234}}}},      # interval excludes 0; users both models rank
      "flags": [{"model", "target_type", "segment", "metric", "value", "reference", "rel_change"}, ...],
                                                   # metrics > 20% (relative) below a reference report
      "ablations": [ rows shaped like "results" ],  # Table 1, when given (audiobook / warm rows)
      "training": {stage: {"history": [{"step": 0, "loss": ...}, ...], ...}, ...}  # free-form per stage
    }

Metric definitions: :mod:`twotower_hgnn.eval.metrics`; Coverage values are fractions (the tables
print them as percentages). ``intervals`` and ``flags`` may be absent in older reports. Per-user hit@K
and reciprocal rank behind every result row go to ``per_user.parquet`` (columns ``target, segment,
model, user_idx, hit, rr``; :func:`write_report`), not into the JSON. The paper's tables: Table 2 =
(audiobook, warm), Table 3 = (audiobook, cold), Table 4 = (podcast, all), Table 1 = ``ablations``; other
item types get one table per (target type, segment) titled with the data's names (``report_format``).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from twotower_hgnn import errors
from twotower_hgnn.data.schema import EVENTS, Dataset
from twotower_hgnn.eval.bootstrap import best_baseline_intervals, per_user_frame
from twotower_hgnn.eval.metrics import check_rankings, metric_keys, restrict, summarise, user_scores
from twotower_hgnn.eval.protocol import SEGMENTS, EvalProtocol, Rankings
from twotower_hgnn.eval.report_format import (  # re-exported
    PAPER_TABLES,  # noqa: F401
    TABLE1_TITLE,  # noqa: F401
    format_console,  # noqa: F401
    format_flags,  # noqa: F401
    format_markdown,
    paper_tables,  # noqa: F401
)
from twotower_hgnn.io import atomic_write_json, atomic_write_parquet, atomic_write_text
from twotower_hgnn.provenance import git_sha  # noqa: F401  (re-exported: report meta)

SCHEMA_VERSION = 1
# The baseline models of the paper plus the item-CF baselines (eval.item_baselines): a typical
# ``baselines`` argument of evaluate_models.
DEFAULT_BASELINES: frozenset[str] = frozenset(
    {"Popularity", "RecentPop", "ItemKNN", "EASE", "LLM-KNN", "HGNN", "HGNN-w-users"}
)
FLAG_DROP = 0.2  # relative drop below the reference report that is flagged


class EvalReport(dict):
    """The report dict (plain JSON content) plus ``per_user``: the per-user DataFrame that
    :func:`write_report` saves as ``per_user.parquet`` (None when unknown, e.g. a loaded report)."""

    per_user: Any = None


class ReportError(errors.DataError):
    """A report file or a model's rankings do not follow the documented layout / protocol."""


def _score_model(
    name: str,
    target: str,
    rk: Rankings,
    protocol: EvalProtocol,
    k: int,
    depth: int,
    segments: Sequence[str],
    long_tail: bool,
    first_tail_tier: int,
    out: dict[str, list[dict[str, Any]]],
) -> None:
    """Scores one model on one target type: every covered user once, then one aggregate per segment."""
    tp = protocol[target]
    rows = rk.rows_for(tp.users)
    cpos = np.flatnonzero(rows >= 0)  # protocol positions this model ranks
    local = np.full(tp.n_users, -1, dtype=np.int64)
    local[cpos] = np.arange(cpos.size)
    tag = f"{name}/{target}"
    ranked = check_rankings(rk.items[rows[cpos]], tp.relevant.take(cpos), tp.catalogue, tag)
    bad = tp.exclude.take(cpos).contains(np.arange(cpos.size)[:, None], ranked)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ReportError(
            f"{tag}: user row {int(tp.users[cpos[r]])} is recommended item {int(ranked[r, c])} at "
            f"rank {int(c) + 1}, which the protocol excludes (already streamed before the split)"
        )
    rel = tp.relevant.take(cpos)
    scores = user_scores(ranked, rel, k, depth)
    out["per_user"].append(
        {"model": name, "target_type": target, "positions": cpos, "hit": scores[:, 0], "rr": scores[:, 1]}
    )
    if long_tail:
        tail = tp.tail_items(first_tail_tier)
        rel_tail = restrict(rel, tail)
        has_tail = rel_tail.sizes() > 0
        tail_rows = np.flatnonzero(has_tail)
        tail_scores = np.zeros((cpos.size, 4))
        tail_scores[tail_rows] = user_scores(ranked[tail_rows], rel_tail.take(tail_rows), k, depth)
        tiers = list(range(first_tail_tier, int(protocol.config.get("n_tiers", 5)) + 1))
    for seg in segments:
        pos = tp.segment(seg)
        key = {"model": name, "target_type": target, "segment": seg}
        if pos.size == 0:
            out["skipped"].append({**key, "reason": "segment has no evaluated user"})
            continue
        loc = local[pos]
        missing = int((loc < 0).sum())
        if missing:
            out["skipped"].append({**key, "reason": f"model ranks {pos.size - missing} of {pos.size} users"})
            continue
        out["results"].append({**key, "metrics": summarise(scores[loc], ranked[loc], tp.catalogue, k, depth)})
        if long_tail:
            lt = loc[has_tail[loc]]
            out["long_tail"].append(
                {**key, "tiers": tiers, "metrics": summarise(tail_scores[lt], ranked[loc], tail, k, depth)}
            )


def evaluate_models(
    models: Mapping[str, Mapping[str, Rankings]],
    protocol: EvalProtocol,
    k: int = 10,
    depth: int = 100,
    segments: Sequence[str] = SEGMENTS,
    long_tail: bool = True,
    first_tail_tier: int = 3,
    baselines: Collection[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores every model on every target type it ranks and every segment it fully covers.

    Args:
      models: model name -> target type -> :class:`Rankings` (any subset of users; a segment is scored
        only when the model ranks all of its users, else it is listed in ``skipped`` with the reason).
      protocol: the :class:`EvalProtocol`.
      k, depth: HR/Recall/NDCG cut-off and MRR/Coverage depth.
      segments: segment names to score.
      long_tail: also compute the tiers >= ``first_tail_tier`` view (metrics.long_tail_metrics).
      baselines: names of the baseline models (e.g. :data:`DEFAULT_BASELINES`); given, every model's
        HR@K difference from the best baseline of each segment gets a paired-bootstrap interval
        (``n_boot`` resamples, ``seed``; :func:`twotower_hgnn.eval.bootstrap.best_baseline_intervals`).

    Returns ``{"results": [...], "long_tail": [...], "skipped": [...], "intervals": {...}, "per_user":
    [...]}`` (rows as in the module docstring; ``intervals`` is empty without ``baselines``;
    ``per_user`` holds per (model, target) the protocol positions of the ranked users and their hit@K
    and reciprocal rank, NumPy arrays, not JSON). Raises :class:`ReportError` if a ranking contains an
    item the protocol excludes for that user (a model must apply ``TargetProtocol.exclude``) or a target
    type without a protocol, and ValueError for items outside the catalogue.
    """
    out: dict[str, Any] = {"results": [], "long_tail": [], "skipped": [], "per_user": []}
    for name, per_target in models.items():
        for target, rk in per_target.items():
            if target not in protocol.targets:
                raise ReportError(
                    f"model {name!r} ranks target type {target!r}, which has no protocol "
                    f"(have {sorted(protocol.targets)})"
                )
            _score_model(name, target, rk, protocol, k, depth, segments, long_tail, first_tail_tier, out)
    out["intervals"] = (
        best_baseline_intervals(out["per_user"], out["results"], protocol, baselines, k, n_boot, seed)
        if baselines
        else {}
    )
    return out


def dataset_stats(dataset: Dataset) -> dict[str, Any]:
    """Sizes of a dataset for the report's meta: ``items_per_type`` in the data's type order, and
    ``content`` (``text_content.content_source``) when the items had no text to give content features
    (``columns: genre, ...`` or ``none``; absent: the items' text or the source's own vectors, as before)."""
    from twotower_hgnn.text_content import TEXT, VECTORS, content_source

    codes = dataset.interactions["event_code"].to_numpy(dtype=np.int64)
    counts = np.bincount(codes, minlength=len(EVENTS))
    out = {
        "name": dataset.name,
        "users": dataset.num_users,
        "items": dataset.num_items,
        "items_per_type": {t: int(dataset.item_type_counts[t]) for t in dataset.item_types},
        "interactions": int(len(dataset.interactions)),
        "events": {e: int(c) for e, c in zip(EVENTS, counts)},
        "dropped": dict(dataset.dropped),
    }
    source = content_source(dataset)
    if source not in (TEXT, VECTORS):
        out["content"] = source
    return out


def split_stats(split: Any) -> dict[str, Any]:
    """Whatever of the split's scalar fields exist (cut time, history start, part sizes, segments)."""
    out: dict[str, Any] = {"train_rows": int(len(split.train)), "test_rows": int(len(split.test))}
    for field in ("cut_time", "history_start", "test_end"):
        v = getattr(split, field, None)
        if v is not None:
            out[field] = int(v)
    for field in ("warm_users", "cold_users"):
        v = getattr(split, field, None)
        if v is not None:
            out[f"n_{field}"] = int(np.size(v))
    seg = getattr(split, "segment_sizes", None)
    if seg is not None:
        out["segment_sizes"] = _jsonable(seg)
    return out


def _jsonable(obj: Any) -> Any:
    return json.loads(
        json.dumps(
            obj,
            default=lambda o: (
                o.item() if isinstance(o, np.generic) else o.tolist() if isinstance(o, np.ndarray) else str(o)
            ),
        )
    )


def build_report(
    evaluation: Mapping[str, Any],
    protocol: EvalProtocol,
    *,
    k: int = 10,
    depth: int = 100,
    config: Mapping[str, Any] | None = None,
    dataset: Dataset | None = None,
    split: Any = None,
    training: Mapping[str, Any] | None = None,
    ablations: Sequence[Mapping[str, Any]] | None = None,
    created_utc: str | None = None,
    reference: Mapping[str, Any] | None = None,
    flag_drop: float = FLAG_DROP,
) -> EvalReport:
    """Assembles the ``report.json`` dict (module docstring) from :func:`evaluate_models`' output.

    ``reference``: an earlier report (e.g. the previous version's ``report.json``); rows whose
    Coverage@depth or long-tail HR@K is more than ``flag_drop`` (relative) below the same model /
    target / segment there are listed in ``flags`` (:func:`reference_flags`). Returns an
    :class:`EvalReport` whose ``per_user`` is the per-user table of the scored rows (None when the
    evaluation carries no per-user data).
    """
    meta = {
        "created_utc": created_utc or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_sha": git_sha(),
        "k": int(k),
        "depth": int(depth),
        "config": _jsonable(dict(config or {})),
        "dataset": dataset_stats(dataset) if dataset is not None else {},
        "split": split_stats(split) if split is not None else {},
        "protocol": _jsonable(dict(protocol.config)),
        "protocol_stats": protocol.stats(),
    }
    report = {
        "schema_version": SCHEMA_VERSION,
        "meta": meta,
        "results": list(evaluation.get("results", [])),
        "long_tail": list(evaluation.get("long_tail", [])),
        "skipped": list(evaluation.get("skipped", [])),
        "ablations": list(ablations or []),
        "training": _jsonable(dict(training or {})),
        "intervals": _jsonable(dict(evaluation.get("intervals", {}))),
        "flags": [],
    }
    if reference is not None:
        report["flags"] = reference_flags(report, reference, flag_drop)
    validate_report(report)
    out = EvalReport(report)
    if evaluation.get("per_user"):
        out.per_user = per_user_frame(evaluation["per_user"], report["results"], protocol)
    return out


def reference_flags(
    report: Mapping[str, Any], reference: Mapping[str, Any], drop: float = FLAG_DROP
) -> list[dict[str, Any]]:
    """Rows of ``report`` whose Coverage@depth (``results``) or HR@K (``long_tail``, named
    ``long_tail/hr@K``) is below ``(1 - drop)`` x the same (model, target, segment) row of ``reference``
    (rows missing there, or with a zero reference value, are not compared)."""
    k, depth = int(report["meta"]["k"]), int(report["meta"]["depth"])
    flags = []
    for section, metric, label in (
        ("results", f"coverage@{depth}", f"coverage@{depth}"),
        ("long_tail", f"hr@{k}", f"long_tail/hr@{k}"),
    ):
        ref = {(r["model"], r["target_type"], r["segment"]): r["metrics"] for r in reference.get(section, [])}
        for r in report.get(section, []):
            key = (r["model"], r["target_type"], r["segment"])
            rv = float(ref.get(key, {}).get(metric, 0.0))
            v = float(r["metrics"][metric])
            if rv > 0 and v < (1.0 - drop) * rv:
                flags.append(
                    {
                        "model": key[0],
                        "target_type": key[1],
                        "segment": key[2],
                        "metric": label,
                        "value": v,
                        "reference": rv,
                        "rel_change": v / rv - 1.0,
                    }
                )
    return flags


def table1_rows(reports: Mapping[str, Mapping[str, Any]], model: str = "2T-HGNN") -> list[dict[str, Any]]:
    """Table 1 rows from one report per ablation: variant name -> that run's (model, audiobook, warm) row."""
    rows = []
    for variant, rep in reports.items():
        hit = [
            r for r in rep["results"] if (r["model"], r["target_type"], r["segment"]) == (model, "audiobook", "warm")
        ]
        if not hit:
            raise ReportError(f"ablation {variant!r}: its report has no {model}/audiobook/warm result")
        rows.append({**hit[0], "model": variant})
    return rows


_ROW_KEYS = ("model", "target_type", "segment", "metrics")


def validate_report(report: Mapping[str, Any], source: str = "report") -> None:
    """Checks the documented layout; raises :class:`ReportError` naming the first bad field."""
    for key in ("schema_version", "meta", "results", "long_tail", "skipped", "ablations", "training"):
        if key not in report:
            raise ReportError(f"{source}: missing top-level key {key!r}")
    if report["schema_version"] != SCHEMA_VERSION:
        raise ReportError(f"{source}: schema_version {report['schema_version']!r}, expected {SCHEMA_VERSION}")
    for key in ("created_utc", "git_sha", "k", "depth", "config", "dataset", "split", "protocol"):
        if key not in report["meta"]:
            raise ReportError(f"{source}: meta is missing {key!r}")
    need = metric_keys(int(report["meta"]["k"]), int(report["meta"]["depth"]))
    for section in ("results", "long_tail", "ablations"):
        for i, row in enumerate(report[section]):
            miss = [k for k in _ROW_KEYS if k not in row] or [k for k in need if k not in row["metrics"]]
            if miss:
                raise ReportError(f"{source}: {section}[{i}] is missing {miss}")


def write_report(report: Mapping[str, Any], out_dir: str | Path, per_user: Any = None) -> dict[str, Path]:
    """Writes ``report.json``, ``report.md`` and (when known) ``per_user.parquet`` atomically into
    ``out_dir``; returns their paths (keys ``json``, ``md``, ``per_user``).

    ``per_user``: the per-user DataFrame (default: ``report.per_user`` of an :class:`EvalReport`).
    """
    validate_report(report)
    out_dir = Path(out_dir)
    per_user = per_user if per_user is not None else getattr(report, "per_user", None)
    paths = {
        "json": atomic_write_json(out_dir / "report.json", report),
        "md": atomic_write_text(out_dir / "report.md", format_markdown(report)),
    }
    if per_user is not None:
        paths["per_user"] = atomic_write_parquet(per_user, out_dir / "per_user.parquet", index=False)
    return paths


def load_report(path: str | Path) -> dict[str, Any]:
    """Reads and validates a ``report.json``."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ReportError(f"{path}: cannot read a JSON report ({e})") from None
    validate_report(report, source=str(path))
    return report
