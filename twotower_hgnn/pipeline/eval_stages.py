"""The evaluation and serving floors of the pipeline: the report (every model and baseline under the
paper's protocol, with bootstrap intervals), the export (index, ids, manifest) and the opt-in batch top-K
of every user (``topk``)."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twotower_hgnn.io import atomic_save_npy, atomic_write_json, atomic_write_parquet
from twotower_hgnn.pipeline.config import previous_version, run_config_dict
from twotower_hgnn.pipeline.context import RunContext, log

BASELINES = ("Popularity", "RecentPop", "ItemKNN", "EASE")
MODEL_ORDER = ("Popularity", "RecentPop", "ItemKNN", "EASE", "LLM-KNN", "HGNN", "HGNN-w-users", "2T", "2T-HGNN")


# ------------------------------------------------------------------------------------------ evaluate
def evaluate_key(ctx: RunContext) -> dict:
    ev = ctx.cfg.config.eval
    return {
        "k": ev.k,
        "exclude_seen": ev.exclude_seen,
        "targets": list(ev.targets),
        "baselines": list(BASELINES),
        "sample_users": ev.sample_users,
        "ease_max_items": ev.ease_max_items,
        "knn_max_items": ev.knn_max_items,
    }


def evaluate_stage(ctx: RunContext, out: Path) -> dict:
    """``report.{json,md}``, ``per_user.parquet`` and plots (``eval.report``)."""
    from twotower_hgnn.eval.plots import plot_report
    from twotower_hgnn.eval.report import write_report

    report = evaluate_run(ctx)
    write_report(report, out)
    plot_report(report, out)
    _plot_two_tower_curves(ctx, out)
    return {"rows": len(report["results"])}


def _plot_two_tower_curves(ctx: RunContext, out: Path) -> None:
    """``training_two_tower_<model>.png``: the training and validation curves of the length-selection run
    (loss, validation HR@k) beside the refit's loss (the report holds only the refit's loss history)."""
    from twotower_hgnn.eval.plots import plot_training_curves

    k = ctx.cfg.config.eval.k
    for tag in ctx.two_tower_cfgs:
        h = json.loads((ctx.path("two_tower") / tag / "history.json").read_text())
        rows = [{"step": r["step"], "selection: train loss": r["loss"]} for r in h.get("selection_history") or []]
        rows += [{"step": r["step"], f"selection: validation HR@{k}": r["val"]} for r in h.get("val_history") or []]
        rows += [{"step": r["step"], "refit: train loss": r["loss"]} for r in h.get("history") or []]
        if rows:
            plot_training_curves(rows, out / f"training_two_tower_{tag}.png", title=f"two_tower/{tag}")


def _knn_baselines(ctx: RunContext, t: str, tp: Any, models: dict[str, dict[str, Any]]) -> None:
    """Popularity and the paper's embedding-KNN baselines of target ``t`` (full runs only)."""
    from twotower_hgnn.eval.baselines import knn_rankings, popularity_rankings, rank_users

    models.setdefault("Popularity", {})[t] = popularity_rankings(tp)
    models.setdefault("LLM-KNN", {})[t] = knn_rankings(tp, ctx.content)
    models.setdefault("HGNN", {})[t] = knn_rankings(tp, ctx.hgnn_emb)
    if ctx.users_emb is not None:
        # a user's own node embedding against the target items' (users with no training stream have a
        # features-only embedding, so they are ranked but essentially at random)
        models.setdefault("HGNN-w-users", {})[t] = rank_users(
            tp, ctx.users_emb[ctx.ds.num_items + tp.users], ctx.users_emb[tp.catalogue]
        )


def _two_tower_rankings(ctx: RunContext, t: str, tp: Any, models: dict, training: dict) -> None:
    """The trained two-tower models of target ``t``: user vectors as of each user's cut, exact ranking."""
    from twotower_hgnn.eval.baselines import rank_users
    from twotower_hgnn.models.encode import item_vectors, user_vectors
    from twotower_hgnn.retrieval import ExactIndex
    from twotower_hgnn.serving import load_model

    tt_dir = ctx.path("two_tower")
    for tag, tcfg in ctx.two_tower_cfgs.items():
        if tcfg.target_type != t:
            continue
        res = load_model(tt_dir / tag)
        uv = user_vectors(res, ctx.ds, ctx.train_split.train, tp.users, ctx.split.user_as_of(tp.users))
        iv, ids = item_vectors(res)
        if not np.array_equal(ids, tp.catalogue):
            raise RuntimeError(
                f"two-tower {tag}: item table ({ids.size} items) != the {t} catalogue ({tp.catalogue.size})"
            )
        # the model's item table and history table (~4 GB for the paper's podcasts) go before the ranking
        # copies the 3.5M item vectors to the device; the host vectors go once the (search-only) index
        # holds them, and the index before the next model encodes its own
        del res
        index = ExactIndex(iv, keep_host=False)
        del iv
        models.setdefault("2T-HGNN" if tcfg.use_hgnn else "2T", {})[t] = rank_users(tp, uv, None, index=index)
        del uv, index
        hist = json.loads((tt_dir / tag / "history.json").read_text())
        training[f"two_tower/{tag}"] = {
            k: hist.get(k) for k in ("history", "val_history", "stop_reason", "best_step", "best_val", "refit_steps")
        }


