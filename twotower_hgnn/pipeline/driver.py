"""The pipeline as a table of stages, and the short driver that runs it on a :class:`StageRunner`.

Each row of :data:`STAGE_TABLE` names a stage, the function that computes it (``fn(ctx, out) ->
summary``), the function giving what its fingerprint depends on besides its upstream stages, those
upstream stages, when it runs at all, and whether it reads the dataset (a large one is released while a
stage that does not read it runs, and loaded again by the next stage that does). :func:`run_stage` runs one stage alone — its upstream stages
first, each skipped when its valid outputs exist — and :func:`run_pipeline` runs every row in order.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Callable, Sequence

from twotower_hgnn.io import atomic_write_json, atomic_write_text
from twotower_hgnn.pipeline import data_stages as D
from twotower_hgnn.pipeline import eval_stages as E
from twotower_hgnn.pipeline import model_stages as M
from twotower_hgnn.pipeline.config import ABLATIONS, PipelineConfig, PipelineError, with_targets
from twotower_hgnn.pipeline.context import RunContext, discard_failed_start, log, open_run, with_hgnn_users
from twotower_hgnn.stages import StageResult


def _always(ctx: RunContext) -> bool:
    return True


@dataclasses.dataclass(frozen=True)
class Stage:
    """One row of the stage table."""

    name: str
    fn: Callable[[RunContext, Any], dict]
    key: Callable[[RunContext], dict]
    deps: tuple[str, ...] = ()
    when: Callable[[RunContext], bool] = _always
    reads_data: bool = True  # False: the dataset may be released while it runs (RunContext.release_data)


STAGE_TABLE: tuple[Stage, ...] = (
    Stage("data", D.data_stage, D.data_key),
    Stage("split", D.split_stage, D.split_key, ("data",)),
    Stage("valid", D.valid_stage, D.valid_key, ("split",)),
    Stage("graph", D.graph_stage, D.graph_key, ("split",)),
    Stage("content", D.content_stage, D.content_key, ("data",)),
    Stage("hgnn", M.hgnn_stage, M.hgnn_key, ("graph", "content"), reads_data=False),
    Stage("hgnn_users", M.hgnn_users_stage, M.hgnn_users_key, ("split", "content"), when=with_hgnn_users),
    Stage("two_tower", M.two_tower_stage, M.two_tower_key, ("split", "valid", "hgnn")),
    Stage("evaluate", E.evaluate_stage, E.evaluate_key, ("two_tower", "valid", "content", "hgnn", "hgnn_users")),
    Stage("export", E.export_stage, E.export_key, ("hgnn", "two_tower", "evaluate")),
    Stage("topk", E.topk_stage, E.topk_key, ("export",), when=E.with_topk, reads_data=False),  # the export's store
)
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGE_TABLE}


def run_stage(ctx: RunContext, name: str) -> StageResult | None:
    """Runs stage ``name`` (its upstream stages first, each skipped when valid); None when it is off."""
    stage = BY_NAME[name]
    if not stage.when(ctx):
        return None
    deps = tuple(d for d in stage.deps if BY_NAME[d].when(ctx))
    for d in deps:
        if ctx.names[d] not in ctx.runner.results:
            run_stage(ctx, d)
    return ctx.runner.run(
        ctx.names[name],
        stage.key(ctx),
        lambda out: _compute(ctx, stage, out),
        depends=tuple(ctx.names[d] for d in deps),
    )


def _compute(ctx: RunContext, stage: Stage, out: Any) -> dict:
    """Runs ``stage`` (not skipped); a stage that does not read the log first lets a large dataset go."""
    if not stage.reads_data:
        ctx.release_data()
    return stage.fn(ctx, out)


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """Runs (or resumes) every stage; returns the evaluation report (``report.json``'s dict).

    A run that creates its version directory and fails before any stage but ``data`` completed removes
    it again (``context.discard_failed_start``): a failed start leaves no empty version behind."""
    fresh = not cfg.version_dir().exists()
    try:
        return _run_pipeline(cfg)
    except BaseException:
        if fresh:
            discard_failed_start(cfg)
        raise


def _run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    from twotower_hgnn.eval.report import format_console, load_report

    t0 = time.time()
    ctx = open_run(cfg)
    log(
        f"[pipeline] {cfg.dataset_tag} version {cfg.version}{' ablation ' + cfg.ablation if cfg.ablation else ''}"
        f"{' (Table 1 reference)' if cfg.table1 else ''} -> {cfg.version_dir()}"
    )
    for stage in STAGE_TABLE:
        run_stage(ctx, stage.name)
    report = load_report(ctx.path("evaluate") / "report.json")
    log(
        "[pipeline] stage seconds (0 = skipped): "
        + json.dumps({s: round(r.seconds, 1) for s, r in ctx.runner.results.items()})
    )
    log(f"[pipeline] done in {time.time() - t0:.1f}s; report: {ctx.path('evaluate') / 'report.md'}")
    print(format_console(report), flush=True)
    return report


def run_table1(cfg: PipelineConfig, variants: Sequence[str]) -> dict[str, Any]:
    """Runs the full model (audiobook target) and each ablation; writes ``ablations/table1.{json,md}``.

    Returns ``{"rows", "hgnn_training_time", "config", "text"}`` (``text``: the table as printed)."""
    from twotower_hgnn.eval.report import table1_rows
    from twotower_hgnn.eval.table1 import format_table1, hgnn_training_time

    bad = [v for v in variants if v not in ABLATIONS]
    if bad:
        raise PipelineError(f"--variants: unknown ablation(s) {bad}; known {sorted(ABLATIONS)}")
    cfg = dataclasses.replace(with_targets(cfg, ("audiobook",)), ablation=None, table1=True)
    reports = {"2T-HGNN": run_pipeline(cfg)}
    for v in variants:
        reports[f"{v}) {ABLATIONS[v]}"] = run_pipeline(dataclasses.replace(cfg, ablation=v, table1=False))
    vdir = cfg.version_dir()
    hist = {
        key: json.loads(p.read_text())
        for key, p in (("full", vdir / "hgnn" / "history.json"), ("A", vdir / "ablation-A" / "hgnn" / "history.json"))
        if p.exists()
    }
    out = {
        "rows": table1_rows(reports),
        "hgnn_training_time": hgnn_training_time(hist["full"], hist["A"]) if len(hist) == 2 else {},
        "config": {"dataset": cfg.dataset_tag, "preset": cfg.config.name},
    }
    atomic_write_json(vdir / "ablations" / "table1.json", out)
    text = format_table1(out, cfg.config.eval.k)
    atomic_write_text(vdir / "ablations" / "table1.md", text + "\n")
    return {**out, "text": text}
