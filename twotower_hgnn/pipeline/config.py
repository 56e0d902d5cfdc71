"""A pipeline run's inputs, outputs and identity (:class:`PipelineConfig`), and the per-model training
configurations derived from it and its :class:`~twotower_hgnn.configs.RunConfig`."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from twotower_hgnn import errors
from twotower_hgnn import configs
from twotower_hgnn.configs import RunConfig
from twotower_hgnn.data import load_dataset
from twotower_hgnn.data.mapping import FILES_NEED
from twotower_hgnn.data.schema import ITEM_TYPES, WEAK_EVENTS, Dataset, is_paper_types
from twotower_hgnn.data.split import AUTO, Split, external_dataset
from twotower_hgnn.provenance import DigestCache
from twotower_hgnn.stages import fingerprint

STAGES: tuple[str, ...] = (
    "data",
    "split",
    "valid",
    "graph",
    "content",
    "hgnn",
    "hgnn_users",
    "two_tower",
    "evaluate",
    "export",
    "topk",
)
ABLATIONS: dict[str, str] = {
    "A": "w/o multi-edge opt. (balanced sampler off)",
    "B": "w/o weak signals",
    "C": "w/o PC-PC edges",
    "D": "w/o AB-AB edges",
    "E": "2T-GNN, AB-AB only (homogeneous)",
    "F": "2T-GNN, PC-PC only (homogeneous; audiobooks inductive)",
}
AB, PC = "audiobook", "podcast"
PAPER_ABLATIONS = ("C", "D", "E", "F")  # named by the paper's relations: need audiobooks and podcasts


READ_FIELDS = ("timestamp_unit", "duplicates", "encoding", "column_map", "events", "mapping_file", "default_item_type")


class PipelineError(errors.ConfigError):
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
      timestamp_unit / duplicates / encoding: how the input files are read (``--timestamp_unit=s|ms|iso``,
        ``--duplicates=drop|keep``, ``--encoding``; ``twotower_hgnn.data.readers.read_interactions``).
      column_map / events / mapping_file / default_item_type: the column and event mapping (``--map``,
        ``--events``, ``--mapping``, ``--default_item_type``; ``twotower_hgnn.data.mapping``). With a
        default item type ``items`` may be left out (items built from the interactions); ``users`` may
        always be left out (users built from the interactions, age and country unknown).
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
    timestamp_unit: str = "s"
    duplicates: str = "drop"
    encoding: str = "utf-8"
    column_map: str | None = None
    events: str | None = None
    mapping_file: str | None = None
    default_item_type: str | None = None
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
            if not self.interactions:
                raise PipelineError(FILES_NEED)
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
        if self.test_interactions is not None and (
            self.as_of is not None or self.config.split.cut_quantile is not None
        ):
            raise PipelineError(
                "--test_interactions gives the split: it cannot be combined with --as_of/--config.split.cut_quantile"
            )
        if self.valid_interactions is not None and self.test_interactions is None:
            raise PipelineError(
                "--valid_interactions needs an external split (--test_interactions, launch/evaluate.py)"
            )
        _check_read_options(self)

    # ------------------------------------------------------------------ naming
    @property
    def dataset_tag(self) -> str:
        if self.dataset == "synthetic":
            return f"synthetic-{self.scale}-s{self.data_seed}"
        if self.dataset == "files":
            paths = (self.interactions, self.items, self.users)
            return "files-" + fingerprint([os.path.abspath(p) if p else "" for p in paths])[:8]
        return self.dataset

    @property
    def version(self) -> str:
        return self.as_of or "default"

    def version_dir(self) -> Path:
        return Path(self.out_dir).resolve() / self.dataset_tag / self.version


# ---------------------------------------------------------------------------------- helpers
def days_arg(value: Any) -> Any:
    """A configuration's day count for the split functions ("auto" -> AUTO)."""
    return AUTO if value == "auto" else value


def with_targets(cfg: PipelineConfig, targets: Sequence[str]) -> PipelineConfig:
    """``cfg`` with ``config.eval.targets`` replaced."""
    ev = dataclasses.replace(cfg.config.eval, targets=tuple(targets))
    return dataclasses.replace(cfg, config=dataclasses.replace(cfg.config, eval=ev))


def run_config_dict(cfg: PipelineConfig) -> dict[str, Any]:
    """The resolved configuration of a run as saved (``<version>/config.json``, report.json's meta).
    The read options (:func:`read_options`) are recorded for ``dataset="files"`` only: no other source reads files."""
    skip = {"config"} | (set() if cfg.dataset == "files" else set(READ_FIELDS))
    ident = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in skip}
    return {**ident, "config": cfg.config.to_dict()}


