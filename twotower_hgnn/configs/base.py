"""The typed configuration of a run: one frozen dataclass per concern, composed in :class:`RunConfig`.

Inputs (data files, the dataset name), outputs (``out_dir``) and run identity (``as_of``, ``seed``,
``ablation``) are command-line flags; every hyper-parameter and budget lives here. A preset
(``configs/<name>.py``, ``get_config()``) builds a ``RunConfig``; ``--config.<path>=value`` overrides any
field (:mod:`twotower_hgnn.configs.overrides`); the resolved configuration is saved with every run
(``<version>/config.json``) and in ``report.json``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from twotower_hgnn import errors
from twotower_hgnn.graph_config import GraphConfig
from twotower_hgnn.train.hgnn_config import HGNNTrainConfig
from twotower_hgnn.train.two_tower_config import TwoTowerTrainConfig

SAMPLERS = ("auto", "numpy", "device")
INDEX_KINDS = ("exact", "ivf", "auto")  # retrieval.EXPORT_KINDS (ExportConfig)
MAX_K = 1000  # the largest evaluation cut-off (a ranking is at most this long)


class ConfigError(errors.ConfigError):
    """A configuration value that cannot run; the message names the ``--config.<path>``."""


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """The temporal hold-out and the validation split.

    Attributes:
      cut_quantile: cut at this quantile of interaction time (None = the dataset's default).
      history_days / test_days: history window before and test window after the cut, in days;
        "auto" = the dataset's default, None = unbounded.
      min_segment_users: fewest warm and cold test users a split may have.
      valid_frac: fraction of the training part held out for validation (temporal splits: its last
        part in time; external splits: a seeded per-user random fraction).
    """

    cut_quantile: float | None = None
    history_days: float | str | None = "auto"
    test_days: float | str | None = "auto"
    min_segment_users: int = 1
    valid_frac: float = 0.1

    def __post_init__(self) -> None:
        if self.cut_quantile is not None and not 0.0 < float(self.cut_quantile) < 1.0:
            raise ConfigError(f"split.cut_quantile: {self.cut_quantile} is not in (0, 1)")
        for name in ("history_days", "test_days"):
            v = getattr(self, name)
            if isinstance(v, str) and v != "auto":
                raise ConfigError(f"split.{name}: {v!r} is not a number of days, 'auto' or None")
            if isinstance(v, (int, float)) and not v > 0:
                raise ConfigError(f"split.{name}: {v} must be > 0")
        if int(self.min_segment_users) < 0:
            raise ConfigError(f"split.min_segment_users: {self.min_segment_users} must be >= 0")
        if not 0.0 < float(self.valid_frac) < 1.0:
            raise ConfigError(f"split.valid_frac: {self.valid_frac} is not in (0, 1)")


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Content features. model: sentence-transformers name or path (None = the bundled MiniLM)."""

    model: str | None = None


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation (the paper's protocol is cited in ``eval/protocol.py``).

    Attributes:
      k: HR/Recall/NDCG cut-off; exclude_seen: drop items consumed before the split from rankings.
      targets: target item types trained and evaluated, names of the data's item types, checked against
        the data when a run opens (``pipeline.config.resolve_targets``). The default, the paper's
        ("audiobook", "podcast"), means "the paper's targets present in the data, else every type of
        the data"; types without items are skipped.
      with_hgnn_users: also train and score the HGNN-w-users baseline (users as graph nodes).
      sample_users: 0 = score every test user; N > 0 = a seeded sample (the run's seed) of at most N
        users per segment (warm, cold) of each target, the same users for every model
        (``eval.protocol.sample_users``); the validation users of model selection and early stopping are
        sampled the same way unless ``valid_sample_users`` is set. Full ranking costs users x catalogue:
        the paper's scale needs a sample.
      valid_sample_users: users per segment scored at each validation of the two-tower's model selection
        and early stopping (None = ``sample_users``; 0 = every validation user). A validation ranks its
        users against the whole catalogue, twice per model at the scale preset: 40,000 x 3.5M podcasts
        at the paper's scale, so the scale preset validates on a smaller sample than it reports on.
      ease_max_items: the EASE baseline runs when the data has at most this many items (its inverse is a
        dense ``n_items^2`` matrix, cubic time; above it the report says EASE was skipped and why).
      knn_max_items: the ItemKNN baseline runs when the data has at most this many items (0 = no limit;
        its similarities are dense item x catalogue blocks, time items x catalogue per grid point).
    """

    k: int = 10
    exclude_seen: bool = True
    targets: tuple[str, ...] = ("audiobook", "podcast")
    with_hgnn_users: bool = False
    sample_users: int = 0
    ease_max_items: int = 20_000
    knn_max_items: int = 0
    valid_sample_users: int | None = None

    def __post_init__(self) -> None:
        import re

        if int(self.k) < 1:
            raise ConfigError(f"eval.k: {self.k} must be >= 1")
        if int(self.sample_users) < 0:
            raise ConfigError(f"eval.sample_users: {self.sample_users} must be >= 0 (0 = every test user)")
        if self.valid_sample_users is not None and int(self.valid_sample_users) < 0:
            raise ConfigError(
                f"eval.valid_sample_users: {self.valid_sample_users} must be >= 0 (0 = every validation user)"
            )
        if int(self.ease_max_items) < 0:
            raise ConfigError(f"eval.ease_max_items: {self.ease_max_items} must be >= 0 (0 = never EASE)")
        if int(self.knn_max_items) < 0:
            raise ConfigError(f"eval.knn_max_items: {self.knn_max_items} must be >= 0 (0 = no limit)")
        bad = [t for t in self.targets if not isinstance(t, str) or not re.fullmatch(r"[^\W][\w.]*", t)]
        if bad or not self.targets:
            raise ConfigError(
                f"eval.targets: {list(self.targets)} must be a non-empty list of item type names "
                "(letters, digits, '_' and '.')"
            )
        object.__setattr__(self, "targets", tuple(self.targets))

    @property
    def validation_sample(self) -> int:
        """Users per segment of a two-tower validation (``valid_sample_users``, else ``sample_users``)."""
        return int(self.sample_users if self.valid_sample_users is None else self.valid_sample_users)


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """The served artefacts. index: nearest-neighbour index kind of the export: "exact" (brute force), "ivf"
    (faiss IVF over 8-bit codes; needs the [ann] extra) or "auto" (IVF from 50,000 items when faiss is
    installed, exact below); the recall measured at export time is written in the manifest."""

    index: str = "exact"

    def __post_init__(self) -> None:
        if self.index not in INDEX_KINDS:
            raise ConfigError(f"export.index: {self.index!r} is not one of {INDEX_KINDS}")
        if self.index == "ivf":
            from twotower_hgnn.retrieval import faiss_available

            if not faiss_available():
                raise ConfigError(
                    "export.index: 'ivf' needs faiss: pip install 'twotower_hgnn[ann]' (or use auto/exact)"
                )


@dataclasses.dataclass(frozen=True)
class TopKConfig:
    """The opt-in batch top-K stage (``pipeline`` stage ``topk``, after ``export``): the top ``k`` items of every
    user of each served target type (``serving_batch.batch_recommend_export``) in
    ``<version>/topk/top<k>-<target>.parquet``. k: items per user (0 = the stage is off); chunk_users: users
    scored per chunk (memory bound; one Parquet row group each); sample_users: 0 = every user of the store,
    N > 0 = a seeded sample (the run's seed) of N of them (scoring every user costs users x catalogue).
    Only the main run has it (not ablations)."""

    k: int = 0
    chunk_users: int = 4096
    sample_users: int = 0

    def __post_init__(self) -> None:
        for name in ("k", "chunk_users", "sample_users"):  # the ranges: _RANGES
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"topk.{name}: {v!r} is not an integer")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a pipeline run is configured by, besides its inputs, outputs and identity.

    Attributes:
      name: the preset this configuration was built from (informative).
      sampler: where HGNN training batches are sampled: "numpy" (host), "device" (jitted, CSR on the
        accelerator) or "auto" (device on GPU/TPU, NumPy on CPU-only machines).
      split / graph / text / hgnn / eval / export / topk: see each section.
      two_tower: the two-tower training template; the pipeline fills in the target type, whether the
        HGNN inputs are used (2T-HGNN vs 2T) and the seed for each model it trains.
    """

    name: str = "custom"
    sampler: str = "auto"
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    graph: GraphConfig = dataclasses.field(default_factory=GraphConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    hgnn: HGNNTrainConfig = dataclasses.field(default_factory=HGNNTrainConfig)
    two_tower: TwoTowerTrainConfig = dataclasses.field(default_factory=TwoTowerTrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    topk: TopKConfig = dataclasses.field(default_factory=TopKConfig)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler: {self.sampler!r} is not one of {SAMPLERS}")
        _check_ranges(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dict (tuples as lists)."""
        return _jsonable(dataclasses.asdict(self))


# fields whose own section does not bound them: (path, lowest value, whether the lowest is excluded,
# highest value or None, whether None is allowed)
_RANGES: tuple[tuple[str, float, bool, float | None, bool], ...] = (
    ("two_tower.max_steps", 1, False, None, True),
    ("two_tower.time_budget_s", 0, True, None, True),
    ("two_tower.patience", 0, False, None, False),
    ("two_tower.eval_every", 1, False, None, True),
    ("two_tower.id_history_len", 0, False, None, False),
    ("two_tower.history_days", 0, True, None, True),
    ("two_tower.q_smoothing", 0, False, None, False),
    ("two_tower.weight_decay", 0, False, None, False),
    ("two_tower.prior_days", 0, True, None, True),
    ("two_tower.ema_decay", 0, False, 1, True),
    ("two_tower.num_devices", 1, False, None, True),
    ("two_tower.recency_halflife_days", 0, True, None, True),
    ("hgnn.num_devices", 1, False, None, True),
    ("hgnn.max_to_keep", 1, False, None, False),
    ("eval.k", 1, False, MAX_K, False),
    ("topk.k", 0, False, MAX_K, False),
    ("topk.chunk_users", 1, False, 1 << 20, False),
    ("topk.sample_users", 0, False, None, False),
)


def _check_ranges(cfg: "RunConfig") -> None:
    """Refuses values no run can use (negative steps, k beyond MAX_K ...); each section checks the rest."""
    for path, lo, open_lo, hi, none_ok in _RANGES:
        v: Any = cfg
        for part in path.split("."):
            v = getattr(v, part)
        if v is None and none_ok:
            continue
        bound = f"> {lo}" if open_lo else f">= {lo}"
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            raise ConfigError(f"{path}: {v!r} is not a number")
        if v < lo or (open_lo and v == lo) or (hi is not None and v > hi):
            raise ConfigError(f"{path}: {v} must be {bound}" + (f" and <= {hi}" if hi is not None else ""))
    if not cfg.two_tower.positive_events:
        raise ConfigError("two_tower.positive_events: must name at least one event")


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
