"""The model floors of the pipeline: HGNN, the optional HGNN-w-users baseline, the two-tower models."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from twotower_hgnn.data.schema import Dataset
from twotower_hgnn.data.split import Split, known_at_cut
from twotower_hgnn.io import atomic_save_npy, atomic_write_json
from twotower_hgnn.pipeline.context import RunContext, log


# ------------------------------------------------------------------------------------------ hgnn
def hgnn_key(ctx: RunContext) -> dict:
    from sampler.factory import resolve_sampler

    return {
        "hgnn": ctx.hgnn_cfg.to_dict(),
        "warm_start": ctx.prev.name if ctx.prev else None,
        "sampler": resolve_sampler(ctx.cfg.config.sampler),
    }


def _hgnn_warm_start(ctx: RunContext) -> dict[str, Any]:
    """``{"init_params_path": ...}`` when the previous version's HGNN has the same architecture."""
    prev_dir = ctx.prev / ctx.names["hgnn"] if ctx.prev is not None else None
    if prev_dir is None or not (prev_dir / "params.npz").exists():
        return {}
    prev_model = json.loads((prev_dir / "history.json").read_text())["config"]["model"]
    if prev_model != ctx.hgnn_cfg.model.to_dict():
        log(
            f"[hgnn] no warm start: the model config changed since {ctx.prev.name} ({prev_model} -> "
            f"{ctx.hgnn_cfg.model.to_dict()})"
        )
        return {}
    log(f"[hgnn] warm start from {ctx.prev.name}")
    return {"init_params_path": str(prev_dir / "params.npz")}


def hgnn_stage(ctx: RunContext, out: Path) -> dict:
    """Trains the HGNN on the training graph; embeds every item over the full graph (train + held-out
    edges: every co-listen known at the cut carries messages)."""
    from sampler.factory import sampler_factory
    from twotower_hgnn.checkpoint import save_params
    from twotower_hgnn.inference import embed_items
    from twotower_hgnn.train.hgnn import train_hgnn

    hcfg = ctx.hgnn_cfg
    train_graph, full_graph, val_edges = ctx.graphs
    res = train_hgnn(
        train_graph,
        ctx.content,
        val_edges,
        hcfg,
        ctx.work_dir("hgnn"),
        sampler_factory=sampler_factory(ctx.cfg.config.sampler),
        logdir=ctx.logdir("hgnn"),
        **_hgnn_warm_start(ctx),
    )
    emb = embed_items(res.params, hcfg.model, full_graph, ctx.content, relations=ctx.relations)
    atomic_save_npy(out / "item_embeddings.npy", np.asarray(emb, np.float32))
    save_params(out / "params.npz", res.params)
    atomic_write_json(
        out / "history.json",
        {
            "history": res.history,
            "baseline": res.baseline,
            "best_metric": res.best_metric,
            "best_epoch": res.best_epoch,
            "epochs_run": res.epochs_run,
            "steps": res.steps,
            "wall_s": res.wall_s,
            "stop_reason": res.stop_reason,
            "config": hcfg.to_dict(),
        },
    )
    log(  # the trainer printed why it stopped; this line: the run's figures against the random baseline
        f"[hgnn] {res.steps} steps / {res.epochs_run} full epochs in {res.wall_s:.0f}s ({res.stop_reason}); "
        f"best val MRR {res.best_metric:.4f} (random {res.baseline['val_mrr']:.4f})"
        + (" -- the wall-clock safety net ended it: not reproducible" if res.stop_reason == "max_time" else "")
    )
    return {
        "best_val_mrr": res.best_metric,
        "epochs": res.epochs_run,
        "wall_s": res.wall_s,
        "stop_reason": res.stop_reason,
    }


# ------------------------------------------------------------------------------------------ hgnn_users
def users_hgnn_cfg(ctx: RunContext):
    """The HGNN-w-users training config: the run's HGNN config on every relation of the user-item graph."""
    from twotower_hgnn.pipeline.config import hgnn_config

    return dataclasses.replace(hgnn_config(ctx.cfg, None), relations=None)


def hgnn_users_key(ctx: RunContext) -> dict:
    from sampler.factory import resolve_sampler

    return {"hgnn": users_hgnn_cfg(ctx).to_dict(), "sampler": resolve_sampler(ctx.cfg.config.sampler)}


def hgnn_users_stage(ctx: RunContext, out: Path) -> dict:
    """The HGNN-w-users baseline: an HGNN on the tripartite user-item graph (``user_graph.py``)."""
    from sampler.factory import sampler_factory
    from twotower_hgnn.graph import holdout_edges
    from twotower_hgnn.inference import embed_items
    from twotower_hgnn.train.hgnn import train_hgnn
    from twotower_hgnn.user_graph import tripartite_graph, user_node_features

    ucfg = users_hgnn_cfg(ctx)
    g = tripartite_graph(ctx.ds, ctx.split.train)
    g_train, val = holdout_edges(g, frac=0.1, seed=ctx.cfg.seed)
    feats = user_node_features(ctx.ds, g, ctx.content)
    res = train_hgnn(
        g_train,
        feats,
        val,
        ucfg,
        ctx.work_dir("hgnn_users"),
        sampler_factory=sampler_factory(ctx.cfg.config.sampler),
        logdir=ctx.logdir("hgnn_users"),
        name="hgnn_users",
    )
    atomic_save_npy(out / "node_embeddings.npy", np.asarray(embed_items(res.params, ucfg.model, g, feats), np.float32))
    atomic_write_json(
        out / "history.json",
        {
            "history": res.history,
            "baseline": res.baseline,
            "best_metric": res.best_metric,
            "wall_s": res.wall_s,
            "stop_reason": res.stop_reason,
            "config": ucfg.to_dict(),
            "graph": g.stats(),
        },
    )
    return {"best_val_mrr": res.best_metric, "wall_s": res.wall_s}