def evaluate_run(ctx: RunContext) -> dict[str, Any]:
    """Scores the baselines and the two-tower models under the paper's protocol; the report dict.

    Besides the paper's baselines, RecentPop, ItemKNN and EASE (``eval.item_baselines``) are tuned on the
    run's validation split and refitted on the training part; every model's HR@K gets a paired-bootstrap
    interval of its difference from the best baseline of its segment."""
    from twotower_hgnn.eval.item_baselines import tuned_item_baselines
    from twotower_hgnn.eval.protocol import build_protocol
    from twotower_hgnn.eval.report import DEFAULT_BASELINES, build_report, evaluate_models

    from twotower_hgnn.tracking import Progress

    cfg, ev = ctx.cfg, ctx.cfg.config.eval
    # sample_users > 0: only the sampled users' sets are built (= sample_users of the whole protocol)
    protocol = build_protocol(
        ctx.ds, ctx.split, list(ev.targets), exclude_seen=ev.exclude_seen, sample=(ev.sample_users, cfg.seed)
    )
    models: dict[str, dict[str, Any]] = {}
    training: dict[str, Any] = {}
    # progress over the phases: per target its baselines and its two-tower models, then the tuned item
    # baselines, then the metrics and intervals of every model
    n_tt = {t: sum(c.target_type == t for c in ctx.two_tower_cfgs.values()) for t in protocol.targets}
    total = sum(n_tt.values()) + (0 if cfg.ablation else len(n_tt) + 1) + 1
    prog = Progress(total, desc="[evaluate]", unit="phases", enabled=None, final="shown")
    for t, tp in protocol.targets.items():
        if not cfg.ablation:
            _knn_baselines(ctx, t, tp, models)
            prog.update(1, at=f"{t} baselines")
        # the two-towers read their own tables: the run's content and HGNN embeddings (2.8 GB at the paper's
        # 3.75M items) are dropped while they rank, and read again for the next target's baselines (~1 s)
        ctx.forget("content", "hgnn_emb")
        _two_tower_rankings(ctx, t, tp, models, training)
        prog.update(n_tt[t], at=f"{t} two-tower")
    if not cfg.ablation:
        cf, cf_info = tuned_item_baselines(
            ctx.ds,
            ctx.train_split,
            protocol,
            k=ev.k,
            valid_split=ctx.valid,
            ease_max_items=ev.ease_max_items,
            knn_max_items=ev.knn_max_items or None,
        )
        models.update(cf)
        training["item_baselines"] = {
            m: {k: v for k, v in i.items() if k != "table"} for m, i in cf_info.items() if isinstance(i, dict)
        }
        prog.update(1, at="item baselines")
    models = {m: models[m] for m in MODEL_ORDER if m in models}
    evaluation = evaluate_models(models, protocol, k=ev.k, baselines=DEFAULT_BASELINES)
    prog.update(1, at="metrics")
    prog.close()
    hgnn_hist = ctx.path("hgnn") / "history.json"
    if hgnn_hist.exists():
        training["hgnn"] = json.loads(hgnn_hist.read_text())
    conf = run_config_dict(cfg)
    # the report records what it depends on: not the settings of the stages after it (the batch top-K), which
    # neither change it nor recompute it when they change (config.json beside the run has every setting)
    conf["config"].pop("topk", None)
    # how the graph is computed (the engine, its memory limit) gives the same edges: not a result setting
    for k in ("engine", "memory_limit"):
        conf["config"]["graph"].pop(k, None)
    conf["hgnn_train"] = ctx.hgnn_cfg.to_dict()
    conf["two_tower_train"] = {k: v.to_json() for k, v in ctx.two_tower_cfgs.items()}
    return build_report(evaluation, protocol, k=ev.k, config=conf, dataset=ctx.ds, split=ctx.split, training=training)


# ------------------------------------------------------------------------------------------ export
def export_key(ctx: RunContext) -> dict:
    from twotower_hgnn.serving_export import EXPORT_FORMAT

    return {"targets": list(ctx.cfg.config.eval.targets), "index": ctx.cfg.config.export.index, "format": EXPORT_FORMAT}