def read_options(cfg: PipelineConfig) -> dict[str, Any]:
    """How the run's input files are read (``twotower_hgnn.data.readers.read_interactions`` options); the
    column and event mapping (its JSON form, a mapping file's content included) only when one is given."""
    opts: dict[str, Any] = {
        "timestamp_unit": cfg.timestamp_unit,
        "duplicates": cfg.duplicates,
        "encoding": cfg.encoding,
    }
    mapping = _mapping(cfg)
    if mapping.active:
        opts["mapping"] = mapping.to_dict()
    return opts


def _mapping(cfg: PipelineConfig):
    from twotower_hgnn.data.mapping import build_mapping

    return build_mapping(cfg.column_map, cfg.events, cfg.mapping_file, cfg.default_item_type)


def _check_read_options(cfg: PipelineConfig) -> None:
    import codecs

    from twotower_hgnn.data.readers import DUPLICATES
    from twotower_hgnn.data.timestamps import TIMESTAMP_UNITS

    if cfg.timestamp_unit not in TIMESTAMP_UNITS:
        raise PipelineError(f"--timestamp_unit: {cfg.timestamp_unit!r} is not one of {list(TIMESTAMP_UNITS)}")
    if cfg.duplicates not in DUPLICATES:
        raise PipelineError(f"--duplicates: {cfg.duplicates!r} is not one of {list(DUPLICATES)}")
    try:
        codecs.lookup(cfg.encoding)
    except (LookupError, TypeError):
        raise PipelineError(f"--encoding: {cfg.encoding!r} is not a known text encoding") from None
    try:
        _mapping(cfg)
    except errors.ConfigError as e:
        raise PipelineError(str(e)) from None


# synthetic scales generated to chunked Parquet on disk, then read (``data.synthetic_parquet``): the
# generator's peak memory follows the chunk, and a second run (or a stage in a fresh process) reads the
# log instead of drawing it again
PARQUET_SCALES: tuple[str, ...] = ("large", "xlarge", "paper")


def synthetic_parquet_dir(cfg: PipelineConfig) -> Path:
    """``<out_dir>/synthetic-parquet/<scale>-seed<data_seed>-chunk<users per chunk>``: where a scale of
    :data:`PARQUET_SCALES` is written once (resumably) and read by every run of that scale and seed."""
    from twotower_hgnn.data.synthetic_parquet import DEFAULT_CHUNK_USERS

    return Path(cfg.out_dir) / "synthetic-parquet" / f"{cfg.scale}-seed{cfg.data_seed}-chunk{DEFAULT_CHUNK_USERS}"


def load_data(cfg: PipelineConfig) -> Dataset:
    """The run's dataset (a validated :class:`Dataset`). Synthetic scales of :data:`PARQUET_SCALES` are
    generated in chunks of users into :func:`synthetic_parquet_dir` (resumed when a run was killed
    while writing; skipped when complete) and read back from there."""
    if cfg.dataset == "synthetic" and cfg.scale in PARQUET_SCALES:
        from twotower_hgnn.data import synthetic_parquet as sp

        out = synthetic_parquet_dir(cfg)
        sp.write_synthetic(cfg.scale, cfg.data_seed, out, log=lambda m: print(f"[data] {m}", flush=True))
        return sp.load_dataset(out)
    if cfg.dataset == "synthetic":
        return load_dataset("synthetic", scale=cfg.scale, seed=cfg.data_seed)
    if cfg.dataset == "files":
        if cfg.test_interactions is not None:
            return external_dataset(
                cfg.interactions,
                cfg.test_interactions,
                cfg.items,
                cfg.users,
                valid=cfg.valid_interactions,
                **read_options(cfg),
            )
        return load_dataset(
            "files", interactions=cfg.interactions, items=cfg.items, users=cfg.users, **read_options(cfg)
        )
    return load_dataset(cfg.dataset)


def strip_weak(split: Split) -> Split:
    """Ablation B: weak signals removed from everything trained on (graph, user features, labels).

    Segments (warm/cold) and the test part are left as they are, so every variant is scored on the
    same users and relevant items.
    """
    train = split.train[~split.train["event"].isin(WEAK_EVENTS)].reset_index(drop=True)
    return dataclasses.replace(split, train=train, rows=None)  # no longer a row range of the log


def check_paper_shape(cfg: PipelineConfig, ds: Dataset) -> None:
    """Ablations C-F and Table 1 are defined on the paper's relations (AB-AB, AB-PC, PC-PC): offered only
    when the data has both audiobook and podcast items; otherwise one PipelineError naming the flag."""
    types = [t for t in ds.item_types if int(ds.item_type_counts[t]) > 0]
    if is_paper_types(types):
        return
    have = f"the data's item types are {types}"
    if cfg.ablation in PAPER_ABLATIONS:
        raise PipelineError(
            f"--ablation={cfg.ablation}: ablations C-F remove the paper's audiobook/podcast relations and need "
            f"audiobook and podcast items; {have} (ablations A and B apply to any types)"
        )
    if cfg.table1:
        raise PipelineError(
            f"Table 1 (launch.ablations) compares audiobook recommendations and needs audiobook and podcast items; {have}"
        )


