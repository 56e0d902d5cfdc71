"""The daily job: data -> split -> validation split -> graph -> content features -> HGNN -> two-tower -> evaluation -> export.

Every stage writes atomically into the *version directory* ``<out_dir>/<dataset tag>/<version>/``
(``version`` = the ``--as_of`` date, or ``default``) and is skipped when its valid outputs exist
(:mod:`twotower_hgnn.stages`), so a killed run resumes where it stopped; ``from_stage`` forces a
stage and everything after it to recompute. One version's HGNN, two-tower models and index always
belong together: the export stage's ``MANIFEST.json`` names the fingerprints of the stages it was
built from, and nothing is ever reused across versions except as a warm start.

Ablations (PAPER.md Table 1) run as *variants* inside the same version: data, split and content
features are shared; graph/HGNN/two-tower/evaluation live under ``ablation-<X>/``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from twotower_hgnn.data import load_dataset
from twotower_hgnn.data.schema import WEAK_EVENTS, Dataset
from twotower_hgnn.data.split import (  # noqa: F401  (save_split/external_split re-exported for callers)
    AUTO, Split, external_dataset, external_split, known_at_cut, load_split, save_split, split_from_files,
    temporal_split, validation_split)
from twotower_hgnn import configs
from twotower_hgnn.configs import RunConfig
from twotower_hgnn.io import atomic_save_npy, atomic_write_json, atomic_write_parquet
from twotower_hgnn.stages import StageRunner, fingerprint

STAGES: tuple[str, ...] = ("data", "split", "valid", "graph", "content", "hgnn", "hgnn_users", "two_tower", "evaluate", "export")
ABLATIONS: dict[str, str] = {
    "A": "w/o multi-edge opt. (balanced sampler off)",
    "B": "w/o weak signals",
    "C": "w/o PC-PC edges",
    "D": "w/o AB-AB edges",
    "E": "2T-GNN, AB-AB only (homogeneous)",
    "F": "2T-GNN, PC-PC only (homogeneous; audiobooks inductive)",
}
AB, PC = "audiobook", "podcast"


class PipelineError(ValueError):
    """A pipeline configuration or input that cannot run (names the flag)."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """One pipeline run: its inputs, outputs and identity, and the :class:`RunConfig` it runs with.

    Attributes:
      dataset: "movielens1m" | "synthetic" | "files".
      scale / data_seed: synthetic generator scale and seed.
      interactions / items / users: paths for ``dataset="files"``.
      test_interactions: external test split (``launch/evaluate.py``): ``interactions`` is then the
        training part and no time cut or history window is applied; each user's features are computed
        as of their last training interaction (``data.split.split_from_files``).
      valid_interactions: with ``test_interactions``: a validation file (same schema and ids). Its
        rows belong to the training part of the split and form the validation split's held-out part.
      out_dir: root of all versions.
      as_of: ISO date; the split cut and the version name (rolling history window ending there).
      warm_start: initialise the HGNN and two-tower from the latest earlier version of this dataset.
      from_stage: recompute this stage and every later one.
      ablation: one of ABLATIONS, or None for the full model and baselines.
      seed: training seed (HGNN, two-towers, validation split).
      table1: the full model as Table 1's reference row: its two-tower/evaluation/export stages live
        under ``ablation-full/`` so that they never replace the main run's (they differ in targets).
      config: every hyper-parameter and budget (``twotower_hgnn.configs``; default: the demo preset).
    """

    dataset: str = "movielens1m"
    scale: str = "tiny"
    data_seed: int = 0
    interactions: str | None = None
    items: str | None = None
    users: str | None = None
    test_interactions: str | None = None
    valid_interactions: str | None = None
    out_dir: str = "runs"
    as_of: str | None = None
    warm_start: bool = False
    from_stage: str | None = None
    ablation: str | None = None
    seed: int = 0
    table1: bool = False
    config: RunConfig = dataclasses.field(default_factory=lambda: configs.load("demo"))

    def __post_init__(self) -> None:
        if self.dataset not in ("movielens1m", "synthetic", "files"):
            raise PipelineError(f"--dataset: {self.dataset!r} is not one of movielens1m, synthetic, files")
        if self.dataset == "files":
            missing = [f for f in ("interactions", "items", "users") if not getattr(self, f)]
            if missing:
                raise PipelineError(f"--dataset=files needs --{', --'.join(missing)}")
        if self.from_stage is not None and self.from_stage not in STAGES:
            raise PipelineError(f"--from_stage: {self.from_stage!r} is not one of {STAGES}")
        if self.ablation is not None and self.ablation not in ABLATIONS:
            raise PipelineError(f"--ablation: {self.ablation!r} is not one of {sorted(ABLATIONS)}")
        if not isinstance(self.config, RunConfig):
            raise PipelineError(f"config must be a twotower_hgnn.configs.RunConfig, got {type(self.config).__name__}")
        if self.as_of is not None:
            try:
                _dt.date.fromisoformat(self.as_of)
            except ValueError as e:
                raise PipelineError(f"--as_of: {self.as_of!r} is not an ISO date (YYYY-MM-DD)") from e
        if self.test_interactions is not None and (self.as_of is not None or self.config.split.cut_quantile is not None):
            raise PipelineError("--test_interactions gives the split: it cannot be combined with --as_of/"
                                "--config.split.cut_quantile")
        if self.valid_interactions is not None and self.test_interactions is None:
            raise PipelineError("--valid_interactions needs an external split (--test_interactions, launch/evaluate.py)")

    # ------------------------------------------------------------------ naming
    @property
    def dataset_tag(self) -> str:
        if self.dataset == "synthetic":
            return f"synthetic-{self.scale}-s{self.data_seed}"
        if self.dataset == "files":
            return "files-" + fingerprint([os.path.abspath(p) for p in (self.interactions, self.items, self.users)])[:8]
        return self.dataset

    @property
    def version(self) -> str:
        return self.as_of or "default"

    def version_dir(self) -> Path:
        return Path(self.out_dir).resolve() / self.dataset_tag / self.version


# ---------------------------------------------------------------------------------- helpers
def _days(value: Any) -> Any:
    """A configuration's day count for the split functions ("auto" -> AUTO)."""
    return AUTO if value == "auto" else value