def export_stage(ctx: RunContext, out: Path) -> dict:
    """A self-contained export (``serving_export``): per served target type the 2T-HGNN model with its user
    store and an index of kind ``export.index`` (recall measured against exact search), item ids and HGNN
    embeddings, MANIFEST.json. ``Recommender.load(out)`` serves it without the rest of the version."""
    from twotower_hgnn import __version__
    from twotower_hgnn.serving_export import EXPORT_FORMAT, export_model

    cfg, runner, ds = ctx.cfg, ctx.runner, ctx.ds
    emb_df = pd.DataFrame({"item_id": ds.items["item_id"].to_numpy(), "item_type": ds.items["item_type"].to_numpy()})
    n_items, item_types = ds.num_items, list(ds.item_types)
    prev = previous_version(cfg)
    new_items: list[str] = []
    if prev is not None:
        old = set(pd.read_parquet(prev / "export" / "item_ids.parquet")["item_id"].tolist())
        new_items = sorted(set(emb_df["item_id"].tolist()) - old)
    # the models are exported from their own directories: the dataset (~10 GB at the paper's scale) goes
    # before the largest one's item vectors, index and recall queries are built
    del ds
    ctx.release_data()
    atomic_write_parquet(emb_df, out / "item_ids.parquet")
    hgnn = np.load(ctx.path("hgnn") / "item_embeddings.npy", mmap_mode="r")  # not kept as ctx.hgnn_emb
    atomic_save_npy(out / "hgnn_embeddings.npy", np.asarray(hgnn, np.float32))
    del hgnn
    served = {}
    for tag, tcfg in ctx.two_tower_cfgs.items():
        if not tcfg.use_hgnn:
            continue
        t = tcfg.target_type
        entry = export_model(ctx.path("two_tower") / tag, out / t, index=cfg.config.export.index, seed=cfg.seed)
        served[t] = {"model": t, "trained_as": tag, **entry}
        ix = entry["index"]
        log(f"[export] {t}: {entry['items']} items, {ix['kind']} index, recall@{ix['k']} {ix['recall']}")
    g = json.loads((ctx.path("graph") / "stats.json").read_text())
    atomic_write_json(
        out / "MANIFEST.json",
        {
            "format": EXPORT_FORMAT,
            "package_version": __version__,
            "version": cfg.version,
            "dataset": cfg.dataset_tag,
            "ablation": cfg.ablation,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "fingerprints": {
                s: runner.results[ctx.names[s]].fingerprint
                for s in ("graph", "content", "hgnn", "two_tower", "evaluate")
            },
            "item_types": item_types,
            "served": served,
            "default_target": "audiobook" if "audiobook" in served else next(iter(sorted(served)), None),
            "n_items": n_items,
            "previous_version": prev.name if prev else None,
            "new_items": new_items,
            "graph": {k: g.get(k) for k in ("relations",) if k in g},
        },
    )
    if new_items:
        log(
            f"[export] {len(new_items)} item(s) new since {prev.name}: {new_items[:5]}{' ...' if len(new_items) > 5 else ''}"
        )
    return {"served": list(served), "new_items": len(new_items)}


# ------------------------------------------------------------------------------------------ topk
def with_topk(ctx: RunContext) -> bool:
    """The batch top-K stage runs when ``topk.k`` > 0, in the main run only (not in ablations or Table 1's
    reference run, whose exports are for comparison)."""
    return ctx.cfg.config.topk.k > 0 and not ctx.cfg.ablation and not ctx.cfg.table1


def topk_key(ctx: RunContext) -> dict:
    from twotower_hgnn.serving_batch import SCHEMA

    tk = ctx.cfg.config.topk
    key = {"k": tk.k, "chunk_users": tk.chunk_users, "schema": SCHEMA.names}
    return {**key, "sample_users": tk.sample_users, "seed": ctx.cfg.seed} if tk.sample_users else key


def topk_stage(ctx: RunContext, out: Path) -> dict:
    """The top ``topk.k`` items of every user of the store, per served target type, from the export
    (``serving_batch.batch_recommend_export``): ``top<k>-<target>.parquet`` with ``user_id, rank, item_id,
    score`` (rank 1 = best; at most k rows per user: fewer only where the user streamed most of the
    catalogue), as of the export's snapshot, consumed items excluded — what ``Recommender.recommend`` answers."""
    from twotower_hgnn.serving_batch import batch_recommend_export

    tk = ctx.cfg.config.topk
    res = batch_recommend_export(
        ctx.path("export"),
        out,
        k=tk.k,
        chunk_users=tk.chunk_users,
        progress="console",
        sample=(tk.sample_users, ctx.cfg.seed),
    )
    summ = {}
    for t, r in res.items():
        name = Path(r["path"]).name
        log(f"[topk] {t}: {r['rows']} rows for {r['users']} users (top {r['k']}) in {r['seconds']:.1f}s -> {name}")
        summ[t] = {"file": name, "users": r["users"], "rows": r["rows"], "k": r["k"]}
    return summ