def resolve_targets(cfg: PipelineConfig, ds: Dataset) -> tuple[tuple[str, ...], list[str]]:
    """(the run's target types, notes) from ``--config.eval.targets`` and the data.

    The default (the paper's targets, ``ITEM_TYPES``) means the paper's targets that have items, else
    every type of the data that has items (in the data's order). Explicit targets must be item types of
    the data (one PipelineError naming the flag otherwise); the paper's types without items are skipped
    with a note (homogeneous paper-shaped data)."""
    wanted = tuple(cfg.config.eval.targets)
    present = tuple(t for t in ds.item_types if int(ds.item_type_counts[t]) > 0)
    if wanted == ITEM_TYPES:
        targets = tuple(t for t in wanted if t in present) or present
        if not set(targets) & set(ITEM_TYPES):
            return targets, [f"no audiobook or podcast items: evaluating every item type of the data {list(targets)}"]
    else:
        unknown = [t for t in wanted if t not in ds.item_types]
        if unknown:
            raise PipelineError(
                f"--config.eval.targets: {unknown} not item type(s) of the data (its types: {list(ds.item_types)})"
            )
        targets = tuple(t for t in wanted if t in present)
    if not targets:
        raise PipelineError(f"--config.eval.targets: the dataset has no items of type {list(wanted)}")
    skipped = [t for t in wanted if t not in targets]
    return targets, ([f"no items of type {sorted(skipped)}: evaluating {list(targets)} only"] if skipped else [])


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


def previous_version(cfg: PipelineConfig) -> Path | None:
    """The latest earlier version of this dataset with a complete export (for --warm_start)."""
    root = cfg.version_dir().parent
    if not root.exists():
        return None
    cands = sorted(
        p for p in root.iterdir() if p.is_dir() and p.name < cfg.version and (p / "export" / "MANIFEST.json").exists()
    )
    return cands[-1] if cands else None


# ---------------------------------------------------------------------------------- the job
INPUT_CACHE = "_inputs.json"  # in the version directory: content digests of the input files by stat identity
INPUT_ROLES = ("interactions", "items", "users", "test_interactions", "valid_interactions")


def input_digests(cfg: PipelineConfig, cache: DigestCache) -> dict[str, list]:
    """``{role: [absolute path, size, content digest]}`` of the run's input files (the data stage's key).

    Keyed by content, not by (path, size, mtime): a file replaced by different bytes of the same size
    and mtime (``cp -p``, ``rsync -a``, ``tar x``) invalidates the data stage and everything downstream.
    ``cache``: ``DigestCache(version dir / INPUT_CACHE)`` in a run (``context.open_run`` saves it once
    the data is valid), so an unchanged file is not re-read every run.
    """
    out: dict[str, list] = {}
    for role in INPUT_ROLES:
        p = getattr(cfg, role)
        if p:
            try:
                out[role] = (
                    _folder_digest(p, cache)
                    if os.path.isdir(p)
                    else [os.path.abspath(p), os.stat(p).st_size, cache.digest(p)]
                )
            except OSError:  # missing, a directory, unreadable: the reader reports it (PathError, one line)
                out[role] = [os.path.abspath(p), None, None]
    return out


def _folder_digest(folder: str, cache: DigestCache) -> list:
    """[absolute path, total size, digest of every Parquet file's relative path and content] of a Parquet
    dataset folder (``twotower_hgnn.data.formats``); a folder without Parquet files gets no digest."""
    from twotower_hgnn.data.formats import parquet_files

    files = parquet_files(folder)
    if not files:
        return [os.path.abspath(folder), None, None]
    parts = [[str(f.relative_to(folder)), cache.digest(f)] for f in files]
    return [os.path.abspath(folder), sum(f.stat().st_size for f in files), fingerprint(parts)]


def stage_names(cfg: PipelineConfig) -> dict[str, str]:
    """Stage -> directory (relative to the version dir). Ablation X keeps its own graph (B only), HGNN,
    two-tower, evaluation and export under ``ablation-X/``; Table 1's reference run keeps its own
    two-tower/evaluation/export under ``ablation-full/``; everything else is shared."""
    if cfg.ablation:
        own, pre = (
            {"hgnn", "two_tower", "evaluate", "export"} | ({"graph"} if cfg.ablation == "B" else set()),
            f"ablation-{cfg.ablation}/",
        )
    elif cfg.table1:
        own, pre = {"two_tower", "evaluate", "export"}, "ablation-full/"
    else:
        own, pre = set(), ""
    return {s: pre + s if s in own else s for s in STAGES}