def with_targets(cfg: PipelineConfig, targets: Sequence[str]) -> PipelineConfig:
    """``cfg`` with ``config.eval.targets`` replaced."""
    ev = dataclasses.replace(cfg.config.eval, targets=tuple(targets))
    return dataclasses.replace(cfg, config=dataclasses.replace(cfg.config, eval=ev))


def run_config_dict(cfg: PipelineConfig) -> dict[str, Any]:
    """The resolved configuration of a run as saved (``<version>/config.json``, report.json's meta)."""
    ident = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "config"}
    return {**ident, "config": cfg.config.to_dict()}


def _log(msg: str) -> None:
    print(msg, flush=True)


def load_data(cfg: PipelineConfig) -> Dataset:
    """The run's dataset (a validated :class:`Dataset`)."""
    if cfg.dataset == "synthetic":
        return load_dataset("synthetic", scale=cfg.scale, seed=cfg.data_seed)
    if cfg.dataset == "files":
        if cfg.test_interactions is not None:
            return external_dataset(cfg.interactions, cfg.test_interactions, cfg.items, cfg.users,
                                    valid=cfg.valid_interactions)
        return load_dataset("files", interactions=cfg.interactions, items=cfg.items, users=cfg.users)
    return load_dataset(cfg.dataset)


def strip_weak(split: Split) -> Split:
    """Ablation B: weak signals removed from everything trained on (graph, user features, labels).

    Segments (warm/cold) and the test part are left as they are, so every variant is scored on the
    same users and relevant items.
    """
    train = split.train[~split.train["event"].isin(WEAK_EVENTS)].reset_index(drop=True)
    return dataclasses.replace(split, train=train)


def ablation_relations(ablation: str | None, type_counts: Mapping[str, int]) -> tuple[tuple[str, str], ...] | None:
    """Relations the HGNN uses under an ablation (None = all of the graph's)."""
    rel = {"C": ((AB, AB), (AB, PC)), "D": ((AB, PC), (PC, PC)), "E": ((AB, AB),), "F": ((PC, PC),)}
    return rel.get(ablation or "")


def hgnn_config(cfg: PipelineConfig, relations: Sequence[tuple[str, str]] | None):
    """The HGNN training config of a run: the configuration's, with the run's seed and ablation."""
    from twotower_hgnn.train.hgnn import resolve_sampler

    base = cfg.config.hgnn
    over: dict[str, Any] = {"seed": cfg.seed}
    if relations is not None:
        over["relations"] = tuple(f"{a}-{b}" for a, b in relations)
    if cfg.ablation in ("E", "F"):
        over["model"] = dataclasses.replace(base.model, homogeneous=True)
    if cfg.ablation == "A":
        over["balance"] = "off"
    # the device backend samples inside the jitted train step (only step indices cross from the host)
    over["fused_sampling"] = resolve_sampler(cfg.config.sampler) == "device"
    return dataclasses.replace(base, **over)


def two_tower_config(cfg: PipelineConfig, target: str, use_hgnn: bool):
    """The two-tower training config of one model of a run (the configuration's template)."""
    base = cfg.config.two_tower
    if cfg.test_interactions is not None:
        # a split given as files need not be temporal: no history window, and "popular lately" means nothing
        base = dataclasses.replace(base, history_days=None, prior_days=None, prior_as_of=False)
    return dataclasses.replace(base, target_type=target, use_hgnn=use_hgnn, seed=cfg.seed)


