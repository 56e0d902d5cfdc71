"""HGNN training settings (:class:`HGNNTrainConfig`) and outcome (:class:`HGNNTrainResult`).

Re-exported from :mod:`twotower_hgnn.train.hgnn`, the trainer that uses them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from sampler.spec import BALANCE_POLICIES, SamplingSpec
from twotower_hgnn.models.hgnn_config import HGNNConfig


@dataclasses.dataclass
class HGNNTrainConfig:
    """Training hyper-parameters. Defaults follow the paper where it gives a value (Adam, lr 1e-3,
    batch 256, <= 50 epochs, patience 10); the rest are our documented choices (BUILD_NOTES.md, appendix D).

    Attributes:
      model: the HGNN config (dims, layers, activation, compute dtype).
      lr: Adam learning rate (paper: 1e-3).
      batch_positives: positive edges per optimisation step (paper: 256), split evenly over
        ``sub_batches``; per relation by the balance policy (sampler ``make_spec``).
      sub_batches: sampler batches per step (the leading axis sharded over devices); None = the
        number of mesh devices. Must be a multiple of the device count and divide batch_positives.
      fanouts: neighbours per hop (hop 0 first); one per layer at least. Our choice: (10, 5).
      negatives_per_type: node type -> negatives per positive; None = 4 spread over the types in use.
      margin: Delta of Eq. 4 (not in the paper; 0.2 is our choice for unit vectors).
      relations: relation names in use ("audiobook-podcast"...); None = all of the graph's.
      balance / ratios: the sampler's balance policy ("equal" = paper, "off" = ablation A).
      replace / exclude_supervision_edges / avoid_known_positives: passed to the sampling spec.
      max_epochs / patience: early stopping on ``val_mrr`` (paper: 50 / 10): stop after ``patience``
        validations without improvement (validations = epochs unless ``val_every_steps`` is set).
      val_every_steps: also validate (and checkpoint) every n global steps inside an epoch, so early
        stopping and the best model work within a step budget shorter than an epoch (0 = at epoch
        ends only).
      max_steps: optional step budget (total over resumes); the run validates and saves, then stops.
        Steps, epochs and early stopping are the reproducible budgets (same seed, same params).
      max_time_s: wall-clock safety net (total over resumes; None = none): where it ends a run the
        result depends on machine speed, so ``stop_reason`` is ``"max_time"`` and the trainer says so.
      val_max_edges: cap on held-out edges per relation used for validation (random, seeded); None = all.
      workers / prefetch / loader_mode: host sampler workers, prefetched steps, "thread" or
        "process" (sampler ``Loader``).
      fused_sampling: with the device sampler (``sampler_factory("device")``), sample each step's
        batches *inside* the jitted train step (``sampler.device.FusedSampler``): only the step index
        crosses from the host; one epoch order is uploaded per epoch. Single-process only.
      seed: initialisation, sampling and validation seed.
      ckpt_every_steps: also checkpoint every n steps mid-epoch (0 = only at epoch ends).
      max_to_keep: latest checkpoints kept (plus the best).
      num_devices: devices in the data mesh (None = all global devices).
      log_every_steps: training-loss scalars cadence; progress: console progress lines.
      features_in_compute_dtype: store the feature table in bf16 when computing in bf16 (halves
        gather bytes; master weights stay float32).
    """

    model: HGNNConfig = dataclasses.field(default_factory=HGNNConfig)
    lr: float = 1e-3
    batch_positives: int = 256
    sub_batches: int | None = None
    fanouts: tuple[int, ...] = (10, 5)
    negatives_per_type: Mapping[str, int] | None = None
    margin: float = 0.2
    relations: tuple[str, ...] | None = None
    balance: str = "equal"
    ratios: Mapping[str, float] | None = None
    replace: bool = False
    exclude_supervision_edges: bool = True
    avoid_known_positives: bool = False
    max_epochs: int = 50
    patience: int = 10
    max_steps: int | None = None
    max_time_s: float | None = None
    val_every_steps: int = 0
    val_max_edges: int | None = 20_000
    workers: int = 1
    prefetch: int = 4
    loader_mode: str = "thread"
    fused_sampling: bool = False
    seed: int = 0
    ckpt_every_steps: int = 0
    max_to_keep: int = 2
    num_devices: int | None = None
    log_every_steps: int = 20
    progress: bool = True
    features_in_compute_dtype: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.model, Mapping):
            self.model = HGNNConfig.from_dict(self.model)
        self.fanouts = tuple(int(f) for f in self.fanouts)
        if self.relations is not None:
            self.relations = tuple(self.relations)
        checks = {
            "lr": self.lr > 0,
            "batch_positives": self.batch_positives >= 1,
            "margin": self.margin >= 0,
            "max_epochs": self.max_epochs >= 1,
            "patience": self.patience >= 0,
            "workers": self.workers >= 1,
            "prefetch": self.prefetch >= 1,
            "loader_mode": self.loader_mode in ("thread", "process"),
            "ckpt_every_steps": self.ckpt_every_steps >= 0,
            "fanouts": len(self.fanouts) >= self.model.num_layers and all(f > 0 for f in self.fanouts),
            "sub_batches": self.sub_batches is None or self.sub_batches >= 1,
            "max_steps": self.max_steps is None or self.max_steps >= 1,
            "max_time_s": self.max_time_s is None or self.max_time_s > 0,
            "val_every_steps": self.val_every_steps >= 0,
            "val_max_edges": self.val_max_edges is None or self.val_max_edges >= 1,
            "log_every_steps": self.log_every_steps >= 1,
            "balance": self.balance in BALANCE_POLICIES,
            # relation names are SRC-DST item types (sampler.csr.relation_name), checked against the graph later
            "relations": self.relations is None
            or (len(self.relations) > 0 and all(isinstance(r, str) and "-" in r.strip("-") for r in self.relations)),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"HGNNTrainConfig: invalid {bad[0]}={getattr(self, bad[0])!r}"
                + (f" (need >= {self.model.num_layers} positive fan-outs)" if bad[0] == "fanouts" else "")
            )

    @classmethod
    def cpu_small(cls, **overrides: Any) -> "HGNNTrainConfig":
        """The named small configuration for CPU runs (tests, the demo on tiny/small data): a
        64/32-wide 2-layer model, 64 positives per step, fan-out (5, 3), K = 4, 8 epochs,
        patience 3, 256 validation edges per relation. Not the paper's sizes (those are the
        defaults); chosen so a tiny run trains in seconds on 2 cores."""
        base = dict(
            model=HGNNConfig(hidden_dim=64, out_dim=32),
            batch_positives=64,
            fanouts=(5, 3),
            max_epochs=8,
            patience=3,
            val_max_edges=256,
            lr=5e-3,
            progress=False,
            log_every_steps=5,
        )
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        d["fanouts"] = list(self.fanouts)
        d["relations"] = None if self.relations is None else list(self.relations)
        d["negatives_per_type"] = None if self.negatives_per_type is None else dict(self.negatives_per_type)
        d["ratios"] = None if self.ratios is None else dict(self.ratios)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HGNNTrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"HGNNTrainConfig: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


@dataclasses.dataclass
class HGNNTrainResult:
    """Outcome of :func:`train_hgnn`.

    Attributes:
      params: the best params by ``val_mrr`` (float32 NumPy pytree).
      last_params: the params after the last step (what a resumed run must reproduce).
      cfg: the training config used.
      spec: the sampling spec (per sub-batch).
      best_metric: best ``val_mrr``; best_epoch: the epoch it was reached (0 = before training).
      history: one dict per validation (epoch 0 = initial params): epoch, step, train_loss,
        val_loss, val_mrr, val_hits1, val_loss/<relation>, wall_s, steps_per_s.
      baseline: the same validation metrics for random unit embeddings.
      epochs_run: completed epochs; steps: optimisation steps; wall_s: training wall time over resumes.
      stopped_early: True when early stopping ended the run; stop_reason: one of STOP_REASONS.
      resumed_from: checkpoint step restored at start (None = fresh run).
      traces: {"train": n, "eval": n} jit traces (= compilations) of the step functions during this call.
    """

    params: Any
    last_params: Any
    cfg: HGNNTrainConfig
    spec: SamplingSpec
    best_metric: float
    best_epoch: int
    history: list[dict]
    baseline: dict
    epochs_run: int
    steps: int
    wall_s: float
    stopped_early: bool
    stop_reason: str
    resumed_from: int | None
    traces: dict[str, int]
