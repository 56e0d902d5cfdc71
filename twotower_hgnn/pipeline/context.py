"""What the stages of one run share: the configuration, the dataset, the stage runner, and lazy loaders
of every stage's outputs (so that each stage is a plain function of the context and its output folder)."""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import numpy as np

from twotower_hgnn.data.schema import Dataset
from twotower_hgnn.data.signal import targets_with_signal
from twotower_hgnn.data.split import Split
from twotower_hgnn.data.split_io import load_split
from twotower_hgnn.io import atomic_write_json
from twotower_hgnn.pipeline.config import (
    INPUT_CACHE,
    STAGES,
    PipelineConfig,
    ablation_relations,
    check_paper_shape,
    hgnn_config,
    input_digests,
    load_data,
    previous_version,
    resolve_targets,
    run_config_dict,
    stage_names,
    strip_weak,
    two_tower_config,
    with_targets,
)
from twotower_hgnn.provenance import DigestCache
from twotower_hgnn.stages import MARKER, StageRunner


def log(msg: str) -> None:
    print(msg, flush=True)


@dataclasses.dataclass
class RunContext:
    """One run: ``cfg`` (targets narrowed to the types the data has), its dataset and stage runner.

    Attributes:
      names: stage -> directory relative to the version directory (``config.stage_names``).
      prev: the previous version directory (warm start), or None.
      load_s: seconds spent loading and validating the data.
      inputs: ``{role: [path, size, content digest]}`` of the input files (``config.input_digests``).
    """

    cfg: PipelineConfig
    _ds: Dataset | None
    runner: StageRunner
    names: dict[str, str]
    prev: Path | None
    load_s: float = 0.0
    inputs: dict = dataclasses.field(default_factory=dict)
    type_counts: dict = dataclasses.field(default_factory=dict)  # items per type (kept when the data is released)
    reloads: int = 0  # times the dataset was loaded again after a release
    _fresh_logs: set = dataclasses.field(default_factory=set, repr=False)  # stages whose logdir was checked

    # ------------------------------------------------------------------ the dataset
    @property
    def ds(self) -> Dataset:
        """The run's dataset; loaded again (``config.load_data``, deterministic) after :meth:`release_data`."""
        if self._ds is None:
            t0 = time.time()
            self._ds = load_data(self.cfg)
            self.reloads += 1
            log(f"[pipeline] dataset loaded again for the next stage ({time.time() - t0:.1f}s)")
        return self._ds

    def release_data(self) -> bool:
        """Drops the dataset and what holds views of its rows (the splits) before a stage that needs
        neither, when the log is large (:data:`RELEASE_BYTES`): at the paper's scale the log alone is
        ~5.4 GB, which the HGNN stage (graph + features, ~10 GB of its own) does not read. Returns
        whether it was released."""
        if self._ds is None or _log_bytes(self._ds) < RELEASE_BYTES:
            return False
        self._ds = None
        self.forget("split", "valid")  # cached views of the released rows
        import gc

        gc.collect()
        log("[pipeline] dataset released for this stage (it does not read the log)")
        return True

    def forget(self, *names: str) -> None:
        """Drops the cached stage outputs ``names`` (e.g. ``"content"``, ``"hgnn_emb"``); the next use
        reads them again from their stage's folder."""
        for name in names:
            self.__dict__.pop(name, None)

    # ------------------------------------------------------------------ places
    def path(self, stage: str) -> Path:
        """The output folder of ``stage``."""
        return self.runner.path(self.names[stage])

    def work_dir(self, stage: str) -> Path:
        """Resumable scratch space (checkpoints) of the running ``stage``."""
        return self.runner.work_dir(self.names[stage])

    def logdir(self, stage: str, *sub: str) -> Path:
        """Where the running ``stage`` writes TensorBoard events and ``metrics.jsonl``:
        ``<version>/tensorboard/<stage>[/<sub>...]`` (``tracking.stage_logdir``; an ablation's own stages
        under ``tensorboard/ablation-<X>/``). A stage that starts afresh (no scratch space of its
        fingerprint yet) first clears its folder, so that the curves shown are those of the outputs it
        makes; a resumed stage appends to them."""
        import shutil

        from twotower_hgnn.tracking import stage_logdir

        root = stage_logdir(self.cfg.version_dir(), self.names[stage])
        if stage not in self._fresh_logs:
            wd = self.work_dir(stage)
            if not wd.is_dir() or not any(wd.iterdir()):
                shutil.rmtree(root, ignore_errors=True)
            self._fresh_logs.add(stage)
        return root.joinpath(*sub)

    # ------------------------------------------------------------------ derived configuration
    @functools.cached_property
    def relations(self):
        """The HGNN's relations: the ablation's (None = all of the graph's) less those without training
        edges, each dropped with a note; none left is a DataError (``data.signal.usable_relations``)."""
        import json

        from twotower_hgnn.data.signal import usable_relations

        rels = ablation_relations(self.cfg.ablation, self.type_counts)
        st = json.loads((self.path("graph") / "stats.json").read_text())
        edges = {k: v["edges"] - st.get("val_edges", {}).get(k, 0) for k, v in st["relations"].items()}
        kept, notes = usable_relations(edges, None if rels is None else [f"{a}-{b}" for a, b in rels])
        for n in notes:
            log(f"[hgnn] note: {n}")
        return rels if not notes else tuple(tuple(r.split("-")) for r in kept)

    @functools.cached_property
    def hgnn_cfg(self):
        return hgnn_config(self.cfg, self.relations)

    @functools.cached_property
    def two_tower_cfgs(self) -> dict[str, Any]:
        """``{"<target>-hgnn"|"<target>-nohgnn": TwoTowerTrainConfig}`` (ablations: the HGNN models only)."""
        targets = self.cfg.config.eval.targets
        variants = (
            [(t, True) for t in targets] if self.cfg.ablation else [(t, h) for t in targets for h in (True, False)]
        )
        return {f"{t}-{'hgnn' if h else 'nohgnn'}": two_tower_config(self.cfg, t, h) for t, h in variants}

    # ------------------------------------------------------------------ stage outputs
    @functools.cached_property
    def split(self) -> Split:
        return load_split(self.path("split"), self.ds)  # temporal splits: views of the dataset's rows

    @property
    def train_split(self) -> Split:
        """The split models train on (ablation B: weak signals removed)."""
        return strip_weak(self.split) if self.cfg.ablation == "B" else self.split

    @functools.cached_property
    def valid(self) -> Split:
        """The validation split (ablation B: weak signals removed from its training part)."""
        vs = load_split(self.path("valid"), self.ds)
        return strip_weak(vs) if self.cfg.ablation == "B" else vs

    @functools.cached_property
    def graphs(self):
        """(train graph, full graph, held-out validation edges per relation)."""
        from sampler.csr import HeteroCSR

        d = self.path("graph")
        with np.load(d / "val_edges.npz") as z:
            val = {tuple(k.split("-")): z[k] for k in z.files}
        return HeteroCSR.load(d / "train_graph"), HeteroCSR.load(d / "full_graph"), val

    @functools.cached_property
    def content(self) -> np.ndarray:
        return np.load(self.path("content") / "content.npy")

    @functools.cached_property
    def hgnn_emb(self) -> np.ndarray:
        return np.load(self.path("hgnn") / "item_embeddings.npy")

    @functools.cached_property
    def users_emb(self) -> np.ndarray | None:
        """HGNN-w-users node embeddings when that stage is on, else None."""
        return np.load(self.path("hgnn_users") / "node_embeddings.npy") if with_hgnn_users(self) else None