def fit_two_tower(ds: Dataset, split: Split, valid: Split, content: np.ndarray, hgnn_emb: np.ndarray | None,
                  tcfg: Any, workdir: Path, k: int, init: Path | None = None):
    """Selects the training length on the validation split, then refits on the whole training part.

    1. Train on ``valid.train`` with early stopping on validation HR@``k`` (``eval.validation``).
    2. Train a fresh model on ``split.train`` for the best number of steps (same seed and config).
    Returns ``(final, selection)`` results; both runs are checkpointed (and resumed) under ``workdir``.
    """
    from twotower_hgnn.eval.validation import two_tower_validator
    from twotower_hgnn.train.two_tower import train_two_tower

    emb = hgnn_emb if tcfg.use_hgnn else None
    init_path = init if init is not None and init.exists() else None
    score = two_tower_validator(ds, valid, tcfg.target_type, k=k)
    sel = train_two_tower(ds, valid, content, emb, tcfg, workdir / "select", init_params_path=init_path,
                          validate=score)
    final = train_two_tower(ds, split, content, emb, dataclasses.replace(tcfg, max_steps=max(1, sel.best_step)),
                            workdir / "final", init_params_path=init_path)
    return final, sel


def _previous_version(cfg: PipelineConfig) -> Path | None:
    """The latest earlier version of this dataset with a complete export (for --warm_start)."""
    root = cfg.version_dir().parent
    if not root.exists():
        return None
    cands = sorted(p for p in root.iterdir() if p.is_dir() and p.name < cfg.version and (p / "export" / "MANIFEST.json").exists())
    return cands[-1] if cands else None


