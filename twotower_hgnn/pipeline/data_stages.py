"""The data floors of the pipeline: data record, split, validation split, graph, content features.

Each stage is ``<name>_stage(ctx, out) -> summary`` (writes its outputs into ``out``) with
``<name>_key(ctx) -> dict`` (what its fingerprint depends on besides its upstream stages)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from twotower_hgnn.data.signal import check_relation_signal
from twotower_hgnn.data.split import split_from_files, temporal_split, validation_split
from twotower_hgnn.data.split_io import save_split
from twotower_hgnn.io import atomic_save_npy, atomic_write_json
from twotower_hgnn.pipeline.config import read_options
from twotower_hgnn.pipeline.config import days_arg
from twotower_hgnn.pipeline.context import RunContext, log


# ------------------------------------------------------------------------------------------ data
def data_key(ctx: RunContext) -> dict:
    """The dataset and the *content* digests of its input files (``config.input_digests``)."""
    return {"dataset": ctx.cfg.dataset_tag, "files": ctx.inputs}


def data_stage(ctx: RunContext, out: Path) -> dict:
    """``dataset.json``: what was loaded (counts, dropped rows, load time)."""
    from twotower_hgnn.eval.report import dataset_stats

    atomic_write_json(
        out / "dataset.json", {**dataset_stats(ctx.ds), "dropped": dict(ctx.ds.dropped), "load_s": ctx.load_s}
    )
    return {}


# ------------------------------------------------------------------------------------------ split
def split_key(ctx: RunContext) -> dict:
    sc, c = ctx.cfg.config.split, ctx.cfg
    # format 2: per-user as-of times of external splits are saved with the split
    return {
        "cut_quantile": sc.cut_quantile,
        "as_of": c.as_of,
        "history_days": repr(days_arg(sc.history_days)),
        "test_days": repr(days_arg(sc.test_days)),
        "min_segment_users": sc.min_segment_users,
        "external": c.test_interactions is not None,
        "valid_file": c.valid_interactions is not None,
        "format": 2,
        **({"read": read_options(c)} if c.dataset == "files" else {}),
    }


def split_stage(ctx: RunContext, out: Path) -> dict:
    """The temporal hold-out (or the split given as files)."""
    sc, c = ctx.cfg.config.split, ctx.cfg
    if c.test_interactions is not None:
        sp = split_from_files(
            ctx.ds,
            c.interactions,
            c.test_interactions,
            valid=c.valid_interactions,
            min_segment_users=sc.min_segment_users,
            **read_options(c),
        )
    else:
        sp = temporal_split(
            ctx.ds,
            cut_date=c.as_of,
            cut_quantile=sc.cut_quantile,
            history_days=days_arg(sc.history_days),
            test_days=days_arg(sc.test_days),
            min_segment_users=sc.min_segment_users,
        )
    # strong signal per relation of the graph to come: a relation without it is a note, none is an error
    _, notes = check_relation_signal(
        ctx.ds, sp.train, ctx.cfg.config.graph.edge_events, where=c.interactions or "split"
    )
    save_split(sp, out)
    log("[split] " + sp.summary())
    for n in notes:
        log(f"[split] note: {n}")
    return dict(sp.segment_sizes)


# ------------------------------------------------------------------------------------------ valid
def valid_key(ctx: RunContext) -> dict:
    c = ctx.cfg
    return {"frac": c.config.split.valid_frac, "seed": c.seed, "file": c.valid_interactions is not None}


def valid_stage(ctx: RunContext, out: Path) -> dict:
    """The training part split again for early stopping and tuning (``data.split.validation_split``)."""
    from twotower_hgnn.data.readers import read_interactions

    c = ctx.cfg
    rows = read_interactions(c.valid_interactions, **read_options(c)) if c.valid_interactions is not None else None
    vs = validation_split(ctx.ds, ctx.split, valid_interactions=rows, frac=c.config.split.valid_frac, seed=c.seed)
    save_split(vs, out)
    log("[valid] " + vs.summary())
    return dict(vs.segment_sizes)


# ------------------------------------------------------------------------------------------ graph
def graph_key(ctx: RunContext) -> dict:
    return {"graph": ctx.cfg.config.graph.to_dict(), "seed": ctx.cfg.seed, "weak": ctx.cfg.ablation != "B"}


def graph_stage(ctx: RunContext, out: Path) -> dict:
    """The item-only co-listening graph of the training part, and 10 % of its edges held out."""
    from twotower_hgnn.graph import build_graph, holdout_edges, parquet_source

    sp, ds = ctx.train_split, ctx.ds
    src = parquet_source(ds, None if sp.rows is None else sp.rows[:2])
    inter = sp.train
    if src is not None:
        # the engine reads the training rows from the Parquet log: the in-memory log (~5.4 GB at the
        # paper's scale) may go while it builds; the next stage that reads the data loads it again
        ds = dataclasses.replace(ds, interactions=ds.interactions.iloc[:0].copy())
        inter = ds.interactions
        del sp
        ctx.release_data()
    g, stats = build_graph(ds, inter, ctx.cfg.config.graph, parquet=src)
    g_train, val = holdout_edges(g, frac=0.1, seed=ctx.cfg.seed)
    g_train.save(out / "train_graph")
    np.savez(out / "val_edges.npz", **{f"{a}-{b}": e for (a, b), e in val.items()})
    g.save(out / "full_graph")
    atomic_write_json(
        out / "stats.json", {**stats, "val_edges": {f"{a}-{b}": int(len(e)) for (a, b), e in val.items()}}
    )
    rel = g.stats()["relations"]
    log("[graph] " + ", ".join(f"{k}: {v['edges']:,} edges" for k, v in rel.items()))
    return {"relations": {k: v["edges"] for k, v in rel.items()}}


# ------------------------------------------------------------------------------------------ content
def content_key(ctx: RunContext) -> dict:
    return {"model": ctx.cfg.config.text.model, "vectors": ctx.ds.item_vectors is not None, "n_items": ctx.ds.num_items}


def content_stage(ctx: RunContext, out: Path) -> dict:
    """float32 ``[n_items, d]`` content features from the columns the data has (``text_content.content_features``:
    the dataset's own vectors, Sentence-BERT of the item texts, or of their genre/language, or none)."""
    from twotower_hgnn.text_content import content_features

    emb, source = content_features(ctx.ds, model=ctx.cfg.config.text.model)
    log(f"[content] {source}")
    atomic_save_npy(out / "content.npy", emb.astype(np.float32))
    return {"shape": list(emb.shape), "source": source}
