"""Two-tower training settings (:class:`TwoTowerTrainConfig`) and outcome (:class:`TwoTowerResult`).

Re-exported from :mod:`twotower_hgnn.train.two_tower`, the trainer that uses them.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from twotower_hgnn.models.two_tower_config import TwoTowerConfig

if TYPE_CHECKING:  # annotations only: this module is read by configuration files, without jax
    import numpy as np

    from twotower_hgnn import features as F


@dataclasses.dataclass(frozen=True)
class TwoTowerTrainConfig:
    """Training settings; defaults are the paper's (§4).

    Attributes:
      target_type: the item type recommended: any type of the data ("audiobook" = Tables 2-3, "podcast" =
        Table 4 on the paper's data); checked against the data when training starts.
      use_hgnn: False = the paper's "2T" baseline (no HGNN inputs anywhere).
      batch_size: global batch (split over devices; must be a multiple of the device count).
      max_steps: step budget (None = ``epochs`` epochs). time_budget_s: a wall-clock safety net only
        (None by default; its hit is the logged stop reason "time_cap" and makes runs machine-dependent).
      patience / eval_every: with a ``validate`` hook, validate every ``eval_every`` steps (None = once
        per epoch) and stop after ``patience`` validations without improvement; the best parameters
        are returned (early stopping).
      example_history: "as_of" (paper: history strictly before each example), "leave_many_out" (one unit
        per user: a random ``target_frac`` of the positives, at most ``max_targets``, held out of the
        history and scored together; ``train.two_tower_masked``; needs the full softmax) or "leave_one_out" (the
        whole training history minus the target item; ``features.build_training_examples``).
      recency_halflife_days: per-example loss weight halving every this many days before the last
        training example (None = uniform, the paper): recent behaviour counts more.
      prior_days: the item-bias prior (``model.item_bias``) is the log frequency of the positives of the
        last ``prior_days`` days of training (None = all of it): what is popular now.
      id_history_len: most recent history items per type fed to the item-id embedding (``model.id_dim``
        > 0 turns the shared item-id embedding on; 0 here then means "item tower ids only").
      id_init: "normal" (random rows) or "svd": the id table starts from the item factors of a truncated
        SVD of the training part's user x item matrix (``train.two_tower_init``); still learned.
      history_days: user-history window (None = unbounded); positive_events: events that are positives.
      q_smoothing: additive smoothing of the item frequency q behind the logQ / inverse weights.
      checkpoint_every: steps between checkpoints (and one at the end); log_every: steps between logs.
      num_devices: devices of the data mesh (None = all).
    """

    target_type: str = "audiobook"
    use_hgnn: bool = True
    batch_size: int = 128
    epochs: int = 10
    learning_rate: float = 1e-3
    max_steps: int | None = None
    time_budget_s: float | None = None
    seed: int = 0
    history_days: float | None = 90.0
    positive_events: tuple[str, ...] = ("stream",)
    first_only: bool = False
    q_smoothing: float = 1.0
    patience: int = 2
    eval_every: int | None = None
    id_history_len: int = 0
    id_init: str = "normal"
    target_frac: float = 0.2
    max_targets: int = 64
    example_history: str = "as_of"
    recency_halflife_days: float | None = None
    weight_decay: float = 0.0
    prior_days: float | None = None
    prior_as_of: bool = False
    ema_decay: float | None = None
    checkpoint_every: int = 500
    log_every: int = 50
    num_devices: int | None = None
    progress: bool = True
    model: TwoTowerConfig = dataclasses.field(default_factory=TwoTowerConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.target_type, str) or not self.target_type.strip():
            raise ValueError(f"target_type must be an item type name, got {self.target_type!r}")
        for name in ("batch_size", "epochs", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.example_history not in ("as_of", "leave_one_out", "leave_many_out"):
            raise ValueError(
                f"example_history must be as_of, leave_one_out or leave_many_out, got {self.example_history!r}"
            )
        if self.example_history == "leave_many_out" and (self.prior_as_of or self.model.negatives != "full"):
            raise ValueError("example_history='leave_many_out' needs model.negatives='full' and prior_as_of=False")
        if not (0.0 < self.target_frac < 1.0) or int(self.max_targets) < 1:
            raise ValueError(
                f"target_frac must be in (0, 1) and max_targets >= 1, got {self.target_frac}, {self.max_targets}"
            )
        if self.id_init not in ("normal", "svd"):
            raise ValueError(f"id_init must be 'normal' or 'svd', got {self.id_init!r}")
        if self.prior_as_of and (self.prior_days is None or not self.model.item_bias):
            raise ValueError("prior_as_of needs prior_days and model.item_bias")

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = dataclasses.asdict(self.model)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "TwoTowerTrainConfig":
        d = dict(d)
        m = dict(d.pop("model"))
        m["tower_dims"] = tuple(m["tower_dims"])
        d["positive_events"] = tuple(d["positive_events"])
        return cls(model=TwoTowerConfig(**m), **d)


@dataclasses.dataclass
class TwoTowerResult:
    """A trained two-tower model and everything needed to encode users and items with it.

    Attributes:
      params: host NumPy pytree of the Flax ``TwoTowerModel`` variables.
      cfg: the training config; model_cfg: the model config with vocabulary sizes filled in.
      vocab: categorical vocabularies and feature sizes.
      item_table: ItemFeatures of every target-type item (row r = global id ``item_table.item_idx[r]``).
      history_emb: float32 ``[n_items, d_hist]`` embedding the user history means are built from.
      history: list of ``{"step", "loss"}`` logged so far (including before a resume).
      step: steps done in total (including resumed ones); n_examples: training examples;
      n_compiles: traces of the train step in this run (1 with static shapes).
    """

    params: Any
    cfg: TwoTowerTrainConfig
    model_cfg: TwoTowerConfig
    vocab: F.FeatureVocab
    item_table: F.ItemFeatures
    history_emb: np.ndarray
    history: list[dict]
    step: int
    n_examples: int
    n_compiles: int = 0
    resumed_from: int | None = None
    stop_reason: str = "epochs"
    best_step: int | None = None
    val_history: list[dict] = dataclasses.field(default_factory=list)