# ---------------------------------------------------------------------------------- the job
def _file_identity(paths: Sequence[str | None]) -> list:
    out = []
    for p in paths:
        if p:
            st = os.stat(p)
            out.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    return out


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Runs (or resumes) every stage; returns the evaluation report (``report.json``'s dict)."""
    t_start = time.time()
    vdir = cfg.version_dir()
    name = stage_names(cfg)
    force = {name[s] for s in STAGES[STAGES.index(cfg.from_stage):]} if cfg.from_stage else set()
    runner = StageRunner(vdir, force=force)
    _log(f"[pipeline] {cfg.dataset_tag} version {cfg.version}{' ablation ' + cfg.ablation if cfg.ablation else ''}"
         f"{' (Table 1 reference)' if cfg.table1 else ''} "
         f"-> {vdir}")

    # -- data: validated tables (cached by their loaders); the stage records what was loaded.
    t0 = time.time()
    ds = load_data(cfg)
    wanted = cfg.config.eval.targets
    targets = tuple(t for t in wanted if int(ds.item_type_counts.get(t, 0)) > 0)
    if not targets:
        raise PipelineError(f"--config.eval.targets: the dataset has no items of type {list(wanted)}")
    if targets != wanted:
        _log(f"[pipeline] no items of type {sorted(set(wanted) - set(targets))}: evaluating {list(targets)} only")
        cfg = with_targets(cfg, targets)
    atomic_write_json(vdir / (name["evaluate"].rpartition("/")[0] or ".") / "config.json", run_config_dict(cfg))
    from twotower_hgnn.eval.report import dataset_stats

    data_key = {"dataset": cfg.dataset_tag, "files": _file_identity([cfg.interactions, cfg.items, cfg.users,
                                                                      cfg.test_interactions, cfg.valid_interactions])}
    runner.run(name["data"], data_key, lambda out: _write_json(out / "dataset.json", {
        **dataset_stats(ds), "dropped": dict(ds.dropped), "load_s": time.time() - t0}))

    # -- split (format 2: per-user as-of times of external splits are saved with the split)
    sc = cfg.config.split
    split_key = {"cut_quantile": sc.cut_quantile, "as_of": cfg.as_of, "history_days": repr(_days(sc.history_days)),
                 "test_days": repr(_days(sc.test_days)), "min_segment_users": sc.min_segment_users,
                 "external": cfg.test_interactions is not None, "valid_file": cfg.valid_interactions is not None,
                 "format": 2}

    def do_split(out: Path) -> dict:
        if cfg.test_interactions is not None:
            sp = split_from_files(ds, cfg.interactions, cfg.test_interactions, valid=cfg.valid_interactions,
                                  min_segment_users=sc.min_segment_users)
        else:
            sp = temporal_split(ds, cut_date=cfg.as_of, cut_quantile=sc.cut_quantile, history_days=_days(sc.history_days),
                                test_days=_days(sc.test_days), min_segment_users=sc.min_segment_users)
        save_split(sp, out)
        _log("[split] " + sp.summary())
        return dict(sp.segment_sizes)

    r_split = runner.run(name["split"], split_key, do_split, depends=(name["data"],))
    split = load_split(r_split.path)

    # -- validation split: the training part split again (early stopping / tuning; see data.split)
    def do_valid(out: Path) -> dict:
        from twotower_hgnn.data.readers import read_interactions

        rows = read_interactions(cfg.valid_interactions) if cfg.valid_interactions is not None else None
        vs = validation_split(ds, split, valid_interactions=rows, frac=sc.valid_frac, seed=cfg.seed)
        save_split(vs, out)
        _log("[valid] " + vs.summary())
        return dict(vs.segment_sizes)

    # later stages: ``load_split(r_valid.path)`` (strip_weak it under ablation B; add name["valid"] to depends)
    r_valid = runner.run(name["valid"], {"frac": sc.valid_frac, "seed": cfg.seed,
                                         "file": cfg.valid_interactions is not None},
                         do_valid, depends=(name["split"],))
    train_split = strip_weak(split) if cfg.ablation == "B" else split

    # -- graph (item-only co-listening graph of the training part) + 10 % held-out edges
    from sampler.csr import HeteroCSR
    from twotower_hgnn.graph import build_graph, default_graph_config, holdout_edges

    gcfg = default_graph_config(ds)

    def do_graph(out: Path) -> dict:
        g, stats = build_graph(ds, train_split.train, gcfg)
        g_train, val = holdout_edges(g, frac=0.1, seed=cfg.seed)
        g_train.save(out / "train_graph")
        np.savez(out / "val_edges.npz", **{f"{a}-{b}": e for (a, b), e in val.items()})
        g.save(out / "full_graph")
        stats = {**stats, "val_edges": {f"{a}-{b}": int(len(e)) for (a, b), e in val.items()}}
        _write_json(out / "stats.json", stats)
        _log("[graph] " + ", ".join(f"{k}: {v['edges']:,} edges" for k, v in g.stats()["relations"].items()))
        return {"relations": {k: v["edges"] for k, v in g.stats()["relations"].items()}}

    r_graph = runner.run(name["graph"], {"graph": gcfg.to_dict(), "seed": cfg.seed, "weak": cfg.ablation != "B"},
                         do_graph, depends=(name["split"],))
    train_graph = HeteroCSR.load(r_graph.path / "train_graph")
    full_graph = HeteroCSR.load(r_graph.path / "full_graph")
    with np.load(r_graph.path / "val_edges.npz") as z:
        val_edges = {tuple(k.split("-")): z[k] for k in z.files}

    # -- content features (Sentence-BERT in its own process: training never imports torch)
    def do_content(out: Path) -> dict:
        emb = compute_content_features(ds, cfg, out)
        atomic_save_npy(out / "content.npy", emb)
        return {"shape": list(emb.shape)}

    r_content = runner.run(name["content"], {"model": cfg.config.text.model, "vectors": ds.item_vectors is not None,
                                             "n_items": ds.num_items}, do_content, depends=(name["data"],))
    content = np.load(r_content.path / "content.npy")

    # -- HGNN
    from twotower_hgnn.train.hgnn import resolve_sampler

    rels = ablation_relations(cfg.ablation, ds.item_type_counts)
    hcfg = hgnn_config(cfg, rels)
    prev = _previous_version(cfg) if cfg.warm_start else None

    def do_hgnn(out: Path) -> dict:
        from twotower_hgnn.inference import embed_items
        from twotower_hgnn.train.hgnn import save_params, sampler_factory, train_hgnn

        kw: dict[str, Any] = {"sampler_factory": sampler_factory(cfg.config.sampler)}
        if prev is not None and (prev / name["hgnn"] / "params.npz").exists():
            prev_model = json.loads((prev / name["hgnn"] / "history.json").read_text())["config"]["model"]
            if prev_model == hcfg.model.to_dict():
                kw["init_params_path"] = str(prev / name["hgnn"] / "params.npz")
                _log(f"[hgnn] warm start from {prev.name}")
            else:
                _log(f"[hgnn] no warm start: the model config changed since {prev.name} ({prev_model} -> "
                     f"{hcfg.model.to_dict()})")
        res = train_hgnn(train_graph, content, val_edges, hcfg, runner.work_dir(name["hgnn"]), **kw)
        # Full graph (train + held-out edges): every co-listen known at the cut carries messages.
        emb = embed_items(res.params, hcfg.model, full_graph, content, relations=rels)
        atomic_save_npy(out / "item_embeddings.npy", np.asarray(emb, np.float32))
        save_params(out / "params.npz", res.params)
        _write_json(out / "history.json", {"history": res.history, "baseline": res.baseline,
                                           "best_metric": res.best_metric, "best_epoch": res.best_epoch,
                                           "epochs_run": res.epochs_run, "steps": res.steps, "wall_s": res.wall_s,
                                           "stop_reason": res.stop_reason, "config": hcfg.to_dict()})
        _log(f"[hgnn] stopped ({res.stop_reason}) after {res.steps} steps / {res.epochs_run} full epochs in "
             f"{res.wall_s:.0f}s; best val MRR {res.best_metric:.4f} (random {res.baseline['val_mrr']:.4f})"
             + (" -- the wall-clock safety net ended it: not reproducible" if res.stop_reason == "max_time" else ""))
        return {"best_val_mrr": res.best_metric, "epochs": res.epochs_run, "wall_s": res.wall_s,
                "stop_reason": res.stop_reason}

    r_hgnn = runner.run(name["hgnn"], {"hgnn": hcfg.to_dict(), "warm_start": prev.name if prev else None,
                                       "sampler": resolve_sampler(cfg.config.sampler)},
                        do_hgnn, depends=(name["graph"], name["content"]))
    hgnn_emb = np.load(r_hgnn.path / "item_embeddings.npy")

    # -- HGNN-w-users baseline (users as graph nodes), optional
    users_emb = None
    if cfg.config.eval.with_hgnn_users and not cfg.ablation:
        ucfg = dataclasses.replace(hgnn_config(cfg, None), relations=None)

        def do_hgnn_users(out: Path) -> dict:
            from twotower_hgnn.inference import embed_items
            from twotower_hgnn.train.hgnn import sampler_factory, train_hgnn
            from twotower_hgnn.user_graph import tripartite_graph, user_node_features

            g = tripartite_graph(ds, split.train)
            g_train, val = holdout_edges(g, frac=0.1, seed=cfg.seed)
            feats = user_node_features(ds, g, content)
            res = train_hgnn(g_train, feats, val, ucfg, runner.work_dir(name["hgnn_users"]),
                             sampler_factory=sampler_factory(cfg.config.sampler))
            atomic_save_npy(out / "node_embeddings.npy", np.asarray(embed_items(res.params, ucfg.model, g, feats), np.float32))
            _write_json(out / "history.json", {"history": res.history, "baseline": res.baseline,
                                               "best_metric": res.best_metric, "wall_s": res.wall_s,
                                               "stop_reason": res.stop_reason, "config": ucfg.to_dict(),
                                               "graph": g.stats()})
            return {"best_val_mrr": res.best_metric, "wall_s": res.wall_s}

        r_hu = runner.run(name["hgnn_users"], {"hgnn": ucfg.to_dict(), "sampler": resolve_sampler(cfg.config.sampler)},
                          do_hgnn_users, depends=(name["split"], name["content"]))
        users_emb = np.load(r_hu.path / "node_embeddings.npy")

    # -- two-tower models
    variants = [(t, True) for t in cfg.config.eval.targets] if cfg.ablation else [(t, h) for t in cfg.config.eval.targets for h in (True, False)]
    tt_cfgs = {f"{t}-{'hgnn' if h else 'nohgnn'}": two_tower_config(cfg, t, h) for t, h in variants}

    def do_two_tower(out: Path) -> dict:
        from twotower_hgnn.serving import save_model

        summ = {}
        snapshot = known_at_cut(ds, split)  # the served user store: nothing from after the cut
        valid = load_split(r_valid.path)
        valid = strip_weak(valid) if cfg.ablation == "B" else valid
        for tag, tcfg in tt_cfgs.items():
            _log(f"[two_tower] training {tag}: selecting the length on validation, then refitting")
            init = prev / name["two_tower"] / tag / "params.npz" if prev is not None else None
            res, sel = fit_two_tower(ds, train_split, valid, content, hgnn_emb, tcfg,
                                     runner.work_dir(name["two_tower"]) / tag, cfg.config.eval.k, init)
            save_model(res, snapshot, out / tag)
            summ[tag] = {"steps": res.step, "examples": res.n_examples, "selection_stop": sel.stop_reason,
                         "best_val": max((v["val"] for v in sel.val_history), default=None)}
            _write_json(out / tag / "history.json", {
                "history": res.history, "val_history": sel.val_history, "selection_history": sel.history,
                "stop_reason": sel.stop_reason, "best_step": sel.best_step, "best_val": summ[tag]["best_val"],
                "refit_steps": res.step})
        return summ

    r_tt = runner.run(name["two_tower"], {"models": {k: v.to_json() for k, v in tt_cfgs.items()},
                                          "warm_start": prev.name if prev else None}, do_two_tower,
                      depends=(name["split"], name["valid"], name["hgnn"]))

    # -- evaluation
    def do_evaluate(out: Path) -> dict:
        report = evaluate_run(cfg, ds, split, content, hgnn_emb, r_tt.path, tt_cfgs, runner, users_emb,
                              valid=load_split(r_valid.path))
        from twotower_hgnn.eval.plots import plot_report
        from twotower_hgnn.eval.report import write_report

        write_report(report, out)
        plot_report(report, out)
        return {"rows": len(report["results"])}

    r_eval = runner.run(name["evaluate"], {"k": cfg.config.eval.k, "exclude_seen": cfg.config.eval.exclude_seen, "targets": list(cfg.config.eval.targets),
                                           "baselines": ["Popularity", "RecentPop", "ItemKNN", "EASE"]},
                        do_evaluate, depends=(name["two_tower"], name["valid"], name["content"], name["hgnn"])
                        + ((name["hgnn_users"],) if users_emb is not None else ()))

    # -- export: item embeddings with ids, the retrieval index per target, the manifest
    def do_export(out: Path) -> dict:
        return export_version(cfg, ds, hgnn_emb, r_tt.path, tt_cfgs, runner, name, out)

    runner.run(name["export"], {"targets": list(cfg.config.eval.targets)}, do_export,
               depends=(name["hgnn"], name["two_tower"], name["evaluate"]))

    from twotower_hgnn.eval.report import format_console, load_report

    report = load_report(r_eval.path / "report.json")
    stage_times = {s: round(r.seconds, 1) for s, r in runner.results.items()}
    _log("[pipeline] stage seconds (0 = skipped): " + json.dumps(stage_times))
    _log(f"[pipeline] done in {time.time() - t_start:.1f}s; report: {r_eval.path / 'report.md'}")
    print(format_console(report), flush=True)
    return report


def _write_json(path: Path, obj: Any) -> dict:
    atomic_write_json(path, obj)
    return {}


# ---------------------------------------------------------------------------------- stage bodies
def compute_content_features(ds: Dataset, cfg: PipelineConfig, out: Path) -> np.ndarray:
    """float32 ``[n_items, d]`` content (Sentence-BERT) features, L2-normalised.

    Datasets that ship content vectors (large synthetic scales) use them; otherwise the item texts are
    encoded by ``launch/encode_text.py`` in a child process, so that this (training) process never
    imports torch. The encoder caches by (model, text), so re-runs do not re-encode.
    """
    if ds.item_vectors is not None:
        return np.asarray(ds.item_vectors, np.float32)
    from twotower_hgnn.text import item_texts

    texts_path = out / "_texts.parquet"
    atomic_write_parquet(pd.DataFrame({"text": item_texts(ds)}), texts_path)
    target = out / "_content.npy"
    cmd = [sys.executable, "-m", "launch.encode_text", f"--texts={texts_path}", f"--out={target}"]
    if cfg.config.text.model:
        cmd.append(f"--model={cfg.config.text.model}")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(cmd, cwd=root, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"text encoding failed (exit {proc.returncode}): {' '.join(cmd)}")
    emb = np.load(target)
    texts_path.unlink()
    target.unlink()
    if emb.shape[0] != ds.num_items:
        raise RuntimeError(f"text encoder returned {emb.shape[0]} rows for {ds.num_items} items")
    return emb.astype(np.float32)


def _model_name(use_hgnn: bool) -> str:
    return "2T-HGNN" if use_hgnn else "2T"


def evaluate_run(cfg: PipelineConfig, ds: Dataset, split: Split, content: np.ndarray, hgnn_emb: np.ndarray,
                 tt_dir: Path, tt_cfgs: Mapping[str, Any], runner: StageRunner,
                 users_emb: np.ndarray | None = None, valid: Split | None = None) -> dict[str, Any]:
    """Scores the baselines and the two-tower models under the paper's protocol; the report dict.

    Besides the paper's baselines, ItemKNN and EASE (``eval.item_baselines``) are tuned on ``valid`` (the
    run's validation split) and refitted on the training part; every model's HR@K gets a paired-bootstrap
    interval of its difference from the best baseline of its segment.

    ``users_emb`` (``[N + U, d]``, the HGNN-w-users node embeddings) adds that baseline: a user's
    own node embedding against the target items' embeddings (users with no training stream have
    a features-only embedding of zeros input, so they are ranked but essentially at random)."""
    from twotower_hgnn.eval.baselines import knn_rankings, popularity_rankings, rank_users
    from twotower_hgnn.eval.protocol import build_protocol
    from twotower_hgnn.eval.report import build_report, evaluate_models
    from twotower_hgnn.serving import load_model
    from twotower_hgnn.train.two_tower import item_vectors, user_vectors

    train_split = strip_weak(split) if cfg.ablation == "B" else split
    protocol = build_protocol(ds, split, [t for t in cfg.config.eval.targets], exclude_seen=cfg.config.eval.exclude_seen)
    models: dict[str, dict[str, Any]] = {}
    training: dict[str, Any] = {}
    for t, tp in protocol.targets.items():
        if not cfg.ablation:
            models.setdefault("Popularity", {})[t] = popularity_rankings(tp)
            models.setdefault("LLM-KNN", {})[t] = knn_rankings(tp, content)
            models.setdefault("HGNN", {})[t] = knn_rankings(tp, hgnn_emb)
            if users_emb is not None:
                models.setdefault("HGNN-w-users", {})[t] = rank_users(
                    tp, users_emb[ds.num_items + tp.users], users_emb[tp.catalogue])
        for tag, tcfg in tt_cfgs.items():
            if tcfg.target_type != t:
                continue
            res = load_model(tt_dir / tag)
            uv = user_vectors(res, ds, train_split.train, tp.users, split.user_as_of(tp.users))
            iv, ids = item_vectors(res)
            if not np.array_equal(ids, tp.catalogue):
                raise RuntimeError(f"two-tower {tag}: item table ({ids.size} items) != the {t} catalogue ({tp.catalogue.size})")
            models.setdefault(_model_name(tcfg.use_hgnn), {})[t] = rank_users(tp, uv, iv)
            hist = json.loads((tt_dir / tag / "history.json").read_text())
            training[f"two_tower/{tag}"] = {k: hist.get(k) for k in ("history", "val_history", "stop_reason",
                                                                      "best_step", "best_val", "refit_steps")}
    if not cfg.ablation:
        from twotower_hgnn.eval.item_baselines import tuned_item_baselines

        cf, cf_info = tuned_item_baselines(ds, train_split, protocol, k=cfg.config.eval.k, valid_split=valid)
        models.update(cf)
        training["item_baselines"] = {m: {k: v for k, v in i.items() if k != "table"} for m, i in cf_info.items()
                                      if isinstance(i, dict)}
    order = ["Popularity", "RecentPop", "ItemKNN", "EASE", "LLM-KNN", "HGNN", "HGNN-w-users", "2T", "2T-HGNN"]
    models = {m: models[m] for m in order if m in models}
    from twotower_hgnn.eval.report import DEFAULT_BASELINES

    evaluation = evaluate_models(models, protocol, k=cfg.config.eval.k, baselines=DEFAULT_BASELINES)
    hgnn_hist = runner.path(stage_names(cfg)["hgnn"]) / "history.json"
    if hgnn_hist.exists():
        training["hgnn"] = json.loads(hgnn_hist.read_text())
    conf = run_config_dict(cfg)
    conf["hgnn_train"] = hgnn_config(cfg, ablation_relations(cfg.ablation, ds.item_type_counts)).to_dict()
    conf["two_tower_train"] = {k: v.to_json() for k, v in tt_cfgs.items()}
    return build_report(evaluation, protocol, k=cfg.config.eval.k, config=conf, dataset=ds, split=split, training=training)


def stage_names(cfg: PipelineConfig) -> dict[str, str]:
    """Stage -> directory (relative to the version dir). Ablation X keeps its own graph (B only), HGNN,
    two-tower, evaluation and export under ``ablation-X/``; Table 1's reference run keeps its own
    two-tower/evaluation/export under ``ablation-full/``; everything else is shared."""
    if cfg.ablation:
        own, pre = {"hgnn", "two_tower", "evaluate", "export"} | ({"graph"} if cfg.ablation == "B" else set()), f"ablation-{cfg.ablation}/"
    elif cfg.table1:
        own, pre = {"two_tower", "evaluate", "export"}, "ablation-full/"
    else:
        own, pre = set(), ""
    return {s: pre + s if s in own else s for s in STAGES}


def export_version(cfg: PipelineConfig, ds: Dataset, hgnn_emb: np.ndarray, tt_dir: Path, tt_cfgs: Mapping[str, Any],
                   runner: StageRunner, name: Mapping[str, str], out: Path) -> dict:
    """Item embeddings with ids, one retrieval index per target type (2T-HGNN item vectors), MANIFEST.json."""
    from twotower_hgnn.retrieval import make_index
    from twotower_hgnn.serving import load_model
    from twotower_hgnn.train.two_tower import item_vectors

    emb_df = pd.DataFrame({"item_id": ds.items["item_id"].to_numpy(), "item_type": ds.items["item_type"].to_numpy()})
    atomic_write_parquet(emb_df, out / "item_ids.parquet")
    atomic_save_npy(out / "hgnn_embeddings.npy", np.asarray(hgnn_emb, np.float32))
    served = {}
    for tag, tcfg in tt_cfgs.items():
        if not tcfg.use_hgnn:
            continue
        res = load_model(tt_dir / tag)
        iv, ids = item_vectors(res)
        make_index("exact", iv).save(out / f"index-{tcfg.target_type}")
        served[tcfg.target_type] = {"model": str((tt_dir / tag).relative_to(runner.root)),
                                    "index": f"{name['export']}/index-{tcfg.target_type}", "items": int(ids.size)}
    prev = _previous_version(cfg)
    new_items: list[str] = []
    if prev is not None:
        old = set(pd.read_parquet(prev / "export" / "item_ids.parquet")["item_id"].tolist())
        new_items = sorted(set(ds.items["item_id"].tolist()) - old)
    g = json.loads((runner.path(name["graph"]) / "stats.json").read_text())
    manifest = {
        "version": cfg.version, "dataset": cfg.dataset_tag, "ablation": cfg.ablation,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fingerprints": {s: runner.results[name[s]].fingerprint for s in ("graph", "content", "hgnn", "two_tower", "evaluate")},
        "served": served, "n_items": ds.num_items, "previous_version": prev.name if prev else None,
        "new_items": new_items, "graph": {k: g.get(k) for k in ("relations",) if k in g},
    }
    atomic_write_json(out / "MANIFEST.json", manifest)
    if new_items:
        _log(f"[export] {len(new_items)} item(s) new since {prev.name}: {new_items[:5]}{' ...' if len(new_items) > 5 else ''}")
    return {"served": list(served), "new_items": len(new_items)}


# ---------------------------------------------------------------------------------- Table 1
def time_to_metric(history: Sequence[Mapping[str, Any]], threshold: float, key: str = "val_mrr") -> dict | None:
    """``{"wall_s", "step", "epoch"}`` at the first validation reaching ``threshold`` (None if never)."""
    for h in history:
        if h.get(key) is not None and h[key] >= threshold:
            return {"wall_s": float(h.get("wall_s", 0.0)), "step": h.get("step"), "epoch": h.get("epoch")}
    return None


def run_table1(cfg: PipelineConfig, variants: Sequence[str]) -> dict[str, Any]:
    """Runs the full model (audiobook target) and each ablation; writes and prints Table 1."""
    from twotower_hgnn.eval.report import format_console, table1_rows

    bad = [v for v in variants if v not in ABLATIONS]
    if bad:
        raise PipelineError(f"--variants: unknown ablation(s) {bad}; known {sorted(ABLATIONS)}")
    cfg = dataclasses.replace(with_targets(cfg, ("audiobook",)), ablation=None, table1=True)
    reports = {"2T-HGNN": run_pipeline(cfg)}
    for v in variants:
        reports[f"{v}) {ABLATIONS[v]}"] = run_pipeline(dataclasses.replace(cfg, ablation=v, table1=False))
    rows = table1_rows(reports)
    vdir = cfg.version_dir()
    hist = {}
    for key, sub in (("full", "hgnn"), ("A", "ablation-A/hgnn")):
        p = vdir / sub / "history.json"
        if p.exists():
            hist[key] = json.loads(p.read_text())
    timing = {}
    if "full" in hist and "A" in hist:
        # The fixed level: the lower of the two best validation MRRs — both runs reach it, so the
        # comparison is time (and steps) to the same quality. (0.95 x that was passed by both within
        # the first epoch on synthetic data: too loose to separate them.)
        thr = min(hist["full"]["best_metric"], hist["A"]["best_metric"])
        for key in ("full", "A"):
            h = hist[key]
            timing[key] = {"wall_s_to_stop": h["wall_s"], "steps_to_stop": h["steps"], "epochs": h["epochs_run"],
                           "stop_reason": h["stop_reason"], "best_val_mrr": h["best_metric"],
                           "val_mrr_threshold": thr, "to_threshold": time_to_metric(h["history"], thr)}
    out = {"rows": rows, "hgnn_training_time": timing, "config": {"dataset": cfg.dataset_tag, "preset": cfg.config.name}}
    from twotower_hgnn.io import atomic_write_text

    atomic_write_json(vdir / "ablations" / "table1.json", out)
    text = format_console({"meta": {"k": cfg.config.eval.k, "depth": 100}, "ablations": rows, "results": []})
    if timing:
        text += "\n\nHGNN training wall-clock, balanced sampler (full) vs all edges (A):\n"
        for key, t in timing.items():
            thr = t["to_threshold"]
            to_thr = "never" if thr is None else f"{thr['wall_s']:.1f}s / step {thr['step']}"
            text += (f"  {key:<5} to stop {t['wall_s_to_stop']:.1f}s / {t['steps_to_stop']} steps ({t['epochs']} epochs, "
                     f"{t['stop_reason']}); to val MRR >= {t['val_mrr_threshold']:.3f}: {to_thr}\n")
        text += ("  (seconds on a shared machine are noisy; steps are the robust figure; the level is seen only "
                 "at validations: epoch ends, and every val_every_steps steps where the preset sets it)\n")
    atomic_write_text(vdir / "ablations" / "table1.md", text + "\n")
    print(text, flush=True)
    return out


# ---------------------------------------------------------------------------------- demo output
def print_examples(cfg: PipelineConfig, k: int = 5) -> None:
    """Prints top-``k`` audiobook recommendations (titles, scores) for one warm and one cold test user,
    served from this version's export (user vector in real time + the exported index)."""
    from twotower_hgnn.serving import Recommender

    vdir = cfg.version_dir()
    split = load_split(vdir / "split")
    target = "audiobook" if "audiobook" in cfg.config.eval.targets else cfg.config.eval.targets[0]
    # the user store as known at the split (an external split's test rows can predate a user's as-of)
    rec = Recommender.from_version(vdir, target_type=target, dataset=known_at_cut(load_data(cfg), split))
    ds = rec.dataset
    for seg, users in (("warm", split.warm_users), ("cold", split.cold_users)):
        if len(users) == 0:
            print(f"\n(no {seg} test user)")
            continue
        uid = ds.users["user_id"].iloc[int(users[0])]
        recs = rec.recommend(user_id=uid, k=k, as_of=int(split.user_as_of([int(users[0])])[0]))
        print(f"\nTop {k} {target}s for {seg} user {uid}:")
        for item_id, title, score in recs:
            print(f"  {score:7.3f}  {title}  [{item_id}]")