# ------------------------------------------------------------------------------------------ two_tower
def two_tower_key(ctx: RunContext) -> dict:
    return {
        "models": {k: v.to_json() for k, v in ctx.two_tower_cfgs.items()},
        "warm_start": ctx.prev.name if ctx.prev else None,
        "sample_users": ctx.cfg.config.eval.validation_sample,  # the validation users of early stopping
    }


def fit_two_tower(
    ds: Dataset,
    split: Split,
    valid: Split,
    content: np.ndarray,
    hgnn_emb: np.ndarray | None,
    tcfg: Any,
    workdir: Path,
    k: int,
    init: Path | None = None,
    logdir: Path | None = None,
    sample: tuple[int, int] = (0, 0),
):
    """Selects the training length on the validation split, then refits on the whole training part.

    1. Train on ``valid.train`` with early stopping on validation HR@``k`` (``eval.validation``).
    2. Train a fresh model on ``split.train`` for the best number of steps (same seed and config).
    Returns ``(final, selection)`` results (the selection's record only: its ``params`` and
    ``item_table`` are None); both runs are checkpointed (and resumed) under ``workdir``,
    their metrics written under ``logdir/select`` and ``logdir/refit`` (default: under ``workdir``).
    ``sample``: (users per segment, seed) of the validation users scored (``eval.validation_sample``; 0 = all).
    """
    from twotower_hgnn.eval.validation import two_tower_validator
    from twotower_hgnn.train.two_tower import train_two_tower

    emb = hgnn_emb if tcfg.use_hgnn else None
    init_path = init if init is not None and init.exists() else None
    score = two_tower_validator(ds, valid, tcfg.target_type, k=k, sample_users=sample[0], seed=sample[1])
    score.metric_name = f"hr@{k}"  # type: ignore[attr-defined]  (TensorBoard: valid/hr@<k>)
    logs = (lambda run: None) if logdir is None else (lambda run: logdir / run)  # noqa: E731
    sel = train_two_tower(
        ds,
        valid,
        content,
        emb,
        tcfg,
        workdir / "select",
        init_params_path=init_path,
        validate=score,
        logdir=logs("select"),
    )
    # the selection run is kept for its record (history, val_history, stop_reason, best_step): its
    # parameters and item table (3.5M podcasts, ~2 GB at the paper's scale) go before the refit trains
    sel = dataclasses.replace(sel, params=None, item_table=None)
    final = train_two_tower(
        ds,
        split,
        content,
        emb,
        dataclasses.replace(tcfg, max_steps=max(1, sel.best_step)),
        workdir / "final",
        init_params_path=init_path,
        logdir=logs("refit"),
    )
    return final, sel


def two_tower_stage(ctx: RunContext, out: Path) -> dict:
    """Each two-tower model: training length chosen on the validation split, then refitted on the whole
    training part (:func:`fit_two_tower`); the HGNN models (the served ones) saved with the user store as
    known at the cut, the 2T baselines without one."""
    from twotower_hgnn.serving import save_model

    summ = {}
    snapshot = known_at_cut(ctx.ds, ctx.split)  # the served user store: nothing from after the cut
    for tag, tcfg in ctx.two_tower_cfgs.items():
        log(f"[two_tower] training {tag}: selecting the length on validation, then refitting")
        init = ctx.prev / ctx.names["two_tower"] / tag / "params.npz" if ctx.prev is not None else None
        res, sel = fit_two_tower(
            ctx.ds,
            ctx.train_split,
            ctx.valid,
            ctx.content,
            ctx.hgnn_emb,
            tcfg,
            ctx.work_dir("two_tower") / tag,
            ctx.cfg.config.eval.k,
            init,
            ctx.logdir("two_tower", tag),
            sample=(ctx.cfg.config.eval.validation_sample, ctx.cfg.seed),
        )
        # the user store (users, music, the serving log) only where it is served: the export copies the
        # HGNN models; the 2T baseline is only scored, against the run's dataset (10M users at the paper's scale)
        save_model(res, snapshot, out / tag, with_store=tcfg.use_hgnn)
        summ[tag] = {
            "steps": res.step,
            "examples": res.n_examples,
            "selection_stop": sel.stop_reason,
            "best_val": max((v["val"] for v in sel.val_history), default=None),
        }
        atomic_write_json(
            out / tag / "history.json",
            {
                "history": res.history,
                "val_history": sel.val_history,
                "selection_history": sel.history,
                "stop_reason": sel.stop_reason,
                "best_step": sel.best_step,
                "best_val": summ[tag]["best_val"],
                "refit_steps": res.step,
            },
        )
        # both results hold their catalogue's item table (3.5M podcasts: ~2 GB each at the paper's scale):
        # dropped before the next model trains, not when the loop rebinds them after it
        del res, sel
    return summ