# a log at least this large in memory is released before a stage that does not read it (RunContext.release_data)
RELEASE_BYTES = 2 << 30


def _log_bytes(ds: Dataset) -> int:
    return int(ds.interactions.memory_usage(index=False, deep=False).sum())


def with_hgnn_users(ctx: RunContext) -> bool:
    return bool(ctx.cfg.config.eval.with_hgnn_users) and not ctx.cfg.ablation


def open_run(cfg: PipelineConfig) -> RunContext:
    """Loads and validates the data, narrows the targets to the item types present, saves the resolved
    configuration (``config.json`` beside the run's stages) and returns the run's context.

    The input files are hashed *before* they are loaded: a file changed while loading then shows as
    changed on the next run. Nothing is written before the data is valid."""
    t0 = time.time()
    digests = DigestCache(cfg.version_dir() / INPUT_CACHE)
    inputs = input_digests(cfg, digests)
    ds = load_data(cfg)
    check_paper_shape(cfg, ds)  # ablations C-F / Table 1 need audiobooks and podcasts
    wanted = cfg.config.eval.targets
    targets, notes = resolve_targets(cfg, ds)  # the default: the paper's targets present, else every type
    for n in notes:
        log(f"[pipeline] {n}")
    targets, notes = targets_with_signal(ds, targets)  # a type never streamed: a note; none left: DataError
    for n in notes:
        log(f"[pipeline] note: {n}")
    if targets != wanted:
        cfg = with_targets(cfg, targets)
    vdir = cfg.version_dir()
    names = stage_names(cfg)
    force = {names[s] for s in STAGES[STAGES.index(cfg.from_stage) :]} if cfg.from_stage else set()
    runner = StageRunner(vdir, force=force)
    if inputs:
        digests.save()
    # beside the run's own stages: the version directory, or ablation-<X>/ / ablation-full/
    atomic_write_json((vdir / names["evaluate"]).parent / "config.json", run_config_dict(cfg))
    prev = previous_version(cfg) if cfg.warm_start else None
    return RunContext(
        cfg=cfg,
        _ds=ds,
        runner=runner,
        names=names,
        prev=prev,
        load_s=time.time() - t0,
        inputs=inputs,
        type_counts=dict(ds.item_type_counts),
    )


def discard_failed_start(cfg: PipelineConfig) -> bool:
    """After a run that created its version directory failed: removes that directory when no stage but
    ``data`` (a record of what was loaded) completed in it, and the dataset folder above it when that is
    left empty, so that a failed start leaves nothing behind. Returns whether anything was removed."""
    import shutil

    vdir = cfg.version_dir()
    if not vdir.is_dir():
        return False
    done = [m.parent.name for m in (*vdir.glob(f"*/{MARKER}"), *vdir.glob(f"ablation-*/*/{MARKER}"))]
    if any(name != "data" for name in done):
        return False
    shutil.rmtree(vdir, ignore_errors=True)
    try:
        vdir.parent.rmdir()  # only when empty
    except OSError:
        pass
    return True
